//! Connections by listener, connected devices, failed TLS handshakes by reason and webhook
//! deliveries by outcome: gauges and counters of the `metrics` facade, recorded where the
//! work happens and rendered by [`super::prometheus`].
//!
//! A gauge moves through a guard ([`OpenConnection`], [`ConnectedDevice`]) that adds one when
//! made and takes it back when dropped, so no exit path can leave a connection counted. Every
//! label is a fixed name from the enums below: never an address, a device id or a message.

/// The listener a connection came in on: the `listener` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// MQTT over TLS (8883).
    Mqtts,
    /// Plaintext MQTT (lab use).
    Mqtt,
    /// MQTT over WebSocket over TLS.
    Wss,
    /// The REST API (HTTPS, or HTTP on loopback).
    Api,
    /// The dashboard's listener.
    Dashboard,
}

impl Listener {
    pub const ALL: [Listener; 5] = [
        Listener::Mqtts,
        Listener::Mqtt,
        Listener::Wss,
        Listener::Api,
        Listener::Dashboard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Mqtts => "mqtts",
            Listener::Mqtt => "mqtt",
            Listener::Wss => "wss",
            Listener::Api => "api",
            Listener::Dashboard => "dashboard",
        }
    }
}

/// Open connections by listener.
pub const CONNECTIONS_OPEN: &str = "vitalwatch_connections_open";
/// MQTT connections whose CONNECT was accepted for a device identity.
pub const DEVICES_CONNECTED: &str = "vitalwatch_devices_connected";
/// TLS handshakes that failed, by listener and reason.
pub const TLS_HANDSHAKE_FAILURES: &str = "vitalwatch_tls_handshake_failures_total";
/// Webhook notifications by final outcome.
pub const WEBHOOK_DELIVERIES: &str = "vitalwatch_webhook_deliveries_total";
/// Webhook POSTs this node made (every attempt, retries included; no labels).
pub const WEBHOOK_ATTEMPTS: &str = "vitalwatch_webhook_attempts_total";

/// One open connection, counted while this lives.
#[must_use = "the connection is counted only while the guard lives"]
#[derive(Debug)]
pub struct OpenConnection {
    listener: Listener,
    /// This connection's number, unique in the process (its log lines' `conn`).
    id: u64,
}

/// The next connection's number.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl OpenConnection {
    pub fn new(listener: Listener) -> OpenConnection {
        ::metrics::gauge!(CONNECTIONS_OPEN, "listener" => listener.as_str()).increment(1.0);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenConnection { listener, id }
    }

    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        ::metrics::gauge!(CONNECTIONS_OPEN, "listener" => self.listener.as_str()).decrement(1.0);
    }
}

/// One connected device (an accepted MQTT CONNECT with a device identity), counted while
/// this lives.
#[must_use = "the device is counted only while the guard lives"]
#[derive(Debug)]
pub struct ConnectedDevice(());

impl ConnectedDevice {
    pub fn start() -> ConnectedDevice {
        ::metrics::gauge!(DEVICES_CONNECTED).increment(1.0);
        ConnectedDevice(())
    }
}

impl Drop for ConnectedDevice {
    fn drop(&mut self) {
        ::metrics::gauge!(DEVICES_CONNECTED).decrement(1.0);
    }
}

/// Why a TLS handshake failed: a fixed set, the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The client presented no certificate where one is required.
    NoClientCert,
    /// The client's certificate is not signed by our CA (or the client refused ours).
    UnknownCa,
    /// The client's certificate is expired or not valid yet.
    Expired,
    /// The client's certificate is revoked.
    Revoked,
    /// The client spoke plaintext (MQTT or HTTP) to a TLS port.
    Plaintext,
    /// The handshake did not finish in time.
    Timeout,
    /// Anything else (a closed socket, an incompatible client, a protocol error).
    Other,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 7] = [
        TlsFailure::NoClientCert,
        TlsFailure::UnknownCa,
        TlsFailure::Expired,
        TlsFailure::Revoked,
        TlsFailure::Plaintext,
        TlsFailure::Timeout,
        TlsFailure::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::NoClientCert => "no_client_cert",
            TlsFailure::UnknownCa => "unknown_ca",
            TlsFailure::Expired => "expired",
            TlsFailure::Revoked => "revoked",
            TlsFailure::Plaintext => "plaintext",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Other => "other",
        }
    }

    /// The reason of a handshake's I/O error: rustls's error inside it, or the error's kind.
    /// axum-server (the HTTPS listeners) keeps rustls's error; ntex-tls 4 (the MQTT listeners)
    /// reports every failed handshake as "disconnected", so there only `timeout` and `other`
    /// can be told apart.
    pub fn classify(err: &std::io::Error) -> TlsFailure {
        if err.kind() == std::io::ErrorKind::TimedOut {
            return TlsFailure::Timeout;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|e| {
            let e: &(dyn std::error::Error + 'static) = e;
            e
        });
        while let Some(inner) = source {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return TlsFailure::of_rustls(tls);
            }
            // An `io::Error`'s `source()` skips the error it wraps: look inside it instead.
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return TlsFailure::Timeout;
                }
                source = io.get_ref().map(|e| {
                    let e: &(dyn std::error::Error + 'static) = e;
                    e
                });
                continue;
            }
            source = inner.source();
        }
        TlsFailure::Other
    }

    fn of_rustls(err: &rustls::Error) -> TlsFailure {
        use rustls::{AlertDescription, CertificateError, Error, InvalidMessage};
        match err {
            Error::NoCertificatesPresented => TlsFailure::NoClientCert,
            Error::InvalidCertificate(cert) => match cert {
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
                CertificateError::Revoked => TlsFailure::Revoked,
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsFailure::UnknownCa
                }
                _ => TlsFailure::Other,
            },
            Error::AlertReceived(
                AlertDescription::UnknownCA | AlertDescription::BadCertificate,
            ) => TlsFailure::UnknownCa,
            Error::AlertReceived(AlertDescription::CertificateExpired) => TlsFailure::Expired,
            Error::AlertReceived(AlertDescription::CertificateRevoked) => TlsFailure::Revoked,
            Error::InvalidMessage(InvalidMessage::InvalidContentType)
            | Error::InvalidMessage(InvalidMessage::UnknownProtocolVersion) => {
                TlsFailure::Plaintext
            }
            _ => TlsFailure::Other,
        }
    }
}

