//! VitalWatch's clinical logic, with no I/O.
//!
//! # Layout
//! - [`telemetry`]: the [`telemetry::Reading`] type and the payload decoder with its hard limits.
//! - [`rules`]: medical ranges, anomaly types and severities (the seed's rule table), plus
//!   SENSOR_FAULT detection and per-patient threshold overrides.
//! - [`news2`]: the NEWS2 early-warning score (RCP 2017): subscores, aggregate, clinical risk.
//! - [`alerting`]: alert episodes per (device, condition) with IEC 60601-1-8 priorities,
//!   onset delay, hysteresis, acknowledgement, audio pause, escalation and device-offline
//!   timers; plus [`alerting::evaluate`], which scores alerts against labelled events.
//! - [`scenario`]: a deterministic generator of labelled vital-sign streams (physiology,
//!   events, sensor faults, dropouts) for evaluating alerting and for simulators.
//! - [`detect`]: the anomaly model: features, scaler, isolation forest, optional random forest,
//!   the model file format, CSV data and synthetic training data.
//!
//! Nothing in this crate reads a clock, a file or a socket: time is passed in as a
//! [`telemetry::Timestamp`], and the caller owns every byte that comes in or goes out.
//! The crate's manifest never lists tokio, SQL, TLS or MQTT crates, so the compiler keeps
//! that promise.

pub mod alerting;
pub mod detect;
pub mod news2;
pub mod rules;
pub mod scenario;
pub mod telemetry;
