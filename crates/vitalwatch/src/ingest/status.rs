//! What `/health` says about MQTT ingest: which mode runs and, for an external broker, whether
//! we are connected, since when, and the last connection error. Written by the ingest side,
//! read by the API; it holds states and error texts only, never payloads.

use parking_lot::Mutex;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// A shared handle; cloning it shares the state.
#[derive(Clone, Debug, Default)]
pub struct BrokerStatus(Arc<Mutex<State>>);

#[derive(Clone, Debug, Default)]
enum State {
    #[default]
    Off,
    Embedded {
        listening: SocketAddr,
    },
    External {
        /// The broker as configured, without credentials (there are none in the URL).
        broker: String,
        connected: bool,
        /// When `connected` last changed (RFC 3339, UTC).
        since: String,
        last_error: Option<String>,
        /// Successful connections since start; more than one means reconnects happened.
        connects: u64,
        /// The broker confirmed our subscription on the current connection.
        subscribed: bool,
    },
}

impl BrokerStatus {
    fn set(&self, update: impl FnOnce(&mut State)) {
        let mut state = self.0.lock();
        update(&mut state);
    }

    pub fn embedded(&self, listening: SocketAddr) {
        self.set(|state| *state = State::Embedded { listening });
    }

    /// External mode, not connected yet.
    pub fn external(&self, broker: &str) {
        let broker = broker.to_owned();
        self.set(|state| {
            *state = State::External {
                broker,
                connected: false,
                since: crate::clock::now_rfc3339_millis(),
                last_error: None,
                connects: 0,
                subscribed: false,
            }
        });
    }

    pub fn connected(&self) {
        self.set(|state| {
            if let State::External {
                connected,
                since,
                connects,
                subscribed,
                ..
            } = state
            {
                if !*connected {
                    *since = crate::clock::now_rfc3339_millis();
                }
                *connected = true;
                *connects += 1;
                *subscribed = false;
            }
        });
    }

    /// The broker granted our subscription.
    pub fn subscribed(&self) {
        self.set(|state| {
            if let State::External { subscribed, .. } = state {
                *subscribed = true;
            }
        });
    }

    pub fn disconnected(&self, error: String) {
        self.set(|state| {
            if let State::External {
                connected,
                since,
                last_error,
                subscribed,
                ..
            } = state
            {
                if *connected {
                    *since = crate::clock::now_rfc3339_millis();
                }
                *connected = false;
                *subscribed = false;
                *last_error = Some(error);
            }
        });
    }

    /// Whether an external broker connection is up (`None` in the other modes).
    pub fn is_connected(&self) -> Option<bool> {
        let state = self.0.lock();
        match &*state {
            State::External { connected, .. } => Some(*connected),
            _ => None,
        }
    }

    /// The `"broker"` object of `/health`.
    pub fn to_json(&self) -> Value {
        let state = self.0.lock().clone();
        match state {
            State::Off => json!({ "mode": "off" }),
            State::Embedded { listening } => {
                json!({ "mode": "embedded", "listening": listening.to_string() })
            }
            State::External {
                broker,
                connected,
                since,
                last_error,
                connects,
                subscribed,
            } => json!({
                "mode": "external",
                "broker": broker,
                "connected": connected,
                "since": since,
                "last_error": last_error,
                "connects": connects,
                "subscribed": subscribed,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_state_tracks_connection_changes() {
        let status = BrokerStatus::default();
        assert_eq!(status.to_json()["mode"], "off");
        status.external("mqtts://broker:8883");
        assert_eq!(status.is_connected(), Some(false));
        status.connected();
        status.subscribed();
        assert_eq!(status.to_json()["subscribed"], true);
        status.disconnected("I/O: connection refused".to_owned());
        let json = status.to_json();
        assert_eq!(json["connected"], false);
        assert_eq!(json["connects"], 1);
        assert_eq!(json["last_error"], "I/O: connection refused");
        assert_eq!(json["subscribed"], false);
        status.connected();
        assert_eq!(status.to_json()["connects"], 2);
        status.embedded("127.0.0.1:8883".parse().unwrap());
        assert_eq!(status.to_json()["listening"], "127.0.0.1:8883");
        assert_eq!(status.is_connected(), None);
    }
}
