//! The API's and dashboard's listeners: HTTPS (axum-server with our rustls configuration) or,
//! when asked for, plain HTTP (axum::serve), both with bounds on open connections — per
//! listener, per client address and per address range — and on idle ones.
//!
//! Each accepted connection holds a permit of one semaphore and a slot of its address's
//! counters until it closes. Over plain HTTP the listener stops accepting while no permit is
//! free (new connections wait in the kernel's backlog); over HTTPS a connection beyond the
//! limit is closed at once, before its handshake costs anything. A connection over its
//! address's (or range's) share is closed at once on both.
//!
//! A connection with no request in flight for `idle_timeout` is closed, HTTP/2 included
//! (hyper closes idle HTTP/1 connections through its header-read timeout, but has no idle
//! timeout for HTTP/2). Over HTTPS the acceptor gives every request a [`ConnActivity`]
//! extension; [`track_activity`] (a middleware the API installs) counts the request in until
//! its response body ends, so an open live stream is not idle. Over plain HTTP, where there is
//! no acceptor to hook, bytes read count as activity instead.
//!
//! A closed connection lingers (nginx's `lingering_close`): what the client still sends is read
//! and dropped for up to [`LINGER`] or [`LINGER_BYTES`], so a client that was answered early
//! (a 413 while it is still sending its body) reads the answer instead of a reset.
//! Such an early answer over HTTP/1 says `Connection: close` ([`close_when_body_unread`]), so
//! the client does not send its next request down a connection about to close.

use crate::metrics::connections::{Listener, OpenConnection};
use axum::serve::ListenerExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// How long in-flight HTTPS requests may take to finish at shutdown (SSE streams end at once).
const HTTP_DRAIN: Duration = Duration::from_secs(30);
/// How long a closed connection keeps reading (and dropping) what its client still sends.
const LINGER: Duration = Duration::from_secs(5);
/// ... and at most this much of it.
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// The bounds of one listener (from `[http]`).
#[derive(Clone, Debug)]
pub struct ListenLimits {
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one client address, and from one address range
    /// ([`range_of`]).
    pub max_connections_per_address: usize,
    pub max_connections_per_range: usize,
    /// A connection must send a request's headers this soon (and, over HTTP/1.1, the next
    /// request's between requests).
    pub header_read_timeout: Duration,
    /// Over HTTPS, the TLS handshake must finish this soon.
    pub tls_handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 PING interval; a peer that does not answer within `h2_keep_alive_timeout` is
    /// gone, and its connection is closed.
    pub h2_keep_alive_interval: Duration,
    pub h2_keep_alive_timeout: Duration,
}

/// The address range a client address belongs to: its /24 (IPv4) or /64 (IPv6). Limits per
/// range stop a client that owns many addresses of one network (every 127.0.0.0/8 address is
/// this host's) from multiplying its per-address share.
pub fn range_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_bits() & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
            v6.to_bits() & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
        )),
    }
}

/// Counts of something held per client address and per address range (connections,
/// requests, handshakes), each with its own bound.
pub struct PerAddress {
    counts: Mutex<HashMap<(bool, IpAddr), usize>>,
    per_address: usize,
    per_range: usize,
}

/// One held unit of a [`PerAddress`]; released on drop.
pub struct AddressSlot {
    owner: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    pub fn new(per_address: usize, per_range: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            counts: Mutex::new(HashMap::new()),
            per_address: per_address.max(1),
            per_range: per_range.max(1),
        })
    }

    /// A slot for `address`, or `None` when it (or its range) already holds its bound.
    pub fn try_acquire(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let address = address.to_canonical();
        let range = range_of(address);
        let mut counts = self.counts.lock();
        let own = counts.get(&(false, address)).copied().unwrap_or(0);
        let shared = counts.get(&(true, range)).copied().unwrap_or(0);
        if own >= self.per_address || shared >= self.per_range {
            return None;
        }
        *counts.entry((false, address)).or_insert(0) += 1;
        *counts.entry((true, range)).or_insert(0) += 1;
        Some(AddressSlot {
            owner: Arc::clone(self),
            address,
        })
    }

    /// What `address` holds now (tests and metrics).
    pub fn held(&self, address: IpAddr) -> usize {
        let address = address.to_canonical();
        self.counts
            .lock()
            .get(&(false, address))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock();
        for key in [(false, self.address), (true, range_of(self.address))] {
            if let Some(count) = counts.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }
    }
}

