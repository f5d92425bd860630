//! The packets ntex-mqtt 9.0's decoder refuses before any handler of ours runs, judged from
//! the bytes on their way in (docs/MQTT.md, "Library faults"): its decoder closes the
//! connection without the answer the spec requires, so the broker answers them itself.
//!
//! - 3.1.1 CONNECT with an empty client id and CleanSession=0: CONNACK 0x02
//!   ([MQTT-3.1.3-8]).
//! - CONNECT with a protocol level the broker does not speak (MQTT 3.1's `MQIsdp` 3, or
//!   `MQTT` with a level other than 4 and 5): CONNACK 0x01 ([MQTT-3.1.2-2]).
//! - 5.0 PUBLISH with Topic Alias 0: DISCONNECT 0x94 ([MQTT-3.3.2-8]).
//!
//! [`Gate::judge`] reads the stream frame by frame and says how many bytes the library may
//! have; it holds back only the head of a frame it has not judged yet (at most
//! [`LOOKAHEAD`] bytes of it). Everything else, malformed packets included, goes to the
//! library unchanged, which answers it as before. Pure: the ntex filter that runs it is in
//! `protocol.rs`.

/// The most of one frame's body the gate waits for before it lets the frame through unjudged
/// (a PUBLISH whose topic and properties are longer than this is the library's to judge).
pub const LOOKAHEAD: usize = 8192;

/// What the gate answers instead of the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateRefusal {
    /// 3.1.1 [MQTT-3.1.3-8]: a zero-byte client id needs CleanSession=1.
    EmptyClientIdWithSession,
    /// [MQTT-3.1.2-2]: a protocol level the broker does not support.
    UnsupportedProtocolLevel,
    /// 5.0 [MQTT-3.3.2-8]: a Topic Alias of 0 is a protocol error.
    TopicAliasZero,
}

impl GateRefusal {
    /// The packet sent before the connection is closed.
    pub fn answer(self) -> &'static [u8] {
        match self {
            // CONNACK, session present 0, return code 0x02 Identifier rejected.
            GateRefusal::EmptyClientIdWithSession => &[0x20, 0x02, 0x00, 0x02],
            // CONNACK in 3.1.1's format (the client's own version is unknown to us), 0x01
            // Unacceptable protocol version.
            GateRefusal::UnsupportedProtocolLevel => &[0x20, 0x02, 0x00, 0x01],
            // 5.0 DISCONNECT 0x94 Topic Alias invalid (remaining length 1: no properties,
            // section 3.14.2.2).
            GateRefusal::TopicAliasZero => &[0xe0, 0x01, 0x94],
        }
    }

    /// Whether this refuses the CONNECT (a refused connection) rather than ends a session.
    pub fn refuses_connect(self) -> bool {
        self != GateRefusal::TopicAliasZero
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GateRefusal::EmptyClientIdWithSession => "empty_client_id_with_session",
            GateRefusal::UnsupportedProtocolLevel => "unsupported_protocol_level",
            GateRefusal::TopicAliasZero => "topic_alias_invalid",
        }
    }
}

/// What to do with the bytes judged so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judged {
    /// How many bytes from the start of the input go to the library now; the rest waits for
    /// more input (or, after a refusal, is dropped).
    pub pass: usize,
    /// Answer this and close the connection (after the passed bytes).
    pub refusal: Option<GateRefusal>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the first packet (CONNECT).
    Connect,
    /// A 5.0 connection: every PUBLISH is looked at.
    V5,
    /// Nothing more to judge (3.1.1, or a first packet the library will refuse).
    Open,
    /// Refused: nothing more goes through.
    Closed,
}

/// One connection's gate.
#[derive(Debug)]
pub struct Gate {
    state: State,
    /// Bytes of the current frame, already judged, still to arrive.
    skip: usize,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            state: State::Connect,
            skip: 0,
        }
    }
}

/// A frame's fixed header.
enum Header {
    Incomplete,
    /// The remaining length is not a valid variable byte integer: the library's to refuse.
    Malformed,
    Frame {
        header_len: usize,
        body_len: usize,
    },
}

fn fixed_header(bytes: &[u8]) -> Header {
    let mut body_len = 0usize;
    for (i, byte) in bytes.iter().skip(1).take(4).enumerate() {
        body_len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Header::Frame {
                header_len: i + 2,
                body_len,
            };
        }
    }
    if bytes.len() >= 5 {
        Header::Malformed
    } else {
        Header::Incomplete
    }
}

