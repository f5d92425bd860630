//! The TLS handshake in front of MQTTS and WSS, bounded per listener and per client address
//! (issue 19, finding 8).
//!
//! ntex-tls's own acceptor shares one budget of 256 handshakes per worker between all
//! listeners, waits 5 s for a handshake and, once the budget is used up, stops accepting:
//! a few hundred connections that never send a ClientHello kept legitimate devices waiting
//! for seconds. Here each listener has its own [`HandshakeBudget`]: at most
//! [`MAX_HANDSHAKES`] handshakes in progress, [`MAX_HANDSHAKES_PER_ADDRESS`] from one client
//! address and [`MAX_HANDSHAKES_PER_RANGE`] from its /24 (or /64), each finishing within
//! [`HANDSHAKE_TIMEOUT`]. A connection beyond a bound is closed at once rather than
//! queued, so the listener keeps accepting and a device from elsewhere is not delayed.
//!
//! Also what the transport says about the peer once connected: its certificate and address.

use super::session::PeerCertificate;
use crate::http_listen::{AddressSlot, PerAddress};
use ntex_io::types::PeerAddr;
use ntex_io::{Filter, Io, IoBoxed, Layer};
use ntex_service::{Ctx, Service};
use ntex_tls::rustls::{PeerCert, TlsServerFilter};
use ntex_util::time::Millis;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Handshakes in progress on one listener.
pub const MAX_HANDSHAKES: usize = crate::config::MAX_TLS_HANDSHAKES;
/// Handshakes in progress from one client address, by default (`[mqtt]
/// handshakes_per_address`).
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = crate::config::DEFAULT_HANDSHAKES_PER_ADDRESS;
/// Handshakes in progress from one address range.
pub const MAX_HANDSHAKES_PER_RANGE: usize = 64;
/// How long a client has to finish its handshake (a device's takes tens of milliseconds).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// One listener's handshakes in progress.
pub struct HandshakeBudget {
    in_progress: AtomicUsize,
    max: usize,
    addresses: Arc<PerAddress>,
}

/// A handshake admitted by a [`HandshakeBudget`]; its share is returned on drop.
pub struct Admitted {
    budget: Arc<HandshakeBudget>,
    _slot: Option<AddressSlot>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.budget.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HandshakeBudget {
    pub fn new(max: usize, per_address: usize, per_range: usize) -> Arc<HandshakeBudget> {
        Arc::new(HandshakeBudget {
            in_progress: AtomicUsize::new(0),
            max: max.max(1),
            addresses: PerAddress::new(per_address, per_range),
        })
    }

    /// A listener's budget with `per_address` handshakes from one address (`[mqtt]
    /// handshakes_per_address`; its range allows at least as many).
    pub fn listener(per_address: usize) -> Arc<HandshakeBudget> {
        HandshakeBudget::new(
            MAX_HANDSHAKES,
            per_address,
            MAX_HANDSHAKES_PER_RANGE.max(per_address),
        )
    }

    /// A share for a handshake from `address` (unknown: counted only in the total), or
    /// `None` when a bound is reached.
    pub fn admit(self: &Arc<Self>, address: Option<IpAddr>) -> Option<Admitted> {
        let slot = match address {
            Some(address) => Some(self.addresses.try_acquire(address)?),
            None => None,
        };
        let taken = self.in_progress.fetch_add(1, Ordering::SeqCst);
        let admitted = Admitted {
            budget: Arc::clone(self),
            _slot: slot,
        };
        (taken < self.max).then_some(admitted)
    }

    /// Handshakes in progress.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::SeqCst)
    }
}

/// The TLS acceptor of one listener on one worker: always ready (never stalls the accept
/// loop); a connection beyond its budget is closed before the handshake.
pub struct BoundedTlsAcceptor {
    config: Arc<rustls::ServerConfig>,
    budget: Arc<HandshakeBudget>,
}

impl BoundedTlsAcceptor {
    pub fn new(config: Arc<rustls::ServerConfig>, budget: Arc<HandshakeBudget>) -> Self {
        BoundedTlsAcceptor { config, budget }
    }
}

impl<F: Filter, St> Service<St, Io<F>> for BoundedTlsAcceptor {
    type Res = Io<Layer<TlsServerFilter, F>>;
    type Error = io::Error;

    async fn call(&self, io: Io<F>, _: Ctx<'_, Self, St>) -> Result<Self::Res, Self::Error> {
        let address = io.query::<PeerAddr>().as_ref().map(|peer| peer.0.ip());
        let Some(_admitted) = self.budget.admit(address) else {
            io.terminate();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "TLS handshake budget of the listener or the client address used up",
            ));
        };
        let timeout = Millis(HANDSHAKE_TIMEOUT.as_millis() as u32);
        TlsServerFilter::create(io, Arc::clone(&self.config), timeout).await
    }
}

/// What the TLS layer of `io` says about the client certificate.
pub fn peer_certificate(io: &IoBoxed) -> PeerCertificate {
    let peer = io.query::<PeerCert<'static>>();
    match peer.as_ref() {
        None => PeerCertificate::Missing,
        Some(cert) => match crate::tls::peer_identity(cert.0.as_ref()) {
            Some(identity) => PeerCertificate::Read(identity),
            None => PeerCertificate::Unreadable,
        },
    }
}

/// The client's address, when the transport knows it.
pub fn peer_address(io: &IoBoxed) -> Option<IpAddr> {
    io.query::<PeerAddr>().as_ref().map(|peer| peer.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn handshakes_are_bounded_per_address_range_and_listener_and_returned() {
        let budget = HandshakeBudget::new(6, 2, 4);
        let a: Vec<_> = (0..2).map(|_| budget.admit(ip("10.0.0.1"))).collect();
        assert!(a.iter().all(Option::is_some));
        assert!(budget.admit(ip("10.0.0.1")).is_none(), "per address");
        let b: Vec<_> = (0..2).map(|_| budget.admit(ip("10.0.0.2"))).collect();
        assert!(b.iter().all(Option::is_some));
        assert!(budget.admit(ip("10.0.0.3")).is_none(), "per range");
        let c: Vec<_> = (0..2).map(|_| budget.admit(ip("10.0.1.1"))).collect();
        assert!(c.iter().all(Option::is_some));
        assert!(budget.admit(ip("10.0.2.1")).is_none(), "per listener");
        assert!(budget.admit(None).is_none(), "per listener");
        assert_eq!(budget.in_progress(), 6);
        drop(a);
        assert_eq!(budget.in_progress(), 4);
        assert!(budget.admit(ip("10.0.0.1")).is_some());
        assert!(budget.admit(None).is_some());
    }
}
