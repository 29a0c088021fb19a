//! The compiled expressions against cel-interpreter: the same value (or both an error) for
//! random expressions over random events, `prev` and `ref`; `event.x` read from the structs
//! equal to the map the interpreter sees; and every expression of the default pack compiles.

use cel_interpreter::Value;
use proptest::prelude::*;
use rules::compiled::event_fields::event_field;
use rules::compiled::{
    EventVars, Lookup, Outcome, Path, Program, Root, Traced, Val, Vars, WindowVars,
};
use rules::expr::{Evaluator, Expr, event_value, field, map};
use std::sync::Arc;

/// The variables as the interpreter sees them, read through the compiled side's interface.
struct MapVars<'v> {
    event: &'v Value,
    prev: Option<&'v Value>,
    reference: &'v Value,
}

fn scalar(v: &Value) -> Option<Val<'_>> {
    Some(match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Int(i) => Val::Int(*i),
        Value::UInt(u) => Val::UInt(*u),
        Value::Float(f) => Val::Double(*f),
        Value::String(s) => Val::Str(s.as_str().into()),
        _ => return None,
    })
}

impl<'v> Vars<'v> for MapVars<'v> {
    fn get(&self, path: &Path) -> Lookup<'v> {
        let root = match path.root {
            Root::Event => Some(self.event),
            Root::Prev => self.prev,
            Root::Ref => Some(self.reference),
        };
        let Some(mut at) = root else {
            return Lookup::Absent;
        };
        for name in &path.names {
            match field(at, name) {
                Some(v) => at = v,
                None => return Lookup::Absent,
            }
        }
        match at {
            Value::Map(_) => Lookup::Map,
            v => scalar(v).map_or(Lookup::Absent, Lookup::Val),
        }
    }

    fn bound(&self, root: Root) -> bool {
        root != Root::Prev || self.prev.is_some()
    }
}

fn same(
    cel: &Result<Value, rules::expr::EvalError>,
    ours: &Result<Val<'_>, rules::compiled::Failed>,
) -> bool {
    match (cel, ours) {
        (Err(_), Err(_)) => true,
        (Ok(v), Ok(o)) => match (scalar(v), o) {
            (Some(Val::Double(a)), Val::Double(b)) => {
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
            }
            (Some(a), b) => &a == b,
            (None, _) => false,
        },
        _ => false,
    }
}

/// The same result, a NaN equal to a NaN.
fn same_val(
    a: &Result<Val<'_>, rules::compiled::Failed>,
    b: &Result<Val<'_>, rules::compiled::Failed>,
) -> bool {
    match (a, b) {
        (Ok(Val::Double(x)), Ok(Val::Double(y))) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (a, b) => a == b,
    }
}

/// Each evaluated part of `t`, compiled from its text and evaluated alone, gives the outcome
/// the trace shows.
fn check_parts(t: &Traced, vars: &MapVars<'_>) -> Result<(), TestCaseError> {
    for p in &t.parts {
        if p.outcome == Outcome::NotEvaluated {
            continue;
        }
        let Program::Compiled(n) = Program::compile(&p.text) else {
            return Err(TestCaseError::fail(format!(
                "part {} does not compile",
                p.text
            )));
        };
        let (_, alone) = n.trace(vars);
        prop_assert_eq!(&alone.outcome, &p.outcome, "part {}", p.text);
        check_parts(p, vars)?;
    }
    Ok(())
}

fn s(v: &str) -> Value {
    Value::String(Arc::new(v.to_owned()))
}

const EVENT_FIELDS: &[&str] = &[
    "floor",
    "speed_mps",
    "door",
    "direction",
    "in_door_zone",
    "occupied",
    "load_pct",
    "service_mode",
    "alarm_button",
    "position_m",
    "ts",
    "time_ms",
    "elevator_id",
    "nosuch",
];
const LITERALS: &[&str] = &[
    "0",
    "1",
    "-3",
    "5u",
    "0.05",
    "1.15",
    "2.0",
    "\"closed\"",
    "\"open\"",
    "\"normal\"",
    "\"\"",
    "true",
    "false",
    "null",
    "9223372036854775807",
];

