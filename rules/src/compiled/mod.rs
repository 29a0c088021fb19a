//! Rule expressions compiled to a typed tree, evaluated without building a CEL value per
//! event (docs/rule-engine.md, step 1).
//!
//! [`Program::compile`] takes the CEL syntax tree the parser gives (no second parser) and
//! turns what a rule over one event uses — literals, `event.x`, `prev.x`, `ref.elevator.x`,
//! `has(…)` of those, comparisons, arithmetic, `&&`, `||`, `!`, `?:`, `x in [constants]` —
//! into [`Node`]s; anything else makes the whole program [`Program::Interpreted`], evaluated
//! by cel-interpreter as before. Evaluation follows the interpreter exactly, errors included
//! (a property test holds the two together, `rules/tests/compiled.rs`): the variables come
//! through [`Vars`], which the caller implements over whatever holds the event.

pub mod event_fields;
mod shared;
pub mod trace;
pub mod val;

pub use shared::{Memo, share};
pub use trace::{Outcome, Traced};
pub use val::{Arith, Failed, Res, Val};

use cel_parser::ast::{Expr as E, operators as op};
use std::borrow::Cow;
use std::cmp::Ordering;

/// A variable's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    Event,
    Prev,
    Ref,
}

/// A name path under a root: `event.speed_mps` is `(Event, ["speed_mps"])`,
/// `ref.elevator.floors` is `(Ref, ["elevator", "floors"])`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    pub root: Root,
    pub names: Vec<String>,
    /// `event.<name>` resolved when compiled (`Unknown` for any other path).
    pub field: event_fields::FieldId,
    /// The path without its last name, if that is more than the root (what `has()` tests
    /// first), made once here rather than at each test.
    pub parent: Option<Box<Path>>,
}

impl Path {
    pub fn new(root: Root, names: Vec<String>) -> Path {
        let field = match (root, names.as_slice()) {
            (Root::Event, [name]) => event_fields::FieldId::of(name),
            _ => event_fields::FieldId::Unknown,
        };
        let parent =
            (names.len() > 1).then(|| Box::new(Path::new(root, names[..names.len() - 1].to_vec())));
        Path {
            root,
            names,
            field,
            parent,
        }
    }
}

/// What looking a path up found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<'a> {
    /// A scalar.
    Val(Val<'a>),
    /// A map (only a path's prefix is one: `ref.elevator`).
    Map,
    /// Not there: the root is not bound, a map lacks the key, or a prefix is no map.
    Absent,
}

/// The variables of one evaluation.
pub trait Vars<'a> {
    /// The value at `path`.
    fn get(&self, path: &Path) -> Lookup<'a>;
    /// Whether the root of `path` is bound at all (`prev` is not, before a group's first
    /// event): `has()` of a path under an unbound root is an error, not `false`.
    fn bound(&self, root: Root) -> bool;
    /// A window condition's `value` or `count` (unbound elsewhere: an error).
    fn window(&self, v: WindowVar) -> Option<Val<'a>> {
        let _ = v;
        None
    }
    /// `prior[index]` or `prior_count[index]`: `None` where unbound (an error); `Null` past
    /// the end, as the interpreter indexes a list.
    fn prior(&self, counts: bool, index: i64) -> Option<Val<'a>> {
        let _ = (counts, index);
        None
    }
    /// What a shared condition came to earlier for the same variables, if kept.
    fn recalled(&self, slot: u32) -> Option<Res<'a>> {
        let _ = slot;
        None
    }
    /// Keeps what a shared condition came to, for the other expressions that share it.
    fn remember(&self, slot: u32, result: &Res<'a>) {
        let _ = (slot, result);
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Lit(Val<'static>),
    /// A path read as a value: absent (or a map) is an error.
    Get(Path),
    /// `has(path)`: the path's parent must be a map (else an error), and has the last name.
    Has(Path),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    /// `x in [constants]`.
    In(Box<Node>, Vec<Val<'static>>),
    /// A window condition's `value` or `count`.
    Window(WindowVar),
    /// `prior[i]` (`counts`: `prior_count[i]`) with a constant index.
    Prior {
        counts: bool,
        index: i64,
    },
    /// A condition that several expressions of a rule set share ([`share`]): computed once
    /// per event, kept in the slot of the event's [`Memo`].
    Shared(u32, Box<Node>),
}

/// What a window rule's condition sees besides `prior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowVar {
    Value,
    Count,
}

/// An expression ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum Program {
    Compiled(Node),
    /// What the compiler does not take, with the reason (for `citywatch_rules_interpreted`
    /// and `docs/rules.md`).
    Interpreted(String),
}

