//! VitalWatch's service: store, pipeline, API and the command-line glue around them.
//!
//! The clinical logic lives in `vitalwatch-core`; this crate does the I/O. The library form
//! exists so benchmarks and tests can drive the same code in-process; the `vitalwatch`
//! binary (`main.rs`) only parses flags and calls in here.

pub mod access_cmd;
pub mod alerts;
pub mod alerts_cmd;
pub mod api;
pub mod api_error;
pub mod assets;
pub mod audit_cmd;
pub mod auth;
pub mod bench;
pub mod bench_ingest;
pub mod certs_cmd;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod devices_cmd;
pub mod events;
pub mod http_listen;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod model_cmd;
pub mod pipeline;
pub mod pki;
pub mod secret;
pub mod serve;
pub mod sim;
pub mod store;
pub mod tls;
