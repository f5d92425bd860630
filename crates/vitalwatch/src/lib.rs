//! VitalWatch's service: store, pipeline, API, the server that wires them ([`server`]) and the
//! command line around it ([`commands`]).
//!
//! The clinical logic lives in `vitalwatch-core`; this crate does the I/O. The library form
//! exists so benchmarks and tests can drive the same code in-process; the `vitalwatch`
//! binary (`main.rs`) only parses flags and calls in here.

pub mod alerts;
pub mod api;
pub mod api_error;
pub mod assets;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod events;
pub mod fhir;
pub mod http_listen;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod pki;
pub mod secret;
pub mod server;
pub mod sim;
pub mod store;
#[cfg(test)]
mod testing;
pub mod tls;
