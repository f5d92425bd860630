//! The project's own PKI: a CA, the server certificate, per-device client certificates and a
//! certificate revocation list, as PEM files named like the seed's (`ca.crt`, `server.crt`,
//! `server.key`).
//!
//! Layout of a certs directory:
//! ```text
//! ca.crt ca.key            the CA (ECDSA P-256); ca.key is 0600
//! server.crt server.key    TLS server identity; SANs localhost, 127.0.0.1, ::1, host name, --san
//! ca.crl                   revoked device certificates, signed by the CA
//! devices/ID.crt ID.key    one client certificate per device, subject CN = device id
//! devices/index.json       what was issued: serial, validity, revocation
//! ```
//! Certificates carry basicConstraints, keyUsage, extKeyUsage and SANs so strict validators
//! accept them. Nothing here shells out to openssl.

use crate::clock;
use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

const CA_DAYS: i64 = 3650;
/// Mozilla's "intermediate" TLS profile (v5.7) allows server certificates of at most 366 days;
/// sslyze checks it (tests/it/tls_scan.rs).
const SERVER_DAYS: i64 = 365;
const DEVICE_DAYS: i64 = 730;
const CRL_DAYS: i64 = 365;

/// Paths of one certs directory.
#[derive(Clone, Debug)]
pub struct CertsDir {
    pub dir: PathBuf,
}

impl CertsDir {
    pub fn new(dir: impl Into<PathBuf>) -> CertsDir {
        CertsDir { dir: dir.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    pub fn crl(&self) -> PathBuf {
        self.dir.join("ca.crl")
    }

    pub fn devices(&self) -> PathBuf {
        self.dir.join("devices")
    }

    pub fn device_cert(&self, id: &str) -> PathBuf {
        self.devices().join(format!("{id}.crt"))
    }

    pub fn device_key(&self, id: &str) -> PathBuf {
        self.devices().join(format!("{id}.key"))
    }

    pub fn index(&self) -> PathBuf {
        self.devices().join("index.json")
    }

    pub fn is_initialised(&self) -> bool {
        self.ca_cert().exists() && self.ca_key().exists()
    }
}

/// One issued device certificate, as recorded in `devices/index.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IssuedCert {
    pub device_id: String,
    /// Lower-case hex of the serial number, as x509 tools print it without colons.
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub revoked_at: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct Index {
    certs: Vec<IssuedCert>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte, so its hex spelling is stable
    SerialNumber::from_slice(&bytes)
}

fn serial_hex(serial: &SerialNumber) -> String {
    hex::encode(serial.to_bytes())
}

/// Writes `contents` to `path` with `mode` from the start (no window with wider permissions).
pub fn write_private(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(mode);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()?;
    Ok(())
}

fn create_dir_private(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn host_name() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = raw.trim().to_owned();
    (!name.is_empty() && name != "localhost").then_some(name)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "VitalWatch device CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "VitalWatch");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

/// What `certs init` wrote.
#[derive(Debug)]
pub struct InitReport {
    pub files: Vec<PathBuf>,
    pub sans: Vec<String>,
}

/// Creates the CA, the server certificate and an empty CRL. Refuses to overwrite existing
/// files unless `force`.
pub fn init(certs: &CertsDir, extra_sans: &[String], force: bool) -> anyhow::Result<InitReport> {
    let existing: Vec<PathBuf> = [
        certs.ca_cert(),
        certs.ca_key(),
        certs.server_cert(),
        certs.server_key(),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect();
    if !existing.is_empty() && !force {
        bail!(
            "{} already exists; refusing to overwrite (use --force to replace the CA and server certificate, \
             which invalidates every device certificate issued so far)",
            existing[0].display()
        );
    }
    create_dir_private(&certs.dir)?;
    create_dir_private(&certs.devices())?;

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut params = ca_params();
    params.not_before = clock::now_offset() - Duration::minutes(5);
    params.not_after = clock::now_offset() + Duration::days(CA_DAYS);
    params.serial_number = Some(random_serial());
    let ca_cert = params.self_signed(&ca_key).context("signing the CA")?;
    write_private(&certs.ca_key(), &ca_key.serialize_pem(), 0o600)?;
    write_private(&certs.ca_cert(), &ca_cert.pem(), 0o644)?;
    let issuer = Issuer::new(params, ca_key);

    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    sans.extend(host_name());
    for san in extra_sans {
        if !sans.contains(san) {
            sans.push(san.clone());
        }
    }
    let server_key = KeyPair::generate().context("generating the server key")?;
    let mut server = CertificateParams::new(sans.clone()).context("server SANs")?;
    server.distinguished_name = DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, "VitalWatch server");
    server.not_before = clock::now_offset() - Duration::minutes(5);
    server.not_after = clock::now_offset() + Duration::days(SERVER_DAYS);
    server.serial_number = Some(random_serial());
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .context("signing the server certificate")?;
    write_private(&certs.server_key(), &server_key.serialize_pem(), 0o600)?;
    write_private(&certs.server_cert(), &server_cert.pem(), 0o644)?;

    if force {
        let _ = std::fs::remove_file(certs.index());
    }
    write_crl(certs, &issuer, &load_index(certs)?)?;
    Ok(InitReport {
        files: vec![
            certs.ca_cert(),
            certs.ca_key(),
            certs.server_cert(),
            certs.server_key(),
            certs.crl(),
        ],
        sans,
    })
}

fn load_issuer(certs: &CertsDir) -> anyhow::Result<Issuer<'static, KeyPair>> {
    if !certs.is_initialised() {
        bail!(
            "no CA in {}: run `vitalwatch certs init --certs-dir {}` first",
            certs.dir.display(),
            certs.dir.display()
        );
    }
    check_key_permissions(&certs.ca_key())?;
    let key_pem = std::fs::read_to_string(certs.ca_key())
        .with_context(|| format!("reading {}", certs.ca_key().display()))?;
    let key = KeyPair::from_pem(&key_pem).context("parsing the CA key")?;
    let cert_pem = std::fs::read_to_string(certs.ca_cert())
        .with_context(|| format!("reading {}", certs.ca_cert().display()))?;
    Issuer::from_ca_cert_pem(&cert_pem, key).context("parsing the CA certificate")
}

fn load_index(certs: &CertsDir) -> anyhow::Result<Index> {
    match std::fs::read_to_string(certs.index()) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", certs.index().display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
        Err(err) => Err(err).with_context(|| format!("reading {}", certs.index().display())),
    }
}

fn save_index(certs: &CertsDir, index: &Index) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(index)?;
    let tmp = certs.devices().join("index.json.tmp");
    write_private(&tmp, &text, 0o600)?;
    std::fs::rename(&tmp, certs.index())?;
    Ok(())
}

