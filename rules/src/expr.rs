//! CEL expressions: compiling, the values they see, evaluating.
//!
//! A filter sees `event` (the payload's fields plus the topic's ids, and `time_ms`), `prev`
//! (the group's previous event, if any) and `ref` (the reference data of the event's device:
//! `ref.elevator.rated_speed_mps`, `ref.kitchen.venue_type`, …). A condition over an aggregate
//! sees `value` and `count`.

use crate::parsed::Table;
use cel_interpreter::objects::Map;
use cel_interpreter::{Context, ExecutionError, Program, Value};
use model::{Envelope, Event};
use std::collections::HashMap;
use std::sync::Arc;

/// A compiled expression and what it refers to.
#[derive(Debug, Clone)]
pub struct Expr {
    /// The text as written.
    pub source: String,
    program: Arc<Program>,
    /// Whether it reads `prev`.
    pub uses_prev: bool,
    /// Whether it reads `ref`.
    pub uses_ref: bool,
}

/// A syntax error: the message and the 1-based column in the expression.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub column: usize,
}

impl Expr {
    /// Compiles `source`, within [`crate::limits`]: its size is checked first, then it is
    /// parsed on a thread of its own with a large stack (the CEL parser recurses deeply per
    /// bracket), and the tree it gives is refused when deeper than the evaluator may recurse.
    pub fn compile(source: &str) -> Result<Expr, SyntaxError> {
        let limits = crate::limits::get();
        let over = |e: crate::limits::Exceeded| SyntaxError {
            message: e.to_string(),
            column: e.at,
        };
        crate::limits::check_expr(source, &limits).map_err(over)?;
        static COMPILED: Table<(String, usize), Result<Expr, SyntaxError>> = Table::new();
        COMPILED.get_or((source.to_owned(), limits.max_expr_depth), || {
            let text = source.to_owned();
            let parsed = on_parser_stack(move || parse_bounded(&text, limits.max_expr_depth))
                .unwrap_or_else(|why| {
                    Err(SyntaxError {
                        message: why,
                        column: 1,
                    })
                })?;
            let (program, uses_prev, uses_ref) = parsed.map_err(over)?;
            Ok(Expr {
                source: source.to_owned(),
                uses_prev,
                uses_ref,
                program: Arc::new(program),
            })
        })
    }
}

/// Stack of the thread that parses an expression. The CEL parser (an ANTLR grammar) spends
/// about 130 KiB of a debug build's stack per nested bracket, so the limits' 24 brackets need
/// about 3 MiB; only the pages it touches are used.
const PARSE_STACK_BYTES: usize = 64 << 20;

type Parsed = (Program, bool, bool);

/// Runs `f` (which parses) on a thread with [`PARSE_STACK_BYTES`] of stack and waits for it.
/// The name of the parser's own thread.
pub const PARSER_THREAD: &str = "cel-parse";

pub(crate) fn on_parser_stack<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    std::thread::Builder::new()
        .name(PARSER_THREAD.into())
        .stack_size(PARSE_STACK_BYTES)
        .spawn(f)
        .map_err(|e| format!("cannot start the parser: {e}"))?
        .join()
        .map_err(|_| "the expression could not be parsed".to_owned())
}

/// Parses `source` and checks the depth of its tree: the program, whether it reads `prev`,
/// whether it reads `ref`. Runs on the parser's own thread.
fn parse_bounded(
    source: &str,
    max_depth: usize,
) -> Result<Result<Parsed, crate::limits::Exceeded>, SyntaxError> {
    let program = Program::compile(source).map_err(|e| {
        let first = e.errors.first();
        SyntaxError {
            message: first.map_or_else(|| e.to_string(), |f| f.msg.clone()),
            column: first.map_or(1, |f| f.pos.1.max(0) as usize + 1),
        }
    })?;
    if let Ok(ast) = cel_parser::Parser::default().parse(source) {
        if let Some(why) = not_evaluable(&ast) {
            return Err(SyntaxError {
                message: why.into(),
                column: 1,
            });
        }
        let depth = tree_depth(&ast);
        if depth > max_depth {
            return Ok(Err(crate::limits::Exceeded {
                what: "the depth of the expression's tree",
                setting: "max_expr_depth",
                limit: max_depth,
                found: depth,
                at: 1,
            }));
        }
    }
    let refs = program.references();
    let (uses_prev, uses_ref) = (refs.has_variable("prev"), refs.has_variable("ref"));
    Ok(Ok((program, uses_prev, uses_ref)))
}

