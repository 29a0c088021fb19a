//! Benchmarks of citywatch and the synthetic load they run on.
//!
//! Sits beside the data path, not in it: it makes recordings and reference data for a city of
//! a given size, publishes load over MQTT, and holds the criterion micro-benchmarks. The
//! commands and the measured figures are in `docs/BENCHMARKS.md`.
//!
//! # Layout
//! - [`city`]: a deterministic synthetic city (elevator frames and a mix of the other streams).

pub mod city;