fn write_crl(certs: &CertsDir, issuer: &Issuer<'_, KeyPair>, index: &Index) -> anyhow::Result<()> {
    let revoked_certs = index
        .certs
        .iter()
        .filter(|c| c.revoked_at.is_some())
        .filter_map(|c| hex::decode(&c.serial).ok())
        .map(|serial| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: clock::now_offset(),
            reason_code: Some(RevocationReason::CessationOfOperation),
            invalidity_date: None,
        })
        .collect();
    let params = CertificateRevocationListParams {
        this_update: clock::now_offset() - Duration::minutes(5),
        next_update: clock::now_offset() + Duration::days(CRL_DAYS),
        crl_number: SerialNumber::from_slice(&clock::now_offset().unix_timestamp().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer).context("signing the CRL")?;
    write_private(&certs.crl(), &crl.pem()?, 0o644)
}

/// Issues a client certificate whose subject CN is `device_id`. Refuses to replace an
/// unrevoked one unless `force` (the old one is then revoked).
pub fn issue_device(certs: &CertsDir, device_id: &str, force: bool) -> anyhow::Result<IssuedCert> {
    issue_client(certs, device_id, "device", force)
}

/// Issues a consumer certificate (OU = consumer): it may subscribe below `vitalwatch/` on the
/// embedded broker and may not publish readings. Files go to `devices/NAME.crt` and `.key`,
/// names share the device namespace so one revocation list covers both.
pub fn issue_consumer(certs: &CertsDir, name: &str, force: bool) -> anyhow::Result<IssuedCert> {
    issue_client(certs, name, "consumer", force)
}

fn issue_client(
    certs: &CertsDir,
    device_id: &str,
    unit: &str,
    force: bool,
) -> anyhow::Result<IssuedCert> {
    let issuer = load_issuer(certs)?;
    create_dir_private(&certs.devices())?;
    let mut index = load_index(certs)?;
    let current = index
        .certs
        .iter_mut()
        .filter(|c| c.device_id == device_id && c.revoked_at.is_none())
        .collect::<Vec<_>>();
    if !current.is_empty() {
        if !force {
            bail!(
                "device {device_id} already has a certificate ({}); use --force to replace it (the old one is revoked)",
                certs.device_cert(device_id).display()
            );
        }
        for cert in current {
            cert.revoked_at = Some(rfc3339(clock::now_offset()));
        }
    }
    let issued = sign_device(certs, &issuer, device_id, unit)?;
    index.certs.push(issued.clone());
    save_index(certs, &index)?;
    write_crl(certs, &issuer, &index)?;
    Ok(issued)
}

