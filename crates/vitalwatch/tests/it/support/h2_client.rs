//! A conforming HTTP/2 client (the `h2` crate over rustls) for the flood tests: connections
//! from a chosen loopback source address, each with as many streams as the test opens.

use axum::body::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// A client TLS configuration trusting `<data_dir>/certs/ca.crt` and offering only `h2`.
pub fn tls_config(data_dir: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(data_dir.join("certs/ca.crt"))
        .expect("reading the server's CA")
    {
        roots.add(cert.expect("a PEM certificate")).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// One HTTP/2 connection: its request handle and the task driving it (it ends when the
/// server closes the connection).
pub struct Connection {
    pub send: h2::client::SendRequest<Bytes>,
    pub driver: tokio::task::JoinHandle<()>,
}

/// Connects from `source` (any loopback address) to `server` and shakes hands (TLS, h2).
pub async fn connect(
    tls: &Arc<rustls::ClientConfig>,
    source: IpAddr,
    server: SocketAddr,
) -> std::io::Result<Connection> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(server).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await?;
    let (send, connection) = h2::client::handshake(stream)
        .await
        .map_err(std::io::Error::other)?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Connection { send, driver })
}

/// A request to `path` on `server` (the :authority is `localhost`).
pub fn request(method: &str, server: SocketAddr, path: &str) -> axum::http::Request<()> {
    axum::http::Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", server.port()))
        .body(())
        .unwrap()
}

/// Sends a bodiless request and returns its status (`None` when the stream failed).
pub async fn status(
    send: &mut h2::client::SendRequest<Bytes>,
    request: axum::http::Request<()>,
) -> Option<u16> {
    let mut send = send.clone().ready().await.ok()?;
    let (response, _) = send.send_request(request, true).ok()?;
    Some(response.await.ok()?.status().as_u16())
}
