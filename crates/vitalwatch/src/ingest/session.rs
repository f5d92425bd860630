//! The embedded broker's decisions, with no ntex type and no I/O in them: who a connecting
//! client is (the CONNECT verdict), which subscriptions it is granted, and how a publish is
//! answered in MQTT 3.1.1 and in 5.0 once the pipeline has spoken. `embedded.rs` gathers the
//! facts (the client certificate, the credentials, whether the serial is revoked, whether the
//! secret matched, the pipeline's outcome), asks here, and turns the answer into packets.
//!
//! Refusal reasons are small `Copy` enums with a stable `as_str()`, used as the `reason` field
//! of the broker's log lines.

use crate::tls::PeerIdentity;
use vitalwatch_core::telemetry::{DeviceId, RejectReason};

/// The topic namespace consumers may subscribe to (`vitalwatch/alerts/…`,
/// `vitalwatch/telemetry/…`).
pub const CONSUMER_PREFIX: &str = "vitalwatch/";

/// What a connection is allowed to be, once its CONNECT is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Publishes its own readings; subscribes to nothing.
    Device,
    /// Subscribes below [`CONSUMER_PREFIX`]; publishes nothing.
    Consumer,
    /// No credentials, on the plaintext listener with anonymous access on: publishes readings
    /// whose device id is taken at its word; subscribes to nothing.
    Anonymous,
}

/// The answer to a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Device(DeviceId),
    Consumer(DeviceId),
    Anonymous,
    Refused(ConnectRefusal),
}

/// Why a CONNECT was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// TLS without a client certificate (possible when certificates are optional).
    NoCertificate,
    /// A certificate whose subject or serial could not be read.
    UnreadableCertificate,
    /// A certificate whose serial is marked revoked in the PKI index.
    RevokedCertificate,
    /// A certificate whose CN is not a valid device (or consumer) id.
    InvalidCommonName,
    /// A certificate whose OU is neither `device` nor `consumer`.
    UnknownUnit,
    /// The plaintext listener without username and password (and anonymous access off).
    CredentialsRequired,
    /// A username that is not a device id, or a password that is not its secret.
    BadCredentials,
    /// The plaintext listener: too many failed CONNECTs from the client's address range; refused
    /// without checking its secret.
    Throttled,
    /// The revocation or secret check could not run (its blocking task failed): refuse
    /// rather than let an unchecked client in.
    CheckFailed,
    /// 3.1.1: an empty client id with CleanSession=0 (section 3.1.3.1: CONNACK 0x02).
    EmptyClientIdWithSession,
    /// A will on a topic the client may not publish to (devices: only the telemetry topic).
    WillTopicRefused,
    /// A will from a client that publishes nothing (consumers, anonymous clients).
    WillNotAllowed,
}

impl ConnectRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectRefusal::NoCertificate => "no_client_certificate",
            ConnectRefusal::UnreadableCertificate => "unreadable_client_certificate",
            ConnectRefusal::RevokedCertificate => "revoked_certificate",
            ConnectRefusal::InvalidCommonName => "invalid_common_name",
            ConnectRefusal::UnknownUnit => "unknown_certificate_unit",
            ConnectRefusal::CredentialsRequired => "credentials_required",
            ConnectRefusal::BadCredentials => "bad_credentials",
            ConnectRefusal::Throttled => "throttled",
            ConnectRefusal::CheckFailed => "identity_check_failed",
            ConnectRefusal::EmptyClientIdWithSession => "empty_client_id_with_session",
            ConnectRefusal::WillTopicRefused => "will_topic_refused",
            ConnectRefusal::WillNotAllowed => "will_not_allowed",
        }
    }

    /// The CONNACK code that carries this refusal.
    pub fn code(self) -> ConnackCode {
        match self {
            ConnectRefusal::BadCredentials => ConnackCode::BadUserNameOrPassword,
            ConnectRefusal::EmptyClientIdWithSession => ConnackCode::IdentifierRejected,
            ConnectRefusal::WillTopicRefused => ConnackCode::TopicNameInvalid,
            _ => ConnackCode::NotAuthorized,
        }
    }
}