/// Signs a device certificate and writes its files; the caller records it in the index.
fn sign_device(
    certs: &CertsDir,
    issuer: &Issuer<'_, KeyPair>,
    device_id: &str,
    unit: &str,
) -> anyhow::Result<IssuedCert> {
    let key = KeyPair::generate().context("generating the device key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, device_id);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, unit);
    params.not_before = clock::now_offset() - Duration::minutes(5);
    params.not_after = clock::now_offset() + Duration::days(DEVICE_DAYS);
    let serial = random_serial();
    params.serial_number = Some(serial.clone());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = Vec::<SanType>::new();
    let cert = params
        .signed_by(&key, issuer)
        .context("signing the device certificate")?;
    write_private(&certs.device_key(device_id), &key.serialize_pem(), 0o600)?;
    write_private(&certs.device_cert(device_id), &cert.pem(), 0o644)?;
    let issued = IssuedCert {
        device_id: device_id.to_owned(),
        serial: serial_hex(&serial),
        not_before: rfc3339(params.not_before),
        not_after: rfc3339(params.not_after),
        revoked_at: None,
    };
    Ok(issued)
}

/// Issues certificates for many new devices at once (one index write and one CRL signature
/// for the lot; `issue_device` does both per device). Refuses ids that already have an
/// unrevoked certificate.
pub fn issue_devices(certs: &CertsDir, device_ids: &[String]) -> anyhow::Result<Vec<IssuedCert>> {
    let issuer = load_issuer(certs)?;
    create_dir_private(&certs.devices())?;
    let mut index = load_index(certs)?;
    let mut issued = Vec::with_capacity(device_ids.len());
    for device_id in device_ids {
        if index
            .certs
            .iter()
            .any(|c| &c.device_id == device_id && c.revoked_at.is_none())
        {
            bail!("device {device_id} already has a certificate");
        }
        let cert = sign_device(certs, &issuer, device_id, "device")?;
        index.certs.push(cert.clone());
        issued.push(cert);
    }
    save_index(certs, &index)?;
    write_crl(certs, &issuer, &index)?;
    Ok(issued)
}

pub fn list(certs: &CertsDir) -> anyhow::Result<Vec<IssuedCert>> {
    Ok(load_index(certs)?.certs)
}

/// Revokes every certificate of `device_id` and re-signs the CRL. Returns what was revoked.
pub fn revoke(certs: &CertsDir, device_id: &str) -> anyhow::Result<Vec<IssuedCert>> {
    let issuer = load_issuer(certs)?;
    let mut index = load_index(certs)?;
    let mut revoked = Vec::new();
    for cert in index
        .certs
        .iter_mut()
        .filter(|c| c.device_id == device_id && c.revoked_at.is_none())
    {
        cert.revoked_at = Some(rfc3339(clock::now_offset()));
        revoked.push(cert.clone());
    }
    if revoked.is_empty() {
        bail!("device {device_id} has no unrevoked certificate");
    }
    save_index(certs, &index)?;
    write_crl(certs, &issuer, &index)?;
    Ok(revoked)
}

/// The serials (hex) revoked so far, read fresh from the index (so a revocation takes effect
/// at the next CONNECT without a restart).
pub fn revoked_serials(certs: &CertsDir) -> anyhow::Result<Vec<String>> {
    Ok(load_index(certs)?
        .certs
        .into_iter()
        .filter(|c| c.revoked_at.is_some())
        .map(|c| c.serial)
        .collect())
}

fn secrets_path(certs: &CertsDir) -> PathBuf {
    certs.devices().join("secrets.json")
}

/// Argon2id hashes (PHC strings) of per-device secrets, by device id.
pub fn load_secrets(
    certs: &CertsDir,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    match std::fs::read_to_string(secrets_path(certs)) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", secrets_path(certs).display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(err) => Err(err).with_context(|| format!("reading {}", secrets_path(certs).display())),
    }
}

