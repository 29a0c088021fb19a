//! A deterministic simulated district: the devices of the contract, with injected incidents
//! and their ground truth.
//!
//! Beside the data path: it produces what devices would send (`topic`, JSON payload) second by
//! second, for the demo, load and accuracy tests. Everything follows from a seed: the same
//! seed and district give the same messages, and a run can be resumed at any second.
//!
//! # Layout
//! - [`rng`]: a small seeded generator (SplitMix64).
//! - [`city`]: a city of a chosen size: reference files and the matching district.
//! - [`district`]: the devices to simulate (from reference data).
//! - [`sim`]: the simulator: elevator trips, kitchens, markets, complaints, incidents.

pub mod city;
pub mod district;
pub mod rng;
pub mod sim;

pub use district::District;
pub use sim::{Incident, Message, Simulator};
