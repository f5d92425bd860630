//! VitalWatch's service: store, pipeline, API and the command-line glue around them.
//!
//! The clinical logic lives in `vitalwatch-core`; this crate does the I/O. The library form
//! exists so benchmarks and tests can drive the same code in-process; the `vitalwatch`
//! binary (`main.rs`) only parses flags and calls in here.

pub mod access_cmd;
pub mod alerts;
pub mod alerts_cmd;
pub mod api;
pub mod audit_cmd;
pub mod auth;
pub mod bench;
pub mod bench_ingest;
pub mod certs_cmd;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod devices_cmd;
pub mod http_listen;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod model_cmd;
pub mod pipeline;
pub mod pki;
pub mod serve;
pub mod sim;
pub mod store;
#[cfg(test)]
mod testing;
pub mod tls;
