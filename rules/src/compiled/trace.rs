//! A traced evaluation: the compiled tree walked exactly as [`Node::eval`] walks it, keeping
//! what each sub-expression came to, so that an operator can read which part of a rule held
//! and which did not (docs/explain.md, step 1):
//!
//! ```text
//! event.speed_mps > ref.elevator.rated_speed_mps * 1.15 = true
//!   event.speed_mps = 2.31
//!   ref.elevator.rated_speed_mps * 1.15 = 2.0125
//!     ref.elevator.rated_speed_mps = 1.75
//! ```
//!
//! Literals are not listed as parts (their value is their text); a part that was not evaluated
//! (the right side of a false `&&`, the branch of `?:` not taken) is listed as such. The root's
//! value is [`Node::eval`]'s, errors included (a property test holds them together).

use super::val::{self, Res, Val};
use super::{Cmp, Node, Path, Root, Vars, WindowVar, compare};
use serde::Serialize;
use std::fmt;

/// One sub-expression of a traced evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traced {
    /// The sub-expression, written as CEL.
    pub text: String,
    pub outcome: Outcome,
    /// Its parts that are not literals, in the order they are evaluated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Traced>,
}

/// What a sub-expression came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "is", content = "value")]
pub enum Outcome {
    /// A value, written as a CEL literal.
    Value(String),
    /// The evaluation failed here (a missing field, a comparison across kinds, an overflow):
    /// a failing filter counts as not matching.
    Failed,
    /// Not evaluated: an operator before it had decided.
    NotEvaluated,
}

impl Node {
    /// Evaluates as [`Node::eval`] does, and says what each sub-expression came to. Shared
    /// conditions are computed in place (a traced evaluation is for one event, not the hot
    /// path).
    pub fn trace<'a>(&self, vars: &impl Vars<'a>) -> (Res<'a>, Traced) {
        let mut parts = Vec::new();
        let res = self.traced(vars, &mut parts);
        let traced = Traced {
            text: self.to_string(),
            outcome: outcome(&res),
            parts,
        };
        (res, traced)
    }

    /// This node's result, its parts' traces pushed to `parts`.
    fn traced<'a>(&self, vars: &impl Vars<'a>, parts: &mut Vec<Traced>) -> Res<'a> {
        match self {
            Node::Lit(_) | Node::Get(_) | Node::Has(_) | Node::Window(_) | Node::Prior { .. } => {
                self.eval(vars)
            }
            Node::Not(a) => Ok(Val::Bool(!part(a, vars, parts)?.truthy())),
            Node::Neg(a) => val::negate(part(a, vars, parts)?),
            Node::And(a, b) => {
                if !part(a, vars, parts)?.truthy() {
                    skipped(b, parts);
                    return Ok(Val::Bool(false));
                }
                Ok(Val::Bool(part(b, vars, parts)?.truthy()))
            }
            Node::Or(a, b) => {
                let left = part(a, vars, parts)?;
                if left.truthy() {
                    skipped(b, parts);
                    Ok(left)
                } else {
                    part(b, vars, parts)
                }
            }
            Node::If(c, a, b) => {
                if part(c, vars, parts)?.truthy() {
                    let r = part(a, vars, parts);
                    skipped(b, parts);
                    r
                } else {
                    skipped(a, parts);
                    part(b, vars, parts)
                }
            }
            Node::Cmp(c, a, b) => {
                let left = part(a, vars, parts)?;
                compare(*c, &left, &part(b, vars, parts)?)
            }
            Node::Arith(op, a, b) => {
                let left = part(a, vars, parts)?;
                val::arith(*op, left, part(b, vars, parts)?)
            }
            Node::In(a, set) => {
                let x = part(a, vars, parts)?;
                Ok(Val::Bool(set.iter().any(|m| x.equals(m))))
            }
            Node::Shared(_, a) => a.traced(vars, parts),
        }
    }
}

/// Evaluates a part, keeping its trace unless it is a literal.
fn part<'a>(n: &Node, vars: &impl Vars<'a>, parts: &mut Vec<Traced>) -> Res<'a> {
    let (res, traced) = n.trace(vars);
    if !matches!(n, Node::Lit(_)) {
        parts.push(traced);
    }
    res
}