const OPS: &[&str] = &[
    "&&", "||", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%",
];

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(EVENT_FIELDS).prop_map(|f| format!("event.{f}")),
        3 => prop::sample::select(LITERALS).prop_map(str::to_owned),
        2 => prop::sample::select(&["door", "floor", "speed_mps", "nosuch"][..]).prop_map(|f| format!("prev.{f}")),
        2 => prop::sample::select(&["ref.elevator.floors", "ref.elevator.rated_speed_mps",
            "ref.elevator.building", "ref.elevator.nosuch", "ref.guidance_price"][..]).prop_map(str::to_owned),
        2 => prop::sample::select(&["has(event.occupied)", "has(event.load_pct)", "has(prev.door)",
            "has(ref.elevator)", "has(ref.elevator.floors)", "has(ref.guidance_price)",
            "has(event.floor.x)"][..]).prop_map(str::to_owned),
    ]
}

fn window_leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&["value", "count", "prior[0]", "prior[1]", "prior[9]",
            "prior_count[0]", "prior_count[9]", "prior[-1]", "prior[1u]", "event.floor"][..])
            .prop_map(str::to_owned),
        2 => prop::sample::select(LITERALS).prop_map(str::to_owned),
    ]
}

fn expression() -> impl Strategy<Value = String> {
    combine(leaf().boxed())
}

fn window_expression() -> impl Strategy<Value = String> {
    combine(window_leaf().boxed())
}

fn combine(leaf: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(OPS), inner.clone())
                .prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("({c} ? {a} : {b})")),
            (
                inner,
                prop::collection::vec(prop::sample::select(LITERALS), 0..4)
            )
                .prop_map(|(a, l)| format!("({a} in [{}])", l.join(", "))),
        ]
    })
}

/// An elevator frame as a device sends it: optional fields present or not.
fn frame() -> impl Strategy<Value = String> {
    (
        (-2i32..40, 0.0f64..3.0, prop::sample::select(&["open", "closed", "opening", "closing"][..])),
        (any::<bool>(), prop::option::of(any::<bool>()), prop::option::of(0.0f64..150.0)),
        (prop::sample::select(&["normal", "inspection", "fire"][..]), prop::option::of(any::<bool>()),
         prop::option::of(-1.0f64..100.0)),
    )
        .prop_map(|((floor, speed, door), (zone, occupied, load), (mode, alarm, pos))| {
            let mut o = serde_json::json!({"ts": 1_795_737_600_000u64 + floor.unsigned_abs() as u64,
                "floor": floor, "speed_mps": speed, "direction": "stop", "door": door,
                "in_door_zone": zone, "service_mode": mode});
            let m = o.as_object_mut().unwrap();
            if let Some(v) = occupied { m.insert("occupied".into(), v.into()); }
            if let Some(v) = load { m.insert("load_pct".into(), v.into()); }
            if let Some(v) = alarm { m.insert("alarm_button".into(), v.into()); }
            if let Some(v) = pos { m.insert("position_m".into(), v.into()); }
            o.to_string()
        })
}

fn decode(topic: &str, payload: &str) -> Option<model::Envelope> {
    model::Decoder::new(model::DecoderConfig::default())
        .decode(topic, payload.as_bytes(), 1_795_737_600_000)
        .ok()
}

