# SPDX-License-Identifier: Apache-2.0
"""What the device does on its topics: status, commands, replies and telemetry, against a
real Mosquitto over mutual TLS."""

import json
import ssl
import uuid

from conftest import DEV_CERTS, DEVICE_TOPICS
from loopback import TlsListener


def connected(device):
    device.launch()
    device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=20)


def test_status_is_retained_online_and_becomes_offline_when_the_device_dies(peer, device):
    connected(device)
    late = peer.subscribe(f"{DEVICE_TOPICS}/status")  # after the fact: sees the retained one
    try:
        late.wait_for(f"{DEVICE_TOPICS}/status online", timeout=10)
        device.close()  # kills the process: no DISCONNECT, so the broker sends the will
        late.wait_for(f"{DEVICE_TOPICS}/status offline", timeout=10)
    finally:
        late.close()


def test_led_commands_drive_the_leds(peer, device):
    device.launch()
    device.readlines_until(regex="leds: 3 available", timeout=10)
    device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=20)
    peer.publish(f"{DEVICE_TOPICS}/cmd/led/1", "on")
    device.readlines_until(regex="led1: on -> on", timeout=10)
    peer.publish(f"{DEVICE_TOPICS}/cmd/led/1", "toggle")
    device.readlines_until(regex="led1: toggle -> off", timeout=10)
    peer.publish(f"{DEVICE_TOPICS}/cmd/led", " Toggle ")
    device.readlines_until(regex="led0: toggle -> on", timeout=10)
    peer.publish(f"{DEVICE_TOPICS}/cmd/led/2", "ON")
    device.readlines_until(regex="led2: on -> on", timeout=10)


def test_ping_is_answered_with_the_same_payload(peer, device):
    replies = peer.subscribe(f"{DEVICE_TOPICS}/reply/#")
    try:
        connected(device)
        token = uuid.uuid4().hex
        peer.publish(f"{DEVICE_TOPICS}/cmd/ping", token)
        replies.wait_for(f"{DEVICE_TOPICS}/reply/ping {token}", timeout=10)
    finally:
        replies.close()


def test_bad_commands_get_an_error_reply_and_the_device_keeps_working(peer, device):
    replies = peer.subscribe(f"{DEVICE_TOPICS}/reply/#")
    try:
        connected(device)
        for topic, payload, code in [
            ("cmd/reboot", "now", "unknown_command"),
            ("cmd/led/1", "blink", "bad_payload"),
            ("cmd/led/7", "on", "no_such_led"),
        ]:
            peer.publish(f"{DEVICE_TOPICS}/{topic}", payload)
            expected = json.dumps({"error": code, "topic": f"{DEVICE_TOPICS}/{topic}"},
                                  separators=(",", ":"))
            replies.wait_for(f"{DEVICE_TOPICS}/reply/error {expected}", timeout=10)
        peer.publish(f"{DEVICE_TOPICS}/cmd/ping", "still-here")
        replies.wait_for(f"{DEVICE_TOPICS}/reply/ping still-here", timeout=10)
    finally:
        replies.close()


def test_telemetry_is_a_json_document_with_counters_and_the_tls_in_use(peer, device):
    telemetry = peer.subscribe(f"{DEVICE_TOPICS}/telemetry")
    try:
        connected(device)
        line = telemetry.next_line(timeout=15)
        topic, document = line.split(" ", 1)
        assert topic == f"{DEVICE_TOPICS}/telemetry"
        fields = json.loads(document)
        assert set(fields) == {"uptime_s", "published", "received", "reconnects", "outbox",
                               "heap_free", "tls"}
        assert fields["reconnects"] == 0
        assert isinstance(fields["heap_free"], int) and fields["heap_free"] > 0
        assert fields["tls"]["version"] in ("TLSv1.3", "TLSv1.2")
        assert "GCM" in fields["tls"]["cipher"]
    finally:
        telemetry.close()


def test_status_says_mqtt_connecting_until_the_broker_answers_connect(broker_port, device,
                                                                       console):
    # A broker that completes the TLS handshake and never answers CONNECT: TLS is up, MQTT
    # is not, and `mqtt status` must say so rather than "connected".
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(DEV_CERTS / "broker.crt.pem", DEV_CERTS / "broker.key.pem")
    held = []  # the open connections, never answered
    listener = TlsListener(broker_port, context, held.append, 5)
    try:
        device.launch()
        console.until("tls: connected to localhost", timeout=30)
        # The log line comes just before the supervisor records the new state.
        states = [console.status()["state"]]
        while states[-1] == "connecting" and len(states) < 5:
            states.append(console.status()["state"])
        assert states[-1] == "mqtt connecting", states
    finally:
        listener.stop()
        for tls in held:
            tls.close()