/// A part an operator before it decided without.
fn skipped(n: &Node, parts: &mut Vec<Traced>) {
    if !matches!(n, Node::Lit(_)) {
        parts.push(Traced {
            text: n.to_string(),
            outcome: Outcome::NotEvaluated,
            parts: Vec::new(),
        });
    }
}

fn outcome(res: &Res<'_>) -> Outcome {
    match res {
        Ok(Val::Double(d)) => Outcome::Value(shown(*d)),
        Ok(v) => Outcome::Value(literal(v)),
        Err(_) => Outcome::Failed,
    }
}

/// A computed double as an operator reads it: to nine decimals, so that `1.75 * 1.15` reads
/// 2.0125 and not 2.0124999999999997 (the value itself is not rounded).
fn shown(d: f64) -> String {
    if !d.is_finite() || d.abs() >= 1e15 || (d != 0.0 && d.abs() < 1e-6) {
        return literal(&Val::Double(d));
    }
    let s = format!("{d:.9}");
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_owned()
    }
}

/// A value written as the CEL literal that reads back as it.
pub fn literal(v: &Val<'_>) -> String {
    match v {
        Val::Null => "null".into(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::UInt(u) => format!("{u}u"),
        Val::Double(d) if d.is_finite() => format!("{d:?}"),
        Val::Double(d) => d.to_string(),
        Val::Str(s) => format!("{:?}", s.as_ref()),
    }
}

impl fmt::Display for Traced {
    /// One line per sub-expression, its parts indented below it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

impl Traced {
    fn write(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let indent = "  ".repeat(depth);
        match &self.outcome {
            Outcome::Value(v) => writeln!(f, "{indent}{} = {v}", self.text)?,
            Outcome::Failed => writeln!(f, "{indent}{}: fails", self.text)?,
            Outcome::NotEvaluated => writeln!(f, "{indent}{}: not evaluated", self.text)?,
        }
        self.parts.iter().try_for_each(|p| p.write(f, depth + 1))
    }
}

/// CEL's precedence: `?:` binds least, then `||`, `&&`, relations, `+ -`, `* / %`, unary.
fn precedence(n: &Node) -> u8 {
    use super::Arith::*;
    match n {
        Node::If(..) => 1,
        Node::Or(..) => 2,
        Node::And(..) => 3,
        Node::Cmp(..) | Node::In(..) => 4,
        Node::Arith(Add | Sub, ..) => 5,
        Node::Arith(Mul | Div | Rem, ..) => 6,
        Node::Not(_) | Node::Neg(_) => 7,
        Node::Lit(Val::Int(i)) if *i < 0 => 7,
        Node::Lit(Val::Double(d)) if d.is_sign_negative() => 7,
        Node::Shared(_, a) => precedence(a),
        _ => 8,
    }
}

/// `n` written at a place that needs at least precedence `min`: in parentheses if it binds
/// less.
struct At<'n>(&'n Node, u8);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if precedence(self.0) < self.1 {
            write!(f, "({})", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = match self.root {
            Root::Event => "event",
            Root::Prev => "prev",
            Root::Ref => "ref",
        };
        write!(f, "{root}.{}", self.names.join("."))
    }
}

impl fmt::Display for Node {
    /// The expression written as CEL (it parses back to the same tree, up to how literals
    /// and parentheses were written).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = precedence(self);
        match self {
            Node::Lit(v) => f.write_str(&literal(v)),
            Node::Get(path) => write!(f, "{path}"),
            Node::Has(path) => write!(f, "has({path})"),
            // The parser folds `!!x` and `--x` into `x`, and does not take `!-x`: a unary
            // operator's operand that is itself unary is written in parentheses.
            Node::Not(a) if precedence(a) == 7 => write!(f, "!({a})"),
            Node::Not(a) => write!(f, "!{}", At(a, p)),
            Node::Neg(a) if precedence(a) == 7 => write!(f, "-({a})"),
            Node::Neg(a) => write!(f, "-{}", At(a, p)),
            Node::And(a, b) => write!(f, "{} && {}", At(a, p), At(b, p + 1)),
            Node::Or(a, b) => write!(f, "{} || {}", At(a, p), At(b, p + 1)),
            Node::If(c, a, b) => write!(f, "{} ? {} : {}", At(c, 2), At(a, 2), At(b, 1)),
            Node::Cmp(c, a, b) => write!(f, "{} {} {}", At(a, p), cmp_op(*c), At(b, p + 1)),
            Node::Arith(op, a, b) => write!(f, "{} {} {}", At(a, p), arith_op(*op), At(b, p + 1)),
            Node::In(a, set) => {
                let set: Vec<String> = set.iter().map(literal).collect();
                write!(f, "{} in [{}]", At(a, p + 1), set.join(", "))
            }
            Node::Window(WindowVar::Value) => f.write_str("value"),
            Node::Window(WindowVar::Count) => f.write_str("count"),
            Node::Prior { counts, index } => {
                let name = if *counts { "prior_count" } else { "prior" };
                write!(f, "{name}[{index}]")
            }
            Node::Shared(_, a) => write!(f, "{a}"),
        }
    }
}