impl Program {
    /// Compiles `source` (already checked by [`crate::expr::Expr::compile`]: within the
    /// limits, parsed on the parser's own thread, so this parse cannot overflow a stack).
    pub fn compile(source: &str) -> Program {
        static PROGRAMS: crate::parsed::Table<String, Program> = crate::parsed::Table::new();
        PROGRAMS.get_or(source.to_owned(), || {
            let text = source.to_owned();
            let parsed = crate::expr::on_parser_stack(move || {
                match cel_parser::Parser::default().parse(&text) {
                    Ok(e) => node(&e),
                    Err(_) => Err("does not parse".into()),
                }
            });
            match parsed {
                Ok(Ok(n)) => Program::Compiled(n),
                Ok(Err(why)) => Program::Interpreted(why),
                Err(_) => Program::Interpreted("does not parse".into()),
            }
        })
    }

    /// The compiled tree, if it compiled.
    pub fn node(&self) -> Option<&Node> {
        match self {
            Program::Compiled(n) => Some(n),
            Program::Interpreted(_) => None,
        }
    }

    /// The compiled tree to change (to share its conditions), if it compiled.
    pub fn node_mut(&mut self) -> Option<&mut Node> {
        match self {
            Program::Compiled(n) => Some(n),
            Program::Interpreted(_) => None,
        }
    }
}

type Built = Result<Node, String>;

fn node(e: &cel_parser::Expression) -> Built {
    match &e.expr {
        E::Literal(v) => literal(v).map(Node::Lit),
        E::Ident(name) if name == "value" => Ok(Node::Window(WindowVar::Value)),
        E::Ident(name) if name == "count" => Ok(Node::Window(WindowVar::Count)),
        E::Ident(_) | E::Select(_) => select(e),
        E::Call(c) => call(c),
        E::List(_) => Err("a list outside `in`".into()),
        E::Map(_) => Err("a map literal".into()),
        E::Comprehension(_) => Err("a macro (exists, all, map, filter)".into()),
        E::Struct(_) | E::Unspecified => Err("an unsupported expression".into()),
    }
}

fn literal(v: &cel_parser::reference::Val) -> Result<Val<'static>, String> {
    use cel_parser::reference::Val as L;
    Ok(match v {
        L::String(s) => Val::Str(s.clone().into()),
        L::Boolean(b) => Val::Bool(*b),
        L::Int(i) => Val::Int(*i),
        L::UInt(u) => Val::UInt(*u),
        L::Double(d) => Val::Double(*d),
        L::Null => Val::Null,
        L::Bytes(_) => return Err("a bytes literal".into()),
    })
}

/// `event.x`, `prev.x`, `ref.r`, `ref.r.x` and `has()` of them.
fn select(e: &cel_parser::Expression) -> Built {
    if let E::Select(s) = &e.expr
        && s.test
    {
        return path(e).map(Node::Has);
    }
    let p = path(e)?;
    // `ref.elevator` as a whole is a map: compared or tested as a value, the interpreter
    // has rules for maps this tree does not keep.
    if p.root == Root::Ref && p.names.len() == 1 && p.names[0] != "guidance_price" {
        return Err("a reference record as a whole".into());
    }
    Ok(Node::Get(p))
}

fn path(e: &cel_parser::Expression) -> Result<Path, String> {
    let mut names = Vec::new();
    let mut at = e;
    loop {
        match &at.expr {
            E::Select(s) => {
                names.push(s.field.clone());
                at = &s.operand;
            }
            E::Ident(root) => {
                names.reverse();
                let root = match root.as_str() {
                    "event" => Root::Event,
                    "prev" => Root::Prev,
                    "ref" => Root::Ref,
                    other => return Err(format!("the variable {other}")),
                };
                if names.is_empty() {
                    return Err("a whole variable as a value".into());
                }
                return Ok(Path::new(root, names));
            }
            _ => return Err("a field of a computed value".into()),
        }
    }
}

fn call(c: &cel_parser::ast::CallExpr) -> Built {
    if c.target.is_some() {
        return Err(format!("the method {}", c.func_name));
    }
    let arg = |i: usize| node(&c.args[i]).map(Box::new);
    let f = c.func_name.as_str();
    Ok(match (f, c.args.len()) {
        (op::CONDITIONAL, 3) => Node::If(arg(0)?, arg(1)?, arg(2)?),
        (op::LOGICAL_AND, 2) => Node::And(arg(0)?, arg(1)?),
        (op::LOGICAL_OR, 2) => Node::Or(arg(0)?, arg(1)?),
        (op::LOGICAL_NOT, 1) => Node::Not(arg(0)?),
        (op::NEGATE, 1) => Node::Neg(arg(0)?),
        (op::IN, 2) => Node::In(arg(0)?, constant_list(&c.args[1])?),
        (op::INDEX, 2) => prior_index(c)?,
        (_, 2) => match (comparison(f), arithmetic(f)) {
            (Some(cmp), _) => Node::Cmp(cmp, arg(0)?, arg(1)?),
            (_, Some(a)) => Node::Arith(a, arg(0)?, arg(1)?),
            _ => return Err(format!("the function {f}")),
        },
        _ => return Err(format!("the function {f}")),
    })
}

