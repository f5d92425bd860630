//! The API's and dashboard's listeners: HTTPS (axum-server with our rustls configuration) or,
//! when asked for, plain HTTP (axum::serve), both with a bound on open connections.
//!
//! Each accepted connection holds a permit of one semaphore until it closes. Over plain HTTP
//! the listener stops accepting while none is free (new connections wait in the kernel's
//! backlog); over HTTPS a connection beyond the limit is closed at once, before its
//! handshake costs anything.

use axum::serve::ListenerExt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long in-flight HTTPS requests may take to finish at shutdown (SSE streams end at once).
const HTTP_DRAIN: Duration = Duration::from_secs(30);

/// A connection and the permit it holds while open.
pub struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Plain HTTP: accepts only while a permit is free.
struct PlainListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for PlainListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        (
            Counted {
                stream,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// HTTPS: takes a permit (or closes the connection) and sets TCP_NODELAY — a response goes
/// out as several TLS records, and Nagle's algorithm would hold the last one for the
/// client's delayed ACK (~40 ms per request).
#[derive(Clone)]
struct CountingAcceptor {
    permits: Arc<Semaphore>,
}

impl<S: Send + 'static> axum_server::accept::Accept<TcpStream, S> for CountingAcceptor {
    type Stream = Counted;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Counted, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return std::future::ready(Err(io::Error::other("too many connections")));
        };
        std::future::ready(stream.set_nodelay(true).map(|()| {
            (
                Counted {
                    stream,
                    _permit: permit,
                },
                service,
            )
        }))
    }
}

/// Serves `app` on `listener` — HTTPS with `tls`, else plaintext — with at most
/// `max_connections` open (over HTTPS, each must send a request's headers within
/// `header_read_timeout`), until `shutdown`; then lets in-flight requests finish (their
/// readings are committed before they are answered).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let Some(tls) = tls else {
        // `tap_io` only so that axum's ConnectInfo<SocketAddr> applies to this listener.
        let listener = PlainListener { listener, permits }.tap_io(|_: &mut Counted| {});
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
    .acceptor(CountingAcceptor { permits });
    let mut server = axum_server::from_tcp(listener.into_std()?)?
        .acceptor(acceptor)
        .handle(handle)
        .first_request_timeout(header_read_timeout);
    // A client that connects, shakes hands and then sends no request (or stops between
    // requests) is dropped, so it cannot sit on a connection permit.
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(header_read_timeout));
    server.serve(service).await
}
