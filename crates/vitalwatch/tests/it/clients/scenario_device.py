"""One device playing a scenario the way a careful device does, with Eclipse Paho.

Usage: scenario_device.py --port P --ca CA --cert CRT --key KEY --device ID --payloads FILE
                          [--timeout S]

Publishes the payloads of FILE (one JSON reading a line) in order at QoS 1, one at a time: the
next is sent only after the previous one's PUBACK. When the connection is lost (its node was
killed) or a PUBACK does not come, it connects again (a new session, through the balancer) and
sends the unacknowledged reading again, so every reading is acknowledged once and the server
sees them in the scenario's order. Prints "ack I" as reading I is acknowledged (flushed) and a
JSON summary line at the end: acked, resent, connections, error. Gives up after --timeout
seconds without an acknowledgement.
"""

import argparse
import json
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

# How long one PUBACK may take before the connection is considered dead.
ACK_WAIT_S = 10.0


class Connection:
    """One MQTT session; `publish` answers whether the PUBACK came."""

    def __init__(self, a, n):
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"{a.device}-scenario-{n}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=a.ca)
        context.load_cert_chain(a.cert, a.key)
        self.client.tls_set_context(context)
        self.client.max_inflight_messages_set(1)
        self.cond = threading.Condition()
        self.connected = False
        self.lost = False
        self.acked = set()
        self.client.on_connect = self.on_connect
        self.client.on_disconnect = self.on_disconnect
        self.client.on_publish = self.on_publish
        self.client.connect(a.host, a.port, keepalive=30)
        self.client.loop_start()

    def on_connect(self, client, userdata, flags, rc, properties=None):
        with self.cond:
            self.connected = not rc.is_failure
            self.lost = rc.is_failure
            self.cond.notify_all()

    def on_disconnect(self, client, userdata, flags, rc, properties=None):
        with self.cond:
            self.lost = True
            self.cond.notify_all()

    def on_publish(self, client, userdata, mid, rc, properties=None):
        with self.cond:
            self.acked.add(mid)
            self.cond.notify_all()

    def wait_connected(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.connected and not self.lost:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return self.connected and not self.lost

    def publish(self, topic, payload):
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        deadline = time.monotonic() + ACK_WAIT_S
        with self.cond:
            while info.mid not in self.acked and not self.lost:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return info.mid in self.acked

    def close(self):
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.client.loop_stop()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--payloads", required=True)
    p.add_argument("--topic", default="/iot/health")
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()
    with open(a.payloads) as f:
        payloads = [line.strip() for line in f if line.strip()]

    summary = {"acked": 0, "resent": 0, "connections": 0, "error": None}
    connection = None
    last_progress = time.monotonic()
    i = 0
    tries = 0
    while i < len(payloads):
        if time.monotonic() - last_progress > a.timeout:
            summary["error"] = f"no acknowledgement for {a.timeout} s at reading {i}"
            break
        if connection is None:
            summary["connections"] += 1
            try:
                connection = Connection(a, summary["connections"])
            except Exception:
                connection = None
            if connection is None or not connection.wait_connected(10):
                if connection is not None:
                    connection.close()
                    connection = None
                time.sleep(0.2)  # back-off between connection attempts, not a synchronisation
                continue
        if tries > 0:
            summary["resent"] += 1
        tries += 1
        if connection.publish(a.topic, payloads[i]):
            print(f"ack {i}", flush=True)
            summary["acked"] += 1
            i += 1
            tries = 0
            last_progress = time.monotonic()
        else:
            connection.close()
            connection = None
    if connection is not None:
        connection.close()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
