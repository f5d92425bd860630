//! What the broker keeps about MQTT connections beyond one packet: the live connections (so a
//! reconnect with the same client id takes the session over, and a revoked identity can be
//! disconnected), the persistent sessions between connections, and each connection's will.
//!
//! One [`Connections`] is shared by every worker and listener; each connection owns an
//! [`Rc<Connection>`] whose `Drop` is the one place a connection ends: it saves a persistent
//! session and, unless the client said a clean DISCONNECT (or the broker is stopping),
//! publishes the will (a technical event for the device: DEVICE_OFFLINE at once, and
//! `vitalwatch/wills/<device_id>` for consumers).
//!
//! No ntex type here (`embedded.rs` closes the connection when [`Connection::kicked`] fires).
//! Must not: log payloads, keep anything without a bound.

use super::exchange::{Inbound, SavedSessions, SessionKey};
use crate::events::{Event, WillMessage};
use crate::pipeline::Pipeline;
use parking_lot::Mutex;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use vitalwatch_core::telemetry::DeviceId;

/// How long a persistent session is kept after its connection ends: 3.1.1 has no expiry field,
/// and a 5.0 client asking for longer is told this in CONNACK (Session Expiry Interval).
pub const MAX_SESSION_EXPIRY: Duration = Duration::from_secs(3600);
/// Persistent sessions kept at once; past this the one closest to expiry goes.
pub const MAX_SAVED_SESSIONS: usize = 10_000;

/// The broker-wide record of connections and sessions.
pub struct Connections {
    pipeline: Arc<Pipeline>,
    saved: Mutex<SavedSessions>,
    live: Mutex<HashMap<u64, Live>>,
    next_id: AtomicU64,
    /// Set when the broker stops: connections it ends then fire no will, and publishes that
    /// arrive from then on are not taken (their devices send them again elsewhere).
    stopping: AtomicBool,
    /// Publishes being handled (taken before `stopping` was set): the stop waits for them to
    /// be committed and acknowledged before it closes the connections.
    in_flight: AtomicUsize,
}

