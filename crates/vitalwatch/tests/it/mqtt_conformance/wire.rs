//! A raw MQTT client for the conformance tests: it writes exactly the packets a test asks for
//! (including ones a well-behaved library never sends) and reads the broker's answers as they
//! are on the wire, over TLS (with a client certificate) or plaintext (with credentials).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a test waits for one answer.
const ANSWER: Duration = Duration::from_secs(10);

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// A packet as read: the first byte (type and flags) and the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub first: u8,
    pub body: Vec<u8>,
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    pub fn packet_id(&self) -> u16 {
        u16::from_be_bytes([self.body[0], self.body[1]])
    }

    /// The 5.0 reason code of a PUBACK/PUBREC/PUBREL/PUBCOMP (absent means success).
    pub fn ack_reason(&self) -> u8 {
        self.body.get(2).copied().unwrap_or(0)
    }
}

pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBCOMP: u8 = 7;
pub const SUBACK: u8 = 9;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

pub struct Client {
    stream: Box<dyn Stream>,
    pub version: Version,
    buffer: Vec<u8>,
}

/// What a CONNECT carries.
#[derive(Clone, Debug)]
pub struct Connect<'a> {
    pub client_id: &'a str,
    pub clean: bool,
    pub keep_alive_s: u16,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub will: Option<(&'a str, &'a [u8])>,
    /// 5.0 Session Expiry Interval.
    pub session_expiry_s: Option<u32>,
}

impl<'a> Connect<'a> {
    pub fn new(client_id: &'a str) -> Connect<'a> {
        Connect {
            client_id,
            clean: true,
            keep_alive_s: 60,
            username: None,
            password: None,
            will: None,
            session_expiry_s: None,
        }
    }
}

fn string(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

pub fn tls(addr: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> Box<dyn Stream> {
    vitalwatch::tls::install_crypto_provider();
    let config: Arc<rustls::ClientConfig> =
        vitalwatch::tls::client_config(ca, Some((cert, key))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    Box::new(rustls::StreamOwned::new(connection, socket))
}

pub fn plain(addr: SocketAddr) -> Box<dyn Stream> {
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    Box::new(socket)
}

impl Client {
    pub fn new(stream: Box<dyn Stream>, version: Version) -> Client {
        Client {
            stream,
            version,
            buffer: Vec::new(),
        }
    }

    pub fn v5(&self) -> bool {
        self.version == Version::V5
    }

    pub fn send(&mut self, bytes: &[u8]) {
        // A broker that already closed may reset: the next read tells.
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    pub fn connect(&mut self, connect: &Connect<'_>) -> Packet {
        self.connect_no_answer(connect);
        self.expect(CONNACK)
    }

    /// Sends a CONNECT without waiting for the CONNACK (a second CONNECT gets none).
    pub fn connect_no_answer(&mut self, connect: &Connect<'_>) {
        let mut body = Vec::new();
        string(&mut body, b"MQTT");
        body.push(if self.v5() { 5 } else { 4 });
        let mut flags = 0u8;
        if connect.username.is_some() {
            flags |= 0x80;
        }
        if connect.password.is_some() {
            flags |= 0x40;
        }
        if connect.will.is_some() {
            flags |= 0x04 | (1 << 3);
        }
        if connect.clean {
            flags |= 0x02;
        }
        body.push(flags);
        body.extend_from_slice(&connect.keep_alive_s.to_be_bytes());
        if self.v5() {
            let mut properties = Vec::new();
            if let Some(expiry) = connect.session_expiry_s {
                properties.push(0x11);
                properties.extend_from_slice(&expiry.to_be_bytes());
            }
            varint(&mut body, properties.len());
            body.extend_from_slice(&properties);
        }
        string(&mut body, connect.client_id.as_bytes());
        if let Some((topic, message)) = connect.will {
            if self.v5() {
                body.push(0);
            }
            string(&mut body, topic.as_bytes());
            string(&mut body, message);
        }
        if let Some(username) = connect.username {
            string(&mut body, username.as_bytes());
        }
        if let Some(password) = connect.password {
            string(&mut body, password.as_bytes());
        }
        self.send(&frame(0x10, &body));
    }

    pub fn publish(&mut self, topic: &str, qos: u8, packet_id: u16, dup: bool, payload: &[u8]) {
        let mut body = Vec::new();
        string(&mut body, topic.as_bytes());
        if qos > 0 {
            body.extend_from_slice(&packet_id.to_be_bytes());
        }
        if self.v5() {
            body.push(0);
        }
        body.extend_from_slice(payload);
        let first = 0x30 | (u8::from(dup) << 3) | (qos << 1);
        self.send(&frame(first, &body));
    }

    pub fn pubrel(&mut self, packet_id: u16) {
        self.send(&frame(0x62, &packet_id.to_be_bytes()));
    }

    pub fn subscribe(&mut self, packet_id: u16, filter: &str, qos: u8) -> Packet {
        let mut body = packet_id.to_be_bytes().to_vec();
        if self.v5() {
            body.push(0);
        }
        string(&mut body, filter.as_bytes());
        body.push(qos);
        self.send(&frame(0x82, &body));
        self.expect(SUBACK)
    }

    pub fn pingreq(&mut self) {
        self.send(&[0xc0, 0]);
    }

    pub fn disconnect(&mut self) {
        if self.v5() {
            self.send(&[0xe0, 1, 0]);
        } else {
            self.send(&[0xe0, 0]);
        }
    }

    /// The next packet, or `None` once the broker closed the connection (or `wait` passed).
    pub fn next(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(packet) = self.parse() {
                return Some(packet);
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    fn parse(&mut self) -> Option<Packet> {
        let mut length = 0usize;
        let mut shift = 0;
        let mut at = 1;
        loop {
            let byte = *self.buffer.get(at)?;
            length |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if self.buffer.len() < at + length {
            return None;
        }
        let first = self.buffer[0];
        let body = self.buffer[at..at + length].to_vec();
        self.buffer.drain(..at + length);
        Some(Packet { first, body })
    }

    /// The next packet, which must be of `kind`.
    pub fn expect(&mut self, kind: u8) -> Packet {
        let packet = self
            .next(ANSWER)
            .unwrap_or_else(|| panic!("the broker closed instead of sending packet type {kind}"));
        assert_eq!(packet.kind(), kind, "{packet:?}");
        packet
    }

    /// Whether the broker closes the connection (within the answer time), after at most a
    /// DISCONNECT packet (5.0), whose reason code is returned.
    pub fn closed(&mut self) -> Option<Option<u8>> {
        let mut reason = None;
        loop {
            match self.next(ANSWER) {
                None => return Some(reason),
                Some(packet) if packet.kind() == DISCONNECT => {
                    reason = packet.body.first().copied();
                }
                Some(_) => return None,
            }
        }
    }
}

/// A 5.0 property of a CONNACK, by identifier (the first one found).
pub fn connack_property(connack: &Packet, id: u8) -> Option<Vec<u8>> {
    let body = &connack.body;
    let mut at = 2;
    let mut length = 0usize;
    let mut shift = 0;
    loop {
        let byte = *body.get(at)?;
        length |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let end = at + length;
    while at < end {
        let property = body[at];
        at += 1;
        let size = match property {
            0x24 | 0x25 | 0x28 | 0x29 | 0x2a => 1,
            0x13 | 0x21 | 0x22 => 2,
            0x11 | 0x27 => 4,
            0x12 | 0x1a | 0x1c | 0x1f | 0x15 => {
                2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]))
            }
            _ => return None,
        };
        if property == id {
            return Some(body[at..at + size].to_vec());
        }
        at += size;
    }
    None
}
