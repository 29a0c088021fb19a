//! Limits on what the parsers are given, checked before they see it.
//!
//! The CEL parser and interpreter recurse over the expression tree: a filter nesting a few
//! hundred parentheses, or a sum of tens of thousands of terms, overflows a thread's stack and
//! aborts the whole process. Rule text arrives from the API as well as from files, so each
//! expression is measured first by a small scanner that does not recurse: its length in bytes,
//! its nesting depth (brackets) and its size in tokens (which bounds the depth of operator
//! chains such as `a + a + …` or `a.b.c.…`, whose trees are as deep as they are long). Rule files
//! are bounded in bytes and in nesting depth of their TOML arrays and inline tables the same way.

use std::sync::OnceLock;

/// Bounds on rule text. The defaults are far above what real rules use (the default pack's
/// longest expression is 139 bytes and 30 tokens) and far below what the parsers survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest expression, bytes.
    pub max_expr_bytes: usize,
    /// Deepest nesting of `(`, `[` and `{` in an expression.
    pub max_expr_depth: usize,
    /// Most tokens (names, literals, operators) in an expression.
    pub max_expr_tokens: usize,
    /// Longest rule file, bytes.
    pub max_file_bytes: usize,
    /// Deepest nesting of arrays and inline tables in a rule file.
    pub max_file_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_expr_bytes: 4096,
            max_expr_depth: 24,
            max_expr_tokens: 512,
            max_file_bytes: 1 << 20,
            max_file_depth: 16,
        }
    }
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

/// Sets the limits for the process; the first call wins (at start, from the settings).
pub fn set(limits: Limits) {
    let _ = LIMITS.set(limits);
}

/// The limits in force.
pub fn get() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}

/// A limit an input went past: its name (the setting), the limit and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {found}, over the limit {limit} (setting rule_limits.{setting})")]
pub struct Exceeded {
    pub what: &'static str,
    pub setting: &'static str,
    pub limit: usize,
    pub found: usize,
    /// 1-based column (expressions) or byte offset + 1 (files) where it was passed.
    pub at: usize,
}

/// Checks one expression against `limits`.
pub fn check_expr(source: &str, limits: &Limits) -> Result<(), Exceeded> {
    if source.len() > limits.max_expr_bytes {
        return Err(Exceeded {
            what: "the expression's length in bytes",
            setting: "max_expr_bytes",
            limit: limits.max_expr_bytes,
            found: source.len(),
            at: limits.max_expr_bytes + 1,
        });
    }
    let scan = scan_expr(source, limits.max_expr_depth);
    if let Some(at) = scan.too_deep_at {
        return Err(Exceeded {
            what: "the expression's nesting depth",
            setting: "max_expr_depth",
            limit: limits.max_expr_depth,
            found: scan.depth,
            at,
        });
    }
    if scan.tokens > limits.max_expr_tokens {
        return Err(Exceeded {
            what: "the expression's number of tokens",
            setting: "max_expr_tokens",
            limit: limits.max_expr_tokens,
            found: scan.tokens,
            at: 1,
        });
    }
    Ok(())
}

#[derive(Default)]
struct Scan {
    tokens: usize,
    depth: usize,
    too_deep_at: Option<usize>,
}

/// Counts tokens and bracket depth, skipping string and bytes literals (quoted with `'`, `"`,
/// or tripled) so that brackets inside them do not count.
fn scan_expr(source: &str, max_depth: usize) -> Scan {
    let bytes = source.as_bytes();
    let mut s = Scan::default();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' | b'"' => {
                i = skip_string(bytes, i);
                s.tokens += 1;
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                s.depth = s.depth.max(depth);
                if depth > max_depth && s.too_deep_at.is_none() {
                    s.too_deep_at = Some(i + 1);
                }
                s.tokens += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                s.tokens += 1;
            }
            _ if b.is_ascii_whitespace() => {}
            _ if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 => {
                // A name or a number is one token however long.
                while i + 1 < bytes.len()
                    && (bytes[i + 1].is_ascii_alphanumeric()
                        || bytes[i + 1] == b'_'
                        || bytes[i + 1] >= 0x80)
                {
                    i += 1;
                }
                s.tokens += 1;
            }
            _ => s.tokens += 1,
        }
        i += 1;
    }
    s
}