/// What the interpreter would panic on instead of failing (cel-interpreter 0.10 has `todo!`
/// for struct literals and for macros over anything but a list or a map): refused here, at
/// compile time, because a panic on a dataflow worker stops the process. Macros (`exists`,
/// `all`, `map`, `filter`) may range over a literal list or map, or over a variable (`event`,
/// `ref`, `prev` are maps); event fields are scalars.
fn not_evaluable(e: &cel_parser::Expression) -> Option<&'static str> {
    use cel_parser::ast::{EntryExpr, Expr as E};
    let own = match &e.expr {
        E::Struct(_) => Some("struct literals are not supported"),
        E::Unspecified => Some("an expression the evaluator does not support"),
        E::Map(m)
            if m.entries
                .iter()
                .any(|x| matches!(x.expr, EntryExpr::StructField(_))) =>
        {
            Some("struct literals are not supported")
        }
        E::Comprehension(c)
            if !matches!(c.iter_range.expr, E::List(_) | E::Map(_) | E::Ident(_)) =>
        {
            Some(
                "a macro (exists, all, map, filter) may range over a literal list or map, or a variable, only",
            )
        }
        _ => None,
    };
    own.or_else(|| children(e).into_iter().find_map(not_evaluable))
}

/// How deep the tree is: how far the evaluator will recurse. A chain `a + b + c` is as deep
/// as it is long; brackets alone add nothing.
fn tree_depth(e: &cel_parser::Expression) -> usize {
    1 + children(e).into_iter().map(tree_depth).max().unwrap_or(0)
}

/// The sub-expressions of `e`, for the walks above.
fn children(e: &cel_parser::Expression) -> Vec<&cel_parser::Expression> {
    use cel_parser::ast::Expr as E;
    match &e.expr {
        E::Call(c) => c.target.iter().map(|t| &**t).chain(&c.args).collect(),
        E::Select(s) => vec![&*s.operand],
        E::List(l) => l.elements.iter().collect(),
        E::Map(m) => entries(&m.entries),
        E::Struct(s) => entries(&s.entries),
        E::Comprehension(c) => vec![
            &*c.iter_range,
            &*c.accu_init,
            &*c.loop_cond,
            &*c.loop_step,
            &*c.result,
        ],
        E::Ident(_) | E::Literal(_) | E::Unspecified => Vec::new(),
    }
}

/// The keys and values of a map's or struct's entries.
fn entries(entries: &[cel_parser::ast::IdedEntryExpr]) -> Vec<&cel_parser::Expression> {
    use cel_parser::ast::EntryExpr;
    entries
        .iter()
        .flat_map(|x| match &x.expr {
            EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })
        .collect()
}

/// Every name path the expression reads (`event.speed_mps` → `["event", "speed_mps"]`),
/// outside comprehension variables. `has(…)` tests are left out: they may name absent fields.
pub fn name_paths(source: &str) -> Vec<Vec<String>> {
    if crate::limits::check_expr(source, &crate::limits::get()).is_err() {
        return Vec::new();
    }
    static PATHS: Table<String, Vec<Vec<String>>> = Table::new();
    PATHS.get_or(source.to_owned(), || {
        let text = source.to_owned();
        on_parser_stack(move || name_paths_here(&text)).unwrap_or_default()
    })
}