fn cmp_op(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "==",
        Cmp::Ne => "!=",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
    }
}

fn arith_op(a: super::Arith) -> &'static str {
    use super::Arith::*;
    match a {
        Add => "+",
        Sub => "-",
        Mul => "*",
        Div => "/",
        Rem => "%",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled::{Lookup, Program};

    /// An overspeeding car: `event.speed_mps` and `ref.elevator.rated_speed_mps` only.
    struct Car(f64, f64);

    impl<'a> Vars<'a> for Car {
        fn get(&self, path: &Path) -> Lookup<'a> {
            match path.names.last().map(String::as_str) {
                Some("speed_mps") if path.root == Root::Event => Lookup::Val(Val::Double(self.0)),
                Some("rated_speed_mps") => Lookup::Val(Val::Double(self.1)),
                Some("elevator") => Lookup::Map,
                _ => Lookup::Absent,
            }
        }

        fn bound(&self, root: Root) -> bool {
            root != Root::Prev
        }
    }

    fn compiled(source: &str) -> Node {
        match Program::compile(source) {
            Program::Compiled(n) => n,
            Program::Interpreted(why) => panic!("{source}: {why}"),
        }
    }

    #[test]
    fn each_part_is_shown_with_its_value() {
        let n = compiled("event.speed_mps > ref.elevator.rated_speed_mps * 1.15");
        let (res, traced) = n.trace(&Car(2.31, 1.75));
        assert_eq!(res, Ok(Val::Bool(true)));
        assert_eq!(
            traced.to_string(),
            "event.speed_mps > ref.elevator.rated_speed_mps * 1.15 = true\n\
             \x20 event.speed_mps = 2.31\n\
             \x20 ref.elevator.rated_speed_mps * 1.15 = 2.0125\n\
             \x20   ref.elevator.rated_speed_mps = 1.75\n"
        );
    }

    #[test]
    fn what_an_operator_decided_without_is_not_evaluated_and_a_failure_is_named() {
        let n = compiled("event.speed_mps > 1.0 && (event.door == \"open\" || has(prev.door))");
        let (res, traced) = n.trace(&Car(0.5, 1.75));
        assert_eq!(res, Ok(Val::Bool(false)));
        assert_eq!(traced.parts[1].outcome, Outcome::NotEvaluated);
        assert_eq!(
            traced.parts[1].text,
            "event.door == \"open\" || has(prev.door)"
        );
        let (res, traced) = n.trace(&Car(2.0, 1.75));
        assert!(res.is_err());
        assert_eq!(traced.outcome, Outcome::Failed);
        let or = &traced.parts[1];
        assert_eq!(or.parts[0].outcome, Outcome::Failed);
        assert_eq!(or.parts[0].parts[0].text, "event.door");
    }

    #[test]
    fn written_back_with_the_parentheses_it_needs() {
        for source in [
            "(event.a + 1) * 2 > 3 || !(event.b && event.c)",
            "event.a - (event.b - event.c) == -1",
            "(event.x ? 1 : 2) + 3 < 10",
            "event.kind in [\"rodent\", \"smoking\"] && prev.floor != 3u",
        ] {
            let n = compiled(source);
            assert_eq!(compiled(&n.to_string()), n, "{source} -> {n}");
        }
    }
}