fn elevator_ref(floors: i64) -> Value {
    map([(
        "elevator".to_owned(),
        map([
            ("floors".to_owned(), Value::Int(floors)),
            ("rated_speed_mps".to_owned(), Value::Float(1.0)),
            ("building".to_owned(), s("解放碑大厦")),
        ]),
    )])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_expressions_agree_with_the_interpreter(
        expr in expression(),
        payload in frame(),
        prev_door in prop::option::of(prop::sample::select(&["open", "closing"][..])),
        registered in any::<bool>(),
    ) {
        let Some(env) = decode("cw/v1/elevator/E0001/status", &payload) else { return Ok(()) };
        let Ok(cel) = Expr::compile(&expr) else { return Ok(()) };
        let Program::Compiled(node) = Program::compile(&expr) else {
            panic!("{expr} did not compile");
        };
        let event = event_value(&env);
        let prev = prev_door.map(|d| map([("door".to_owned(), s(d)), ("floor".to_owned(), Value::Int(3))]));
        let reference = if registered { elevator_ref(6) } else { map([]) };
        let mut vars = vec![("event", event.clone()), ("ref", reference.clone())];
        if let Some(p) = &prev { vars.push(("prev", p.clone())); }
        let want = Evaluator::default().value(&cel, vars);
        let maps = MapVars { event: &event, prev: prev.as_ref(), reference: &reference };
        let got = node.eval(&maps);
        prop_assert!(same(&want, &got), "{expr}\n{payload}\ninterpreter: {want:?}\ncompiled: {got:?}");
        // The same with `event` read from the struct, as the dataflow will.
        let prev_lookup = |names: &[String]| maps.get(&Path::new(Root::Prev, names.to_vec()));
        let ref_lookup = |names: &[String]| maps.get(&Path::new(Root::Ref, names.to_vec()));
        let typed = EventVars {
            env: &env,
            prev: prev.as_ref().map(|_| &prev_lookup as rules::compiled::Lookups<'_>),
            reference: &ref_lookup,
            memo: None,
        };
        let again = node.eval(&typed);
        let equal = match (&again, &got) {
            (Ok(Val::Double(a)), Ok(Val::Double(b))) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (a, b) => a == b,
        };
        prop_assert!(equal, "{} over the struct: {:?} against {:?}", expr, again, got);
    }

    #[test]
    fn compiled_window_conditions_agree_with_the_interpreter(
        expr in window_expression(),
        value in prop_oneof![Just(0.0), Just(0.5), Just(3.0), -10.0f64..10.0],
        count in 0usize..20,
        prior in prop::collection::vec((0.0f64..10.0, 0usize..20), 0..11),
    ) {
        let Ok(cel) = Expr::compile(&expr) else { return Ok(()) };
        let node = match Program::compile(&expr) {
            Program::Compiled(node) => node,
            // A uint index is left to the interpreter (it refuses it).
            Program::Interpreted(_) if expr.contains("[1u]") => return Ok(()),
            Program::Interpreted(why) => panic!("{expr} did not compile: {why}"),
        };
        let list = |f: &dyn Fn(&(f64, usize)) -> Value| Value::List(Arc::new(prior.iter().map(f).collect()));
        let vars = vec![
            ("value", Value::Float(value)),
            ("count", Value::Int(count as i64)),
            ("prior", list(&|p| Value::Float(p.0))),
            ("prior_count", list(&|p| Value::Int(p.1 as i64))),
        ];
        let want = Evaluator::default().value(&cel, vars);
        let got = node.eval(&WindowVars { value, count, prior: &prior });
        prop_assert!(same(&want, &got), "{expr}\ninterpreter: {want:?}\ncompiled: {got:?}");
        let (traced, _) = node.trace(&WindowVars { value, count, prior: &prior });
        prop_assert!(same_val(&traced, &got), "{expr}: traced {traced:?}, eval {got:?}");
    }

    #[test]
    fn a_traced_evaluation_comes_to_what_eval_does_and_its_text_reads_back(
        expr in expression(),
        payload in frame(),
        prev_door in prop::option::of(prop::sample::select(&["open", "closing"][..])),
        registered in any::<bool>(),
    ) {
        let Some(env) = decode("cw/v1/elevator/E0001/status", &payload) else { return Ok(()) };
        if Expr::compile(&expr).is_err() { return Ok(()) }
        let Program::Compiled(node) = Program::compile(&expr) else { return Ok(()) };
        let event = event_value(&env);
        let prev = prev_door.map(|d| map([("door".to_owned(), s(d)), ("floor".to_owned(), Value::Int(3))]));
        let reference = if registered { elevator_ref(6) } else { map([]) };
        let maps = MapVars { event: &event, prev: prev.as_ref(), reference: &reference };
        let want = node.eval(&maps);
        let (got, traced) = node.trace(&maps);
        prop_assert!(same_val(&got, &want), "{expr}: traced {got:?}, eval {want:?}");
        prop_assert_eq!(matches!(traced.outcome, Outcome::Failed), want.is_err());
        // Every part that was evaluated is itself what it says: its text, evaluated alone,
        // comes to its value (or fails as it did).
        check_parts(&traced, &maps)?;
        // The root's text, parsed again, evaluates the same.
        let Program::Compiled(again) = Program::compile(&traced.text) else {
            panic!("{} (from {expr}) does not compile", traced.text);
        };
        prop_assert!(same_val(&again.eval(&maps), &want), "{} against {expr}", traced.text);
    }

    #[test]
    fn event_fields_read_from_the_struct_equal_the_interpreters_map(payload in frame()) {
        let Some(env) = decode("cw/v1/elevator/E0001/status", &payload) else { return Ok(()) };
        check_fields(&env);
    }
}

fn check_fields(env: &model::Envelope) {
    let Value::Map(m) = event_value(env) else {
        panic!("not a map")
    };
    for (k, v) in m.map.iter() {
        let name = k.to_string();
        assert_eq!(event_field(env, &name), scalar(v), "{name} of {env:?}");
    }
    for name in
        EVENT_FIELDS
            .iter()
            .chain(&["kind", "code", "result", "market_id", "office", "text"])
    {
        if !m
            .map
            .contains_key(&cel_interpreter::objects::Key::from(*name))
        {
            assert_eq!(event_field(env, name), None, "{name} of {env:?}");
        }
    }
}

#[test]
fn every_stream_reads_its_fields_as_the_interpreter_does() {
    let samples = [
        (
            "cw/v1/elevator/E1/event",
            r#"{"ts":1795737600000,"code":"E12","floor":3,"detail":"x"}"#,
        ),
        (
            "cw/v1/elevator/E1/event",
            r#"{"ts":1795737600000,"code":"trapped"}"#,
        ),
        (
            "cw/v1/market/M1/scale/S1/sale",
            r#"{"ts":1795737600000,"stall_id":"ST1","goods_code":"pork","weight_kg":1.5,"unit_price":20.0,"total":30.0,"tare_kg":0.1}"#,
        ),
        (
            "cw/v1/market/M1/scale/S1/check",
            r#"{"ts":1795737600000,"reference_kg":1.0,"measured_kg":0.98}"#,
        ),
        (
            "cw/v1/market/M1/residue",
            r#"{"ts":1795737600000,"stall_id":"ST1","goods_code":"cabbage","inhibition_pct":55.0}"#,
        ),
        (
            "cw/v1/market/M1/residue",
            r#"{"ts":1795737600000,"stall_id":"ST1","goods_code":"cabbage","inhibition_pct":20.0,"result":"pass"}"#,
        ),
        (
            "cw/v1/kitchen/K1/camera/C1/detection",
            r#"{"ts":1795737600000,"kind":"rodent","confidence":0.9,"snapshot":"http://x/1.jpg"}"#,
        ),
        (
            "cw/v1/kitchen/K1/camera/C1/detection",
            r#"{"ts":1795737600000,"kind":"new_kind"}"#,
        ),
        (
            "cw/v1/kitchen/K1/camera/C1/heartbeat",
            r#"{"ts":1795737600000}"#,
        ),
        (
            "cw/v1/complaint/new",
            r#"{"ts":1795737600000,"complaint_id":"C1","kind":"report","merchant_id":"MER1","merchant_name":"店","category":"food","lat":29.5,"lon":106.5,"amount":12.5,"text":"坏了"}"#,
        ),
        (
            "cw/v1/complaint/new",
            r#"{"complaint_id":"C2","merchant_name":"店","category":"food"}"#,
        ),
        (
            "cw/v1/complaint/C1/status",
            r#"{"ts":1795737600000,"status":"accepted","office":"O-JFB"}"#,
        ),
    ];
    for (topic, payload) in samples {
        let env = decode(topic, payload).unwrap_or_else(|| panic!("{topic} {payload}"));
        check_fields(&env);
    }
}

#[test]
fn every_expression_of_the_default_pack_compiles() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("default");
    let rules = rules::load_dir(&dir).unwrap();
    let mut checked = 0;
    for r in &rules {
        let clear = match &r.kind {
            rules::spec::Kind::State { clear } => clear.as_ref(),
            _ => None,
        };
        for e in [
            r.filter.as_ref(),
            r.value.as_ref(),
            r.ended_by.as_ref(),
            clear,
        ]
        .into_iter()
        .flatten()
        {
            checked += 1;
            if let Program::Interpreted(why) = Program::compile(&e.source) {
                panic!("{}: {} is interpreted: {why}", r.id, e.source);
            }
        }
    }
    assert!(checked >= 40, "{checked}");
}