fn name_paths_here(source: &str) -> Vec<Vec<String>> {
    use cel_parser::ast::{EntryExpr, Expr as E};
    fn chain(e: &cel_parser::Expression) -> Option<Vec<String>> {
        match &e.expr {
            E::Ident(n) => Some(vec![n.clone()]),
            E::Select(s) if !s.test => chain(&s.operand).map(|mut v| {
                v.push(s.field.clone());
                v
            }),
            _ => None,
        }
    }
    fn walk(e: &cel_parser::Expression, bound: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Some(p) = chain(e) {
            if !bound.contains(&p[0]) {
                out.push(p);
            }
            return;
        }
        match &e.expr {
            E::Select(s) if s.test => {}
            E::Select(s) => walk(&s.operand, bound, out),
            E::Call(c) => {
                if let Some(t) = &c.target {
                    walk(t, bound, out);
                }
                for a in &c.args {
                    walk(a, bound, out);
                }
            }
            E::List(l) => l.elements.iter().for_each(|x| walk(x, bound, out)),
            E::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        walk(&me.key, bound, out);
                        walk(&me.value, bound, out);
                    }
                }
            }
            E::Comprehension(c) => {
                walk(&c.iter_range, bound, out);
                let n = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.clone());
                bound.push(c.accu_var.clone());
                for x in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    walk(x, bound, out);
                }
                bound.truncate(n);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(ast) = cel_parser::Parser::default().parse(source) {
        walk(&ast, &mut Vec::new(), &mut out);
    }
    out
}

/// Evaluates expressions; holds the function registry once per thread.
#[derive(Default)]
pub struct Evaluator {
    root: Context<'static>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Evaluator")
    }
}

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// The expression read a field the value does not have.
    UnknownField(String),
    /// The expression gave a value of the wrong type.
    Type(String),
    /// Anything else the interpreter reported.
    Other(String),
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::UnknownField(k) => write!(f, "unknown field {k:?}"),
            EvalError::Type(m) => write!(f, "type error: {m}"),
            EvalError::Other(m) => f.write_str(m),
        }
    }
}

fn from_exec(e: ExecutionError) -> EvalError {
    match e {
        ExecutionError::NoSuchKey(k) => EvalError::UnknownField(k.to_string()),
        ExecutionError::UndeclaredReference(k) => EvalError::UnknownField(k.to_string()),
        other => EvalError::Other(other.to_string()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Function(..) => "function",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null",
    }
}

/// An evaluator with its variables bound, to evaluate many expressions over one event.
pub struct Bound<'a> {
    ctx: Context<'a>,
}

impl Bound<'_> {
    /// Evaluates `expr` and expects a number.
    pub fn number(&self, expr: &Expr) -> Result<f64, EvalError> {
        let v = expr.program.execute(&self.ctx).map_err(from_exec)?;
        crate::expr::number(&v)
            .ok_or_else(|| EvalError::Type(format!("expected a number, got {}", type_name(&v))))
    }

    /// Evaluates `expr` and expects a boolean.
    pub fn bool(&self, expr: &Expr) -> Result<bool, EvalError> {
        match expr.program.execute(&self.ctx).map_err(from_exec)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::Type(format!(
                "expected a boolean, got {}",
                type_name(&other)
            ))),
        }
    }
}

