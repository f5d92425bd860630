//! The broker's own record of the QoS 1/2 exchanges a client started, and the persistent
//! sessions kept between connections: pure, no ntex type, no clock (the caller passes `now`).
//!
//! ntex-mqtt 9.0 keeps the QoS 2 receiver state itself, but answers several cases against the
//! spec (see docs/MQTT.md, "Library faults"): a PUBREL it holds no state for closes a 3.1.1
//! connection, a DUP resend before PUBREL closes it (3.1.1) or gets PUBACK 0x91 (5.0), and a
//! failure PUBREC never frees its receive-window slot. `protocol.rs` asks [`Inbound`] before
//! a packet reaches the library and answers those cases itself.
//!
//! Must not: hold payloads, read a clock, grow without bound.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Where the broker learnt that a QoS 2 packet id awaits its PUBREL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// On this connection: the library holds the same state and answers the PUBREL.
    Here,
    /// From the saved session of an earlier connection: the library never saw it.
    Saved,
}

/// What to do with an incoming QoS 1/2 PUBLISH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnPublish {
    /// Hand it to the library (and so to the pipeline).
    Process,
    /// A QoS 2 resend after our PUBREC: answer PUBREC again, deliver nothing
    /// (MQTT 3.1.1 section 4.3.3, MQTT 5.0 section 4.3.3).
    Pubrec,
    /// A resend of a publish still being processed: its own acknowledgement answers both.
    Ignore,
}

/// What to do with an incoming PUBREL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnPubrel {
    /// The library holds the state: let it answer PUBCOMP.
    Forward,
    /// A saved session's packet id: answer PUBCOMP (success) ourselves.
    Complete,
    /// No state at all: 3.1.1 answers PUBCOMP all the same (section 4.3.3, "MUST respond to
    /// a PUBREL packet by sending a PUBCOMP"); 5.0 answers PUBCOMP 0x92 (section 3.7.2.1).
    Unknown,
}

/// What follows the acknowledgement of a processed QoS 2 publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterPubrec {
    /// A success PUBREC: wait for the PUBREL.
    AwaitRelease,
    /// A failure PUBREC (5.0, reason >= 0x80) ends the exchange (section 4.3.3): the packet id
    /// is free again, and the library must be told so (it waits for a PUBREL that never comes).
    Released,
}

/// One connection's inbound QoS 1/2 exchanges.
#[derive(Debug, Default)]
pub struct Inbound {
    /// Packet ids of publishes handed to the library whose acknowledgement is not yet sent.
    processing: HashSet<u16>,
    /// QoS 2 packet ids whose (success) PUBREC was sent, awaiting PUBREL.
    awaiting_release: HashMap<u16, Origin>,
}

impl Inbound {
    /// The state of a resumed session: these QoS 2 packet ids await their PUBREL.
    pub fn resume(saved: &[u16]) -> Inbound {
        Inbound {
            processing: HashSet::new(),
            awaiting_release: saved.iter().map(|id| (*id, Origin::Saved)).collect(),
        }
    }

    pub fn on_publish(&mut self, packet_id: u16, qos2: bool) -> OnPublish {
        if self.processing.contains(&packet_id) {
            return OnPublish::Ignore;
        }
        if qos2 && self.awaiting_release.contains_key(&packet_id) {
            return OnPublish::Pubrec;
        }
        // A QoS 1 publish reusing a packet id that awaits PUBREL, or a QoS 2 one reusing a
        // saved id, is the client's error; a fresh id simply starts an exchange.
        self.awaiting_release.remove(&packet_id);
        self.processing.insert(packet_id);
        OnPublish::Process
    }

    /// The library acknowledged a QoS 1 publish (PUBACK): its packet id is free.
    pub fn acknowledged(&mut self, packet_id: u16) {
        self.processing.remove(&packet_id);
    }

    /// The library sent PUBREC for a QoS 2 publish, with a success code or not.
    pub fn pubrec_sent(&mut self, packet_id: u16, success: bool) -> AfterPubrec {
        self.processing.remove(&packet_id);
        if success {
            self.awaiting_release.insert(packet_id, Origin::Here);
            AfterPubrec::AwaitRelease
        } else {
            AfterPubrec::Released
        }
    }

    /// The publish ended without an acknowledgement (the handler failed or was cancelled).
    pub fn abandoned(&mut self, packet_id: u16) {
        self.processing.remove(&packet_id);
    }

    pub fn on_pubrel(&mut self, packet_id: u16) -> OnPubrel {
        match self.awaiting_release.remove(&packet_id) {
            Some(Origin::Here) => OnPubrel::Forward,
            Some(Origin::Saved) => OnPubrel::Complete,
            None => OnPubrel::Unknown,
        }
    }

    /// The QoS 2 packet ids a persistent session keeps: those awaiting PUBREL (a publish
    /// still processing was never acknowledged, so its sender redelivers it anyway).
    pub fn to_save(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.awaiting_release.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// Who a session belongs to: the identity the client proved and the client id it chose, so
/// no client can resume another's session.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub identity: String,
    pub client_id: String,
}

#[derive(Debug)]
struct Saved {
    awaiting_release: Vec<u16>,
    expires: Instant,
}

/// Sessions kept between connections, in memory, each for a bounded time, at most `capacity`
/// of them (the oldest to expire goes first). Lost on restart; documented in docs/MQTT.md.
#[derive(Debug)]
pub struct SavedSessions {
    sessions: HashMap<SessionKey, Saved>,
    capacity: usize,
}

impl SavedSessions {
    pub fn new(capacity: usize) -> SavedSessions {
        SavedSessions {
            sessions: HashMap::new(),
            capacity,
        }
    }