proptest! {
    // Seven expressions compiled per case: fewer cases, as many expressions as above.
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn shared_conditions_give_what_each_expression_gives_alone(
        a in expression(),
        b in expression(),
        c in expression(),
        payload in frame(),
        prev_door in prop::option::of(prop::sample::select(&["open", "closing"][..])),
        registered in any::<bool>(),
    ) {
        let Some(env) = decode("cw/v1/elevator/E0001/status", &payload) else { return Ok(()) };
        let sources = [
            a.clone(),
            format!("({a}) && ({b})"),
            format!("({b}) || !({a})"),
            format!("({c}) ? ({a} && {b}) : ({b})"),
            format!("({a} && {b}) == ({c})"),
            b,
            c,
        ];
        let mut plain = Vec::new();
        for src in &sources {
            if Expr::compile(src).is_err() { return Ok(()) }
            match Program::compile(src) {
                Program::Compiled(n) => plain.push(n),
                Program::Interpreted(_) => return Ok(()),
            }
        }
        let mut shared = plain.clone();
        let slots = rules::compiled::share(shared.iter_mut());
        let event = event_value(&env);
        let prev = prev_door.map(|d| map([("door".to_owned(), s(d)), ("floor".to_owned(), Value::Int(3))]));
        let reference = if registered { elevator_ref(6) } else { map([]) };
        let maps = MapVars { event: &event, prev: prev.as_ref(), reference: &reference };
        let prev_lookup = |names: &[String]| maps.get(&Path::new(Root::Prev, names.to_vec()));
        let ref_lookup = |names: &[String]| maps.get(&Path::new(Root::Ref, names.to_vec()));
        let memo = rules::compiled::Memo::new(slots);
        let vars = |memo| EventVars {
            env: &env,
            prev: prev.as_ref().map(|_| &prev_lookup as rules::compiled::Lookups<'_>),
            reference: &ref_lookup,
            memo,
        };
        for ((src, p), sh) in sources.iter().zip(&plain).zip(&shared) {
            let alone = p.eval(&vars(None));
            let with = sh.eval(&vars(Some(&memo)));
            let equal = match (&alone, &with) {
                (Ok(Val::Double(x)), Ok(Val::Double(y))) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                (x, y) => x == y,
            };
            prop_assert!(equal, "{} shared: {:?} alone: {:?}", src, with, alone);
        }
    }
}
