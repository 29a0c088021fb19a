//! What each fuzz target does with one input. Shared by the fuzz targets (`fuzz_targets/`)
//! and by the regression test that replays every kept input in CI
//! (`citywatch/tests/fuzz_corpus.rs`), so both run exactly the same code. Each function may
//! return an error for its input; it must not panic, overflow its stack or hang.

#![allow(dead_code)]

use std::path::Path;

/// Topics of every stream, so that most inputs reach a payload decoder.
const TOPICS: [&str; 9] = [
    "cw/v1/elevator/E0001/status",
    "cw/v1/elevator/E0001/event",
    "cw/v1/market/M1/scale/S1/sale",
    "cw/v1/market/M1/scale/S1/check",
    "cw/v1/market/M1/residue",
    "cw/v1/kitchen/K1/camera/C1/detection",
    "cw/v1/kitchen/K1/camera/C1/heartbeat",
    "cw/v1/complaint/new",
    "cw/v1/complaint/C1/status",
];

/// The MQTT payload decoder. The first byte picks a contract topic (or, past them, takes the
/// next bytes up to a newline as the topic); the rest is the payload.
pub fn decode(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (topic, payload) = match TOPICS.get(pick as usize % 16) {
        Some(t) => (t.to_string(), rest),
        None => {
            let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            (
                String::from_utf8_lossy(&rest[..end]).into_owned(),
                rest.get(end + 1..).unwrap_or_default(),
            )
        }
    };
    if let Ok(env) = model::Decoder::default().decode(&topic, payload, 1_795_737_600_000) {
        kept_again(&env, &topic);
    }
}

/// An event kept for an explanation (`model::seen`) decodes again, at its time, to what was
/// kept.
fn kept_again(env: &model::Envelope, what: &str) {
    let kept = model::seen::Seen::of(env);
    let back = kept
        .envelope()
        .unwrap_or_else(|e| panic!("{what}: {}", e.message));
    assert_eq!(back.time_ms, env.time_ms, "{what}");
    assert_eq!(model::seen::Seen::of(&back).body, kept.body, "{what}");
}

/// Lets a panic of the CEL parser's own thread (`cel-parse`) unwind instead of counting as a
/// crash: `rules::expr` parses on that thread precisely so that such a panic (the parser has
/// inputs that reach an `unreachable!`, found by this target) becomes a syntax error. Any other
/// panic still aborts, as libFuzzer's hook has it.
pub fn tolerate_parser_panics() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some("cel-parse") {
            abort(info);
        }
    }));
}

/// The rule loader and validator, as the API and the rules directory use it, and the
/// incident rules of the same text checked against its alert rules.
pub fn rules(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let alerts = rules::load_str("fuzz.toml", text).unwrap_or_default();
        // The same file's incident rules, checked against its alert rules as at start.
        if let Ok(incidents) = rules::load_incidents_str("fuzz.toml", text) {
            let _ = rules::incident::check_members(&incidents, &alerts);
        }
    }
}

/// A reference table as a `PUT` or a reference directory gives it. The first byte picks the
/// table and the format (CSV or JSON).
pub fn reference(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let tables = dataflow::reference::TABLES;
    let name = tables[pick as usize % tables.len()];
    let format = if (pick as usize / tables.len()).is_multiple_of(2) {
        dataflow::reference::Format::Csv
    } else {
        dataflow::reference::Format::Json
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = dataflow::Reference::default().with_table(Path::new(""), name, text, format);
    }
}

/// A recording (JSON Lines), line by line as `replay` and `rules backtest` read it.
pub fn recording(data: &[u8]) {
    let decoder = model::Decoder::default();
    for line in String::from_utf8_lossy(data).lines() {
        // The quick reading of a line as written gives what the general one gives.
        let decoded = model::recording::decode_line(&decoder, line);
        assert_eq!(
            decoded,
            model::recording::decode_any_line(&decoder, line),
            "{line}"
        );
        if let Ok(env) = decoded {
            kept_again(&env, line);
        }
    }
}

/// An input-log segment as a restart reads it: any bytes (a crash can leave a record cut
/// short or damaged at its end).
pub fn input_log(data: &[u8]) {
    let _ = ingest::input_log::record::read_all(data, |_| true);
}

/// A checkpoint file as a start reads it (damaged, or from another build), and its parts as
/// the rules' machines decode them.
pub fn checkpoint(data: &[u8]) {
    if let Ok(taken) = dataflow::checkpoint::from_bytes(data) {
        for part in taken.parts.values() {
            let _ = dataflow::checkpoint::decode::<
                Vec<(String, Vec<(u64, rules::machine::Machine)>)>,
            >(part);
        }
    }
    let _ = dataflow::checkpoint::decode::<rules::machine::Machine>(data);
}

/// What a target does with one input.
pub type Run = fn(&[u8]);

/// Every target by its name.
pub const TARGETS: [(&str, Run); 6] = [
    ("decode", decode),
    ("rules", rules),
    ("reference", reference),
    ("recording", recording),
    ("input_log", input_log),
    ("checkpoint", checkpoint),
];
