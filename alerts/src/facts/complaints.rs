//! Who each recent complaint is about, so that an alert keyed by complaint id alone (a handling
//! deadline) can be routed like the complaint: to the merchant's office; and how its handling
//! went (its status updates), for the list of complaints and their deadlines
//! (`GET /api/v1/complaints`).
//!
//! Bounded: at most [`MAX_COMPLAINTS`], the oldest forgotten first. A deadline that runs out
//! for a complaint forgotten here still fires; it is then routed to the district's offices.
//! Complaints received before a restart come back from the complaint log at start.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Complaints remembered at most (a district receives a few hundred a day).
pub const MAX_COMPLAINTS: usize = 200_000;

/// Status updates kept per complaint at most (a complaint's handling has a handful).
pub const MAX_STATUSES: usize = 32;

/// What an alert needs to know of a complaint, and how its handling went.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ComplaintFacts {
    pub merchant_id: Option<String>,
    pub merchant_name: String,
    /// `complaint` or `report`.
    pub kind: String,
    /// Where it happened, when the complaint says (WGS-84).
    pub place: Option<(f64, f64)>,
    /// When it was received (its `ts`), epoch ms.
    pub received_ms: u64,
    pub category: String,
    /// Its status updates in the order they came (a repeat of the last one is left out).
    pub statuses: Vec<StatusChange>,
}

/// One status update of a complaint.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub ts: u64,
    /// `accepted`, `rejected`, `mediating` or `closed`.
    pub status: String,
    /// The office that handles it, when the update names one.
    pub office: Option<String>,
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

    /// Notes a status update of a complaint (one not remembered, or beyond
    /// [`MAX_STATUSES`], is left out).
    pub fn status(&self, complaint_id: &str, change: StatusChange) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(facts) = inner.0.get_mut(complaint_id) else {
            return;
        };
        if facts.statuses.len() < MAX_STATUSES && facts.statuses.last() != Some(&change) {
            facts.statuses.push(change);
        }
    }

    /// The remembered complaints `keep` admits, oldest first, with their ids.
    pub fn matching(
        &self,
        mut keep: impl FnMut(&str, &ComplaintFacts) -> bool,
    ) -> Vec<(String, ComplaintFacts)> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (by_id, order) = &*inner;
        order
            .iter()
            .filter_map(|id| by_id.get(id).map(|f| (id, f)))
            .filter(|(id, f)| keep(id, f))
            .map(|(id, f)| (id.clone(), f.clone()))
            .collect()
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
            ..ComplaintFacts::default()
        }
    }

    #[test]
    fn status_updates_are_kept_in_order_once_each_and_bounded() {
        let c = Complaints::default();
        c.record("C1", facts("M1"));
        let change = |ts, status: &str| StatusChange {
            ts,
            status: status.into(),
            office: Some("O1".into()),
        };
        c.status("C1", change(10, "accepted"));
        c.status("C1", change(10, "accepted"));
        c.status("C1", change(20, "mediating"));
        c.status("C2", change(20, "closed"));
        let statuses: Vec<String> = c
            .get("C1")
            .unwrap()
            .statuses
            .into_iter()
            .map(|s| s.status)
            .collect();
        assert_eq!(statuses, ["accepted", "mediating"]);
        assert!(
            c.get("C2").is_none(),
            "an update of an unknown complaint is left out"
        );
        for i in 0..2 * MAX_STATUSES as u64 {
            c.status("C1", change(100 + i, "mediating"));
        }
        assert_eq!(c.get("C1").unwrap().statuses.len(), MAX_STATUSES);
        c.record("C3", facts("M2"));
        let m2: Vec<String> = c
            .matching(|_, f| f.merchant_id.as_deref() == Some("M2"))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(m2, ["C3"]);
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
