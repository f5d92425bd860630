//! VitalWatch's clinical logic, with no I/O.
//!
//! # Layout
//! - [`telemetry`]: the [`telemetry::Reading`] type and the payload decoder with its hard limits.
//! - [`rules`]: medical ranges, anomaly types and severities (the seed's rule table).
//! - [`detect`]: the anomaly model: features, scaler, isolation forest, optional random forest,
//!   the model file format, CSV data and synthetic training data.
//!
//! Nothing in this crate reads a clock, a file or a socket: time is passed in as a
//! [`telemetry::Timestamp`], and the caller owns every byte that comes in or goes out.
//! The crate's manifest never lists tokio, SQL, TLS or MQTT crates, so the compiler keeps
//! that promise.

pub mod detect;
pub mod rules;
pub mod telemetry;