/// What one frame's judgement needs.
enum Look {
    /// More of the body is needed to judge.
    NeedMore,
    /// Let it through; the connection goes on in this state.
    Pass(State),
    Refuse(GateRefusal),
}

/// A big-endian u16 at `at`, if present.
fn u16_at(body: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]))
}

/// MQTT 3.1.1 section 3.1.2 / 5.0 section 3.1.2: the first packet.
fn connect(first: u8, body: &[u8]) -> Look {
    if first >> 4 != 1 {
        return Look::Pass(State::Open);
    }
    let Some(name_len) = u16_at(body, 0) else {
        return Look::NeedMore;
    };
    let name_end = 2 + usize::from(name_len);
    let Some(&level) = body.get(name_end) else {
        return Look::NeedMore;
    };
    match (&body[2..name_end], level) {
        (b"MQTT", 4) => {
            // Flags, keep-alive (2), then the client id's length.
            let (Some(&flags), Some(id_len)) = (body.get(name_end + 1), u16_at(body, name_end + 4))
            else {
                return Look::NeedMore;
            };
            if flags & 0x02 == 0 && id_len == 0 {
                Look::Refuse(GateRefusal::EmptyClientIdWithSession)
            } else {
                Look::Pass(State::Open)
            }
        }
        (b"MQTT", 5) => Look::Pass(State::V5),
        (b"MQTT" | b"MQIsdp", _) => Look::Refuse(GateRefusal::UnsupportedProtocolLevel),
        // [MQTT-3.1.2-1]: another name may be closed without a CONNACK; the library does.
        _ => Look::Pass(State::Open),
    }
}

/// A variable byte integer at `at`: (value, its length), `Err` when malformed.
fn varint(body: &[u8], at: usize) -> Option<Result<(usize, usize), ()>> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *body.get(at + i)?;
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(Ok((value, i + 1)));
        }
    }
    Some(Err(()))
}

/// 5.0 section 3.3.2: a PUBLISH's Topic Alias, from its properties.
fn publish5(first: u8, body: &[u8], body_len: usize) -> Look {
    if first >> 4 != 3 {
        return Look::Pass(State::V5);
    }
    let qos = (first >> 1) & 0x03;
    let Some(topic_len) = u16_at(body, 0) else {
        return Look::NeedMore;
    };
    let mut at = 2 + usize::from(topic_len) + if qos > 0 { 2 } else { 0 };
    let (props_len, len_len) = match varint(body, at) {
        None => return Look::NeedMore,
        Some(Err(())) => return Look::Pass(State::V5),
        Some(Ok(found)) => found,
    };
    at += len_len;
    let end = (at + props_len).min(body_len);
    while at < end {
        let Some(&id) = body.get(at) else {
            return Look::NeedMore;
        };
        at += 1;
        let size = match id {
            // Payload Format Indicator.
            0x01 => 1,
            // Message Expiry Interval.
            0x02 => 4,
            // Content Type, Response Topic: UTF-8 strings; Correlation Data: binary.
            0x03 | 0x08 | 0x09 => match u16_at(body, at) {
                Some(n) => 2 + usize::from(n),
                None => return Look::NeedMore,
            },
            // Subscription Identifier (not allowed from a client; the library judges it).
            0x0b => match varint(body, at) {
                Some(Ok((_, n))) => n,
                Some(Err(())) => return Look::Pass(State::V5),
                None => return Look::NeedMore,
            },
            0x23 => match u16_at(body, at) {
                Some(0) => return Look::Refuse(GateRefusal::TopicAliasZero),
                Some(_) => 2,
                None => return Look::NeedMore,
            },
            // User Property: two strings.
            0x26 => {
                let Some(key) = u16_at(body, at) else {
                    return Look::NeedMore;
                };
                let Some(value) = u16_at(body, at + 2 + usize::from(key)) else {
                    return Look::NeedMore;
                };
                4 + usize::from(key) + usize::from(value)
            }
            // Not a PUBLISH property: malformed, the library's to refuse.
            _ => return Look::Pass(State::V5),
        };
        at += size;
    }
    // Past the properties (or they overran their length: malformed, the library's).
    Look::Pass(State::V5)
}

