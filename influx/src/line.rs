//! Points and their line protocol.
//!
//! Escaping follows the InfluxDB line protocol reference: in measurements, commas and spaces;
//! in tag keys, tag values and field keys, commas, equals signs and spaces; in string field
//! values, double quotes and backslashes. Line protocol has no newlines inside an element, so
//! line breaks become spaces. Tags with empty values and non-finite floats are left out (the
//! protocol has no way to write them); a point with no field left is not written.

use std::fmt::Write;

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A float.
    F64(f64),
    /// A signed integer (`i` suffix).
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
}

/// One point: measurement, tags, fields and a millisecond timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: &'static str,
    pub tags: Vec<(&'static str, String)>,
    pub fields: Vec<(&'static str, Field)>,
    pub time_ms: u64,
}

impl Point {
    /// A point with no tags or fields yet.
    pub fn new(measurement: &'static str, time_ms: u64) -> Point {
        Point {
            measurement,
            tags: Vec::new(),
            fields: Vec::new(),
            time_ms,
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &'static str, value: impl Into<String>) -> Point {
        self.tags.push((key, value.into()));
        self
    }

    /// Adds a field.
    pub fn field(mut self, key: &'static str, value: Field) -> Point {
        self.fields.push((key, value));
        self
    }

    /// Appends the point as one line (with its newline) to `out`; false if it has no
    /// writable field.
    pub fn write_line(&self, out: &mut String) -> bool {
        let writable = |f: &Field| !matches!(f, Field::F64(v) if !v.is_finite());
        if !self.fields.iter().any(|(_, f)| writable(f)) {
            return false;
        }
        escape(out, self.measurement, &[',', ' ']);
        let mut tags: Vec<&(&str, String)> =
            self.tags.iter().filter(|(_, v)| !v.is_empty()).collect();
        tags.sort_by_key(|(k, _)| *k);
        for (k, v) in tags {
            out.push(',');
            escape(out, k, &[',', '=', ' ']);
            out.push('=');
            escape(out, v, &[',', '=', ' ']);
        }
        let mut first = true;
        for (k, f) in self.fields.iter().filter(|(_, f)| writable(f)) {
            out.push(if first { ' ' } else { ',' });
            first = false;
            escape(out, k, &[',', '=', ' ']);
            out.push('=');
            match f {
                Field::F64(v) => {
                    let _ = write!(out, "{v}");
                }
                Field::I64(v) => {
                    let _ = write!(out, "{v}i");
                }
                Field::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
                Field::Str(s) => {
                    out.push('"');
                    for c in s.chars() {
                        match c {
                            '"' | '\\' => {
                                out.push('\\');
                                out.push(c);
                            }
                            '\n' | '\r' => out.push(' '),
                            c => out.push(c),
                        }
                    }
                    out.push('"');
                }
            }
        }
        let _ = writeln!(out, " {}", self.time_ms);
        true
    }
}

fn escape(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
            out.push(c);
        } else if c == '\n' || c == '\r' {
            out.push_str("\\ ");
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: &Point) -> String {
        let mut s = String::new();
        assert!(p.write_line(&mut s));
        s
    }

    #[test]
    fn escapes_every_element() {
        let p = Point::new("elevator stats,x", 1_795_737_600_000)
            .tag("district", "渝中 区,a=b")
            .tag("building", "")
            .tag("a key", "v")
            .field("max speed", Field::F64(1.5))
            .field("trips", Field::I64(-3))
            .field("ok", Field::Bool(true))
            .field("note", Field::Str("say \"hi\"\\ now\nplease".into()));
        assert_eq!(
            line(&p),
            "elevator\\ stats\\,x,a\\ key=v,district=渝中\\ 区\\,a\\=b max\\ speed=1.5,trips=-3i,ok=true,note=\"say \\\"hi\\\"\\\\ now please\" 1795737600000\n"
        );
    }

    #[test]
    fn integral_floats_stay_floats_and_non_finite_are_left_out() {
        let p = Point::new("m", 5)
            .field("a", Field::F64(2.0))
            .field("b", Field::F64(f64::NAN));
        assert_eq!(line(&p), "m a=2 5\n");
        let empty = Point::new("m", 5).field("b", Field::F64(f64::INFINITY));
        assert!(!empty.write_line(&mut String::new()));
    }
}
