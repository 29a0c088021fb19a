//! Label matchers, as in Alertmanager: `name=value`, `name!=value`, `name=~regex`,
//! `name!~regex` (regexes anchored at both ends). Silences and escalation policies select
//! alerts with them; an alert's labels include its `rule` and `severity`.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One matcher, written and stored as its text (`domain=elevator`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Matcher {
    /// Parses `name<op>value`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let at = text.find(['=', '!']).ok_or_else(|| {
            format!(
                "matcher {text:?}: expected name=value, name!=value, name=~regex or name!~regex"
            )
        })?;
        let (name, rest) = text.split_at(at);
        let name = name.trim();
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else {
            return Err(format!(
                "matcher {text:?}: expected =, !=, =~ or !~ after the name"
            ));
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!(
                "matcher {text:?}: the label name must be letters, digits, '_' or '.'"
            ));
        }
        let value = value.trim().trim_matches('"').to_owned();
        let regex = match op {
            Op::Re | Op::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher {text:?}: bad regex: {e}"))?,
            ),
            Op::Eq | Op::Ne => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    /// Whether the labels satisfy this matcher (a missing label is the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Eq, _) => v == self.value,
            (Op::Ne, _) => v != self.value,
            (Op::Re, Some(r)) => r.is_match(v),
            (Op::NotRe, Some(r)) => !r.is_match(v),
            _ => false,
        }
    }
}

/// Whether every matcher matches.
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl TryFrom<String> for Matcher {
    type Error = String;
    fn try_from(s: String) -> Result<Matcher, String> {
        Matcher::parse(&s)
    }
}

impl From<Matcher> for String {
    fn from(m: Matcher) -> String {
        format!("{}{}{}", m.name, m.op.as_str(), m.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_four_operators() {
        let l = labels(&[("domain", "elevator"), ("elevator_id", "E12")]);
        assert!(Matcher::parse("domain=elevator").unwrap().matches(&l));
        assert!(!Matcher::parse("domain!=elevator").unwrap().matches(&l));
        assert!(Matcher::parse("elevator_id=~E1.").unwrap().matches(&l));
        // Anchored: E1 alone does not match E12.
        assert!(!Matcher::parse("elevator_id=~E1").unwrap().matches(&l));
        assert!(Matcher::parse("elevator_id!~E1").unwrap().matches(&l));
        // A missing label is empty.
        assert!(Matcher::parse("building=").unwrap().matches(&l));
    }

    #[test]
    fn round_trips_as_text_and_rejects_nonsense() {
        let m: Matcher = serde_json::from_str("\"severity=~critical|major\"").unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            "\"severity=~critical|major\""
        );
        assert!(
            Matcher::parse("domain")
                .unwrap_err()
                .contains("expected name=value")
        );
        assert!(Matcher::parse("=x").unwrap_err().contains("label name"));
        assert!(Matcher::parse("a=~(").unwrap_err().contains("bad regex"));
    }
}