/// The index just past the string literal opening at `start` (or the end of the text).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let triple = bytes.len() >= start + 3 && bytes[start + 1] == quote && bytes[start + 2] == quote;
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            q if q == quote => {
                if !triple {
                    return i + 1;
                }
                if bytes.len() >= i + 3 && bytes[i + 1] == quote && bytes[i + 2] == quote {
                    return i + 3;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Checks a rule file's size and the nesting of its arrays and inline tables before the TOML
/// parser sees it. Brackets inside strings and comments are skipped; a table header
/// (`[[rule]]`) opens and closes on its line, so it adds nothing.
pub fn check_file(text: &str, limits: &Limits) -> Result<(), Exceeded> {
    if text.len() > limits.max_file_bytes {
        return Err(Exceeded {
            what: "the rule file's length in bytes",
            setting: "max_file_bytes",
            limit: limits.max_file_bytes,
            found: text.len(),
            at: limits.max_file_bytes + 1,
        });
    }
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limits.max_file_depth {
                    return Err(Exceeded {
                        what: "the rule file's nesting depth",
                        setting: "max_file_depth",
                        limit: limits.max_file_depth,
                        found: depth,
                        at: i + 1,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn real_rules_pass() {
        for e in [
            "event.speed_mps > 1.15 * ref.elevator.rated_speed_mps",
            r#"event.kind in ["rodent", "smoking"] && has(event.snapshot)"#,
            r#"event.note == "a ((( bracket in a string""#,
            r#"'''triple ' quoted ((('''.size() > 0"#,
        ] {
            check_expr(e, &limits()).unwrap();
        }
    }

    #[test]
    fn deep_nesting_is_refused_with_its_column() {
        let e = format!("{}1{}", "(".repeat(300), ")".repeat(300));
        let err = check_expr(&e, &limits()).unwrap_err();
        assert_eq!(err.setting, "max_expr_depth");
        assert_eq!(err.at, 25, "the 25th bracket goes past 24");
        let list = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(
            check_expr(&list, &limits()).unwrap_err().setting,
            "max_expr_depth"
        );
        let long = "1".repeat(5000);
        assert_eq!(
            check_expr(&long, &limits()).unwrap_err().setting,
            "max_expr_bytes"
        );
    }

    #[test]
    fn long_chains_are_refused_by_their_tokens() {
        let sum = vec!["1"; 300].join("+");
        let err = check_expr(&sum, &limits()).unwrap_err();
        assert_eq!((err.setting, err.found), ("max_expr_tokens", 599));
        let members = format!("event{}", ".a".repeat(300));
        assert_eq!(
            check_expr(&members, &limits()).unwrap_err().setting,
            "max_expr_tokens"
        );
        let text = check_expr(&sum, &limits()).unwrap_err().to_string();
        assert!(text.contains("rule_limits.max_expr_tokens"), "{text}");
    }

    #[test]
    fn brackets_in_strings_do_not_count_and_an_open_string_ends_the_scan() {
        let e = format!("'{}' == \"x", "(".repeat(100));
        check_expr(&e, &limits()).unwrap();
    }

    #[test]
    fn rule_files_are_bounded_in_depth_but_headers_and_strings_are_free() {
        let ok =
            "# [[[[[[[[[[[[[[[[[[[[\n[[rule]]\nid = \"x\"\nfilter = '[[[[[[[[[[[[[[[[[[[[[['\n";
        check_file(ok, &limits()).unwrap();
        let deep = format!("x = {}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = check_file(&deep, &limits()).unwrap_err();
        assert_eq!((err.setting, err.at), ("max_file_depth", 21));
        let big = "#".repeat(2 << 20);
        assert_eq!(
            check_file(&big, &limits()).unwrap_err().setting,
            "max_file_bytes"
        );
    }
}