impl Gate {
    /// Whether the gate refused the connection: nothing more goes through.
    pub fn closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Judges `input`: the bytes received and not yet passed (what an earlier call held back
    /// comes again, followed by what arrived since).
    pub fn judge(&mut self, input: &[u8]) -> Judged {
        let mut at = 0;
        loop {
            match self.state {
                State::Open => {
                    return Judged {
                        pass: input.len(),
                        refusal: None,
                    };
                }
                State::Closed => {
                    return Judged {
                        pass: 0,
                        refusal: None,
                    };
                }
                State::Connect | State::V5 => {}
            }
            if self.skip > 0 {
                let n = self.skip.min(input.len() - at);
                at += n;
                self.skip -= n;
                if self.skip > 0 {
                    break;
                }
            }
            if at == input.len() {
                break;
            }
            let frame = &input[at..];
            let (header_len, body_len) = match fixed_header(frame) {
                Header::Incomplete => break,
                Header::Malformed => {
                    self.state = State::Open;
                    continue;
                }
                Header::Frame {
                    header_len,
                    body_len,
                } => (header_len, body_len),
            };
            let available = &frame[header_len..frame.len().min(header_len + body_len)];
            let look = match self.state {
                State::Connect => connect(frame[0], available),
                _ => publish5(frame[0], available, body_len),
            };
            let look = match look {
                Look::NeedMore if available.len() >= body_len.min(LOOKAHEAD) => {
                    // All of it (or all the gate waits for) is here: not ours to judge.
                    Look::Pass(if self.state == State::Connect {
                        State::Open
                    } else {
                        self.state
                    })
                }
                look => look,
            };
            match look {
                Look::NeedMore => break,
                Look::Pass(next) => {
                    self.state = next;
                    self.skip = header_len + body_len;
                }
                Look::Refuse(refusal) => {
                    self.state = State::Closed;
                    return Judged {
                        pass: at,
                        refusal: Some(refusal),
                    };
                }
            }
        }
        Judged {
            pass: at,
            refusal: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(first: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let mut n = body.len();
        loop {
            let mut byte = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                byte |= 0x80;
            }
            out.push(byte);
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
        out
    }

    fn connect_packet(name: &[u8], level: u8, flags: u8, client_id: &[u8]) -> Vec<u8> {
        let mut body = (name.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, flags, 0, 60]);
        if level == 5 {
            body.push(0);
        }
        body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        body.extend_from_slice(client_id);
        frame(0x10, &body)
    }

    fn publish5_packet(qos: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut body = 11u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"/iot/health");
        if qos > 0 {
            body.extend_from_slice(&7u16.to_be_bytes());
        }
        body.push(properties.len() as u8);
        body.extend_from_slice(properties);
        body.extend_from_slice(payload);
        frame(0x30 | (qos << 1), &body)
    }

    /// Feeds `stream` one byte at a time, as a slow link would: (bytes passed, refusal).
    fn trickle(stream: &[u8]) -> (usize, Option<GateRefusal>) {
        let mut gate = Gate::default();
        let mut held = Vec::new();
        let mut passed = 0;
        for &byte in stream {
            held.push(byte);
            let judged = gate.judge(&held);
            passed += judged.pass;
            held.drain(..judged.pass);
            if judged.refusal.is_some() {
                return (passed, judged.refusal);
            }
        }
        (passed, None)
    }

    fn at_once(stream: &[u8]) -> Judged {
        Gate::default().judge(stream)
    }

    #[test]
    fn an_empty_client_id_with_clean_session_0_gets_connack_0x02_mqtt_3_1_3_8() {
        let connect = connect_packet(b"MQTT", 4, 0x00, b"");
        let judged = at_once(&connect);
        assert_eq!(
            judged,
            Judged {
                pass: 0,
                refusal: Some(GateRefusal::EmptyClientIdWithSession)
            }
        );
        assert_eq!(
            GateRefusal::EmptyClientIdWithSession.answer(),
            [0x20, 2, 0, 2]
        );
        assert_eq!(
            trickle(&connect),
            (0, Some(GateRefusal::EmptyClientIdWithSession))
        );
    }

    #[test]
    fn an_empty_client_id_with_clean_session_1_and_a_named_one_pass() {
        for connect in [
            connect_packet(b"MQTT", 4, 0x02, b""),
            connect_packet(b"MQTT", 4, 0x00, b"bed-1"),
        ] {
            let mut stream = connect.clone();
            stream.extend_from_slice(&[0xc0, 0]);
            assert_eq!(
                at_once(&stream),
                Judged {
                    pass: stream.len(),
                    refusal: None
                }
            );
            assert_eq!(trickle(&stream), (stream.len(), None));
        }
    }

    #[test]
    fn an_unsupported_protocol_level_gets_connack_0x01_mqtt_3_1_2_2() {
        for connect in [
            connect_packet(b"MQTT", 3, 0x02, b"c"),
            connect_packet(b"MQTT", 6, 0x02, b"c"),
            connect_packet(b"MQIsdp", 3, 0x02, b"c"),
        ] {
            assert_eq!(
                at_once(&connect).refusal,
                Some(GateRefusal::UnsupportedProtocolLevel)
            );
            assert_eq!(
                trickle(&connect),
                (0, Some(GateRefusal::UnsupportedProtocolLevel))
            );
        }
        assert_eq!(
            GateRefusal::UnsupportedProtocolLevel.answer(),
            [0x20, 2, 0, 1]
        );
    }

    #[test]
    fn v5_with_an_empty_client_id_passes_the_library_assigns_one() {
        let connect = connect_packet(b"MQTT", 5, 0x00, b"");
        assert_eq!(trickle(&connect), (connect.len(), None));
    }

    #[test]
    fn v5_topic_alias_0_gets_disconnect_0x94_mqtt_3_3_2_8() {
        let mut stream = connect_packet(b"MQTT", 5, 0x02, b"c");
        let good = publish5_packet(1, &[0x23, 0, 3], b"{}");
        stream.extend_from_slice(&good);
        let before = stream.len();
        // A user property and a payload format first, then Topic Alias 0.
        let props = [0x26, 0, 1, b'k', 0, 2, b'v', b'w', 0x01, 1, 0x23, 0, 0];
        stream.extend_from_slice(&publish5_packet(2, &props, b"{}"));
        stream.extend_from_slice(&[0xc0, 0]);
        assert_eq!(
            at_once(&stream),
            Judged {
                pass: before,
                refusal: Some(GateRefusal::TopicAliasZero)
            }
        );
        assert_eq!(
            trickle(&stream),
            (before, Some(GateRefusal::TopicAliasZero))
        );
        assert_eq!(GateRefusal::TopicAliasZero.answer(), [0xe0, 1, 0x94]);
    }

    #[test]
    fn v3_topic_alias_bytes_are_not_looked_at() {
        let mut stream = connect_packet(b"MQTT", 4, 0x02, b"c");
        // In 3.1.1 these bytes are payload, not properties.
        stream.extend_from_slice(&publish5_packet(0, &[0x23, 0, 0], b"{}"));
        assert_eq!(trickle(&stream), (stream.len(), None));
    }

    #[test]
    fn a_large_publish_passes_as_it_arrives_and_holds_only_its_head() {
        let mut stream = connect_packet(b"MQTT", 5, 0x02, b"c");
        let connect_len = stream.len();
        stream.extend_from_slice(&publish5_packet(1, &[], &vec![b'x'; 100_000]));
        let mut gate = Gate::default();
        // The publish's head (4-byte fixed header, topic, packet id, property length) is
        // held until complete; then its payload passes piece by piece as it arrives.
        let head = connect_len + 4 + 2 + 11 + 2 + 1;
        assert_eq!(gate.judge(&stream[..head - 1]).pass, connect_len);
        let judged = gate.judge(&stream[connect_len..head]);
        assert_eq!(judged.pass, head - connect_len);
        assert_eq!(gate.judge(&stream[head..head + 1000]).pass, 1000);
        assert_eq!(
            gate.judge(&stream[head + 1000..]).pass,
            stream.len() - head - 1000
        );
    }

    #[test]
    fn malformed_input_goes_to_the_library_unjudged() {
        // Not a CONNECT first; a malformed remaining length; a truncated property list.
        let mut garbage = vec![0x30, 0x02, 0, 0];
        garbage.extend_from_slice(&[0x23, 0, 0]);
        assert_eq!(at_once(&garbage).pass, garbage.len());
        let bad_length = [0x10, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(at_once(&bad_length).pass, bad_length.len());
        let mut stream = connect_packet(b"MQTT", 5, 0x02, b"c");
        // Properties claim 10 bytes; the frame holds 3: the library judges.
        let mut body = 1u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"t");
        body.extend_from_slice(&[10, 0x01, 1, 0x02]);
        stream.extend_from_slice(&frame(0x30, &body));
        assert_eq!(trickle(&stream), (stream.len(), None));
    }

    #[test]
    fn after_a_refusal_nothing_more_passes() {
        let mut gate = Gate::default();
        let connect = connect_packet(b"MQTT", 6, 0x02, b"c");
        assert!(gate.judge(&connect).refusal.is_some());
        assert_eq!(gate.judge(&[0xc0, 0]).pass, 0);
    }
}
