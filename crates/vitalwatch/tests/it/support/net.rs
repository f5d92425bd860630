//! Loopback ports for the servers the tests start.

use std::net::TcpListener;

/// A free loopback port (bound, read, released) for a program that cannot be told to bind
/// port 0 and report it (Mosquitto).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding an ephemeral port")
        .port()
}
