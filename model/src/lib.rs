//! The typed device contract of citywatch (`shared/contract/CONTRACT.md`, version 1).
//!
//! This crate is the first step of the data path
//! (`ingest → dataflow → alerts → notifications`): it turns an MQTT topic and its raw payload
//! into a typed [`Envelope`], or into a [`Rejection`] that says which message, which field and
//! why. Everything downstream works on these types only.
//!
//! # Layout
//! - [`id`]: id segments (`[A-Za-z0-9_.-]{1,64}`) and the compact string type used for ids.
//! - [`codes`]: the string enums of the contract, including the GB/T 24476 numeric fault codes.
//! - [`event`]: one payload struct per topic, and the [`Event`] enum that joins them.
//! - [`facts`]: what the alerts want to know of an event beyond it ([`Fact`]).
//! - [`topic`]: parsing and building topics under the configurable prefix.
//! - [`decode`]: [`Decoder`], the fast typed path and the precise error path.
//! - [`error`]: [`Rejection`] and its [`Reason`] codes.
//! - [`recording`]: the JSON Lines recording format used for replay, tests and benchmarks.
//! - [`time`]: `ts` parsing (epoch milliseconds or RFC 3339) and the local calendar day.

pub mod codes;
pub mod decode;
pub mod error;
pub mod event;
pub mod facts;
pub mod id;
pub mod recording;
pub mod seen;
pub mod time;
pub mod topic;

pub use codes::{
    ComplaintKind, ComplaintStatus, DetectionKind, Direction, Door, FaultCode, ResidueResult,
    ServiceMode,
};
pub use decode::{Decoder, DecoderConfig, Envelope, Ingested};
pub use error::{Reason, Rejection};
pub use event::{Event, Stream};
pub use facts::Fact;
pub use id::Id;
