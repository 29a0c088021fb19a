//! What the alerts (and the API's views of complaints and holds) want to know of events that
//! are not conditions: a kitchen camera's latest evidence image, whom a complaint is about and
//! how its handling goes, a stall's residue tests.
//!
//! Fed by a tap on the decoded stream (ingest calls [`Facts::remember`] for every event it
//! takes, and again for what a start feeds again from its logs) and, in a cluster, by the
//! facts other processes received, which the dataflow carries here as [`model::Fact`]s. Each
//! store is bounded (see its module).

pub mod complaints;
pub mod evidence;
pub mod residue_tests;

pub use complaints::Complaints;
pub use evidence::Evidence;
pub use residue_tests::ResidueTests;

use model::Fact;
use std::sync::Arc;

/// The three stores, shared by the ingest's tap, the alerts and the API.
#[derive(Debug, Default)]
pub struct Facts {
    pub evidence: Arc<Evidence>,
    pub complaints: Arc<Complaints>,
    pub residue: Arc<ResidueTests>,
}

impl Facts {
    /// Keeps what an event, received at `received_ms`, tells (most events tell nothing).
    pub fn remember(&self, event: &model::Event, received_ms: u64) {
        if let Some(fact) = Fact::of(event, received_ms) {
            self.keep(fact);
        }
    }

    /// Keeps one fact in its store.
    pub fn keep(&self, fact: Fact) {
        match fact {
            Fact::Evidence {
                kitchen_id,
                camera_id,
                kind,
                ts,
                snapshot,
            } => self
                .evidence
                .record(&kitchen_id, &camera_id, &kind, ts, &snapshot),
            Fact::Complaint {
                complaint_id,
                merchant_id,
                merchant_name,
                kind,
                place,
                received_ms,
                category,
            } => self.complaints.record(
                &complaint_id,
                complaints::ComplaintFacts {
                    merchant_id,
                    merchant_name,
                    kind,
                    place,
                    received_ms,
                    category,
                    statuses: Vec::new(),
                },
            ),
            Fact::Status {
                complaint_id,
                ts,
                status,
                office,
            } => self.complaints.status(
                &complaint_id,
                complaints::StatusChange { ts, status, office },
            ),
            Fact::Residue {
                key,
                ts,
                inhibition_pct,
                result,
            } => self.residue.record(
                &key,
                residue_tests::TestRecord {
                    ts,
                    inhibition_pct,
                    result,
                },
            ),
        }
    }
}