/// A publish being handled; see [`Connections::begin_publish`].
pub struct InFlight(Arc<Connections>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Live {
    key: SessionKey,
    kick: Arc<Notify>,
}

/// What a connection is opened with, once its CONNECT is accepted.
pub struct Opening {
    pub key: SessionKey,
    /// The device whose will this is (none for consumers and anonymous clients).
    pub device_id: Option<DeviceId>,
    /// CleanSession (3.1.1) / Clean Start (5.0).
    pub clean: bool,
    /// How long to keep the session after the connection ends (zero: not persistent).
    pub expiry: Duration,
    /// The will's payload, already accepted under the topic policy.
    pub will: Option<Vec<u8>>,
}

impl Connections {
    pub fn new(pipeline: Arc<Pipeline>) -> Arc<Connections> {
        Arc::new(Connections {
            pipeline,
            saved: Mutex::new(SavedSessions::new(MAX_SAVED_SESSIONS)),
            live: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Counts a publish in, or `None` once the broker is stopping (the caller must then not
    /// handle it: nothing is stored and no acknowledgement is sent).
    pub fn begin_publish(self: &Arc<Self>) -> Option<InFlight> {
        // Counted before the check: a stop that sets `stopping` and then reads the count sees
        // every publish that saw `stopping` unset (both SeqCst).
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(Arc::clone(self));
        (!self.stopping.load(Ordering::SeqCst)).then_some(guard)
    }

    /// Publishes being handled now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Tells every live connection to close (the broker is stopping; no will fires).
    pub fn close_all(&self) -> usize {
        let live = self.live.lock();
        for other in live.values() {
            other.kick.notify_one();
        }
        live.len()
    }

    /// Opens a connection: resumes its saved session unless `clean`, and takes over (closes)
    /// a live connection with the same identity and client id (MQTT 3.1.1 and 5.0 section
    /// 3.1.4). Returns the connection and whether a session was present.
    pub fn open(self: &Arc<Self>, opening: Opening) -> (Rc<Connection>, bool) {
        let resumed = self
            .saved
            .lock()
            .take(&opening.key, opening.clean, Instant::now());
        let session_present = resumed.is_some();
        let inbound = Inbound::resume(resumed.as_deref().unwrap_or_default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kick = Arc::new(Notify::new());
        {
            let mut live = self.live.lock();
            for other in live.values().filter(|other| other.key == opening.key) {
                tracing::debug!(
                    event = "mqtt.session_taken_over",
                    message = "MQTT session taken over by a new connection."
                );
                other.kick.notify_one();
            }
            live.insert(
                id,
                Live {
                    key: opening.key.clone(),
                    kick: Arc::clone(&kick),
                },
            );
        }
        let connection = Connection {
            connections: Arc::clone(self),
            _device: opening
                .device_id
                .is_some()
                .then(crate::metrics::connections::ConnectedDevice::start),
            id,
            key: opening.key,
            device_id: opening.device_id,
            expiry: Cell::new(opening.expiry),
            inbound: RefCell::new(inbound),
            will: RefCell::new(opening.will),
            end: Cell::new(EndReason::ConnectionLost),
            kick,
        };
        (Rc::new(connection), session_present)
    }

    /// Closes every live connection of `identity` (a device id or consumer name), e.g. once its
    /// certificate is revoked; returns how many were told to close.
    pub fn disconnect_identity(&self, identity: &str) -> usize {
        let live = self.live.lock();
        let mut n = 0;
        for other in live.values().filter(|other| other.key.identity == identity) {
            other.kick.notify_one();
            n += 1;
        }
        n
    }

    /// The broker is stopping: connections ending from now on fire no will.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Persistent sessions currently saved.
    pub fn saved_sessions(&self) -> usize {
        self.saved.lock().len()
    }
}

/// Why a connection ended, as far as the will is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The network connection closed without a DISCONNECT (or an I/O error).
    ConnectionLost,
    /// No packet within 1.5 times the keep-alive.
    KeepAliveTimeout,
    /// The broker closed it for a protocol error.
    ProtocolError,
    /// The broker closed it (a refused publish in 3.1.1, an uncommitted reading, a takeover).
    ClosedByBroker,
    /// A DISCONNECT: the will is discarded (MQTT 3.1.1 section 3.14.4, 5.0 section 3.1.2.5),
    /// unless 5.0 reason 0x04 asked for it.
    Disconnected,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ConnectionLost => "connection_lost",
            EndReason::KeepAliveTimeout => "keep_alive_timeout",
            EndReason::ProtocolError => "protocol_error",
            EndReason::ClosedByBroker => "closed_by_broker",
            EndReason::Disconnected => "disconnected",
        }
    }
}

/// One live connection.
pub struct Connection {
    connections: Arc<Connections>,
    /// Counts a device's connection in `vitalwatch_devices_connected` while it lives.
    _device: Option<crate::metrics::connections::ConnectedDevice>,
    id: u64,
    key: SessionKey,
    device_id: Option<DeviceId>,
    /// Zero once the session is not to be kept (5.0 DISCONNECT with expiry 0).
    expiry: Cell<Duration>,
    inbound: RefCell<Inbound>,
    will: RefCell<Option<Vec<u8>>>,
    end: Cell<EndReason>,
    kick: Arc<Notify>,
}

impl Connection {
    /// The connection's QoS 1/2 exchanges.
    pub fn inbound(&self) -> std::cell::RefMut<'_, Inbound> {
        self.inbound.borrow_mut()
    }

    /// Resolves when another connection took the session over or the identity was
    /// disconnected: the caller closes this connection.
    pub fn kicked(&self) -> Arc<Notify> {
        Arc::clone(&self.kick)
    }

    /// The client sent DISCONNECT; `keep_will` for 5.0 reason 0x04 (Disconnect with Will
    /// Message), `session_expiry` when its DISCONNECT set one.
    pub fn disconnected(&self, keep_will: bool, session_expiry: Option<Duration>) {
        if !keep_will {
            self.will.borrow_mut().take();
            self.end.set(EndReason::Disconnected);
        }
        if let Some(expiry) = session_expiry {
            self.expiry.set(expiry.min(MAX_SESSION_EXPIRY));
        }
    }

    /// Records why the broker or the network ended the connection (for the will's event).
    pub fn ended(&self, reason: EndReason) {
        if self.end.get() != EndReason::Disconnected {
            self.end.set(reason);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let connections = &self.connections;
        connections.live.lock().remove(&self.id);
        // Wake the task that waits for a kick, so that it ends.
        self.kick.notify_one();
        let expiry = self.expiry.get();
        if !expiry.is_zero() {
            let ids = self.inbound.borrow().to_save();
            tracing::debug!(
                event = "mqtt.session_saved",
                message = "MQTT session saved.",
                awaiting_release = ids.len(),
                expiry_s = expiry.as_secs()
            );
            connections
                .saved
                .lock()
                .save(self.key.clone(), ids, expiry, Instant::now());
        }
        let will = self.will.borrow_mut().take();
        let (Some(message), Some(device_id)) = (will, self.device_id.clone()) else {
            return;
        };
        if connections.stopping.load(Ordering::SeqCst) {
            return;
        }
        let reason = self.end.get().as_str();
        tracing::info!(event = "mqtt.will_published",
            message = "MQTT will published: the device's connection ended abruptly.",
            %device_id,
            reason
        );
        let pipeline = Arc::clone(&connections.pipeline);
        let will = WillMessage {
            device_id: device_id.as_str().to_owned(),
            message: String::from_utf8_lossy(&message).into_owned(),
            reason: reason.into(),
            at: crate::clock::now().to_rfc3339(),
        };
        tokio::spawn(async move {
            pipeline.alerts().device_lost(&device_id).await;
            pipeline.events().publish(Event::Will(will));
        });
    }
}
