"""Publishes readings with Eclipse Paho (a client VitalWatch did not write) and reports PUBACKs.

Usage: paho_publish.py --port P --ca CA --cert CRT --key KEY --device ID
                       [--protocol 311|5] [--qos 0|1|2] [--count N] [--start K]
                       [--esp32] [--payload-json TEXT]... [--stream-acks] [--hold]

Each reading gets timestamp 2026-01-01T00:00:00Z + (start + i) ms, so every one is distinct.
Prints one JSON summary line at the end: sent, acked, reason codes, failures.
With --stream-acks it also prints "ack I" as each acknowledgement arrives (flushed), so a
caller that kills the server mid-flood knows exactly what was acknowledged.
With --hold it prints the summary once everything is sent (and, above QoS 0, acknowledged),
then stays connected until its standard input closes (at most --timeout seconds): QoS 0 has
no acknowledgement, so the caller waits for what it can observe (the readings stored) before
letting the client disconnect.
"""

import argparse
import json
import select
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

BASE_MS = 1_767_225_600_000


def wait_published(info, timeout):
    """Waits (bounded) until paho has written the message, or the connection is gone."""
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError):
        pass  # not queued (connection lost): nothing left to wait for


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--device", required=True)
    p.add_argument("--protocol", default="311", choices=["311", "5"])
    p.add_argument("--qos", type=int, default=1, choices=[0, 1, 2])
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--topic", default="/iot/health")
    p.add_argument("--esp32", action="store_true", help="behave like PubSubClient on an ESP32")
    p.add_argument("--payload-json", action="append", default=[])
    p.add_argument("--stream-acks", action="store_true")
    p.add_argument("--hold", action="store_true")
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--transport", default="tcp", choices=["tcp", "websockets"])
    a = p.parse_args()

    protocol = mqtt.MQTTv5 if a.protocol == "5" else mqtt.MQTTv311
    kwargs = {"client_id": f"{a.device}-{a.start}", "protocol": protocol, "transport": a.transport}
    if protocol == mqtt.MQTTv311:
        kwargs["clean_session"] = True
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if a.cert:
        context.load_cert_chain(a.cert, a.key)
    client.tls_set_context(context)
    if a.transport == "websockets":
        client.ws_set_options(path="/mqtt")
    client.max_inflight_messages_set(1 if a.esp32 else a.inflight)
    # Keep at most a few windows queued inside paho, so a long flood is generated as it is
    # sent (enqueuing 50 000 messages at once starves paho's network thread).
    client.max_queued_messages_set(max(1, a.inflight) * 4)

    lock = threading.Lock()
    # Notified on every acknowledgement (QoS 0: every write), so the publisher waits for
    # progress instead of pausing for a fixed time.
    progress = threading.Condition(lock)
    acked = {}
    reason_codes = {}
    connected = threading.Event()
    connect_rc = {}
    disconnected = threading.Event()

    def on_connect(client, userdata, flags, rc, properties=None):
        connect_rc["rc"] = str(rc)
        connected.set()

    def on_disconnect(client, userdata, flags, rc, properties=None):
        disconnected.set()
        with progress:
            progress.notify_all()

    early = {}

    def record_ack(index, rc):
        acked[index] = True
        code = str(rc)
        reason_codes[code] = reason_codes.get(code, 0) + 1
        if a.stream_acks:
            print(f"ack {index}", flush=True)

    def on_publish(client, userdata, mid, rc, properties=None):
        # Never call into paho while holding `lock`: paho holds its own locks around callbacks.
        with lock:
            index = mids.pop(mid, None)
            if index is None:
                early[mid] = rc  # acknowledged before publish() returned its mid
            else:
                record_ack(index, rc)
            progress.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    mids = {}
    last = None
    summary = {"sent": 0, "acked": 0, "connect": None, "reason_codes": {}, "error": None}
    try:
        client.connect(a.host, a.port, keepalive=15 if a.esp32 else 60)
    except Exception as err:  # refused at the TLS handshake or the TCP connect
        summary["error"] = f"{type(err).__name__}: {err}"
        print(json.dumps(summary), flush=True)
        return 0
    client.loop_start()
    if not connected.wait(10):
        summary["error"] = "no CONNACK"
    elif connect_rc.get("rc") not in ("Success", "0"):
        summary["connect"] = connect_rc.get("rc")
        summary["error"] = "refused at CONNECT"
    else:
        summary["connect"] = connect_rc.get("rc")
        def generated():
            for i in range(a.count):
                n = a.start + i
                yield json.dumps({
                    "device_id": a.device,
                    "timestamp": BASE_MS + n,
                    "heart_rate": 60 + n % 40,
                    "body_temp": 36.8,
                    "signal_strength": -60,
                    "battery_level": 80,
                }, separators=(",", ":"))

        payloads = a.payload_json if a.payload_json else generated()
        for i, payload in enumerate(payloads):
            if a.esp32 and len(payload) + len(a.topic) + 5 > 256:
                summary["error"] = "payload exceeds the ESP32 profile's 256-byte packet"
                break
            if disconnected.is_set():
                break
            info = client.publish(a.topic, payload, qos=a.qos)
            while info.rc == mqtt.MQTT_ERR_QUEUE_SIZE and not disconnected.is_set():
                # paho's queue is full: room comes with the next acknowledgement (bounded, so
                # an acknowledgement that raced this wait costs a moment, not the run).
                with progress:
                    progress.wait(0.05)
                info = client.publish(a.topic, payload, qos=a.qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                break
            with lock:
                if info.mid in early:
                    record_ack(a.start + i, early.pop(info.mid))
                else:
                    mids[info.mid] = a.start + i
            summary["sent"] += 1
            last = info
            if a.esp32:
                # PubSubClient's publish() returns once the message is written: one at a time.
                wait_published(info, a.timeout)
        deadline = time.monotonic() + a.timeout
        with progress:
            while a.qos > 0 and len(acked) < summary["sent"] and not disconnected.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                progress.wait(left)
    if a.qos == 0 and last is not None:
        # The last QoS 0 message has left (they leave in order) before DISCONNECT.
        wait_published(last, a.timeout)
    if a.hold:
        with lock:
            summary["acked"] = len(acked)
        print(json.dumps(summary), flush=True)
        if select.select([sys.stdin], [], [], a.timeout)[0]:
            sys.stdin.read()
    client.disconnect()
    client.loop_stop()
    with lock:
        summary["acked"] = len(acked)
        summary["reason_codes"] = reason_codes
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
