//! Who each recent complaint is about, so that an alert keyed by complaint id alone (a handling
//! deadline) can be routed like the complaint: to the merchant's office.
//!
//! Bounded: at most [`MAX_COMPLAINTS`], the oldest forgotten first. A deadline that runs out
//! for a complaint forgotten here still fires; it is then routed to the district's offices.
//! Complaints received before a restart come back from the complaint log at start.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Complaints remembered at most (a district receives a few hundred a day).
pub const MAX_COMPLAINTS: usize = 200_000;

/// What an alert needs to know of a complaint.
#[derive(Debug, Clone, PartialEq)]
pub struct ComplaintFacts {
    pub merchant_id: Option<String>,
    pub merchant_name: String,
    /// `complaint` or `report`.
    pub kind: String,
    /// Where it happened, when the complaint says (WGS-84).
    pub place: Option<(f64, f64)>,
}

/// Complaint facts by complaint id.
#[derive(Debug, Default)]
pub struct Complaints {
    inner: Mutex<(HashMap<String, ComplaintFacts>, VecDeque<String>)>,
}

impl Complaints {
    /// Remembers a new complaint (a repeat of its id changes nothing).
    pub fn record(&self, complaint_id: &str, facts: ComplaintFacts) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (by_id, order) = &mut *inner;
        if by_id.contains_key(complaint_id) {
            return;
        }
        if order.len() >= MAX_COMPLAINTS
            && let Some(oldest) = order.pop_front()
        {
            by_id.remove(&oldest);
        }
        by_id.insert(complaint_id.to_owned(), facts);
        order.push_back(complaint_id.to_owned());
    }

    /// The facts of a complaint, if remembered.
    pub fn get(&self, complaint_id: &str) -> Option<ComplaintFacts> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .get(complaint_id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(m: &str) -> ComplaintFacts {
        ComplaintFacts {
            merchant_id: Some(m.into()),
            merchant_name: "店".into(),
            kind: "complaint".into(),
            place: None,
        }
    }

    #[test]
    fn the_first_record_wins_and_the_oldest_go_first() {
        let c = Complaints::default();
        c.record("C1", facts("M1"));
        c.record("C1", facts("M2"));
        assert_eq!(c.get("C1").unwrap().merchant_id.as_deref(), Some("M1"));
        for i in 0..MAX_COMPLAINTS {
            c.record(&format!("X{i}"), facts("M"));
        }
        assert!(c.get("C1").is_none(), "the oldest was forgotten");
        assert!(c.get(&format!("X{}", MAX_COMPLAINTS - 1)).is_some());
    }
}