/// Whether a connection is busy: the requests it has in flight (until their response bodies
/// end) and when that last changed.
pub struct ConnState {
    active: AtomicUsize,
    last_change: Mutex<Instant>,
}

impl ConnState {
    fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            active: AtomicUsize::new(0),
            last_change: Mutex::new(Instant::now()),
        })
    }

    fn touch(&self) {
        *self.last_change.lock() = Instant::now();
    }

    /// When the connection becomes idle-expired, or `None` while a request is in flight.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        (self.active.load(Ordering::Acquire) == 0).then(|| *self.last_change.lock() + idle)
    }
}

/// The request extension that ties a request to its connection's [`ConnState`].
#[derive(Clone)]
pub struct ConnActivity(Arc<ConnState>);

/// Counted in while the request (and its response body) is in flight.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn new(state: Arc<ConnState>) -> InFlight {
        state.active.fetch_add(1, Ordering::AcqRel);
        state.touch();
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A body passed on unchanged, with what rides along: `guard`, dropped with the body (a
/// response's [`InFlight`]), and `read_to_end`, set once the body has been read to its end (a
/// request's, for [`close_when_body_unread`]).
struct PassedBody<G> {
    inner: axum::body::Body,
    _guard: G,
    read_to_end: Option<Arc<AtomicBool>>,
}

impl<G: Send + Unpin + 'static> http_body::Body for PassedBody<G> {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(flag) = &self.read_to_end
            && (matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream())
        {
            flag.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: counts the request in on its connection (when it has a [`ConnActivity`])
/// until its response body is done, so the idle timeout spares busy connections.
pub async fn track_activity(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(ConnActivity(state)) = request.extensions().get::<ConnActivity>().cloned() else {
        return next.run(request).await;
    };
    let in_flight = InFlight::new(state);
    next.run(request).await.map(|inner| {
        axum::body::Body::new(PassedBody {
            inner,
            _guard: in_flight,
            read_to_end: None,
        })
    })
}

/// Middleware: an HTTP/1 answer given before its request's body was read to the end (a
/// refusal on the head alone: 401, 413, 415, ...) says `Connection: close`. The server reads no
/// further request on that connection, and a client that was not told would reuse it and
/// see its next request fail at the transport.
pub async fn close_when_body_unread(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use http_body::Body as _;
    if request.version() >= axum::http::Version::HTTP_2 || request.body().is_end_stream() {
        return next.run(request).await;
    }
    let read_to_end = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        axum::body::Body::new(PassedBody {
            inner,
            _guard: (),
            read_to_end: Some(Arc::clone(&read_to_end)),
        })
    });
    let mut response = next.run(request).await;
    if !read_to_end.load(Ordering::Acquire) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A connection, the permit and address slot it holds while open, and its idle clock.
pub struct Counted {
    /// `None` once dropped (the socket went to its lingering task).
    stream: Option<TcpStream>,
    permit: Option<OwnedSemaphorePermit>,
    slot: Option<AddressSlot>,
    /// Counts the connection in `vitalwatch_connections_open` until it is gone.
    open: Option<OpenConnection>,
    state: Arc<ConnState>,
    /// Over plain HTTP (no [`ConnActivity`] on requests), bytes read count as activity.
    reads_are_activity: bool,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
}

impl Counted {
    fn new(
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        slot: AddressSlot,
        bounds: &Bounds,
        reads_are_activity: bool,
    ) -> Counted {
        let idle = bounds.idle;
        Counted {
            stream: Some(stream),
            permit: Some(permit),
            slot: Some(slot),
            open: Some(OpenConnection::new(bounds.listener)),
            state: ConnState::new(),
            reads_are_activity,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// `Ready(())` once the connection has been idle for too long; else arms the timer.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let Some(deadline) = self.state.idle_deadline(self.idle) else {
                // Busy: look again after a full idle period.
                let next = Instant::now() + self.idle;
                self.idle_timer.as_mut().reset(next);
                let _ = self.idle_timer.as_mut().poll(cx);
                return Poll::Pending;
            };
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            if self.idle_timer.deadline() != deadline {
                self.idle_timer.as_mut().reset(deadline);
            }
            match self.idle_timer.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(self.stream()?).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) => {
                if self.reads_are_activity && buf.filled().len() > before {
                    self.state.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match self.poll_idle(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_shutdown(cx)
    }
}

impl Drop for Counted {
    /// Closes our side at once and reads what the client still sends for a while, holding the
    /// connection's permit and slot until then (they bound lingering sockets too).
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let held = (self.permit.take(), self.slot.take(), self.open.take());
        runtime.spawn(async move {
            let mut stream = stream;
            let _held = held;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            let mut sink = vec![0u8; 16 * 1024];
            let mut drained = 0;
            let deadline = Instant::now() + LINGER;
            while drained < LINGER_BYTES {
                match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
                    Ok(Ok(n)) if n > 0 => drained += n,
                    _ => break,
                }
            }
        });
    }
}

/// What the listeners share: the connection permits and the per-address counters.
#[derive(Clone)]
struct Bounds {
    permits: Arc<Semaphore>,
    addresses: Arc<PerAddress>,
    idle: Duration,
    /// Which listener this is, for the connection gauge and the TLS failure counter.
    listener: Listener,
}

/// Plain HTTP: accepts only while a permit is free; drops a connection over its address's
/// share.
struct PlainListener {
    listener: TcpListener,
    bounds: Bounds,
}

impl axum::serve::Listener for PlainListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let permit = Arc::clone(&self.bounds.permits)
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed");
            let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            let Some(slot) = self.bounds.addresses.try_acquire(addr.ip()) else {
                drop(stream);
                continue;
            };
            return (Counted::new(stream, permit, slot, &self.bounds, true), addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// HTTPS: takes a permit and an address slot (or closes the connection), sets TCP_NODELAY —
/// a response goes out as several TLS records, and Nagle's algorithm would hold the last one
/// for the client's delayed ACK (~40 ms per request) — and gives the connection's requests
/// their [`ConnActivity`].
#[derive(Clone)]
struct CountingAcceptor {
    bounds: Bounds,
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for CountingAcceptor {
    type Stream = Counted;
    type Service = axum::middleware::AddExtension<S, ConnActivity>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(permit) = Arc::clone(&self.bounds.permits).try_acquire_owned() else {
            return std::future::ready(Err(io::Error::other(OverLimit("too many connections"))));
        };
        let slot = stream
            .peer_addr()
            .ok()
            .and_then(|peer| self.bounds.addresses.try_acquire(peer.ip()));
        let Some(slot) = slot else {
            return std::future::ready(Err(io::Error::other(OverLimit(
                "too many connections from this address",
            ))));
        };
        if let Err(err) = stream.set_nodelay(true) {
            return std::future::ready(Err(err));
        }
        let counted = Counted::new(stream, permit, slot, &self.bounds, false);
        let activity = ConnActivity(Arc::clone(&counted.state));
        let service = tower::Layer::layer(&axum::Extension(activity), service);
        std::future::ready(Ok((counted, service)))
    }
}

/// A connection refused by a bound before its handshake (not a TLS failure).
#[derive(Debug)]
struct OverLimit(&'static str);

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for OverLimit {}

/// Counts the handshakes the TLS acceptor inside it fails, by reason
/// ([`crate::metrics::connections::tls_failed`]); connections refused by a bound are not
/// handshake failures.
#[derive(Clone)]
struct CountTlsFailures<A> {
    inner: A,
    listener: Listener,
}

impl<A, S> axum_server::accept::Accept<TcpStream, S> for CountTlsFailures<A>
where
    A: axum_server::accept::Accept<TcpStream, S>,
    A::Future: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(A::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let accepting = self.inner.accept(stream, service);
        let listener = self.listener;
        Box::pin(async move {
            accepting.await.inspect_err(|err| {
                let over_limit = err.get_ref().is_some_and(|inner| inner.is::<OverLimit>());
                if !over_limit {
                    let reason = crate::metrics::connections::tls_failed(listener, err);
                    tracing::debug!(
                        message = "TLS handshake failed.",
                        event = "tls.handshake_failed",
                        listener = listener.as_str(),
                        reason = reason.as_str(),
                    );
                }
            })
        })
    }
}

/// Serves `app` on `listener` — HTTPS with `tls`, else plaintext — within `limits`, until
/// `shutdown`; then lets in-flight requests finish (their readings are committed before they
/// are answered).
pub async fn serve(
    listener: TcpListener,
    which: Listener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ListenLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let bounds = Bounds {
        permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        addresses: PerAddress::new(
            limits.max_connections_per_address,
            limits.max_connections_per_range,
        ),
        idle: limits.idle_timeout.max(Duration::from_millis(100)),
        listener: which,
    };
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let Some(tls) = tls else {
        // `tap_io` only so that axum's ConnectInfo<SocketAddr> applies to this listener.
        let listener = PlainListener { listener, bounds }.tap_io(|_: &mut Counted| {});
        return axum::serve(listener, service)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopper.graceful_shutdown(Some(HTTP_DRAIN));
    });
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .handshake_timeout(limits.tls_handshake_timeout)
    .acceptor(CountingAcceptor { bounds });
    let acceptor = CountTlsFailures {
        inner: acceptor,
        listener: which,
    };
    let mut server = axum_server::from_tcp(listener.into_std()?)?
        .acceptor(acceptor)
        .handle(handle)
        .first_request_timeout(limits.header_read_timeout);
    // A client that connects, shakes hands and then sends no request (or stops between
    // requests) is dropped, so it cannot sit on a connection permit.
    let builder = server.http_builder();
    builder
        .http1()
        .header_read_timeout(Some(limits.header_read_timeout));
    builder
        .http2()
        .max_concurrent_streams(limits.h2_max_concurrent_streams.max(1))
        .keep_alive_interval(Some(limits.h2_keep_alive_interval))
        .keep_alive_timeout(limits.h2_keep_alive_timeout)
        // Streams a client opens and resets at once (the "rapid reset" attack) are bounded.
        .max_pending_accept_reset_streams(Some(64));
    server.serve(service).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_a_v4_24_and_a_v6_64() {
        let range = |text: &str| range_of(text.parse().unwrap()).to_string();
        assert_eq!(range("10.1.2.3"), "10.1.2.0");
        assert_eq!(range("127.0.0.9"), "127.0.0.0");
        assert_eq!(range("::ffff:10.1.2.3"), "10.1.2.0");
        assert_eq!(range("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
    }

    #[test]
    fn per_address_and_per_range_bounds_hold_and_release() {
        let limits = PerAddress::new(2, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let other: IpAddr = "10.0.1.1".parse().unwrap();
        let first = limits.try_acquire(a).expect("a's first");
        let _second = limits.try_acquire(a).expect("a's second");
        assert!(limits.try_acquire(a).is_none(), "a holds its share");
        let _b1 = limits.try_acquire(b).expect("the range's third");
        assert!(limits.try_acquire(b).is_none(), "the range holds its share");
        assert!(limits.try_acquire(other).is_some(), "another range is free");
        drop(first);
        assert_eq!(limits.held(a), 1);
        assert!(limits.try_acquire(b).is_some(), "a released one");
    }
}
