//! Rule evaluation, one core: CEL filters of the default pack on one elevator frame (with the
//! cost of turning the frame into a CEL value), and a sliding-window machine taking one event a
//! second in steady state (one in, one out of its 60 s window), and compiling the pack's
//! expressions for a rule-set version. The dataflow around them is
//! measured end to end by `citywatch replay` and `citywatch bench` (docs/BENCHMARKS.md).
//!
//! `cargo bench -p citywatch-benches --bench rules`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use model::Decoder;
use rules::machine::{Item, Machine};
use std::hint::black_box;
use std::path::Path;

const NOW: u64 = 1_795_737_600_000;

fn frame() -> model::Envelope {
    let payload = format!(
        r#"{{"ts":{NOW},"floor":12,"position_m":33.1,"in_door_zone":false,"speed_mps":1.62,"direction":"up","door":"closed","light_curtain_blocked":false,"occupied":true,"load_pct":41.5,"vibration_mps2":0.08,"service_mode":"normal","safety_circuit_ok":true,"power_ok":true}}"#
    );
    Decoder::default()
        .decode("cw/v1/elevator/E0001234/status", payload.as_bytes(), NOW)
        .expect("a valid frame")
}

fn filters(c: &mut Criterion) {
    let pack = rules::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/default"))
        .expect("the default pack loads");
    let env = frame();
    let event = rules::expr::event_value(&env);
    let evaluator = rules::expr::Evaluator::default();
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));
    group.bench_function("event_value/elevator_status", |b| {
        b.iter(|| rules::expr::event_value(black_box(&env)))
    });
    for id in [
        "elevator.trapped_outside_zone",
        "elevator.door_open_while_moving",
        "elevator.high_vibration",
    ] {
        let rule = pack.iter().find(|r| r.id == id).expect("in the pack");
        let filter = rule.filter.as_ref().expect("a filter");
        group.bench_function(format!("filter/{id}"), |b| {
            b.iter(|| {
                evaluator
                    .bool(black_box(filter), vec![("event", event.clone())])
                    .expect("evaluates")
            })
        });
    }
    all_elevator_filters(&mut group, &pack, &env);
    group.finish();
}

/// Every filter of the pack on the elevator-status stream, on one frame of a registered
/// elevator: through cel-interpreter (the frame's CEL value built once, as the dataflow does)
/// and compiled (read from the struct).
fn all_elevator_filters(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    pack: &[rules::Rule],
    env: &model::Envelope,
) {
    use cel_interpreter::Value;
    use rules::compiled::{EventVars, Lookup, Program, Val};
    let filters: Vec<&rules::Rule> = pack
        .iter()
        .filter(|r| r.stream == model::Stream::ElevatorStatus && r.filter.is_some())
        .filter(|r| !r.filter.as_ref().is_some_and(|f| f.uses_prev))
        .collect();
    let elevator = rules::expr::map([
        ("floors".to_owned(), Value::Int(33)),
        ("rated_speed_mps".to_owned(), Value::Float(1.75)),
    ]);
    let reference = rules::expr::map([("elevator".to_owned(), elevator)]);
    let evaluator = rules::expr::Evaluator::default();
    group.bench_function(format!("all_filters/interpreted/{}", filters.len()), |b| {
        b.iter(|| {
            let event = rules::expr::event_value(black_box(env));
            let bound = evaluator.bind(vec![("event", event), ("ref", reference.clone())]);
            filters
                .iter()
                .filter(|r| bound.bool(r.filter.as_ref().expect("a filter")) == Ok(true))
                .count()
        })
    });
    let compiled: Vec<rules::compiled::Node> = filters
        .iter()
        .map(
            |r| match Program::compile(&r.filter.as_ref().expect("a filter").source) {
                Program::Compiled(n) => n,
                Program::Interpreted(why) => panic!("{}: {why}", r.id),
            },
        )
        .collect();
    let mut shared = compiled.clone();
    let memo = rules::compiled::Memo::new(rules::compiled::share(shared.iter_mut()));
    let lookup = |names: &[String]| match names {
        [r] if r == "elevator" => Lookup::Map,
        [r, c] if r == "elevator" && c == "floors" => Lookup::Val(Val::Int(33)),
        [r, c] if r == "elevator" && c == "rated_speed_mps" => Lookup::Val(Val::Double(1.75)),
        _ => Lookup::Absent,
    };
    group.bench_function(format!("all_filters/compiled/{}", filters.len()), |b| {
        b.iter(|| {
            let vars = EventVars {
                env: black_box(env),
                prev: None,
                reference: &lookup,
                memo: None,
            };
            compiled
                .iter()
                .filter(|n| n.eval_bool(&vars) == Ok(true))
                .count()
        })
    });
    // As the dataflow judges them: the conditions the filters share computed once per frame.
    group.bench_function(format!("all_filters/shared/{}", filters.len()), |b| {
        b.iter(|| {
            memo.reset();
            let vars = EventVars {
                env: black_box(env),
                prev: None,
                reference: &lookup,
                memo: Some(&memo),
            };
            shared
                .iter()
                .filter(|n| n.eval_bool(&vars) == Ok(true))
                .count()
        })
    });
}

fn windows(c: &mut Criterion) {
    let rule = rules::load_str(
        "window.toml",
        r#"
[[rule]]
id = "vibration"
severity = "minor"
stream = "elevator_status"
group_by = ["elevator_id"]
window = { sliding = "60s" }
aggregate = "avg(vibration_mps2)"
condition = "value > 0.5"
"#,
    )
    .expect("a valid rule")
    .remove(0);
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));
    group.bench_function("window/sliding_60s_avg_one_event", |b| {
        let mut m = Machine::default();
        let mut condition = |a: &rules::machine::Aggregated<'_>| (a.value > 0.5, false);
        let mut t = NOW;
        // A full window first: then each event pushes one item and expires one.
        for _ in 0..60 {
            m.event(&rule, t, true, false, Item::Num(0.1), &mut condition);
            t += 1000;
        }
        b.iter(|| {
            t += 1000;
            m.event(&rule, t, true, false, Item::Num(0.1), &mut condition)
        })
    });
    group.finish();
}

/// Compiling a rule-set version: every expression of the default pack compiled, and the
/// conditions they share found (what each version costs each worker once).
fn compile(c: &mut Criterion) {
    let pack = rules::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/default"))
        .expect("the default pack loads");
    let sources: Vec<&str> = pack
        .iter()
        .flat_map(|r| [r.filter.as_ref(), r.value.as_ref()])
        .flatten()
        .map(|e| e.source.as_str())
        .collect();
    let mut group = c.benchmark_group("rules");
    group.bench_function(format!("compile/default_pack/{}", sources.len()), |b| {
        b.iter(|| {
            let mut nodes: Vec<rules::compiled::Node> = sources
                .iter()
                .filter_map(|s| match rules::compiled::Program::compile(black_box(s)) {
                    rules::compiled::Program::Compiled(n) => Some(n),
                    rules::compiled::Program::Interpreted(_) => None,
                })
                .collect();
            rules::compiled::share(nodes.iter_mut())
        })
    });
}

criterion_group!(benches, filters, windows, compile);
criterion_main!(benches);