/// The refusing CONNACK codes the broker uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnackCode {
    BadUserNameOrPassword,
    NotAuthorized,
    /// 3.1.1 0x02; 5.0 0x85 (Client Identifier not valid).
    IdentifierRejected,
    /// 5.0 0x90 (the Will Topic is not accepted); 3.1.1 has no such code: 0x05.
    TopicNameInvalid,
}

impl ConnackCode {
    /// The MQTT 3.1.1 CONNACK return code (section 3.2.2.3).
    pub fn v3(self) -> u8 {
        match self {
            ConnackCode::IdentifierRejected => 2,
            ConnackCode::BadUserNameOrPassword => 4,
            ConnackCode::NotAuthorized | ConnackCode::TopicNameInvalid => 5,
        }
    }

    /// The MQTT 5.0 CONNACK reason code (section 3.2.2.2).
    pub fn v5(self) -> u8 {
        match self {
            ConnackCode::IdentifierRejected => 0x85,
            ConnackCode::BadUserNameOrPassword => 0x86,
            ConnackCode::NotAuthorized => 0x87,
            ConnackCode::TopicNameInvalid => 0x90,
        }
    }
}

/// The longest keep-alive the broker accepts from a 5.0 client, in seconds; a 5.0 client asking
/// for more, or for none, is told this in CONNACK's Server Keep Alive (section 3.2.2.3.14).
pub const MAX_KEEP_ALIVE_S: u16 = 1200;
/// Added to 1.5 times the keep-alive: ntex's connection timer runs on a one-second wheel and
/// can fire up to a second early, and the spec's limit is a minimum (section 3.1.2.10).
pub const KEEP_ALIVE_SLACK_S: u16 = 1;

/// How long an idle connection is kept, and what a 5.0 client is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// Close the connection after this many seconds without a packet (0: never).
    pub timeout_s: u16,
    /// 5.0 Server Keep Alive to send (the interval the client must use instead).
    pub server_keep_alive_s: Option<u16>,
}

/// The keep-alive for a client that asked for `requested_s` seconds: one and a half times
/// the interval (MQTT 3.1.1 section 3.1.2.10, 5.0 section 3.1.2.10), plus the timer's slack.
/// 3.1.1 cannot be told another interval, so its request is honoured as it is (0: no
/// keep-alive); 5.0 requests above [`MAX_KEEP_ALIVE_S`] (or 0) are capped and told so.
pub fn keep_alive(requested_s: u16, v5: bool) -> KeepAlive {
    let (interval_s, server_keep_alive_s) =
        if v5 && (requested_s == 0 || requested_s > MAX_KEEP_ALIVE_S) {
            (MAX_KEEP_ALIVE_S, Some(MAX_KEEP_ALIVE_S))
        } else {
            (requested_s, None)
        };
    let timeout_s = if interval_s == 0 {
        0
    } else {
        let one_and_a_half = u32::from(interval_s) * 3 / 2 + u32::from(interval_s % 2);
        let with_slack = one_and_a_half + u32::from(KEEP_ALIVE_SLACK_S);
        u16::try_from(with_slack).unwrap_or(u16::MAX)
    };
    KeepAlive {
        timeout_s,
        server_keep_alive_s,
    }
}

/// The CONNECT facts the session checks look at, beyond identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRequest<'a> {
    pub v5: bool,
    pub client_id: &'a str,
    /// CleanSession (3.1.1) / Clean Start (5.0).
    pub clean: bool,
    /// The will's topic, when the CONNECT carries a will.
    pub will_topic: Option<&'a str>,
}

/// The client id a connection runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientId {
    /// The client's own.
    Given(String),
    /// Chosen by the broker for an empty one: 5.0 sends it as the Assigned Client Identifier
    /// (section 3.2.2.3.7); 3.1.1 (CleanSession=1) never learns it.
    Assigned(String),
}

