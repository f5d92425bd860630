#!/usr/bin/env python3
"""One long-lived MQTT session with Eclipse Paho, driven from standard input, reporting what
happens to it as JSON lines on standard output (for tests that act on a session while it is
open: revocation, handshake floods).

Events: {"event": "connected", "rc": N, "elapsed_ms": F} (elapsed from the TCP connect to the
CONNACK), {"event": "subscribed"}, {"event": "message", "topic": T, "payload": P},
{"event": "puback", "mid": N}, {"event": "published", "mid": N, "rc": N},
{"event": "disconnected", "rc": N}, {"event": "error", "error": TEXT}.
Commands (one a line): "publish PAYLOAD", "quit". The client never reconnects by itself.
"""

import argparse
import json
import queue
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt


def say(**event):
    print(json.dumps(event), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--client-id", default="")
    parser.add_argument("--bind", default="")
    parser.add_argument("--subscribe")
    parser.add_argument("--topic", default="/iot/health")
    args = parser.parse_args()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=mqtt.MQTTv311,
    )
    if args.ca:
        context = ssl.create_default_context(cafile=args.ca)
        if args.cert:
            context.load_cert_chain(args.cert, args.key)
        client.tls_set_context(context)
    if args.username:
        client.username_pw_set(args.username, args.password)
    state = {"connected": False, "done": False}
    started = [0.0]

    def on_connect(_client, _userdata, _flags, rc, _properties):
        elapsed = (time.monotonic() - started[0]) * 1000
        say(event="connected", rc=rc.value, elapsed_ms=elapsed)
        if rc.value != 0:
            state["done"] = True
            return
        state["connected"] = True
        if args.subscribe:
            client.subscribe(args.subscribe, qos=1)

    def on_subscribe(_client, _userdata, _mid, _codes, _properties):
        say(event="subscribed")

    def on_message(_client, _userdata, message):
        say(event="message", topic=message.topic, payload=message.payload.decode())

    def on_publish(_client, _userdata, mid, _rc, _properties):
        say(event="puback", mid=mid)

    def on_disconnect(_client, _userdata, _flags, rc, _properties):
        say(event="disconnected", rc=rc.value)
        state["done"] = True

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_disconnect = on_disconnect

    commands = queue.Queue()

    def read_commands():
        for line in sys.stdin:
            commands.put(line.rstrip("\n"))
        commands.put("quit")

    threading.Thread(target=read_commands, daemon=True).start()
    started[0] = time.monotonic()
    try:
        client.connect(args.host, args.port, keepalive=30, bind_address=args.bind)
    except Exception as err:  # the TLS handshake or TCP connect failed
        say(event="error", error=str(err))
        return
    while not state["done"]:
        client.loop(timeout=0.05)
        try:
            command = commands.get_nowait()
        except queue.Empty:
            continue
        if command == "quit":
            client.disconnect()
            client.loop(timeout=0.2)
            return
        if command.startswith("publish "):
            info = client.publish(args.topic, command[len("publish "):], qos=1)
            say(event="published", mid=info.mid, rc=info.rc)


if __name__ == "__main__":
    main()
