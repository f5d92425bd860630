#!/usr/bin/env python3
"""Does a broker keep a persistent session's subscription across a graceful restart?

A check of the broker alone (no VitalWatch): it starts Debian's Mosquitto on a loopback port
with persistence on (plain MQTT; TLS does not change what the broker keeps), connects
subscribers with persistent sessions (clean_session=False, QoS 1, acknowledging late as a
VitalWatch node does after its commit), floods QoS 1 messages from a Paho publisher, stops the
broker with SIGTERM mid-flood, starts it again, and counts the acknowledged messages no
subscriber ever received.

    scripts/broker_restart_check.py --shared            # $share/vitalwatch//iot/health
    scripts/broker_restart_check.py --plain             # /iot/health
    scripts/broker_restart_check.py --shared --no-resubscribe

Needs `mosquitto` and paho-mqtt 2 (scripts/test installs both). Each trial is bounded
(30 s to deliver); nothing here is in the test path.
"""
import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

TOPIC = "/iot/health"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, state):
        self.port = free_port()
        self.conf = os.path.join(state, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(
                f"persistence true\npersistence_location {state}/\nautosave_interval 1\n"
                f"max_queued_messages 0\nlog_dest none\nallow_anonymous true\n"
                f"listener {self.port} 127.0.0.1\n"
            )
            if os.geteuid() == 0:
                f.write("user root\n")
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            ["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise SystemExit("mosquitto did not start listening")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


class Subscriber:
    """A persistent session that acknowledges in batches, `ack_delay` after receipt."""

    def __init__(self, name, port, topic, resubscribe, ack_delay, received, lock):
        self.acks = queue.Queue()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=name, clean_session=False, manual_ack=True
        )

        def on_connect(client, _userdata, flags, _rc, _props):
            if resubscribe or not flags.session_present:
                client.subscribe(topic, qos=1)

        def on_message(_client, _userdata, message):
            with lock:
                received.add(message.payload)
            self.acks.put((message.mid, message.qos))

        def acker():
            while True:
                time.sleep(ack_delay)
                while True:
                    try:
                        mid, qos = self.acks.get_nowait()
                    except queue.Empty:
                        break
                    self.client.ack(mid, qos)

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        threading.Thread(target=acker, daemon=True).start()
        self.client.loop_start()


def trial(args):
    with tempfile.TemporaryDirectory() as state:
        broker = Broker(state)
        received, lock = set(), threading.Lock()
        topic = f"$share/vitalwatch/{TOPIC}" if args.shared else TOPIC
        subscribers = [
            Subscriber(f"node{i}", broker.port, topic, args.resubscribe, args.ack_delay,
                       received, lock)
            for i in range(args.subscribers if args.shared else 1)
        ]
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="publisher",
                                clean_session=False)
        acked = set()
        sent = {}
        publisher.on_publish = lambda _c, _u, mid, _rc, _p: acked.add(sent.get(mid, mid))
        publisher.max_queued_messages_set(0)
        publisher.reconnect_delay_set(0.1, 0.5)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        time.sleep(0.5)  # the subscribers' SUBACKs (a check script, not a test)

        def flood():
            for n in range(args.messages):
                info = publisher.publish(TOPIC, f"m{n}".encode(), qos=1)
                sent[info.mid] = n
                time.sleep(0.0005)

        flooding = threading.Thread(target=flood)
        flooding.start()
        while len(acked) < args.messages // 4:
            time.sleep(0.01)
        broker.stop()
        broker.start()
        flooding.join()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(received) < args.messages:
            time.sleep(0.1)
        with lock:
            got = {int(p[1:]) for p in received}
        lost = len(set(range(args.messages)) - got)
        for s in subscribers:
            s.client.loop_stop()
        publisher.loop_stop()
        broker.stop()
        return len(acked), lost


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--shared", action="store_true", help="a $share group of --subscribers")
    kind.add_argument("--plain", action="store_true", help="one plain subscriber")
    parser.add_argument("--no-resubscribe", dest="resubscribe", action="store_false",
                        help="rely on the session's subscription after a reconnect")
    parser.add_argument("--subscribers", type=int, default=3)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--ack-delay", type=float, default=0.2)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    losses = []
    for n in range(args.trials):
        acked, lost = trial(args)
        losses.append(lost)
        print(f"trial {n + 1}: {acked} acknowledged to the publisher, {lost} never delivered",
              flush=True)
    print(f"lost in {sum(1 for x in losses if x)} of {args.trials} trials, "
          f"{min(losses)}-{max(losses)} each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
