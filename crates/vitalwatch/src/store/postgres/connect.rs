//! Reaching the database: the connection URL (with the `sslmode`/`sslrootcert` parameters
//! libpq users know, checked here because the driver knows only some), TLS through our
//! ring-based rustls, the pool, and the URL's redacted form for messages.
//!
//! A URL may hold a password: it is parsed here and never printed. [`Target`] is what every
//! message names instead: `user@host:port/db`.

use crate::store::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::path::PathBuf;
use std::time::Duration;

/// How long a new connection may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the connection is protected, as the URL's `sslmode` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tls {
    /// `sslmode=disable` (or none given): plain TCP, for a database on the same host.
    Disable,
    /// `sslmode=verify-full`: TLS, the server's certificate checked against `sslrootcert`
    /// (a PEM file of CA certificates) and its name against the host.
    VerifyFull { ca_file: PathBuf },
}

/// A parsed connection URL: the driver's settings, the TLS mode and the redacted name.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: Tls,
    /// `user@host:port/db`: safe to log (no password, no other parameter).
    pub display: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// Whether `url` names a PostgreSQL database (rather than a SQLite file).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Parses a `postgres://user:password@host:port/db?sslmode=…&sslrootcert=…` URL. Errors
/// never repeat the URL.
pub fn parse(url: &str) -> Result<Target, StoreError> {
    if !is_postgres_url(url) {
        return Err(StoreError::backend(
            "a PostgreSQL URL starts with postgres:// or postgresql://",
        ));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| StoreError::backend("the database URL's parameters do not parse"))?;
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut rest = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => sslrootcert = Some(PathBuf::from(value)),
            _ => rest.push((key, value)),
        }
    }
    let tls = match (sslmode.as_deref(), sslrootcert) {
        (None | Some("disable"), None) => Tls::Disable,
        (None | Some("disable"), Some(_)) => {
            return Err(StoreError::backend(
                "sslrootcert is given but sslmode is not verify-full",
            ));
        }
        (Some("verify-full"), Some(ca_file)) => Tls::VerifyFull { ca_file },
        (Some("verify-full"), None) => {
            return Err(StoreError::backend(
                "sslmode=verify-full needs sslrootcert=<CA certificates (PEM)>",
            ));
        }
        (Some(other), _) => {
            return Err(StoreError::backend(format!(
                "sslmode={other} is not supported: use verify-full (with sslrootcert) or disable"
            )));
        }
    };
    // The driver decodes %XX but not `+`, which form encoding writes for a space (a literal
    // `+` is written %2B): spell spaces %20.
    let rest = serde_urlencoded::to_string(&rest)
        .map_err(|_| StoreError::backend("the database URL's parameters do not encode"))?
        .replace('+', "%20");
    let driver_url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{rest}")
    };
    let mut config: tokio_postgres::Config = driver_url.parse().map_err(|err| {
        // The driver's message names the option, never its value.
        StoreError::backend(format!("the database URL is not valid: {err}"))
    })?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("vitalwatch");
    config.ssl_mode(match tls {
        Tls::Disable => tokio_postgres::config::SslMode::Disable,
        Tls::VerifyFull { .. } => tokio_postgres::config::SslMode::Require,
    });
    let display = display(&config);
    Ok(Target {
        config,
        tls,
        display,
    })
}

/// `user@host:port/db`, from the parsed settings; every host of a multi-host URL
/// (`user@h1:p1,h2:p2/db`), each with its port (the one port given applies to all).
fn display(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            let port = match ports {
                [one] => *one,
                _ => ports.get(i).copied().unwrap_or(5432),
            };
            format!("{name}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        format!("localhost:{}", ports.first().copied().unwrap_or(5432))
    } else {
        hosts.join(",")
    };
    format!(
        "{}@{hosts}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// A pool of at most `size` connections to `target`.
pub fn pool(target: &Target, size: usize) -> Result<Pool, StoreError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &target.tls {
        Tls::Disable => {
            Manager::from_config(target.config.clone(), tokio_postgres::NoTls, manager_config)
        }
        Tls::VerifyFull { ca_file } => Manager::from_config(
            target.config.clone(),
            tokio_postgres_rustls::MakeRustlsConnect::new(client_tls(ca_file)?),
            manager_config,
        ),
    };
    Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(CONNECT_TIMEOUT * 2))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|err| StoreError::backend(format!("building the connection pool: {err}")))
}

/// The client side of TLS to the database: only the CAs in `ca_file`, the host name checked.
pub(super) fn client_tls(ca_file: &std::path::Path) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|err| {
        StoreError::backend(format!("reading sslrootcert {}: {err}", ca_file.display()))
    })?;
    for cert in certs {
        let cert = cert.map_err(|err| {
            StoreError::backend(format!("reading sslrootcert {}: {err}", ca_file.display()))
        })?;
        roots.add(cert).map_err(|err| {
            StoreError::backend(format!("sslrootcert {}: {err}", ca_file.display()))
        })?;
    }
    if roots.is_empty() {
        return Err(StoreError::backend(format!(
            "sslrootcert {} holds no certificate",
            ca_file.display()
        )));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| StoreError::backend(format!("TLS to the database: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_parsed_and_shown_without_its_password() {
        let target = parse("postgres://vw:s3cret-pw@db.example:6432/vitals").unwrap();
        assert_eq!(target.display, "vw@db.example:6432/vitals");
        assert_eq!(target.tls, Tls::Disable);
        assert!(!format!("{target:?}").contains("s3cret"));
        assert_eq!(target.config.get_password(), Some(&b"s3cret-pw"[..]));
    }

    #[test]
    fn a_multi_host_url_tries_each_host_for_the_one_that_takes_writes() {
        use tokio_postgres::config::{Host, TargetSessionAttrs};
        let target = parse(
            "postgres://vw:pw@10.0.0.1:5432,10.0.0.2:5433/vitals?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            target.config.get_hosts(),
            [
                Host::Tcp("10.0.0.1".to_owned()),
                Host::Tcp("10.0.0.2".to_owned())
            ]
        );
        assert_eq!(target.config.get_ports(), [5432, 5433]);
        assert_eq!(
            target.config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(target.display, "vw@10.0.0.1:5432,10.0.0.2:5433/vitals");
        // A host without a port gets the default one (as libpq does).
        let defaults = parse("postgres://vw@db1,db2:6432/v").unwrap();
        assert_eq!(defaults.display, "vw@db1:5432,db2:6432/v");
    }

    #[test]
    fn verify_full_needs_a_ca_file_and_other_modes_are_refused() {
        let target =
            parse("postgresql://vw@db/v?sslmode=verify-full&sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(
            target.tls,
            Tls::VerifyFull {
                ca_file: PathBuf::from("/etc/ca.pem")
            }
        );
        for (url, says) in [
            (
                "postgres://vw@db/v?sslmode=verify-full",
                "needs sslrootcert",
            ),
            ("postgres://vw@db/v?sslmode=require", "not supported"),
            ("postgres://vw@db/v?sslrootcert=/x", "not verify-full"),
            ("mysql://vw@db/v", "starts with postgres://"),
        ] {
            let err = parse(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn other_parameters_reach_the_driver_decoded() {
        let target =
            parse("postgres://vw@db/v?options=-c%20search_path%3Dscratch&sslmode=disable").unwrap();
        assert_eq!(target.config.get_options(), Some("-c search_path=scratch"));
    }

    #[test]
    fn errors_never_repeat_the_password() {
        let err = parse("postgres://vw:hunter2-pw@db/v?connect_timeout=soon")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("not valid"), "{err}");
    }
}