impl Evaluator {
    /// Binds `vars` once for several evaluations.
    pub fn bind(&self, vars: Vec<(&'static str, Value)>) -> Bound<'_> {
        let variables: HashMap<String, Value> =
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Bound {
            ctx: Context::Child {
                parent: &self.root,
                variables,
            },
        }
    }

    /// Evaluates `expr` with `vars` and expects a boolean.
    pub fn bool(&self, expr: &Expr, vars: Vec<(&'static str, Value)>) -> Result<bool, EvalError> {
        match self.value(expr, vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::Type(format!(
                "expected a boolean, got {}",
                type_name(&other)
            ))),
        }
    }

    /// Evaluates `expr` with `vars`.
    pub fn value(&self, expr: &Expr, vars: Vec<(&'static str, Value)>) -> Result<Value, EvalError> {
        let variables: HashMap<String, Value> =
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let ctx = Context::Child {
            parent: &self.root,
            variables,
        };
        expr.program.execute(&ctx).map_err(from_exec)
    }
}

/// A number out of a CEL value, if it is one.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// A map value from string keys.
pub fn map(entries: impl IntoIterator<Item = (String, Value)>) -> Value {
    let m: HashMap<cel_interpreter::objects::Key, Value> =
        entries.into_iter().map(|(k, v)| (k.into(), v)).collect();
    Value::Map(Map { map: Arc::new(m) })
}

/// Reads a field of a map value.
pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Map(m) => m.map.get(&cel_interpreter::objects::Key::from(name)),
        _ => None,
    }
}

/// The `event` value of an envelope: the payload's fields, the topic's ids, and `time_ms`.
pub fn event_value(env: &Envelope) -> Value {
    let payload = match &env.event {
        Event::ElevatorStatus { frame, .. } => cel_interpreter::to_value(frame),
        Event::ElevatorEvent { event, .. } => cel_interpreter::to_value(event),
        Event::Sale { sale, .. } => cel_interpreter::to_value(sale),
        Event::ScaleCheck { check, .. } => cel_interpreter::to_value(check),
        Event::Residue { test, .. } => cel_interpreter::to_value(test),
        Event::Detection { detection, .. } => cel_interpreter::to_value(detection),
        Event::Heartbeat { heartbeat, .. } => cel_interpreter::to_value(heartbeat),
        Event::ComplaintNew { complaint } => cel_interpreter::to_value(complaint),
        Event::ComplaintStatus { update, .. } => cel_interpreter::to_value(update),
    };
    // The payload's own map, with the ids and the time added in place: one map per event,
    // not a copy (this runs once per event for every stream that has rules).
    let mut fields = match payload {
        Ok(Value::Map(m)) => m.map,
        _ => Arc::new(HashMap::new()),
    };
    let m = Arc::make_mut(&mut fields);
    let mut put = |k: &str, v: Value| {
        m.insert(cel_interpreter::objects::Key::from(k), v);
    };
    for (k, v) in ids(&env.event) {
        put(k, Value::String(Arc::new(v.to_owned())));
    }
    put("time_ms", Value::Int(env.time_ms as i64));
    if let Event::ElevatorEvent { event, .. } = &env.event {
        // Numeric codes arrive as names; rules match on the name.
        put(
            "code",
            Value::String(Arc::new(event.code.name().to_owned())),
        );
    }
    if let Event::Residue { test, .. } = &env.event {
        put(
            "result",
            Value::String(Arc::new(test.outcome().as_str().to_owned())),
        );
    }
    Value::Map(Map { map: fields })
}

/// The topic's ids of an event, by name.
pub fn ids(e: &Event) -> Vec<(&'static str, &str)> {
    match e {
        Event::ElevatorStatus { elevator_id, .. } | Event::ElevatorEvent { elevator_id, .. } => {
            vec![("elevator_id", elevator_id)]
        }
        Event::Sale {
            market_id,
            scale_id,
            ..
        }
        | Event::ScaleCheck {
            market_id,
            scale_id,
            ..
        } => {
            vec![("market_id", market_id), ("scale_id", scale_id)]
        }
        Event::Residue { market_id, .. } => vec![("market_id", market_id)],
        Event::Detection {
            kitchen_id,
            camera_id,
            ..
        }
        | Event::Heartbeat {
            kitchen_id,
            camera_id,
            ..
        } => {
            vec![("kitchen_id", kitchen_id), ("camera_id", camera_id)]
        }
        Event::ComplaintNew { .. } => vec![],
        Event::ComplaintStatus { complaint_id, .. } => vec![("complaint_id", complaint_id)],
    }
}

/// A value of every field a stream's events can have (all optional fields present), for
/// checking rules before they run.
pub fn sample_event(stream: model::Stream) -> Value {
    let now = 1_795_737_600_000u64;
    let (topic, payload) = match stream {
        model::Stream::ElevatorStatus => (
            "cw/v1/elevator/E1/status",
            r#"{"floor":1,"position_m":0.5,"in_door_zone":true,"speed_mps":0.0,"direction":"stop","door":"closed","light_curtain_blocked":false,"occupied":true,"load_pct":10,"vibration_mps2":0.1,"service_mode":"normal","safety_circuit_ok":true,"power_ok":true,"alarm_button":false}"#,
        ),
        model::Stream::ElevatorEvent => (
            "cw/v1/elevator/E1/event",
            r#"{"code":"trapped","floor":1,"detail":"x"}"#,
        ),
        model::Stream::MarketSale => (
            "cw/v1/market/M1/scale/S1/sale",
            r#"{"stall_id":"ST1","goods_code":"pork","weight_kg":1.0,"unit_price":10.0,"total":10.0,"tare_kg":0.0}"#,
        ),
        model::Stream::MarketCheck => (
            "cw/v1/market/M1/scale/S1/check",
            r#"{"reference_kg":1.0,"measured_kg":1.0}"#,
        ),
        model::Stream::MarketResidue => (
            "cw/v1/market/M1/residue",
            r#"{"stall_id":"ST1","goods_code":"cabbage","inhibition_pct":10,"result":"pass"}"#,
        ),
        model::Stream::KitchenDetection => (
            "cw/v1/kitchen/K1/camera/C1/detection",
            r#"{"kind":"rodent","confidence":0.9,"snapshot":"s"}"#,
        ),
        model::Stream::KitchenHeartbeat => {
            ("cw/v1/kitchen/K1/camera/C1/heartbeat", r#"{"online":true}"#)
        }
        model::Stream::ComplaintNew => (
            "cw/v1/complaint/new",
            r#"{"complaint_id":"C1","kind":"complaint","merchant_id":"M1","merchant_name":"m","category":"price","lat":29.5,"lon":106.5,"amount":1.0,"text":"t"}"#,
        ),
        model::Stream::ComplaintStatus => (
            "cw/v1/complaint/C1/status",
            r#"{"status":"accepted","office":"O1"}"#,
        ),
    };
    let mut obj: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    obj["ts"] = serde_json::json!(now);
    let env = model::Decoder::default()
        .decode(topic, obj.to_string().as_bytes(), now)
        .expect("the sample events are valid");
    event_value(&env)
}

/// A `ref` value with every reference field, for checking rules.
pub fn sample_ref() -> Value {
    let s = |v: &str| Value::String(Arc::new(v.to_owned()));
    map([
        (
            "elevator".to_owned(),
            map([
                ("building".to_owned(), s("b")),
                ("district".to_owned(), s("d")),
                ("maintenance_unit".to_owned(), s("u")),
                ("rated_speed_mps".to_owned(), Value::Float(1.75)),
                ("floors".to_owned(), Value::Int(30)),
                ("lat".to_owned(), Value::Float(29.5)),
                ("lon".to_owned(), Value::Float(106.5)),
            ]),
        ),
        ("guidance_price".to_owned(), Value::Float(28.0)),
        (
            "kitchen".to_owned(),
            map([
                ("venue".to_owned(), s("v")),
                ("venue_type".to_owned(), s("school")),
                ("district".to_owned(), s("d")),
            ]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_see_payload_ids_and_names() {
        let ev = Evaluator::default();
        let frame = sample_event(model::Stream::ElevatorStatus);
        let e = Expr::compile(
            r#"event.speed_mps < 0.05 && event.door == "closed" && event.elevator_id == "E1""#,
        )
        .unwrap();
        assert!(ev.bool(&e, vec![("event", frame.clone())]).unwrap());
        let e = Expr::compile("event.speeed > 1.0").unwrap();
        assert_eq!(
            ev.bool(&e, vec![("event", frame.clone())]),
            Err(EvalError::UnknownField("speeed".into()))
        );
        let e = Expr::compile("event.floor + 1").unwrap();
        assert!(matches!(
            ev.bool(&e, vec![("event", frame)]),
            Err(EvalError::Type(_))
        ));
        let e = Expr::compile("ref.elevator.rated_speed_mps * 1.15 > 2.0").unwrap();
        assert!(e.uses_ref && !e.uses_prev);
        assert!(ev.bool(&e, vec![("ref", sample_ref())]).unwrap());
    }

    #[test]
    fn syntax_errors_have_a_column() {
        let err = Expr::compile("event.speed_mps >> 1").unwrap_err();
        assert!(err.column >= 1, "{err:?}");
    }

    #[test]
    fn numeric_codes_are_matched_by_name() {
        let env = model::Decoder::default()
            .decode(
                "cw/v1/elevator/E1/event",
                br#"{"ts":1795737600000,"code":"93"}"#,
                1_795_737_600_000,
            )
            .unwrap();
        let e = Expr::compile(r#"event.code == "trapped""#).unwrap();
        assert!(
            Evaluator::default()
                .bool(&e, vec![("event", event_value(&env))])
                .unwrap()
        );
    }

    #[test]
    fn the_largest_allowed_expressions_compile_and_run_on_a_small_stack() {
        // A tokio worker has a 2 MiB stack; so does this thread, in a debug build whose frames
        // are larger than a release build's.
        let refused = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let l = crate::limits::Limits::default();
                let d = l.max_expr_depth;
                let sum = format!("{} > 0", vec!["1"; d - 2].join(" + "));
                let nested = format!("{}1{} > 0", "(".repeat(d), ")".repeat(d));
                let lists = format!("size({}1{}) > 0", "[".repeat(d - 3), "]".repeat(d - 3));
                let members = format!("event{} == 1", ".a".repeat(d - 2));
                let wide = format!(
                    "event.floor in [{}]",
                    (0..l.max_expr_tokens / 2 - 6)
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                let ev = Evaluator::default();
                for text in [&sum, &nested, &lists, &members, &wide] {
                    let e = Expr::compile(text).expect(text);
                    let _ = name_paths(text);
                    let _ = ev.bool(
                        &e,
                        vec![("event", sample_event(model::Stream::ElevatorStatus))],
                    );
                }
                [
                    format!("{} > 0", vec!["1"; 100].join(" + ")),
                    format!("{} > 0", vec!["1"; 300].join(" + ")),
                    format!("{}1{}", "(".repeat(300), ")".repeat(300)),
                    format!("event{}", ".a".repeat(20_000)),
                ]
                .map(|t| Expr::compile(&t).unwrap_err().message)
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(
            refused[0].contains("tree") && refused[0].contains("max_expr_depth"),
            "{refused:?}"
        );
        assert!(refused[1].contains("max_expr_tokens"), "{refused:?}");
        assert!(refused[2].contains("nesting depth"), "{refused:?}");
        assert!(refused[3].contains("max_expr_bytes"), "{refused:?}");
    }

    #[test]
    fn what_the_interpreter_would_panic_on_is_refused_at_compile_time() {
        for text in [
            "Foo{a: 1} == 1",
            "event.floor > 100 && Foo{} == 1",
            "[1].map(x, Foo{}) == []",
            "event.floor.exists(x, x > 1)",
        ] {
            let err = Expr::compile(text).expect_err(text);
            assert!(
                err.message.contains("not supported") || err.message.contains("macro"),
                "{text}: {err:?}"
            );
        }
        for text in [
            "[1, 2].exists(x, x > 1)",
            "event.exists(k, k == \"floor\")",
            "{1: 2}[1] == 2",
        ] {
            Expr::compile(text).expect(text);
        }
    }
}
