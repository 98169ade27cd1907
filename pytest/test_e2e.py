# SPDX-License-Identifier: Apache-2.0
"""End to end: the real firmware image (native_sim/native/64) against a real Mosquitto over
mutual TLS on loopback."""

import uuid

from conftest import DEVICE_TOPICS, Broker


def test_device_publishes_status_and_receives_commands_over_mutual_tls(broker, peer, device):
    messages = peer.subscribe(f"{DEVICE_TOPICS}/#")
    try:
        device.launch()
        device.readlines_until(regex="credentials installed \\(mutual TLS: true\\)", timeout=10)
        device.readlines_until(regex="tls: connected to localhost \\(TLSv1\\.[23], ", timeout=20)
        device.readlines_until(regex="mqtt: connected \\(session present", timeout=20)
        # The device's message arrives at a subscriber.
        messages.wait_for(f"{DEVICE_TOPICS}/status online", timeout=10)
        device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=10)
        # A message to its command topic reaches the firmware, which answers it.
        token = uuid.uuid4().hex
        peer.publish(f"{DEVICE_TOPICS}/cmd/ping", token)
        device.readlines_until(regex=f"mqtt: ping \\({len(token)} bytes\\)", timeout=10)
        messages.wait_for(f"{DEVICE_TOPICS}/reply/ping {token}", timeout=10)
    finally:
        messages.close()


def test_unreachable_broker_is_retried_with_backoff_until_it_comes_up(tmp_path, broker_port,
                                                                        device):
    device.launch()
    device.readlines_until(regex=f"connect to localhost:{broker_port} failed: connection refused",
                           timeout=20)
    device.readlines_until(regex="reconnecting in [0-9]+ ms", timeout=5)
    device.readlines_until(regex="connect to .* failed: connection refused", timeout=20)
    broker = Broker(broker_port, tmp_path / "late-broker").start()
    try:
        device.readlines_until(regex="mqtt: connected \\(session present", timeout=90)
    finally:
        broker.stop()
