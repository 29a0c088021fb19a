//! Rule changes made through the API outlive a restart.
//!
//! After each change (`PUT`/`DELETE /api/v1/rules/{id}`, `PUT …/enabled`) the whole rule set in
//! force is written to `DATA_DIR/rules-changed.json`, with a fingerprint of the rules it was
//! made on: the rule directory's files (or the built-in pack) as they were then. At start the
//! kept set is put in force again if the files are still those; if they changed in the
//! meantime, the files win (as they do at run time when they change after an API change) and
//! the kept set is moved aside to `rules-changed.json.superseded`, with a warning.
//!
//! Every change is also appended to `DATA_DIR/rules-history.jsonl` (who, when, what, and the
//! rule as it became), so `GET /api/v1/rules/{id}` names the version in force and who made it,
//! and `GET /api/v1/rules/{id}/history` lists them all.

use rules::{Rule, RuleSource};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The kept changes' file and the fingerprint of the rules they are made on.
pub struct KeptRules {
    path: PathBuf,
    base: Mutex<u64>,
    history: PathBuf,
}

/// The history read back is bounded: a file grown past this is read from its end.
const HISTORY_MAX_BYTES: u64 = 16 << 20;

/// One version of a rule: a change made through the API, or by the rule files replacing the
/// API's changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleVersion {
    pub id: String,
    /// 1 for the rule as the files gave it; each change adds one (a rule created through the
    /// API starts at 1).
    pub version: u32,
    pub at_ms: u64,
    /// The token's name (`files` when the rule files replaced the API's changes).
    pub by: String,
    /// `created`, `changed`, `deleted`, `enabled`, `disabled` or `files`.
    pub change: String,
    pub enabled: bool,
    /// The rule as it became (none once deleted).
    #[schema(value_type = Option<Object>)]
    pub source: Option<RuleSource>,
}

#[derive(Serialize, Deserialize)]
struct Kept {
    /// [`fingerprint`] of the rules the changes were made on.
    base: u64,
    rules: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    source: RuleSource,
    enabled: bool,
    origin: String,
}

/// A stable fingerprint of a rule set: FNV-1a over each rule's definition and switch.
pub fn fingerprint(rules: &[Rule]) -> u64 {
    rules.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, r| {
        let text = serde_json::to_string(&r.source).unwrap_or_default();
        text.bytes()
            .chain([u8::from(r.enabled), 0])
            .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    })
}

impl KeptRules {
    /// Changes kept in `data_dir`, made on `base` (the rules of the files or the built-in
    /// pack, as loaded at start).
    pub fn new(data_dir: &Path, base: &[Rule]) -> KeptRules {
        KeptRules {
            path: data_dir.join("rules-changed.json"),
            base: Mutex::new(fingerprint(base)),
            history: data_dir.join("rules-history.jsonl"),
        }
    }

    /// Appends a change of rule `id` to the history; `rule` is the rule as it became (none:
    /// deleted), `existed` whether it was in force before (its first version was the files').
    pub fn record(
        &self,
        id: &str,
        by: &str,
        change: &str,
        rule: Option<&Rule>,
        existed: bool,
    ) -> std::io::Result<RuleVersion> {
        use std::io::Write;
        let before = self
            .history(id)
            .last()
            .map_or(u32::from(existed), |v| v.version);
        let entry = RuleVersion {
            id: id.to_owned(),
            version: before + 1,
            at_ms: model::time::now_ms(),
            by: by.to_owned(),
            change: change.to_owned(),
            enabled: rule.is_some_and(|r| r.enabled),
            source: rule.map(|r| r.source.clone()),
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.history)?;
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(entry)
    }

    /// Every recorded version of rule `id`, oldest first.
    pub fn history(&self, id: &str) -> Vec<RuleVersion> {
        read_tail(&self.history, HISTORY_MAX_BYTES)
            .lines()
            .filter_map(|l| serde_json::from_str::<RuleVersion>(l).ok())
            .filter(|v| v.id == id)
            .collect()
    }

