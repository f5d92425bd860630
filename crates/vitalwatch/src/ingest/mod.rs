//! Getting readings in over MQTT: the embedded broker ([`embedded`]), with device identity from
//! client certificates, or a client of an existing broker ([`external`]). Every reading goes
//! through the same [`crate::pipeline::Pipeline`] as `POST /api/telemetry`.

mod batch;
pub mod connection;
pub mod consumers;
pub mod embedded;
pub mod exchange;
pub mod external;
mod gate;
pub mod handshake;
mod identity;
mod ntex_sink;
mod protocol;
pub mod rate;
pub mod revocation;
pub mod session;
mod status;
pub mod throttle;
mod websocket;

pub use status::BrokerStatus;

use crate::pki::CertsDir;
use std::net::SocketAddr;

/// How the embedded broker runs.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// MQTT over TLS (the seed's port 8883).
    pub mqtts_addr: SocketAddr,
    pub certs: CertsDir,
    /// The telemetry topic devices publish to (the seed's `/iot/health`).
    pub topic: String,
    /// Require a client certificate from our CA at the TLS handshake.
    pub require_certificate: bool,
    /// Largest MQTT packet accepted from a client, in bytes.
    pub max_packet_size: u32,
    /// Unacknowledged QoS 1/2 publishes a client may have in flight (MQTT 5 receive maximum;
    /// ntex applies the same limit to 3.1.1 connections).
    pub max_inflight: u16,
    pub workers: usize,
    /// A plaintext MQTT listener (lab use): devices authenticate with username = device id and
    /// password = the secret `vitalwatch certs secret` issued.
    pub plaintext_addr: Option<SocketAddr>,
    /// On the plaintext listener only: let clients without credentials in (their payload's
    /// device_id is trusted). For a lab bench, never for patients.
    pub allow_anonymous: bool,
    /// MQTT over WebSocket over TLS (the seed's port 8884), for browser clients; same
    /// identity rules as `mqtts_addr`. Off unless given.
    pub wss_addr: Option<SocketAddr>,
    /// Origins besides the WSS listener's own whose browser pages may connect over WSS.
    pub wss_allowed_origins: Vec<String>,
    /// Messages per second one connection may publish before its messages are delayed (and
    /// so acknowledged later): the per-connection rate limit.
    pub max_rate_per_connection: u32,
    /// TLS handshakes in progress from one client address (and at least as many per range).
    pub handshakes_per_address: usize,
    /// Revocations recorded in the store the nodes share (kept up to date by
    /// `revocation::sync`; empty on a single box).
    pub revocations: std::sync::Arc<revocation::SharedRevocations>,
}
