//! rustls configuration from the project's PKI: TLS 1.2 and 1.3 only, ring's suites (all
//! AEAD with forward secrecy, within Mozilla's "intermediate" profile), client certificates
//! verified against our CA and its CRL.

use crate::pki::{CertsDir, check_key_permissions};
use anyhow::Context;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::sync::Arc;

/// Whether clients must present a certificate from our CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Devices: a certificate chaining to our CA, not revoked.
    Required,
    /// A certificate is checked when presented; clients without one are let through to a
    /// second check (e.g. username/password at MQTT CONNECT).
    Optional,
    /// Plain server authentication (HTTPS for browsers).
    None,
}

/// Installs ring as the process's crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

pub fn load_key(path: &std::path::Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    check_key_permissions(path)?;
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("reading the key {}", path.display()))
}

/// The CA as a root store (for verifying clients, and for our own TLS clients).
pub fn ca_roots(certs: &CertsDir) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&certs.ca_cert())? {
        roots.add(cert).context("adding the CA to the root store")?;
    }
    Ok(roots)
}

/// The server's TLS configuration, with ALPN `alpn` (empty for none).
pub fn server_config(
    certs: &CertsDir,
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = load_certs(&certs.server_cert())?;
    let key = load_key(&certs.server_key())?;
    let verifier = match client_auth {
        ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::Required | ClientAuth::Optional => {
            let roots = Arc::new(ca_roots(certs)?);
            let crls = if certs.crl().exists() {
                CertificateRevocationListDer::pem_file_iter(certs.crl())
                    .with_context(|| format!("reading {}", certs.crl().display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("parsing {}", certs.crl().display()))?
            } else {
                Vec::new()
            };
            let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .with_crls(crls)
                .only_check_end_entity_revocation();
            if !certs.crl().exists() {
                builder = builder.allow_unknown_revocation_status();
            }
            if client_auth == ClientAuth::Optional {
                builder = builder.allow_unauthenticated();
            }
            builder.build().context("building the client verifier")?
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("selecting TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("loading the server certificate and key")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The identity in a client certificate: subject CN and serial (lower-case hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub common_name: String,
    pub serial: String,
    /// The subject's OU, which says what the certificate is for ("device", "consumer").
    pub unit: Option<String>,
}

pub fn peer_identity(der: &[u8]) -> Option<PeerIdentity> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    let unit = cert
        .subject()
        .iter_organizational_unit()
        .next()
        .and_then(|ou| ou.as_str().ok())
        .map(str::to_owned);
    Some(PeerIdentity {
        common_name,
        serial: hex::encode(cert.raw_serial()),
        unit,
    })
}

/// A TLS client configuration that trusts the CA certificates in `ca` (PEM) and, when given,
/// presents `client` (certificate chain, key) for mutual TLS. Used to reach an external
/// broker and by the ingest benchmark's simulated devices.
pub fn client_config(
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .with_context(|| format!("adding {} to the root store", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("selecting TLS versions")?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .context("loading the client certificate and key")?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
