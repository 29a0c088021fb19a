//! What the alerts want to know of a message beyond its event: a kitchen camera's evidence
//! image, whom a complaint is about and how its handling goes, a stall's residue tests. Taken
//! from the decoded event where it arrives (ingest keeps it); in a cluster the dataflow also
//! carries it to worker 0, where the owner of the alerts hears it, whichever process
//! received the message.

use crate::Event;
use serde::{Deserialize, Serialize};

/// One fact, as the stores of `ingest` keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A detection's evidence image.
    Evidence {
        kitchen_id: String,
        camera_id: String,
        kind: String,
        ts: u64,
        snapshot: String,
    },
    /// Whom a complaint is about, where, and what kind.
    Complaint {
        complaint_id: String,
        merchant_id: Option<String>,
        merchant_name: String,
        kind: String,
        place: Option<(f64, f64)>,
        received_ms: u64,
        category: String,
    },
    /// A complaint's status update.
    Status {
        complaint_id: String,
        ts: u64,
        status: String,
        office: Option<String>,
    },
    /// A residue test of a stall's goods (`market/stall/goods`).
    Residue {
        key: String,
        ts: u64,
        inhibition_pct: f64,
        result: String,
    },
}

impl Fact {
    /// The fact an event carries, if any; `received_ms` stands for a missing `ts`.
    pub fn of(event: &Event, received_ms: u64) -> Option<Fact> {
        Some(match event {
            Event::Detection {
                kitchen_id,
                camera_id,
                detection,
            } => Fact::Evidence {
                kitchen_id: kitchen_id.to_string(),
                camera_id: camera_id.to_string(),
                kind: detection.kind.as_str().to_owned(),
                ts: detection.ts.unwrap_or(received_ms),
                snapshot: detection.snapshot.clone()?,
            },
            Event::ComplaintNew { complaint } => Fact::Complaint {
                complaint_id: complaint.complaint_id.to_string(),
                merchant_id: complaint.merchant_id.as_ref().map(|m| m.to_string()),
                merchant_name: complaint.merchant_name.clone(),
                kind: complaint.kind.as_str().to_owned(),
                place: complaint.lat.zip(complaint.lon),
                received_ms: complaint.ts.unwrap_or(received_ms),
                category: complaint.category.to_string(),
            },
            Event::ComplaintStatus {
                complaint_id,
                update,
            } => Fact::Status {
                complaint_id: complaint_id.to_string(),
                ts: update.ts.unwrap_or(received_ms),
                status: update.status.as_str().to_owned(),
                office: update.office.as_ref().map(|o| o.to_string()),
            },
            Event::Residue { market_id, test } => Fact::Residue {
                key: format!("{market_id}/{}/{}", test.stall_id, test.goods_code),
                ts: test.ts.unwrap_or(received_ms),
                inhibition_pct: test.inhibition_pct,
                result: test.outcome().as_str().to_owned(),
            },
            _ => return None,
        })
    }
}
