//! VitalWatch's service: store, pipeline, API and the command-line glue around them.
//!
//! The clinical logic lives in `vitalwatch-core`; this crate does the I/O. The library form
//! exists so benchmarks and tests can drive the same code in-process; the `vitalwatch`
//! binary (`main.rs`) only parses flags and calls in here.

pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod devices_cmd;
pub mod metrics;
pub mod pipeline;
pub mod serve;
pub mod store;
