# SPDX-License-Identifier: Apache-2.0
"""Brokers that are more than one machine, and brokers that route by ALPN: the device tries
a list of endpoints in turn (`--broker-endpoints`, CONFIG_APP_BROKER_ENDPOINTS) and moves to
another node when its node dies, keeping its QoS 1 promises; it offers the ALPN names it is
configured with (`--tls-alpn`, CONFIG_APP_TLS_ALPN), which a TLS terminator in front of the
broker requires, as AWS IoT Core does on port 443."""

import ssl
import threading
import time

import pytest

from conftest import (DEVICE_TOPICS, Broker, Console, Peer, broker_front_context,
                      connect_upstream)
from loopback import TlsListener, free_port

ALPN = "x-amzn-mqtt-ca"


def launch(device, tmp_path, *args: str) -> None:
    device.device_config.extra_test_args = " ".join(
        [f"--flash={tmp_path / 'flash.bin'}", "--reconnect-cap-ms=2000", *args])
    device.command = []
    device.launch()


def test_the_first_endpoint_down_the_device_connects_to_the_next(tmp_path, broker, peer,
                                                                device):
    dead = free_port()
    status = peer.subscribe(f"{DEVICE_TOPICS}/status")
    try:
        launch(device, tmp_path, f"--broker-endpoints=localhost:{dead},localhost:{broker.port}")
        device.readlines_until(regex=f"connect to localhost:{dead} failed: connection refused",
                               timeout=30)
        device.readlines_until(regex="tls: connected to localhost", timeout=30)
        device.readlines_until(regex="mqtt: connected", timeout=20)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=20)
    finally:
        status.close()


def test_when_its_node_dies_the_device_moves_to_the_other_and_loses_nothing(tmp_path, device):
    first = Broker(free_port(), tmp_path / "first").start()
    second = Broker(free_port(), tmp_path / "second").start()
    console = Console(device)
    watcher = Peer(second.port).subscribe(f"{DEVICE_TOPICS}/seq")
    try:
        launch(device, tmp_path,
               f"--broker-endpoints=localhost:{first.port},localhost:{second.port}")
        console.until("mqtt: subscribed", timeout=30)
        first.stop()  # SIGKILL: the node dies without a word
        sent = set()
        for n in range(5):  # queued while the device finds out and moves
            ticket, outcome, answer = console.pub(f"{DEVICE_TOPICS}/seq", f"failover-{n}")
            assert outcome in ("queued", "pending"), answer
            sent.add(f"{DEVICE_TOPICS}/seq failover-{n}")
        console.until(f"connect to localhost:{first.port} failed", timeout=60)
        console.until("tls: connected to localhost", timeout=30)
        missing = watcher.wait_for_all(sent, timeout=30)
        assert not missing, f"lost moving to the second node: {sorted(missing)}"
    finally:
        watcher.close()
        first.stop()
        second.stop()


class AlpnFront:
    """A TLS terminator in front of Mosquitto that takes a connection only if the client
    offered the ALPN name it routes by, and relays it to the broker (as the observer
    identity, which the broker's ACL allows everywhere)."""

    def __init__(self, port: int, broker_port: int):
        self.broker_port = broker_port
        self.offered = []  # the ALPN name each handshake chose (None: none offered)
        context = broker_front_context()
        context.set_alpn_protocols([ALPN])
        self.listener = TlsListener(port, context, self._accepted, handshake_timeout=10)

    def _accepted(self, tls: ssl.SSLSocket) -> None:
        chosen = tls.selected_alpn_protocol()
        self.offered.append(chosen)
        if chosen != ALPN:
            tls.close()
            return
        upstream = connect_upstream(self.broker_port, "observer")
        upstream.settimeout(None)  # each direction's pump blocks in recv
        for source, sink in ((tls, upstream), (upstream, tls)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(4096):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.close()
            except OSError:
                pass

    def stop(self) -> None:
        self.listener.stop()


@pytest.fixture()
def alpn_front(broker):
    front = AlpnFront(free_port(), broker.port)
    yield front
    front.stop()


def test_alpn_is_offered_and_a_front_that_requires_it_lets_the_device_through(
        tmp_path, alpn_front, peer, device):
    status = peer.subscribe(f"{DEVICE_TOPICS}/status")
    try:
        port = alpn_front.listener.listener.getsockname()[1]
        launch(device, tmp_path, f"--broker-port={port}", f"--tls-alpn={ALPN}")
        device.readlines_until(regex="mqtt: connected", timeout=30)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=20)
        assert alpn_front.offered[0] == ALPN
    finally:
        status.close()


def test_without_alpn_the_front_refuses_the_device_and_it_keeps_trying(tmp_path, alpn_front,
                                                                        device):
    port = alpn_front.listener.listener.getsockname()[1]
    launch(device, tmp_path, f"--broker-port={port}")
    for _ in range(2):
        device.readlines_until(regex="reconnecting in [0-9]+ ms", timeout=30)
    assert alpn_front.offered and all(chosen is None for chosen in alpn_front.offered)
    assert device.is_device_running()