/// `prior[i]` and `prior_count[i]` with an int literal `i`.
fn prior_index(c: &cel_parser::ast::CallExpr) -> Built {
    use cel_parser::reference::Val as L;
    let counts = match &c.args[0].expr {
        E::Ident(n) if n == "prior" => false,
        E::Ident(n) if n == "prior_count" => true,
        _ => return Err("an index into something other than `prior`".into()),
    };
    let index = match &c.args[1].expr {
        E::Literal(L::Int(i)) => Some(*i),
        E::Call(n) if n.func_name == op::NEGATE && n.args.len() == 1 => match &n.args[0].expr {
            E::Literal(L::Int(i)) => Some(i.wrapping_neg()),
            _ => None,
        },
        _ => None,
    };
    match index {
        Some(index) => Ok(Node::Prior { counts, index }),
        None => Err("an index that is not an int constant".into()),
    }
}

fn comparison(f: &str) -> Option<Cmp> {
    Some(match f {
        op::EQUALS => Cmp::Eq,
        op::NOT_EQUALS => Cmp::Ne,
        op::LESS => Cmp::Lt,
        op::LESS_EQUALS => Cmp::Le,
        op::GREATER => Cmp::Gt,
        op::GREATER_EQUALS => Cmp::Ge,
        _ => return None,
    })
}

fn arithmetic(f: &str) -> Option<Arith> {
    Some(match f {
        op::ADD => Arith::Add,
        op::SUBSTRACT => Arith::Sub,
        op::MULTIPLY => Arith::Mul,
        op::DIVIDE => Arith::Div,
        op::MODULO => Arith::Rem,
        _ => return None,
    })
}

fn constant_list(e: &cel_parser::Expression) -> Result<Vec<Val<'static>>, String> {
    match &e.expr {
        E::List(l) => l
            .elements
            .iter()
            .map(|x| match &x.expr {
                E::Literal(v) => literal(v),
                _ => Err("`in` over a list that is not constant".into()),
            })
            .collect(),
        _ => Err("`in` over something other than a constant list".into()),
    }
}

impl Node {
    /// Evaluates to a value, or fails where the interpreter fails.
    pub fn eval<'a>(&self, vars: &impl Vars<'a>) -> Res<'a> {
        match self {
            Node::Lit(v) => Ok(v.clone()),
            Node::Get(p) => match vars.get(p) {
                Lookup::Val(v) => Ok(v),
                Lookup::Map | Lookup::Absent => Err(Failed),
            },
            Node::Has(p) => has(p, vars),
            Node::Not(a) => Ok(Val::Bool(!a.eval(vars)?.truthy())),
            Node::Neg(a) => val::negate(a.eval(vars)?),
            Node::And(a, b) => {
                if !a.eval(vars)?.truthy() {
                    return Ok(Val::Bool(false));
                }
                Ok(Val::Bool(b.eval(vars)?.truthy()))
            }
            Node::Or(a, b) => {
                let left = a.eval(vars)?;
                if left.truthy() {
                    Ok(left)
                } else {
                    b.eval(vars)
                }
            }
            Node::If(c, a, b) => {
                if c.eval(vars)?.truthy() {
                    a.eval(vars)
                } else {
                    b.eval(vars)
                }
            }
            Node::Cmp(c, a, b) => compare(*c, &*operand(a, vars)?, &*operand(b, vars)?),
            Node::Arith(op, a, b) => val::arith(*op, a.eval(vars)?, b.eval(vars)?),
            Node::In(a, set) => {
                let x = a.eval(vars)?;
                Ok(Val::Bool(set.iter().any(|m| x.equals(m))))
            }
            Node::Window(v) => vars.window(*v).ok_or(Failed),
            Node::Prior { counts, index } => vars.prior(*counts, *index).ok_or(Failed),
            Node::Shared(slot, a) => {
                if let Some(r) = vars.recalled(*slot) {
                    return r;
                }
                let r = a.eval(vars);
                vars.remember(*slot, &r);
                r
            }
        }
    }

    /// Evaluates a condition: a boolean, or it fails.
    pub fn eval_bool<'a>(&self, vars: &impl Vars<'a>) -> Result<bool, Failed> {
        match self.eval(vars)? {
            Val::Bool(b) => Ok(b),
            _ => Err(Failed),
        }
    }
}

