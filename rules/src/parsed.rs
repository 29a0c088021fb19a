//! What an expression's text compiles to, kept per process.
//!
//! The CEL parser (an ANTLR grammar) costs about 0.75 M instructions a parse and runs on a
//! thread of its own, and one text is parsed for several purposes (the interpreter's program,
//! the depth check, the names it reads, the compiled tree) by every worker for every rule-set
//! version: at start with the default pack that was about 220 parses, most of them of texts
//! already parsed. The results are pure functions of the text, so each is kept here and a text
//! is parsed once per purpose. Bounded: a table past [`MAX_TEXTS`] starts again empty (rules
//! changed that often are parsed again; nothing else is lost).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{LazyLock, Mutex, PoisonError};

/// Texts kept per table.
pub const MAX_TEXTS: usize = 4096;

/// Results of one kind, by their key (the text, and whatever else they depend on).
pub(crate) struct Table<K, V>(LazyLock<Mutex<HashMap<K, V>>>);

impl<K: Eq + Hash, V: Clone> Table<K, V> {
    pub(crate) const fn new() -> Self {
        Table(LazyLock::new(|| Mutex::new(HashMap::new())))
    }

    /// The result kept for `key`, or `make`'s (kept). `make` runs without the lock: two
    /// threads asking for a new text at once both parse it, and neither waits on the other.
    pub(crate) fn get_or(&self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(v) = self.lock().get(&key) {
            return v.clone();
        }
        let v = make();
        let mut table = self.lock();
        if table.len() >= MAX_TEXTS {
            table.clear();
        }
        table.insert(key, v.clone());
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_text_is_made_once_and_the_table_stays_bounded() {
        let table: Table<String, usize> = Table::new();
        let made = Cell::new(0);
        let make = |n| {
            made.set(made.get() + 1);
            n
        };
        assert_eq!(table.get_or("a".into(), || make(1)), 1);
        assert_eq!(table.get_or("a".into(), || make(2)), 1);
        assert_eq!(made.get(), 1);
        for i in 0..MAX_TEXTS + 10 {
            table.get_or(format!("t{i}"), || make(i));
        }
        assert!(table.lock().len() <= MAX_TEXTS);
    }
}