/// Issues a per-device secret for MQTT username/password authentication on a plaintext
/// listener (`--mqtt-addr`): returns it once; only its Argon2id hash is kept (0600 file).
pub fn issue_secret(certs: &CertsDir, device_id: &str) -> anyhow::Result<String> {
    use argon2::PasswordHasher;
    create_dir_private(&certs.devices())?;
    let bytes: [u8; 24] = rand::random();
    let secret = hex::encode(bytes);
    let hash = argon2::Argon2::default()
        .hash_password(secret.as_bytes())
        .map_err(|err| anyhow::anyhow!("hashing the secret: {err}"))?;
    let mut secrets = load_secrets(certs)?;
    secrets.insert(device_id.to_owned(), hash.to_string());
    let tmp = certs.devices().join("secrets.json.tmp");
    write_private(&tmp, &serde_json::to_string_pretty(&secrets)?, 0o600)?;
    std::fs::rename(&tmp, secrets_path(certs))?;
    Ok(secret)
}

/// Removes `device_id`'s plaintext-MQTT secret, if it has one (returns whether it had); a
/// running broker ends the sessions it let in.
pub fn remove_secret(certs: &CertsDir, device_id: &str) -> anyhow::Result<bool> {
    let mut secrets = load_secrets(certs)?;
    if secrets.remove(device_id).is_none() {
        return Ok(false);
    }
    let tmp = certs.devices().join("secrets.json.tmp");
    write_private(&tmp, &serde_json::to_string_pretty(&secrets)?, 0o600)?;
    std::fs::rename(&tmp, secrets_path(certs))?;
    Ok(true)
}

/// Whether `password` is `device_id`'s current secret.
pub fn verify_secret(
    hashes: &std::collections::BTreeMap<String, String>,
    device_id: &str,
    password: &[u8],
) -> bool {
    use argon2::PasswordVerifier;
    let Some(stored) = hashes.get(device_id) else {
        return false;
    };
    let Ok(parsed) = argon2::PasswordHash::new(stored) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password, &parsed)
        .is_ok()
}

/// Refuses a private key that others can read.
pub fn check_key_permissions(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "private key {} is readable by other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem_path: &Path) -> (Vec<u8>, String) {
        let pem = std::fs::read(pem_path).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        (pem.contents.clone(), cn)
    }

    #[test]
    fn init_issue_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(dir.path().join("certs"));
        let report = init(&certs, &["vw.example".to_owned()], false).unwrap();
        assert!(report.sans.contains(&"::1".to_owned()));
        assert!(report.sans.contains(&"vw.example".to_owned()));
        // Refuses to overwrite without --force.
        let err = init(&certs, &[], false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        check_key_permissions(&certs.ca_key()).unwrap();
        check_key_permissions(&certs.server_key()).unwrap();

        let (der, _) = parse(&certs.server_cert());
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(san.value.general_names.len() >= 4);
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);
        let (der, _) = parse(&certs.ca_cert());
        let (_, ca) = X509Certificate::from_der(&der).unwrap();
        assert!(ca.basic_constraints().unwrap().unwrap().value.ca);
        assert!(ca.key_usage().unwrap().unwrap().value.key_cert_sign());

        let issued = issue_device(&certs, "ESP32_001", false).unwrap();
        let (der, cn) = parse(&certs.device_cert("ESP32_001"));
        assert_eq!(cn, "ESP32_001");
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(hex::encode(cert.raw_serial()), issued.serial);
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        check_key_permissions(&certs.device_key("ESP32_001")).unwrap();
        assert!(issue_device(&certs, "ESP32_001", false).is_err());

        assert_eq!(list(&certs).unwrap().len(), 1);
        let revoked = revoke(&certs, "ESP32_001").unwrap();
        assert_eq!(revoked[0].serial, issued.serial);
        assert_eq!(
            revoked_serials(&certs).unwrap(),
            vec![issued.serial.clone()]
        );
        let crl_pem = std::fs::read(certs.crl()).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&crl_pem).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&pem.contents).unwrap();
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(serials, vec![issued.serial]);
        assert!(revoke(&certs, "ESP32_001").is_err());
        // A new certificate can be issued after revocation.
        issue_device(&certs, "ESP32_001", false).unwrap();
    }

    #[test]
    fn device_secrets_verify_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let certs = CertsDir::new(dir.path().join("certs"));
        let secret = issue_secret(&certs, "esp-1").unwrap();
        let hashes = load_secrets(&certs).unwrap();
        assert!(verify_secret(&hashes, "esp-1", secret.as_bytes()));
        assert!(!verify_secret(&hashes, "esp-1", b"guess"));
        assert!(!verify_secret(&hashes, "esp-2", secret.as_bytes()));
        let text = std::fs::read_to_string(certs.devices().join("secrets.json")).unwrap();
        assert!(!text.contains(&secret) && text.contains("$argon2id$"));
        check_key_permissions(&certs.devices().join("secrets.json")).unwrap();
    }

    #[test]
    fn a_world_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_key_permissions(&key).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