/// A comparison's operand: a literal by reference (a string literal is not copied per event).
fn operand<'n, 'a>(n: &'n Node, vars: &impl Vars<'a>) -> Result<Cow<'n, Val<'a>>, Failed> {
    match n {
        Node::Lit(v) => Ok(Cow::Borrowed(v)),
        _ => n.eval(vars).map(Cow::Owned),
    }
}

fn compare<'a>(c: Cmp, a: &Val<'a>, b: &Val<'a>) -> Res<'a> {
    let ord = |want: fn(Ordering) -> bool| a.compare(b).map(want).ok_or(Failed);
    Ok(Val::Bool(match c {
        Cmp::Eq => a.equals(b),
        Cmp::Ne => !a.equals(b),
        Cmp::Lt => ord(|o| o == Ordering::Less)?,
        Cmp::Le => ord(|o| o != Ordering::Greater)?,
        Cmp::Gt => ord(|o| o == Ordering::Greater)?,
        Cmp::Ge => ord(|o| o != Ordering::Less)?,
    }))
}

/// `has(a.b.c)`: `a.b` must be a map (an unbound root or a missing step is an error, as
/// the interpreter resolves the operand first), then whether it has `c`.
fn has<'a>(p: &Path, vars: &impl Vars<'a>) -> Res<'a> {
    if !vars.bound(p.root) {
        return Err(Failed);
    }
    if let Some(parent) = &p.parent {
        // The interpreter answers `false` for a test on a scalar, and fails on a missing step.
        match vars.get(parent) {
            Lookup::Map => {}
            Lookup::Val(_) => return Ok(Val::Bool(false)),
            Lookup::Absent => return Err(Failed),
        }
    }
    Ok(Val::Bool(vars.get(p) != Lookup::Absent))
}

/// `ref` and `prev` as the caller keeps them: a lookup by names under the root.
pub type Lookups<'a> = &'a dyn Fn(&[String]) -> Lookup<'a>;

/// The variables of one event: `event` read from the model's struct, `prev` (when the group
/// has a previous event) and `ref` through the caller's lookups.
pub struct EventVars<'a> {
    pub env: &'a model::Envelope,
    pub prev: Option<Lookups<'a>>,
    pub reference: Lookups<'a>,
    /// The event's shared conditions (none: each is computed where it occurs).
    pub memo: Option<&'a Memo>,
}

impl<'a> Vars<'a> for EventVars<'a> {
    fn get(&self, path: &Path) -> Lookup<'a> {
        match path.root {
            Root::Event => match path.names.len() {
                1 => event_fields::field(self.env, path.field).map_or(Lookup::Absent, Lookup::Val),
                _ => Lookup::Absent,
            },
            Root::Prev => self.prev.map_or(Lookup::Absent, |p| p(&path.names)),
            Root::Ref => (self.reference)(&path.names),
        }
    }

    fn bound(&self, root: Root) -> bool {
        root != Root::Prev || self.prev.is_some()
    }

    fn recalled(&self, slot: u32) -> Option<Res<'a>> {
        self.memo?.recalled(slot)
    }

    fn remember(&self, slot: u32, result: &Res<'a>) {
        if let Some(m) = self.memo {
            m.remember(slot, result);
        }
    }
}

/// The variables of a window rule's condition: the aggregate of the current window, how many
/// events it holds, and the windows before it (value, count), most recent first.
pub struct WindowVars<'p> {
    pub value: f64,
    pub count: usize,
    pub prior: &'p [(f64, usize)],
}

impl<'a> Vars<'a> for WindowVars<'_> {
    fn get(&self, _: &Path) -> Lookup<'a> {
        Lookup::Absent
    }

    fn bound(&self, _: Root) -> bool {
        false
    }

    fn window(&self, v: WindowVar) -> Option<Val<'a>> {
        Some(match v {
            WindowVar::Value => Val::Double(self.value),
            WindowVar::Count => Val::Int(self.count as i64),
        })
    }

    fn prior(&self, counts: bool, index: i64) -> Option<Val<'a>> {
        // The interpreter indexes with `index as usize`: a negative index is past the end.
        let p = usize::try_from(index).ok().and_then(|i| self.prior.get(i));
        Some(match (p, counts) {
            (None, _) => Val::Null,
            (Some(p), false) => Val::Double(p.0),
            (Some(p), true) => Val::Int(p.1 as i64),
        })
    }
}