/// Counts one failed TLS handshake on `listener`; returns its reason.
pub fn tls_failed(listener: Listener, err: &std::io::Error) -> TlsFailure {
    let reason = TlsFailure::classify(err);
    ::metrics::counter!(
        TLS_HANDSHAKE_FAILURES,
        "listener" => listener.as_str(),
        "reason" => reason.as_str()
    )
    .increment(1);
    reason
}

/// What became of one webhook notification: the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed (refused, unreachable), or the server stopped first.
    Failed,
    /// The delivery queue was full: never attempted, recorded as failed.
    Dropped,
}

impl WebhookOutcome {
    pub const ALL: [WebhookOutcome; 3] = [
        WebhookOutcome::Delivered,
        WebhookOutcome::Failed,
        WebhookOutcome::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Delivered => "delivered",
            WebhookOutcome::Failed => "failed",
            WebhookOutcome::Dropped => "dropped",
        }
    }
}

/// Counts one webhook notification's final outcome.
pub fn webhook_delivery(outcome: WebhookOutcome) {
    ::metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome.as_str()).increment(1);
}

/// Counts one webhook POST attempt.
pub fn webhook_attempt() {
    ::metrics::counter!(WEBHOOK_ATTEMPTS).increment(1);
}

/// Makes every series of this module exist from the first scrape (at zero).
pub(super) fn register_zeros() {
    for listener in Listener::ALL {
        ::metrics::gauge!(CONNECTIONS_OPEN, "listener" => listener.as_str()).increment(0.0);
        for reason in TlsFailure::ALL {
            if matches!(listener, Listener::Mqtt) {
                continue; // No TLS on the plaintext listener.
            }
            ::metrics::counter!(
                TLS_HANDSHAKE_FAILURES,
                "listener" => listener.as_str(),
                "reason" => reason.as_str()
            )
            .increment(0);
        }
    }
    ::metrics::gauge!(DEVICES_CONNECTED).increment(0.0);
    for outcome in WebhookOutcome::ALL {
        ::metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome.as_str()).increment(0);
    }
    ::metrics::counter!(WEBHOOK_ATTEMPTS).increment(0);
}

pub(super) fn describe() {
    use ::metrics::{describe_counter, describe_gauge};
    describe_gauge!(CONNECTIONS_OPEN, "Open connections, by listener.");
    describe_gauge!(
        DEVICES_CONNECTED,
        "MQTT connections accepted for a device identity (connected devices)."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed, by listener and reason."
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook notifications by final outcome (delivered, failed, dropped)."
    );
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook POSTs this node made, retries included (on PostgreSQL: the leader only)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn check(err: io::Error, expected: TlsFailure) {
        assert_eq!(TlsFailure::classify(&err), expected, "{err:?}");
    }

    fn tls(err: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn handshake_errors_are_classified_into_the_fixed_set() {
        use rustls::{CertificateError, Error, InvalidMessage};
        check(
            tls(Error::NoCertificatesPresented),
            TlsFailure::NoClientCert,
        );
        check(
            tls(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            TlsFailure::UnknownCa,
        );
        check(
            tls(Error::InvalidCertificate(CertificateError::Expired)),
            TlsFailure::Expired,
        );
        check(
            tls(Error::InvalidCertificate(CertificateError::Revoked)),
            TlsFailure::Revoked,
        );
        check(
            tls(Error::InvalidMessage(InvalidMessage::InvalidContentType)),
            TlsFailure::Plaintext,
        );
        check(
            io::Error::new(io::ErrorKind::TimedOut, "handshake timeout"),
            TlsFailure::Timeout,
        );
        check(
            io::Error::new(io::ErrorKind::UnexpectedEof, "closed"),
            TlsFailure::Other,
        );
        // Wrapped once more (as ntex and axum-server may do), still found.
        check(
            io::Error::other(tls(Error::NoCertificatesPresented)),
            TlsFailure::NoClientCert,
        );
    }

    #[test]
    fn labels_are_distinct_fixed_names() {
        let mut names: Vec<&str> = TlsFailure::ALL.iter().map(|r| r.as_str()).collect();
        names.extend(Listener::ALL.iter().map(|l| l.as_str()));
        names.extend(WebhookOutcome::ALL.iter().map(|o| o.as_str()));
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }
}
