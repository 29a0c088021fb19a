//! What made a condition start, as the conditions' snapshots hand it to the alerts: exactly the
//! matched frames of a state rule's `for` period (the latest `explain_events` of them, the rest
//! counted), a window's items, an event rule's event; the same when the frames arrive as a
//! late backlog behind the frontier.

mod common;

use control::conditions::Cause;
use dataflow::{ClockMode, ConditionsSnapshot, DataflowConfig, Reference, RuleFeed};
use model::Envelope;
use rules::machine::Item;
use std::sync::{Arc, Mutex};
use testkit::Frame;

const T0: u64 = 1_795_737_600_000;

const RULES: &str = r#"
[[rule]]
id = "trapped"
severity = "critical"
stream = "elevator_status"
mode = "state"
filter = 'event.door == "closed" && event.speed_mps < 0.05 && has(event.occupied) && event.occupied'
for = "5s"
group_by = ["elevator_id"]

[[rule]]
id = "fast"
severity = "major"
stream = "elevator_status"
filter = 'event.speed_mps > 1.5'
group_by = ["elevator_id"]
window = { sliding = "10s" }
aggregate = "count"
condition = "value >= 3"

[[rule]]
id = "high"
severity = "minor"
stream = "elevator_status"
filter = 'event.floor > 20'
group_by = ["elevator_id"]
"#;

fn at(s: u64) -> u64 {
    T0 + s * 1000
}

/// E1 moves for 4 s, then stands closed and occupied: trapped from 4 s, firing at 9 s.
fn trapped() -> Vec<Envelope> {
    (0..14)
        .map(|s| {
            let f = Frame::new("E1", at(s)).occupied(true);
            if s < 4 { f.speed(1.0) } else { f }.envelope()
        })
        .collect()
}

/// E2 runs fast three times within 10 s; E3 is seen at floor 25 once.
fn fast_and_high() -> Vec<Envelope> {
    let mut out: Vec<Envelope> = (1..=3)
        .map(|s| Frame::new("E2", at(s)).speed(2.0).envelope())
        .collect();
    // Between two ticks of the dataflow's time (100 ms): the start is at the tick.
    out.push(Frame::new("E3", at(2) + 37).floor(25).envelope());
    out
}

/// A device that keeps the event clock moving to 40 s.
fn filler() -> Vec<Envelope> {
    (0..=40)
        .map(|s| Frame::new("E9", at(s)).envelope())
        .collect()
}

/// Judges `events` in the order given (event clock, two workers), keeping 4 events an
/// explanation; every cause the snapshots carried, and every start they told.
fn run(events: Vec<Envelope>) -> (Vec<Cause>, Vec<(String, String, u64)>) {
    let seen = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let sink = seen.clone();
    common::run_snapshots(
        DataflowConfig {
            workers: 2,
            clock: ClockMode::Event,
            lateness_ms: 2000,
            explain_events: 4,
            ..DataflowConfig::default()
        },
        Reference::default(),
        RuleFeed {
            initial: Arc::new(rules::load_str("t.toml", RULES).unwrap()),
            ..RuleFeed::default()
        },
        events,
        move |s: ConditionsSnapshot| {
            let mut seen = sink.lock().unwrap();
            seen.0.extend(s.causes);
            for (a, started, _) in s.changes {
                if started {
                    seen.1.push((a.rule, a.group, a.since));
                }
            }
        },
    );
    let (mut causes, mut starts) = std::mem::take(&mut *seen.lock().unwrap());
    causes.sort_by(|a, b| (&a.rule, &a.group).cmp(&(&b.rule, &b.group)));
    starts.sort();
    (causes, starts)
}

fn times(e: &Cause) -> Vec<u64> {
    e.events.iter().map(|s| s.time_ms).collect()
}

fn find<'e>(all: &'e [Cause], rule: &str) -> &'e Cause {
    all.iter()
        .find(|e| e.rule == rule)
        .unwrap_or_else(|| panic!("no cause for {rule}: {all:?}"))
}

fn check(all: &[Cause]) {
    let trapped = find(all, "trapped");
    assert_eq!((trapped.group.as_str(), trapped.since), ("E1", at(9)));
    assert_eq!(trapped.raw_since, Some(at(4)));
    // The for period [4 s, 9 s) held by the frames at 4..=8 s (its timer fires at 9 s, before
    // the frame of 9 s): the latest four kept, one counted.
    assert_eq!(times(trapped), vec![at(5), at(6), at(7), at(8)]);
    assert_eq!(trapped.earlier, 1);
    // The car stands still: one body for the four frames, each with its own time.
    let body = &trapped.events[0].body;
    assert!(trapped.events.iter().all(|e| Arc::ptr_eq(&e.body, body)));
    let last = trapped.events[3].envelope().unwrap();
    assert_eq!(last, Frame::new("E1", at(8)).occupied(true).envelope());
    assert!(trapped.items.is_empty());

    let fast = find(all, "fast");
    assert_eq!((fast.group.as_str(), fast.since), ("E2", at(3)));
    let items: Vec<(u64, Item)> = (1..=3).map(|s| (at(s), Item::Unit)).collect();
    assert_eq!(fast.items, items);
    assert!(fast.events.is_empty() && fast.earlier == 0);

    let high = find(all, "high");
    assert_eq!((high.group.as_str(), high.since), ("E3", at(2)));
    assert_eq!(times(high), vec![at(2) + 37]);
    assert_eq!(high.events[0].body.topic, "elevator/E3/status");
    assert_eq!(all.len(), 3, "one causes for each start: {all:?}");
}

#[test]
fn each_start_carries_exactly_the_events_that_made_it() {
    let mut events = filler();
    events.extend(trapped());
    events.extend(fast_and_high());
    events.sort_by_key(|e| e.time_ms);
    let (causes, starts) = run(events);
    check(&causes);
    let mut told: Vec<_> = causes
        .iter()
        .map(|e| (e.rule.clone(), e.group.clone(), e.since))
        .collect();
    told.sort();
    assert_eq!(told, starts);
}

#[test]
fn a_late_backlog_leaves_the_same_evidence() {
    // The filler's 40 s first: E1's, E2's and E3's frames arrive as a backlog behind the
    // frontier, judged on their own timelines.
    let mut events = filler();
    events.extend(trapped());
    events.extend(fast_and_high());
    let (causes, _) = run(events);
    check(&causes);
}
