//! Topics under the configurable prefix (default `cw/v1/`).

use crate::event::Stream;
use crate::id::is_valid_id;

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "cw/v1/";

/// A parsed topic: its stream and up to two id segments, borrowed from the topic string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The stream the topic belongs to.
    pub stream: Stream,
    /// First id segment (elevator, market, kitchen or complaint id); empty for `complaint/new`.
    pub id1: &'a str,
    /// Second id segment (scale or camera id), empty where the topic has none.
    pub id2: &'a str,
}

/// Why a topic did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// Not a contract topic.
    Unknown,
    /// A contract topic whose id segment is invalid; holds the segment.
    BadId(String),
}

/// Parses `topic` (which must start with `prefix`) into a [`Route`].
pub fn parse<'a>(prefix: &str, topic: &'a str) -> Result<Route<'a>, TopicError> {
    let rest = topic.strip_prefix(prefix).ok_or(TopicError::Unknown)?;
    let mut parts = [""; 6];
    let mut n = 0;
    for part in rest.split('/') {
        if n == parts.len() {
            return Err(TopicError::Unknown);
        }
        parts[n] = part;
        n += 1;
    }
    let (stream, id1, id2) = match &parts[..n] {
        ["elevator", id, "status"] => (Stream::ElevatorStatus, *id, ""),
        ["elevator", id, "event"] => (Stream::ElevatorEvent, *id, ""),
        ["market", m, "scale", s, "sale"] => (Stream::MarketSale, *m, *s),
        ["market", m, "scale", s, "check"] => (Stream::MarketCheck, *m, *s),
        ["market", m, "residue"] => (Stream::MarketResidue, *m, ""),
        ["kitchen", k, "camera", c, "detection"] => (Stream::KitchenDetection, *k, *c),
        ["kitchen", k, "camera", c, "heartbeat"] => (Stream::KitchenHeartbeat, *k, *c),
        ["complaint", "new"] => (Stream::ComplaintNew, "", ""),
        ["complaint", id, "status"] => (Stream::ComplaintStatus, *id, ""),
        _ => return Err(TopicError::Unknown),
    };
    let ids: &[&str] = match stream {
        Stream::ComplaintNew => &[],
        Stream::MarketSale
        | Stream::MarketCheck
        | Stream::KitchenDetection
        | Stream::KitchenHeartbeat => &[id1, id2],
        _ => &[id1],
    };
    if let Some(bad) = ids.iter().find(|id| !is_valid_id(id)) {
        return Err(TopicError::BadId((*bad).to_owned()));
    }
    Ok(Route { stream, id1, id2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_contract_topic() {
        let p = DEFAULT_PREFIX;
        let cases = [
            ("cw/v1/elevator/E1/status", Stream::ElevatorStatus, "E1", ""),
            ("cw/v1/elevator/E1/event", Stream::ElevatorEvent, "E1", ""),
            (
                "cw/v1/market/M1/scale/S1/sale",
                Stream::MarketSale,
                "M1",
                "S1",
            ),
            (
                "cw/v1/market/M1/scale/S1/check",
                Stream::MarketCheck,
                "M1",
                "S1",
            ),
            ("cw/v1/market/M1/residue", Stream::MarketResidue, "M1", ""),
            (
                "cw/v1/kitchen/K1/camera/C1/detection",
                Stream::KitchenDetection,
                "K1",
                "C1",
            ),
            (
                "cw/v1/kitchen/K1/camera/C1/heartbeat",
                Stream::KitchenHeartbeat,
                "K1",
                "C1",
            ),
            ("cw/v1/complaint/new", Stream::ComplaintNew, "", ""),
            (
                "cw/v1/complaint/C-9/status",
                Stream::ComplaintStatus,
                "C-9",
                "",
            ),
        ];
        for (topic, stream, id1, id2) in cases {
            assert_eq!(parse(p, topic), Ok(Route { stream, id1, id2 }), "{topic}");
        }
    }

    #[test]
    fn rejects_unknown_and_bad_ids() {
        let p = DEFAULT_PREFIX;
        assert_eq!(parse(p, "cw/v1/elevator/E1"), Err(TopicError::Unknown));
        assert_eq!(
            parse(p, "cw/v2/elevator/E1/status"),
            Err(TopicError::Unknown)
        );
        assert_eq!(
            parse(p, "cw/v1/elevator/E1/status/x"),
            Err(TopicError::Unknown)
        );
        assert_eq!(parse(p, "cw/v1/a/b/c/d/e/f/g"), Err(TopicError::Unknown));
        assert_eq!(
            parse(p, "cw/v1/elevator/E 1/status"),
            Err(TopicError::BadId("E 1".into()))
        );
        assert_eq!(
            parse(p, "cw/v1/elevator//status"),
            Err(TopicError::BadId(String::new()))
        );
        assert_eq!(
            parse(p, "cw/v1/market/M1/scale//sale"),
            Err(TopicError::BadId(String::new()))
        );
        let long = format!("cw/v1/kitchen/K1/camera/{}/heartbeat", "c".repeat(65));
        assert!(matches!(parse(p, &long), Err(TopicError::BadId(_))));
    }
}