    /// A client connects: with `clean` the old session is discarded; otherwise it is taken
    /// (the connection owns it now). `Some` means session present.
    pub fn take(&mut self, key: &SessionKey, clean: bool, now: Instant) -> Option<Vec<u16>> {
        let saved = self.sessions.remove(key)?;
        if clean || saved.expires <= now {
            return None;
        }
        Some(saved.awaiting_release)
    }

    /// A persistent session's connection ended: keep its state for `expiry`.
    pub fn save(
        &mut self,
        key: SessionKey,
        awaiting_release: Vec<u16>,
        expiry: Duration,
        now: Instant,
    ) {
        if expiry.is_zero() {
            self.sessions.remove(&key);
            return;
        }
        self.sessions.retain(|_, saved| saved.expires > now);
        if self.sessions.len() >= self.capacity && !self.sessions.contains_key(&key) {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, saved)| saved.expires)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        if self.capacity > 0 {
            self.sessions.insert(
                key,
                Saved {
                    awaiting_release,
                    expires: now + expiry,
                },
            );
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qos2_exchange_answers_resends_and_releases_as_the_spec_says() {
        let mut inbound = Inbound::default();
        assert_eq!(inbound.on_publish(7, true), OnPublish::Process);
        // MQTT 4.3.3: a resend while the first is being processed is not delivered twice.
        assert_eq!(inbound.on_publish(7, true), OnPublish::Ignore);
        assert_eq!(inbound.pubrec_sent(7, true), AfterPubrec::AwaitRelease);
        // A DUP resend before PUBREL gets PUBREC again.
        assert_eq!(inbound.on_publish(7, true), OnPublish::Pubrec);
        assert_eq!(inbound.to_save(), vec![7]);
        assert_eq!(inbound.on_pubrel(7), OnPubrel::Forward);
        // The PUBCOMP was lost: the client sends PUBREL again.
        assert_eq!(inbound.on_pubrel(7), OnPubrel::Unknown);
        assert_eq!(inbound.on_publish(7, true), OnPublish::Process);
    }

    #[test]
    fn a_failure_pubrec_frees_the_packet_id() {
        let mut inbound = Inbound::default();
        for id in 1..=40 {
            assert_eq!(inbound.on_publish(id, true), OnPublish::Process);
            assert_eq!(inbound.pubrec_sent(id, false), AfterPubrec::Released);
        }
        assert!(inbound.to_save().is_empty());
        assert_eq!(inbound.on_publish(1, true), OnPublish::Process);
    }

    #[test]
    fn qos1_ids_free_on_puback_and_abandoned_ones_free_too() {
        let mut inbound = Inbound::default();
        assert_eq!(inbound.on_publish(1, false), OnPublish::Process);
        assert_eq!(inbound.on_publish(1, false), OnPublish::Ignore);
        inbound.acknowledged(1);
        assert_eq!(inbound.on_publish(1, false), OnPublish::Process);
        inbound.abandoned(1);
        assert_eq!(inbound.on_publish(1, false), OnPublish::Process);
    }

    #[test]
    fn a_resumed_session_completes_its_saved_exchanges() {
        let mut inbound = Inbound::resume(&[3, 9]);
        assert_eq!(inbound.on_publish(3, true), OnPublish::Pubrec);
        assert_eq!(inbound.on_pubrel(3), OnPubrel::Complete);
        assert_eq!(inbound.on_pubrel(3), OnPubrel::Unknown);
        assert_eq!(inbound.to_save(), vec![9]);
    }

    fn key(client_id: &str) -> SessionKey {
        SessionKey {
            identity: "bed-1".to_owned(),
            client_id: client_id.to_owned(),
        }
    }

    #[test]
    fn saved_sessions_are_present_until_they_expire_or_a_clean_start() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut sessions = SavedSessions::new(2);
        assert_eq!(sessions.take(&key("a"), false, t0), None);
        sessions.save(key("a"), vec![5], minute, t0);
        assert_eq!(sessions.take(&key("a"), false, t0), Some(vec![5]));
        // Taken: the connection owns it now.
        assert_eq!(sessions.take(&key("a"), false, t0), None);
        sessions.save(key("a"), vec![], minute, t0);
        assert_eq!(sessions.take(&key("a"), true, t0), None);
        assert_eq!(sessions.take(&key("a"), false, t0), None);
        sessions.save(key("a"), vec![], minute, t0);
        assert_eq!(sessions.take(&key("a"), false, t0 + minute), None);
        // Another identity with the same client id does not get it.
        sessions.save(key("a"), vec![1], minute, t0);
        let other = SessionKey {
            identity: "bed-2".to_owned(),
            client_id: "a".to_owned(),
        };
        assert_eq!(sessions.take(&other, false, t0), None);
        // Expiry zero keeps nothing.
        sessions.save(key("a"), vec![1], Duration::ZERO, t0);
        assert!(sessions.is_empty());
    }

    #[test]
    fn saved_sessions_are_bounded() {
        let t0 = Instant::now();
        let mut sessions = SavedSessions::new(2);
        sessions.save(key("a"), vec![], Duration::from_secs(10), t0);
        sessions.save(key("b"), vec![], Duration::from_secs(20), t0);
        sessions.save(key("c"), vec![], Duration::from_secs(30), t0);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.take(&key("a"), false, t0), None);
        assert!(sessions.take(&key("c"), false, t0).is_some());
    }
}