impl ClientId {
    pub fn as_str(&self) -> &str {
        match self {
            ClientId::Given(id) | ClientId::Assigned(id) => id,
        }
    }
}

/// Checks the session part of an accepted CONNECT for a client of `role`: the client id (an
/// empty one is assigned `assigned`, unless 3.1.1 asks to keep a session for it: section
/// 3.1.3.1) and the will (devices may leave one on the telemetry topic only; clients that
/// publish nothing may not leave one).
pub fn check_session(
    role: Role,
    request: SessionRequest<'_>,
    telemetry_topic: &str,
    assigned: impl FnOnce() -> String,
) -> Result<ClientId, ConnectRefusal> {
    if let Some(topic) = request.will_topic {
        match role {
            Role::Device if topic == telemetry_topic => {}
            Role::Device => return Err(ConnectRefusal::WillTopicRefused),
            Role::Consumer | Role::Anonymous => return Err(ConnectRefusal::WillNotAllowed),
        }
    }
    if !request.client_id.is_empty() {
        return Ok(ClientId::Given(request.client_id.to_owned()));
    }
    if !request.v5 && !request.clean {
        return Err(ConnectRefusal::EmptyClientIdWithSession);
    }
    Ok(ClientId::Assigned(assigned()))
}

/// What the TLS layer says about the peer's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerCertificate {
    Missing,
    Unreadable,
    Read(PeerIdentity),
}

impl PeerCertificate {
    /// The serial whose revocation the caller must look up before [`by_certificate`].
    pub fn serial(&self) -> Option<&str> {
        match self {
            PeerCertificate::Read(identity) => Some(&identity.serial),
            _ => None,
        }
    }
}

/// The verdict on a TLS client: its certificate names it (CN = id, OU = device or consumer;
/// no OU is a device, as certificates issued before consumers existed have none). `revoked` is
/// whether [`PeerCertificate::serial`] is revoked; it is checked before anything else.
pub fn by_certificate(cert: &PeerCertificate, revoked: bool, max_id_len: usize) -> Verdict {
    let identity = match cert {
        PeerCertificate::Missing => return Verdict::Refused(ConnectRefusal::NoCertificate),
        PeerCertificate::Unreadable => {
            return Verdict::Refused(ConnectRefusal::UnreadableCertificate);
        }
        PeerCertificate::Read(identity) => identity,
    };
    if revoked {
        return Verdict::Refused(ConnectRefusal::RevokedCertificate);
    }
    let Ok(id) = DeviceId::parse(&identity.common_name, max_id_len) else {
        return Verdict::Refused(ConnectRefusal::InvalidCommonName);
    };
    match identity.unit.as_deref() {
        None | Some("device") => Verdict::Device(id),
        Some("consumer") => Verdict::Consumer(id),
        Some(_) => Verdict::Refused(ConnectRefusal::UnknownUnit),
    }
}

/// The first step on the plaintext listener, before any secret is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialStep {
    /// Decided without a secret check.
    Decided(Verdict),
    /// The username is a valid device id: check the password against its secret, then call
    /// [`after_secret_check`].
    CheckSecret(DeviceId),
}

/// The verdict on a plaintext client, up to the secret check: username = device id and
/// password = its secret, or neither when anonymous access is on (a password without a
/// username is then ignored).
pub fn by_credentials(
    username: Option<&str>,
    password: Option<&[u8]>,
    allow_anonymous: bool,
    max_id_len: usize,
) -> CredentialStep {
    let (Some(username), Some(_)) = (username, password) else {
        if allow_anonymous && username.is_none() {
            return CredentialStep::Decided(Verdict::Anonymous);
        }
        return CredentialStep::Decided(Verdict::Refused(ConnectRefusal::CredentialsRequired));
    };
    match DeviceId::parse(username, max_id_len) {
        Ok(id) => CredentialStep::CheckSecret(id),
        Err(_) => CredentialStep::Decided(Verdict::Refused(ConnectRefusal::BadCredentials)),
    }
}

