//! Conditions shared between expressions, computed once per event.
//!
//! Ten rules of the default pack start with `event.service_mode == "normal"`; four test
//! `event.speed_mps < 0.05`. [`share`] finds the conditions that occur more than once among a
//! rule set's expressions and wraps each in [`Node::Shared`] with a slot of its own; an
//! event's [`Memo`] keeps what each slot came to, so the second rule to ask reads it. Only
//! conditions are kept (a boolean, or a failure): they are what rules share, and a kept
//! boolean borrows nothing from the event.

use super::{Node, Res, Val, val::Failed};
use std::cell::Cell;
use std::collections::HashMap;

/// What each shared condition came to for one event (one [`Cell`] per slot).
#[derive(Debug, Default)]
pub struct Memo(Vec<Cell<u8>>);

const UNKNOWN: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const FAILED: u8 = 3;

impl Memo {
    /// Room for `slots` shared conditions, none known yet.
    pub fn new(slots: u32) -> Memo {
        Memo((0..slots).map(|_| Cell::new(UNKNOWN)).collect())
    }

    /// Forgets every slot (for the next event).
    pub fn reset(&self) {
        for cell in &self.0 {
            cell.set(UNKNOWN);
        }
    }

    /// Room for `slots`, none known (for the next event under a rule set of that many).
    pub fn clear(&mut self, slots: u32) {
        self.0.resize_with(slots as usize, || Cell::new(UNKNOWN));
        self.reset();
    }

    pub(crate) fn recalled<'a>(&self, slot: u32) -> Option<Res<'a>> {
        match self.0.get(slot as usize)?.get() {
            FALSE => Some(Ok(Val::Bool(false))),
            TRUE => Some(Ok(Val::Bool(true))),
            FAILED => Some(Err(Failed)),
            _ => None,
        }
    }

    pub(crate) fn remember(&self, slot: u32, result: &Res<'_>) {
        let state = match result {
            Ok(Val::Bool(false)) => FALSE,
            Ok(Val::Bool(true)) => TRUE,
            Err(Failed) => FAILED,
            Ok(_) => return,
        };
        if let Some(cell) = self.0.get(slot as usize) {
            cell.set(state);
        }
    }
}

/// Wraps every condition that occurs more than once among `exprs` (counted over all of them,
/// nested ones too) in [`Node::Shared`]; returns the number of slots an event's [`Memo`]
/// needs. Two conditions are the same when their trees are: same fields, operators and
/// literals.
pub fn share<'n>(exprs: impl IntoIterator<Item = &'n mut Node>) -> u32 {
    let mut exprs: Vec<&mut Node> = exprs.into_iter().collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in &exprs {
        count(e, &mut seen);
    }
    let mut slots: HashMap<String, u32> = HashMap::new();
    for e in &mut exprs {
        wrap(e, &seen, &mut slots);
    }
    slots.len() as u32
}

/// Whether a node is a condition worth keeping: it computes a boolean from more than a
/// literal.
fn is_condition(n: &Node) -> bool {
    matches!(
        n,
        Node::Cmp(..) | Node::In(..) | Node::Has(_) | Node::Not(_) | Node::And(..) | Node::Or(..)
    )
}

fn key(n: &Node) -> String {
    format!("{n:?}")
}

fn children_mut(n: &mut Node) -> Vec<&mut Node> {
    match n {
        Node::Not(a) | Node::Neg(a) | Node::In(a, _) | Node::Shared(_, a) => vec![a.as_mut()],
        Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b) | Node::Arith(_, a, b) => {
            vec![a.as_mut(), b.as_mut()]
        }
        Node::If(c, a, b) => vec![c.as_mut(), a.as_mut(), b.as_mut()],
        _ => Vec::new(),
    }
}

fn children(n: &Node) -> Vec<&Node> {
    match n {
        Node::Not(a) | Node::Neg(a) | Node::In(a, _) | Node::Shared(_, a) => vec![a.as_ref()],
        Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b) | Node::Arith(_, a, b) => {
            vec![a.as_ref(), b.as_ref()]
        }
        Node::If(c, a, b) => vec![c.as_ref(), a.as_ref(), b.as_ref()],
        _ => Vec::new(),
    }
}

fn count(n: &Node, seen: &mut HashMap<String, usize>) {
    if is_condition(n) {
        *seen.entry(key(n)).or_default() += 1;
    }
    for c in children(n) {
        count(c, seen);
    }
}

fn wrap(n: &mut Node, seen: &HashMap<String, usize>, slots: &mut HashMap<String, u32>) {
    let shared = is_condition(n)
        .then(|| key(n))
        .filter(|k| seen.get(k).is_some_and(|c| *c > 1));
    for c in children_mut(n) {
        wrap(c, seen, slots);
    }
    if let Some(k) = shared {
        let next = slots.len() as u32;
        let slot = *slots.entry(k).or_insert(next);
        let inner = std::mem::replace(n, Node::Lit(Val::Null));
        *n = Node::Shared(slot, Box::new(inner));
    }
}