    fn base(&self) -> u64 {
        *self
            .base
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rule set kept from API changes, when it was made on the same base as now.
    pub fn load(&self) -> Option<Vec<Rule>> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let kept: Kept = match serde_json::from_str(&text) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "kept rule changes unreadable; the rule files are in force");
                self.set_aside();
                return None;
            }
        };
        if kept.base != self.base() {
            tracing::warn!(
                path = %self.path.display(),
                "the rule files changed since rules were changed through the API: the files win; the API's changes are set aside"
            );
            self.set_aside();
            return None;
        }
        let mut rules = Vec::with_capacity(kept.rules.len());
        for e in kept.rules {
            match rules::compile(&e.source, &e.origin) {
                Ok(mut r) => {
                    r.enabled = e.enabled;
                    rules.push(r);
                }
                Err(problems) => {
                    tracing::error!(rule = %e.source.id, problems = ?problems, "a kept rule no longer compiles; the rule files are in force");
                    self.set_aside();
                    return None;
                }
            }
        }
        Some(rules)
    }

    /// Keeps `rules` as the set in force, on the current base. Written whole to a temporary
    /// file, flushed to disk, then renamed into place: a crash leaves the old set or the new.
    pub fn keep(&self, rules: &[Rule]) -> std::io::Result<()> {
        use std::io::Write;
        let kept = Kept {
            base: self.base(),
            rules: rules
                .iter()
                .map(|r| Entry {
                    source: r.source.clone(),
                    enabled: r.enabled,
                    origin: r.origin.clone(),
                })
                .collect(),
        };
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&kept)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    /// The files changed and replaced the rules: they are the new base, and the API's
    /// earlier changes are gone from the set in force, so they are no longer kept either.
    pub fn rebase(&self, files: &[Rule]) {
        *self
            .base
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fingerprint(files);
        self.set_aside();
    }

    fn set_aside(&self) {
        if self.path.exists() {
            let _ = std::fs::rename(&self.path, self.path.with_extension("json.superseded"));
        }
    }
}

/// The last `max` bytes of a file, from its first whole line; empty if it cannot be read.
fn read_tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let from = len.saturating_sub(max);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    match (from > 0, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_owned(),
        _ => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack() -> Vec<Rule> {
        rules::load_str(
            "r.toml",
            "[[rule]]\nid = \"a\"\nseverity = \"minor\"\nstream = \"elevator_status\"\nfilter = 'event.speed_mps > 3.0'\n\n[[rule]]\nid = \"b\"\nseverity = \"major\"\nstream = \"elevator_status\"\nfilter = 'event.speed_mps > 4.0'\n",
        )
        .unwrap()
    }

    #[test]
    fn changes_come_back_on_the_same_files_and_give_way_to_changed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let base = pack();
        let kept = KeptRules::new(dir.path(), &base);
        assert!(kept.load().is_none(), "nothing kept yet");
        let mut changed = base.clone();
        changed[0].enabled = false;
        changed.pop();
        kept.keep(&changed).unwrap();

        let again = KeptRules::new(dir.path(), &base).load().unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id.as_str(), again[0].enabled), ("a", false));
        assert_eq!(again[0].source, base[0].source);

        let mut edited = base.clone();
        edited[1].source.description = "edited on disk".into();
        assert!(KeptRules::new(dir.path(), &edited).load().is_none());
        assert!(dir.path().join("rules-changed.json.superseded").exists());
        assert!(
            KeptRules::new(dir.path(), &base).load().is_none(),
            "set aside for good"
        );
    }

    #[test]
    fn each_change_is_a_version_with_its_author() {
        let dir = tempfile::tempdir().unwrap();
        let base = pack();
        let kept = KeptRules::new(dir.path(), &base);
        let mut a = base[0].clone();
        a.source.filter = Some("event.speed_mps > 3.5".into());
        kept.record("a", "管理员", "changed", Some(&a), true)
            .unwrap();
        a.enabled = false;
        kept.record("a", "管理员", "disabled", Some(&a), true)
            .unwrap();
        kept.record("new", "管理员", "created", Some(&base[1]), false)
            .unwrap();
        kept.record("a", "管理员", "deleted", None, true).unwrap();
        let history = KeptRules::new(dir.path(), &base).history("a");
        let seen: Vec<(u32, &str, bool)> = history
            .iter()
            .map(|v| (v.version, v.change.as_str(), v.enabled))
            .collect();
        assert_eq!(
            seen,
            vec![
                (2, "changed", true),
                (3, "disabled", false),
                (4, "deleted", false)
            ]
        );
        assert_eq!(history[0].source.as_ref().unwrap().filter, a.source.filter);
        assert_eq!(history[0].by, "管理员");
        assert!(history[2].source.is_none());
        assert_eq!(kept.history("new")[0].version, 1);
    }

    #[test]
    fn a_history_past_its_bound_is_read_from_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        std::fs::write(&path, "first line\nsecond\nthird\n").unwrap();
        assert_eq!(read_tail(&path, 12), "third\n");
        assert_eq!(read_tail(&path, 1000), "first line\nsecond\nthird\n");
        assert_eq!(read_tail(&dir.path().join("none"), 10), "");
    }
}