/// The verdict once the secret of `device_id` was checked (`None`: the check could not run).
pub fn after_secret_check(device_id: DeviceId, matched: Option<bool>) -> Verdict {
    match matched {
        Some(true) => Verdict::Device(device_id),
        Some(false) => Verdict::Refused(ConnectRefusal::BadCredentials),
        None => Verdict::Refused(ConnectRefusal::CheckFailed),
    }
}

/// MQTT quality of service, in the broker's own terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

/// The answer to one topic filter of a SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Granted(Qos),
    /// MQTT 3.1.1 answers 0x80, 5.0 answers NotAuthorized (0x87), whatever the reason.
    Refused(SubscribeRefusal),
}

/// Why a topic filter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeRefusal {
    /// Devices (and anonymous clients) receive nothing from the broker.
    NotAConsumer,
    /// Consumers subscribe only below [`CONSUMER_PREFIX`].
    OutsideNamespace,
    /// Not a valid MQTT topic filter.
    InvalidFilter,
}

impl SubscribeRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscribeRefusal::NotAConsumer => "not_a_consumer",
            SubscribeRefusal::OutsideNamespace => "outside_namespace",
            SubscribeRefusal::InvalidFilter => "invalid_filter",
        }
    }
}

/// Whether a connection of `role` may subscribe to `filter`, and at which QoS. Delivery is at
/// most QoS 1: a QoS 2 request is granted QoS 1.
pub fn grant(role: Role, filter: &str, requested: Qos) -> Grant {
    if role != Role::Consumer {
        return Grant::Refused(SubscribeRefusal::NotAConsumer);
    }
    if !filter.starts_with(CONSUMER_PREFIX) {
        return Grant::Refused(SubscribeRefusal::OutsideNamespace);
    }
    if !is_valid_filter(filter) {
        return Grant::Refused(SubscribeRefusal::InvalidFilter);
    }
    Grant::Granted(requested.min(Qos::AtLeastOnce))
}

/// MQTT topic-filter syntax (MQTT 5.0 section 4.7): not empty, no NUL, `#` only as the whole
/// last level, `+` only as a whole level.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let valid = match level {
            "#" => last,
            "+" => true,
            other => !other.contains(['#', '+']),
        };
        if !valid {
            return false;
        }
    }
    true
}

/// Whether `topic` matches the (valid) `filter`: `+` matches one level, a trailing `#` the
/// parent level and everything below it. Topics starting with `$` are not matched by a
/// filter starting with a wildcard (MQTT 5.0 section 4.7.2).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(topic_level) if level == "+" || level == topic_level => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// What became of a publish, as the broker's publish handler saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Committed (stored, or kept apart as from an unregistered device).
    Stored,
    /// The same reading was stored before: committed already.
    Duplicate,
    /// The payload is not a valid reading (counted and audited by the pipeline).
    Rejected(RejectReason),
    /// Published to a topic other than the telemetry topic.
    WrongTopic,
    /// A reading for another device than the sender proved to be, or a publish from a
    /// consumer.
    IdentityMismatch,
    /// The reading could not be committed (store failure or a full queue).
    StoreFailed,
}

/// How a 3.1.1 publish is answered. 3.1.1 has no negative PUBACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer3 {
    /// PUBACK (PUBREC for QoS 2).
    Ack,
    /// Close the connection, without acknowledging.
    Close(CloseReason),
}

/// How a 5.0 publish is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer5 {
    /// PUBACK (PUBREC for QoS 2) with this reason code.
    Ack(PubackCode),
    Close(CloseReason),
}

/// Why the broker closes a connection after a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The publish was refused and the protocol has no other way to say so.
    NotAuthorized,
    /// Not committed, so not acknowledged: closing makes the device redeliver.
    NotCommitted,
}

/// The MQTT 5.0 PUBACK reason codes the broker sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubackCode {
    Success,
    PayloadFormatInvalid,
    NotAuthorized,
    TopicNameInvalid,
}

