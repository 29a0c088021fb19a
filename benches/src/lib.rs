//! Benchmarks of citywatch.
//!
//! Sits beside the data path, not in it: the criterion micro-benchmarks (`benches/`), the load
//! drivers for the alerts' journal and the InfluxDB sink (`src/bin/`), and `pipeline.sh`, which
//! measures the whole process. Every load of devices comes from the one simulated city of
//! `citywatch simulate` (the `simulators` crate). The commands and the measured figures are in
//! `docs/BENCHMARKS.md`.
