"""Hostile MQTT traffic over TLS, with raw bytes (no MQTT library), for the broker's tests.

Usage: hostile_mqtt.py --port P --ca CA --cert CRT --key KEY CASE
Cases: garbage-after-connect, malformed-packet, oversized, bad-utf8-topic, slowloris, churn
Prints one JSON line: what the broker did (closed, bytes received).
"""

import argparse
import json
import socket
import ssl
import struct


def tls_socket(a):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    raw = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def remaining_length(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def utf8(s: bytes):
    return struct.pack(">H", len(s)) + s


def connect_packet(client_id=b"hostile"):
    body = utf8(b"MQTT") + bytes([4, 0x02]) + struct.pack(">H", 30) + utf8(client_id)
    return bytes([0x10]) + remaining_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, qos=1, mid=1):
    body = utf8(topic) + (struct.pack(">H", mid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + remaining_length(len(body)) + body


def read_until_closed(sock, seconds=5.0):
    sock.settimeout(seconds)
    received = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return received, True
            received += chunk
    except socket.timeout:
        return received, False
    except (ConnectionResetError, ssl.SSLError, OSError):
        return received, True


def send_all(sock, data):
    """Sends, or reports that the broker already closed the connection (which is a pass)."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("case")
    a = p.parse_args()
    result = {"case": a.case}
    if a.case == "garbage-after-connect":
        s = tls_socket(a)
        if send_all(s, connect_packet() + b"\xde\xad\xbe\xef" * 64):
            data, closed = read_until_closed(s)
        else:
            data, closed = b"", True
        result.update(closed=closed, connack=data[:1] == b"\x20")
    elif a.case == "malformed-packet":
        s = tls_socket(a)
        # A PUBLISH whose remaining length claims more than the 4-byte length field allows.
        if send_all(s, connect_packet() + b"\x32\xff\xff\xff\xff\x7f"):
            data, closed = read_until_closed(s)
        else:
            closed = True
        result.update(closed=closed)
    elif a.case == "oversized":
        s = tls_socket(a)
        if send_all(s, connect_packet()) and send_all(s, publish_packet(b"/iot/health", b"x" * 100_000)):
            data, closed = read_until_closed(s)
        else:
            data, closed = b"", True
        result.update(closed=closed, puback=b"\x40\x02" in data)
    elif a.case == "bad-utf8-topic":
        s = tls_socket(a)
        if send_all(s, connect_packet() + publish_packet(b"/iot/\xff\xfehealth", b"{}")):
            data, closed = read_until_closed(s)
        else:
            data, closed = b"", True
        result.update(closed=closed, puback=b"\x40\x02" in data)
    elif a.case == "slowloris":
        # Open TLS connections that never send CONNECT (one sends a single byte of one) and,
        # while they are held, check that a proper client still gets its CONNACK.
        socks = [tls_socket(a) for _ in range(20)]
        send_all(socks[0], bytes([0x10]))  # one byte of a CONNECT, then nothing
        result["opened"] = len(socks)
        probe = tls_socket(a)
        served = False
        if send_all(probe, connect_packet(b"slowloris-probe")):
            probe.settimeout(10)
            try:
                served = probe.recv(1) == b"\x20"
            except (socket.timeout, ssl.SSLError, OSError):
                served = False
        result["served_while_held"] = served
        probe.close()
        for s in socks:
            s.close()
    elif a.case == "churn":
        opened = 0
        for _ in range(1000):
            try:
                raw = socket.create_connection(("127.0.0.1", a.port), timeout=5)
                raw.close()
                opened += 1
            except OSError:
                pass
        result.update(opened=opened)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
