//! The rules in force: read by the API and the alerts, changed through the API or by a reload
//! of the rule files, one change at a time; each change goes to the dataflow, which puts it in
//! force from its frontier.

use std::sync::Arc;

/// The running rule set: read by the API, replaced through the API or by a reload of the
/// rule files. A replacement reaches the dataflow, which puts it in force from its current
/// frontier.
pub struct RuleManager {
    current: std::sync::RwLock<Arc<Vec<rules::Rule>>>,
    updates: Option<crossbeam_channel::Sender<Arc<Vec<rules::Rule>>>>,
    /// Where changes made through the API are kept for the next start.
    kept: Option<crate::kept_rules::KeptRules>,
    /// Held from reading the rules in force to replacing them, so that two changes at once
    /// cannot lose one.
    editing: std::sync::Mutex<()>,
}

impl RuleManager {
    /// `initial` in force; `updates` goes to the dataflow (none: rules cannot change).
    pub fn new(
        initial: Arc<Vec<rules::Rule>>,
        updates: Option<crossbeam_channel::Sender<Arc<Vec<rules::Rule>>>>,
    ) -> RuleManager {
        RuleManager {
            current: std::sync::RwLock::new(initial),
            updates,
            kept: None,
            editing: std::sync::Mutex::new(()),
        }
    }

    /// Keeps every change made through the API in `kept` (see [`crate::kept_rules`]).
    pub fn keeping(mut self, kept: crate::kept_rules::KeptRules) -> RuleManager {
        self.kept = Some(kept);
        self
    }

    /// The rules in force.
    pub fn current(&self) -> Arc<Vec<rules::Rule>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether rules can be changed at run time (citywatch was started with `--rules`).
    pub fn is_changeable(&self) -> bool {
        self.updates.is_some()
    }

    /// Puts `rules` in force, changed through the API, and keeps them for the next start.
    /// Fails when rules cannot change, or cannot be kept (then nothing changes).
    fn replace(&self, rules: Vec<rules::Rule>) -> Result<(), String> {
        if let Some(kept) = &self.kept {
            kept.keep(&rules)
                .map_err(|e| format!("cannot keep the rule change: {e}"))?;
        }
        self.put_in_force(rules).map_err(str::to_owned)
    }

    /// Changes rule `id` through the API on behalf of `by`: `f` is given the rules in force
    /// and gives the new set and the kind of change (or refuses with its own error); reading
    /// and replacing happen under one lock, so a concurrent change is never lost. The inner
    /// result says whether the change could be put in force (see [`Self::change`]).
    pub fn edit<E>(
        &self,
        id: &str,
        by: &str,
        f: impl FnOnce(&[rules::Rule]) -> Result<(Vec<rules::Rule>, &'static str), E>,
    ) -> Result<Result<&'static str, String>, E> {
        let _one_at_a_time = self
            .editing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, change) = f(&self.current())?;
        Ok(self.change(next, id, by, change).map(|()| change))
    }

    /// Puts `rules` in force, changed through the API by `by` (rule `id`, a change of kind
    /// `change`), keeps them for the next start and records the version in the rule's
    /// history. Fails when rules cannot change, or cannot be kept (then nothing changes).
    fn change(
        &self,
        rules: Vec<rules::Rule>,
        id: &str,
        by: &str,
        change: &str,
    ) -> Result<(), String> {
        let existed = self.current().iter().any(|r| r.id == id);
        let now = rules.iter().find(|r| r.id == id).cloned();
        self.replace(rules)?;
        if let Some(kept) = &self.kept
            && let Err(e) = kept.record(id, by, change, now.as_ref(), existed)
        {
            tracing::error!(rule = id, error = %e, "rule history: the change is in force and kept, its record failed");
        }
        Ok(())
    }

    /// The version of rule `id` among `current` (the rules in force): 0 when it is not among
    /// them, else its latest recorded version (1 when none is recorded).
    pub fn version_of(&self, id: &str, current: &[rules::Rule]) -> u64 {
        if !current.iter().any(|r| r.id == id) {
            return 0;
        }
        self.history(id).last().map_or(1, |v| u64::from(v.version))
    }

    /// Every recorded version of rule `id`, oldest first (none when changes are not kept).
    pub fn history(&self, id: &str) -> Vec<crate::kept_rules::RuleVersion> {
        self.kept
            .as_ref()
            .map(|k| k.history(id))
            .unwrap_or_default()
    }

    /// Puts the rules of the files in force after they changed: they win over earlier API
    /// changes, which are no longer kept either. A rule the files changed is a new version.
    pub fn reload(&self, files: Vec<rules::Rule>) -> Result<(), &'static str> {
        let _one_at_a_time = self
            .editing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(kept) = &self.kept {
            kept.rebase(&files);
            let before = self.current();
            for r in &files {
                let old = before.iter().find(|o| o.id == r.id);
                if old.is_some_and(|o| o.source == r.source && o.enabled == r.enabled) {
                    continue;
                }
                let change = if old.is_some() { "files" } else { "created" };
                if let Err(e) = kept.record(&r.id, "files", change, Some(r), old.is_some()) {
                    tracing::error!(rule = %r.id, error = %e, "rule history: record failed");
                }
            }
        }
        self.put_in_force(files)
    }

    fn put_in_force(&self, rules: Vec<rules::Rule>) -> Result<(), &'static str> {
        let tx = self
            .updates
            .as_ref()
            .ok_or("rules cannot change: citywatch runs with --rules none")?;
        let rules = Arc::new(rules);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tx.send(rules.clone())
            .map_err(|_| "the dataflow has stopped")?;
        *current = rules;
        Ok(())
    }
}
