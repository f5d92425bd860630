"""Eclipse Paho with a persistent session whose QoS 2 PUBCOMPs are lost (issue 21).

Usage: paho_lost_pubcomp.py --port P --ca CA --cert CRT --key KEY --device ID
                            --proxy-cert CRT --proxy-key KEY [--protocol 311|5] [--messages N]

Between Paho and the broker runs a small TLS proxy (this script's: TLS to Paho with the
broker's own server certificate, TLS to the broker with the device's certificate) that
forwards everything, except that the first PUBCOMP the broker sends for each packet id is
swallowed and both connections are cut, as a lossy link would. Paho (clean_session=False, or
5.0 Clean Start 0 with a Session Expiry) then reconnects and resends the PUBREL; the exchange
completes when a PUBCOMP reaches it. The messages are published one after another.

Prints one JSON line: connects (CONNACK session-present flags), dropped (PUBCOMPs swallowed),
completed (messages whose PUBCOMP arrived), pubcomp_reasons (5.0 reason codes), error.
"""

import argparse
import json
import select
import socket
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

BASE_MS = 1_767_225_600_000


class Proxy:
    """A TLS proxy that swallows the first PUBCOMP per packet id and cuts the connection."""

    def __init__(self, a):
        self.upstream = (a.host, a.port)
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.load_cert_chain(a.proxy_cert, a.proxy_key)
        self.client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
        self.client_context.load_cert_chain(a.cert, a.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.dropped_ids = set()
        self.dropped = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(raw,), daemon=True).start()

    def serve(self, raw):
        try:
            downstream = self.server_context.wrap_socket(raw, server_side=True)
            upstream = self.client_context.wrap_socket(
                socket.create_connection(self.upstream, timeout=10), server_hostname=self.upstream[0]
            )
        except (OSError, ssl.SSLError):
            raw.close()
            return
        # A readable socket may hold only a TLS 1.3 NewSessionTicket, which a blocking recv
        # swallows before waiting for data that may never come (the broker waits for the
        # CONNECT this loop has not forwarded yet): reads wait a moment at most, then the
        # loop looks at both sockets again.
        downstream.settimeout(0.1)
        upstream.settimeout(0.1)
        pending = bytearray()
        try:
            while True:
                readable, _, _ = select.select([downstream, upstream], [], [], 30)
                if not readable:
                    break
                if downstream in readable or downstream.pending():
                    data = read(downstream)
                    if data == b"":
                        break
                    if data:
                        upstream.sendall(data)
                if upstream in readable or upstream.pending():
                    data = read(upstream)
                    if data == b"":
                        break
                    if data:
                        pending.extend(data)
                        if not self.forward_frames(pending, downstream):
                            break
        except (OSError, ssl.SSLError):
            pass
        for s in (downstream, upstream):
            try:
                s.close()
            except OSError:
                pass

    def forward_frames(self, pending, downstream):
        """Forwards every complete frame; False once a PUBCOMP was swallowed (cut the link)."""
        while True:
            length, shift, at = 0, 0, 1
            while True:
                if at >= len(pending):
                    return True
                byte = pending[at]
                length |= (byte & 0x7F) << shift
                shift += 7
                at += 1
                if byte & 0x80 == 0:
                    break
            if len(pending) < at + length:
                return True
            frame = bytes(pending[: at + length])
            del pending[: at + length]
            if frame[0] >> 4 == 7:
                packet_id = int.from_bytes(frame[at : at + 2], "big")
                with self.lock:
                    if packet_id not in self.dropped_ids:
                        self.dropped_ids.add(packet_id)
                        self.dropped += 1
                        return False
            downstream.sendall(frame)


def read(sock):
    """The next data on `sock`: bytes, b"" at its end, None when none came in time."""
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--proxy-cert", required=True)
    p.add_argument("--proxy-key", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--protocol", default="311", choices=["311", "5"])
    p.add_argument("--messages", type=int, default=4)
    p.add_argument("--timeout", type=float, default=20.0)
    a = p.parse_args()

    proxy = Proxy(a)
    v5 = a.protocol == "5"
    client_id = f"{a.device}-persistent-{a.protocol}"
    if v5:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
    else:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
    client.tls_set_context(context)
    client.reconnect_delay_set(min_delay=1, max_delay=1)

    done = threading.Condition()
    connects = []
    completed = {}
    reasons = []

    def on_connect(client, userdata, flags, rc, properties=None):
        with done:
            connects.append({"rc": str(rc), "session_present": bool(flags.session_present)})
            done.notify_all()

    def on_publish(client, userdata, mid, rc, properties=None):
        with done:
            completed[mid] = True
            reasons.append(int(rc.value) if hasattr(rc, "value") else int(rc))
            done.notify_all()

    client.on_connect = on_connect
    client.on_publish = on_publish
    summary = {"connects": connects, "dropped": 0, "completed": 0, "pubcomp_reasons": reasons,
               "error": None}
    if v5:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 300
        client.connect("127.0.0.1", proxy.port, keepalive=30, clean_start=False,
                       properties=properties)
    else:
        client.connect("127.0.0.1", proxy.port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + a.timeout
    for i in range(a.messages):
        payload = json.dumps({
            "device_id": a.device,
            "timestamp": BASE_MS + i,
            "heart_rate": 70 + i,
            "body_temp": 36.8,
            "signal_strength": -60,
            "battery_level": 80,
        }, separators=(",", ":"))
        info = client.publish("/iot/health", payload, qos=2)
        with done:
            while info.mid not in completed:
                left = deadline - time.monotonic()
                if left <= 0:
                    summary["error"] = f"message {i} never completed"
                    break
                done.wait(left)
        if summary["error"]:
            break
    client.disconnect()
    client.loop_stop()
    with done:
        summary["completed"] = len(completed)
    with proxy.lock:
        summary["dropped"] = proxy.dropped
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
