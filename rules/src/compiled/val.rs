//! The scalar values a compiled expression computes with, and CEL's rules for them as
//! cel-interpreter 0.10 applies them (equality across numeric types, ordering only within
//! comparable kinds, checked integer arithmetic, truthiness for `&&`, `||`, `!` and `?:`).

use std::borrow::Cow;
use std::cmp::Ordering;

/// A CEL scalar. Strings borrow from the event or the expression where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Cow<'a, str>),
}

/// An evaluation that failed (the interpreter's error, whatever its kind: a failing filter
/// counts as not matching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

pub type Res<'a> = Result<Val<'a>, Failed>;

impl<'a> Val<'a> {
    /// CEL's `==`: numbers compare across int, uint and double; other kinds only with their
    /// own; different kinds are unequal, not an error.
    pub fn equals(&self, other: &Val<'_>) -> bool {
        use Val::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Str(a), Str(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (UInt(a), UInt(b)) => a == b,
            (Double(a), Double(b)) => a == b,
            (Int(a), UInt(b)) | (UInt(b), Int(a)) => u64::try_from(*a).is_ok_and(|a| a == *b),
            (Int(a), Double(b)) | (Double(b), Int(a)) => *a as f64 == *b,
            (UInt(a), Double(b)) | (Double(b), UInt(a)) => *a as f64 == *b,
            _ => false,
        }
    }

    /// CEL's ordering: `None` (an error for `<`, `<=`, `>`, `>=`) across kinds that do not
    /// compare, and for NaN.
    pub fn compare(&self, other: &Val<'_>) -> Option<Ordering> {
        use Val::*;
        match (self, other) {
            (Null, Null) => Some(Ordering::Equal),
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Str(a), Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (UInt(a), UInt(b)) => Some(a.cmp(b)),
            (Double(a), Double(b)) => a.partial_cmp(b),
            (Int(a), UInt(b)) => Some(u64::try_from(*a).map_or(Ordering::Less, |a| a.cmp(b))),
            (UInt(a), Int(b)) => Some(i64::try_from(*a).map_or(Ordering::Greater, |a| a.cmp(b))),
            (Int(a), Double(b)) => (*a as f64).partial_cmp(b),
            (Double(a), Int(b)) => a.partial_cmp(&(*b as f64)),
            (UInt(a), Double(b)) => (*a as f64).partial_cmp(b),
            (Double(a), UInt(b)) => a.partial_cmp(&(*b as f64)),
            _ => None,
        }
    }

    /// Truthiness, as the interpreter's `&&`, `||`, `!` and `?:` read any value.
    pub fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::UInt(u) => *u != 0,
            Val::Double(d) => *d != 0.0,
            Val::Str(s) => !s.is_empty(),
        }
    }

    /// The value as a number, for a rule's `value`.
    pub fn number(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::UInt(u) => Some(*u as f64),
            Val::Double(d) => Some(*d),
            _ => None,
        }
    }
}

/// The arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// `a op b` as the interpreter computes it: integers checked (overflow and division by zero
/// fail), doubles as IEEE, strings concatenate with `+`; mixed kinds fail.
pub fn arith<'a>(op: Arith, a: Val<'a>, b: Val<'a>) -> Res<'a> {
    use Val::*;
    let r = match (op, a, b) {
        (Arith::Add, Int(a), Int(b)) => a.checked_add(b).map(Int),
        (Arith::Sub, Int(a), Int(b)) => a.checked_sub(b).map(Int),
        (Arith::Mul, Int(a), Int(b)) => a.checked_mul(b).map(Int),
        (Arith::Div, Int(a), Int(b)) => a.checked_div(b).map(Int),
        (Arith::Rem, Int(a), Int(b)) => a.checked_rem(b).map(Int),
        (Arith::Add, UInt(a), UInt(b)) => a.checked_add(b).map(UInt),
        (Arith::Sub, UInt(a), UInt(b)) => a.checked_sub(b).map(UInt),
        (Arith::Mul, UInt(a), UInt(b)) => a.checked_mul(b).map(UInt),
        (Arith::Div, UInt(a), UInt(b)) => a.checked_div(b).map(UInt),
        (Arith::Rem, UInt(a), UInt(b)) => a.checked_rem(b).map(UInt),
        (Arith::Add, Double(a), Double(b)) => Some(Double(a + b)),
        (Arith::Sub, Double(a), Double(b)) => Some(Double(a - b)),
        (Arith::Mul, Double(a), Double(b)) => Some(Double(a * b)),
        (Arith::Div, Double(a), Double(b)) => Some(Double(a / b)),
        (Arith::Add, Str(a), Str(b)) => Some(Str(Cow::Owned(format!("{a}{b}")))),
        _ => None,
    };
    r.ok_or(Failed)
}

/// Unary minus: ints (wrapping at the minimum, as a release build of the interpreter does)
/// and doubles.
pub fn negate(v: Val<'_>) -> Res<'_> {
    match v {
        Val::Int(i) => Ok(Val::Int(i.wrapping_neg())),
        Val::Double(d) => Ok(Val::Double(-d)),
        _ => Err(Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_meet_across_kinds_and_others_do_not() {
        assert!(Val::Int(3).equals(&Val::Double(3.0)));
        assert!(Val::UInt(3).equals(&Val::Int(3)));
        assert!(!Val::Int(-1).equals(&Val::UInt(u64::MAX)));
        assert!(!Val::Str("1".into()).equals(&Val::Int(1)));
        assert_eq!(Val::Int(-1).compare(&Val::UInt(0)), Some(Ordering::Less));
        assert_eq!(Val::Str("a".into()).compare(&Val::Int(1)), None);
        assert_eq!(Val::Double(f64::NAN).compare(&Val::Double(1.0)), None);
    }

    #[test]
    fn integer_arithmetic_is_checked_and_kinds_do_not_mix() {
        assert_eq!(
            arith(Arith::Add, Val::Int(i64::MAX), Val::Int(1)),
            Err(Failed)
        );
        assert_eq!(arith(Arith::Div, Val::Int(1), Val::Int(0)), Err(Failed));
        assert_eq!(
            arith(Arith::Add, Val::Int(1), Val::Double(1.0)),
            Err(Failed)
        );
        assert_eq!(
            arith(Arith::Add, Val::Str("a".into()), Val::Str("b".into())),
            Ok(Val::Str("ab".into()))
        );
        assert_eq!(
            arith(Arith::Div, Val::Double(1.0), Val::Double(0.0)),
            Ok(Val::Double(f64::INFINITY))
        );
    }
}