impl PubackCode {
    /// The code on the wire (MQTT 5.0 section 3.4.2.1).
    pub fn value(self) -> u8 {
        match self {
            PubackCode::Success => 0x00,
            PubackCode::PayloadFormatInvalid => 0x99,
            PubackCode::NotAuthorized => 0x87,
            PubackCode::TopicNameInvalid => 0x90,
        }
    }
}

/// The 3.1.1 answer: a rejected reading is acknowledged (it is recorded as rejected, and
/// redelivering it forever would block the good readings behind it); a refused publish closes
/// the connection, the spec's only answer; an uncommitted one closes it unacknowledged.
pub fn answer_v3(outcome: PublishOutcome) -> Answer3 {
    match outcome {
        PublishOutcome::Stored | PublishOutcome::Duplicate | PublishOutcome::Rejected(_) => {
            Answer3::Ack
        }
        PublishOutcome::WrongTopic | PublishOutcome::IdentityMismatch => {
            Answer3::Close(CloseReason::NotAuthorized)
        }
        PublishOutcome::StoreFailed => Answer3::Close(CloseReason::NotCommitted),
    }
}

/// The 5.0 answer: every refusal is a negative PUBACK with its reason; an uncommitted publish
/// closes the connection unacknowledged.
pub fn answer_v5(outcome: PublishOutcome) -> Answer5 {
    match outcome {
        PublishOutcome::Stored | PublishOutcome::Duplicate => Answer5::Ack(PubackCode::Success),
        PublishOutcome::Rejected(_) => Answer5::Ack(PubackCode::PayloadFormatInvalid),
        PublishOutcome::IdentityMismatch => Answer5::Ack(PubackCode::NotAuthorized),
        PublishOutcome::WrongTopic => Answer5::Ack(PubackCode::TopicNameInvalid),
        PublishOutcome::StoreFailed => Answer5::Close(CloseReason::NotCommitted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_ID: usize = 64;

    fn id(raw: &str) -> DeviceId {
        DeviceId::parse(raw, MAX_ID).unwrap()
    }

    fn cert(common_name: &str, unit: Option<&str>) -> PeerCertificate {
        PeerCertificate::Read(PeerIdentity {
            common_name: common_name.to_owned(),
            serial: "0a1b".to_owned(),
            unit: unit.map(str::to_owned),
        })
    }

    #[test]
    fn certificate_verdicts() {
        fn check(cert: PeerCertificate, revoked: bool, expected: Verdict) {
            assert_eq!(by_certificate(&cert, revoked, MAX_ID), expected, "{cert:?}");
        }
        use ConnectRefusal::*;
        check(cert("bed-1", None), false, Verdict::Device(id("bed-1")));
        check(
            cert("bed-1", Some("device")),
            false,
            Verdict::Device(id("bed-1")),
        );
        check(
            cert("station", Some("consumer")),
            false,
            Verdict::Consumer(id("station")),
        );
        check(
            PeerCertificate::Missing,
            false,
            Verdict::Refused(NoCertificate),
        );
        check(
            PeerCertificate::Unreadable,
            false,
            Verdict::Refused(UnreadableCertificate),
        );
        check(
            cert("bed-1", None),
            true,
            Verdict::Refused(RevokedCertificate),
        );
        check(
            cert("station", Some("consumer")),
            true,
            Verdict::Refused(RevokedCertificate),
        );
        // Revocation is checked first: a revoked certificate with a bad CN is "revoked".
        check(cert("", None), true, Verdict::Refused(RevokedCertificate));
        check(cert("", None), false, Verdict::Refused(InvalidCommonName));
        check(
            cert(&"x".repeat(MAX_ID + 1), None),
            false,
            Verdict::Refused(InvalidCommonName),
        );
        check(
            cert("bed-1", Some("admin")),
            false,
            Verdict::Refused(UnknownUnit),
        );
    }

    #[test]
    fn the_serial_to_look_up_is_the_certificate_s() {
        assert_eq!(cert("bed-1", None).serial(), Some("0a1b"));
        assert_eq!(PeerCertificate::Missing.serial(), None);
        assert_eq!(PeerCertificate::Unreadable.serial(), None);
    }

    #[test]
    fn credential_verdicts() {
        fn check(
            username: Option<&str>,
            password: Option<&[u8]>,
            allow_anonymous: bool,
            expected: CredentialStep,
        ) {
            assert_eq!(
                by_credentials(username, password, allow_anonymous, MAX_ID),
                expected,
                "{username:?} {password:?} anonymous={allow_anonymous}"
            );
        }
        use CredentialStep::*;
        let required = Decided(Verdict::Refused(ConnectRefusal::CredentialsRequired));
        let bad = Decided(Verdict::Refused(ConnectRefusal::BadCredentials));
        for anonymous in [false, true] {
            check(
                Some("lab-1"),
                Some(b"s3cret"),
                anonymous,
                CheckSecret(id("lab-1")),
            );
            check(Some("lab 1"), Some(b"s3cret"), anonymous, bad.clone());
            check(Some(""), Some(b"s3cret"), anonymous, bad.clone());
            // A username without a password is never anonymous.
            check(Some("lab-1"), None, anonymous, required.clone());
        }
        check(None, None, false, required.clone());
        check(None, Some(b"s3cret"), false, required.clone());
        check(None, None, true, Decided(Verdict::Anonymous));
        check(None, Some(b"s3cret"), true, Decided(Verdict::Anonymous));
    }

    #[test]
    fn secret_check_verdicts() {
        fn check(matched: Option<bool>, expected: Verdict) {
            assert_eq!(after_secret_check(id("lab-1"), matched), expected);
        }
        check(Some(true), Verdict::Device(id("lab-1")));
        check(
            Some(false),
            Verdict::Refused(ConnectRefusal::BadCredentials),
        );
        check(None, Verdict::Refused(ConnectRefusal::CheckFailed));
    }

    #[test]
    fn connect_refusals_have_stable_names_and_codes() {
        fn check(refusal: ConnectRefusal, name: &str, v3: u8, v5: u8) {
            assert_eq!(refusal.as_str(), name);
            assert_eq!(refusal.code().v3(), v3, "{name}");
            assert_eq!(refusal.code().v5(), v5, "{name}");
        }
        use ConnectRefusal::*;
        check(NoCertificate, "no_client_certificate", 5, 0x87);
        check(
            UnreadableCertificate,
            "unreadable_client_certificate",
            5,
            0x87,
        );
        check(RevokedCertificate, "revoked_certificate", 5, 0x87);
        check(InvalidCommonName, "invalid_common_name", 5, 0x87);
        check(UnknownUnit, "unknown_certificate_unit", 5, 0x87);
        check(CredentialsRequired, "credentials_required", 5, 0x87);
        check(BadCredentials, "bad_credentials", 4, 0x86);
        check(CheckFailed, "identity_check_failed", 5, 0x87);
        check(
            EmptyClientIdWithSession,
            "empty_client_id_with_session",
            2,
            0x85,
        );
        check(WillTopicRefused, "will_topic_refused", 5, 0x90);
        check(WillNotAllowed, "will_not_allowed", 5, 0x87);
    }

    #[test]
    fn keep_alive_is_one_and_a_half_times_the_interval() {
        fn check(requested: u16, v5: bool, timeout_s: u16, server: Option<u16>) {
            assert_eq!(
                keep_alive(requested, v5),
                KeepAlive {
                    timeout_s,
                    server_keep_alive_s: server
                },
                "{requested} v5={v5}"
            );
        }
        for v5 in [false, true] {
            check(2, v5, 4, None);
            check(3, v5, 6, None);
            check(60, v5, 91, None);
            check(MAX_KEEP_ALIVE_S, v5, 1801, None);
        }
        // 3.1.1 cannot be told another interval: 0 means none, a long one is honoured.
        check(0, false, 0, None);
        check(u16::MAX, false, u16::MAX, None);
        check(0, true, 1801, Some(MAX_KEEP_ALIVE_S));
        check(u16::MAX, true, 1801, Some(MAX_KEEP_ALIVE_S));
    }

    #[test]
    fn session_checks() {
        fn check(
            role: Role,
            v5: bool,
            client_id: &str,
            clean: bool,
            will_topic: Option<&str>,
            expected: Result<ClientId, ConnectRefusal>,
        ) {
            let request = SessionRequest {
                v5,
                client_id,
                clean,
                will_topic,
            };
            assert_eq!(
                check_session(role, request, "/iot/health", || "vw-1".to_owned()),
                expected,
                "{role:?} {request:?}"
            );
        }
        use ClientId::*;
        use ConnectRefusal::*;
        let given = || Ok(Given("bed-1".to_owned()));
        for v5 in [false, true] {
            check(Role::Device, v5, "bed-1", false, None, given());
            check(
                Role::Device,
                v5,
                "bed-1",
                true,
                Some("/iot/health"),
                given(),
            );
            check(
                Role::Device,
                v5,
                "",
                true,
                None,
                Ok(Assigned("vw-1".to_owned())),
            );
            check(
                Role::Device,
                v5,
                "bed-1",
                true,
                Some("status/bed-1"),
                Err(WillTopicRefused),
            );
            for role in [Role::Consumer, Role::Anonymous] {
                check(
                    role,
                    v5,
                    "c",
                    true,
                    Some("/iot/health"),
                    Err(WillNotAllowed),
                );
            }
        }
        check(
            Role::Device,
            false,
            "",
            false,
            None,
            Err(EmptyClientIdWithSession),
        );
        check(
            Role::Device,
            true,
            "",
            false,
            None,
            Ok(Assigned("vw-1".to_owned())),
        );
    }

    #[test]
    fn subscription_grants() {
        fn check(role: Role, filter: &str, requested: Qos, expected: Grant) {
            assert_eq!(
                grant(role, filter, requested),
                expected,
                "{role:?} {filter}"
            );
        }
        use Grant::*;
        use Qos::*;
        use SubscribeRefusal::*;
        for role in [Role::Device, Role::Anonymous] {
            check(
                role,
                "vitalwatch/alerts/#",
                AtLeastOnce,
                Refused(NotAConsumer),
            );
            check(role, "/iot/health", AtMostOnce, Refused(NotAConsumer));
            check(role, "#", AtMostOnce, Refused(NotAConsumer));
        }
        let consumer = Role::Consumer;
        check(
            consumer,
            "vitalwatch/alerts/#",
            AtLeastOnce,
            Granted(AtLeastOnce),
        );
        check(
            consumer,
            "vitalwatch/alerts/+",
            AtMostOnce,
            Granted(AtMostOnce),
        );
        check(
            consumer,
            "vitalwatch/telemetry/bed-1",
            ExactlyOnce,
            Granted(AtLeastOnce),
        );
        check(consumer, "vitalwatch/#", AtLeastOnce, Granted(AtLeastOnce));
        check(
            consumer,
            "/iot/health",
            AtLeastOnce,
            Refused(OutsideNamespace),
        );
        check(consumer, "#", AtLeastOnce, Refused(OutsideNamespace));
        check(
            consumer,
            "+/alerts/#",
            AtLeastOnce,
            Refused(OutsideNamespace),
        );
        check(
            consumer,
            "vitalwatch",
            AtLeastOnce,
            Refused(OutsideNamespace),
        );
        check(
            consumer,
            "vitalwatch/a#",
            AtLeastOnce,
            Refused(InvalidFilter),
        );
        check(
            consumer,
            "vitalwatch/#/x",
            AtLeastOnce,
            Refused(InvalidFilter),
        );
        check(
            consumer,
            "vitalwatch/a+/x",
            AtLeastOnce,
            Refused(InvalidFilter),
        );
        check(
            consumer,
            "vitalwatch/\0",
            AtMostOnce,
            Refused(InvalidFilter),
        );
    }

    #[test]
    fn subscribe_refusals_have_stable_names() {
        assert_eq!(SubscribeRefusal::NotAConsumer.as_str(), "not_a_consumer");
        assert_eq!(
            SubscribeRefusal::OutsideNamespace.as_str(),
            "outside_namespace"
        );
        assert_eq!(SubscribeRefusal::InvalidFilter.as_str(), "invalid_filter");
    }

    #[test]
    fn topic_filters_match_as_the_spec_says() {
        fn check(filter: &str, topic: &str, expected: bool) {
            assert!(is_valid_filter(filter), "{filter}");
            assert_eq!(
                filter_matches(filter, topic),
                expected,
                "{filter} vs {topic}"
            );
        }
        check("vitalwatch/alerts/#", "vitalwatch/alerts/bed-1", true);
        check("vitalwatch/alerts/#", "vitalwatch/alerts/bed-1/x", true);
        check("vitalwatch/alerts/#", "vitalwatch/alerts", true);
        check("vitalwatch/alerts/#", "vitalwatch/telemetry/bed-1", false);
        check("vitalwatch/alerts/+", "vitalwatch/alerts/bed-1", true);
        check("vitalwatch/alerts/+", "vitalwatch/alerts/bed-1/x", false);
        check("vitalwatch/alerts/+", "vitalwatch/alerts", false);
        check("vitalwatch/alerts/+", "vitalwatch/alerts/", true);
        check("vitalwatch/+/bed-1", "vitalwatch/telemetry/bed-1", true);
        check("vitalwatch/+/bed-1", "vitalwatch/telemetry/bed-2", false);
        check(
            "vitalwatch/telemetry/bed-1",
            "vitalwatch/telemetry/bed-1",
            true,
        );
        check(
            "vitalwatch/telemetry/bed-1",
            "vitalwatch/telemetry/bed-10",
            false,
        );
        check("vitalwatch/telemetry/bed-1", "vitalwatch/telemetry", false);
        check("#", "vitalwatch/alerts/bed-1", true);
        check("#", "$SYS/broker", false);
        check("+/broker", "$SYS/broker", false);
        check("$SYS/#", "$SYS/broker", true);
    }

    #[test]
    fn topic_filter_syntax() {
        fn check(filter: &str, expected: bool) {
            assert_eq!(is_valid_filter(filter), expected, "{filter:?}");
        }
        check("a/b", true);
        check("#", true);
        check("+", true);
        check("a/+/#", true);
        check("/", true);
        check("", false);
        check("a/#/b", false);
        check("a#", false);
        check("a/b+", false);
        check("a/\0", false);
    }

    #[test]
    fn publish_answers() {
        fn check(outcome: PublishOutcome, v3: Answer3, v5: Answer5) {
            assert_eq!(answer_v3(outcome), v3, "3.1.1 {outcome:?}");
            assert_eq!(answer_v5(outcome), v5, "5.0 {outcome:?}");
        }
        use PublishOutcome::*;
        check(Stored, Answer3::Ack, Answer5::Ack(PubackCode::Success));
        check(Duplicate, Answer3::Ack, Answer5::Ack(PubackCode::Success));
        check(
            Rejected(RejectReason::InvalidDeviceId),
            Answer3::Ack,
            Answer5::Ack(PubackCode::PayloadFormatInvalid),
        );
        check(
            WrongTopic,
            Answer3::Close(CloseReason::NotAuthorized),
            Answer5::Ack(PubackCode::TopicNameInvalid),
        );
        check(
            IdentityMismatch,
            Answer3::Close(CloseReason::NotAuthorized),
            Answer5::Ack(PubackCode::NotAuthorized),
        );
        check(
            StoreFailed,
            Answer3::Close(CloseReason::NotCommitted),
            Answer5::Close(CloseReason::NotCommitted),
        );
    }

    #[test]
    fn puback_codes_are_the_spec_s() {
        assert_eq!(PubackCode::Success.value(), 0);
        assert_eq!(PubackCode::PayloadFormatInvalid.value(), 153);
        assert_eq!(PubackCode::NotAuthorized.value(), 135);
        assert_eq!(PubackCode::TopicNameInvalid.value(), 144);
    }
}
