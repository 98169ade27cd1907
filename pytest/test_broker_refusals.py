# SPDX-License-Identifier: Apache-2.0
"""A broker that refuses the device's CONNECT (MQTT 3.1.1 §3.2.2.3, CONNACK return codes 1 to
5) never makes it give up: it says why and what to fix in one line, backs off (slowly for the
refusals a person must fix, on the usual schedule for "server unavailable"), retries at once
after new credentials are committed, and connects as soon as the broker accepts.

The refusing broker is a front written with Python's ssl module: it terminates TLS with the
development broker certificate, answers the first CONNECTs with the CONNACK code under test and
closes (as a broker must after a refusal), then relays later connections, CONNECT included, to
a real Mosquitto. The relay connects to Mosquitto with the device's own certificate, so the
broker's ACL, keyed by the certificate's CN, treats it as the device: the device may publish
its status, its will and subscribe to its commands, and nothing else."""

import re
import select
import ssl
import threading
import time
from pathlib import Path

import pytest

from conftest import DEVICE_TOPICS, Console, broker_front_context, connect_upstream
from loopback import TlsListener, free_port

# The log's words for each refusal and what a person should do about it (mqtt-core's
# ConnectRefusal: Display and remedy()).
REFUSALS = {
    1: ("unacceptable protocol version", "the broker must accept MQTT 3.1.1"),
    2: ("client identifier rejected",
        "check the client id (APP_MQTT_CLIENT_ID) against the broker's rules"),
    3: ("server unavailable", "the broker should come back by itself"),
    4: ("bad user name or password",
        "check the user name (APP_MQTT_USERNAME) and the provisioned password"),
    5: ("not authorized", "give this client id, certificate or user name access at the broker"),
}
SLOW_SUFFIX = " (refused: retried rarely, or at once after cred commit)"
RECONNECTING = re.compile(r"reconnecting in (\d+) ms( \(refused: [^)]*\))?")
# --reconnect-cap-ms sets both the usual and the attention cap on native_sim. Far above the
# usual schedule's first ceilings (APP_RECONNECT_BASE_MS, 1 s, then 2 s), so that a delay
# from the slow schedule (at least half this) cannot be mistaken for one from the usual one.
CAP_MS = 6000
REFUSED_CONNECTIONS = 2


def read_packet(tls: ssl.SSLSocket) -> bytes:
    """One whole MQTT control packet: fixed header, remaining length, body."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = tls.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed inside a packet")
            data += chunk
        return data

    header = exactly(1)
    length, shift, length_bytes = 0, 0, b""
    while True:
        byte = exactly(1)
        length_bytes += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
        if len(length_bytes) == 4:
            raise ConnectionError("remaining length longer than 4 bytes")
    return header + length_bytes + exactly(length)


def send_all(sink: ssl.SSLSocket, data: bytes) -> None:
    """One `sendall` on a non-blocking TLS socket: OpenSSL writes up to 16 KiB as one record."""
    sink.settimeout(10)
    sink.sendall(data)
    sink.setblocking(False)


def relay(device: ssl.SSLSocket, broker: ssl.SSLSocket, stopped: threading.Event,
          holdback=None) -> None:
    """Copies bytes both ways between two TLS sockets until one side closes. One thread owns
    both SSL objects; bytes OpenSSL has already decrypted (`pending`) count as readable.
    `holdback`, if given, may keep bytes from the broker back (`keep(data)` is true) and hand
    them over later in one write (`take_release()` returns them)."""
    for s in (device, broker):
        s.setblocking(False)
    try:
        while not stopped.is_set():
            if holdback is not None and (burst := holdback.take_release()) is not None:
                send_all(device, burst)
            wait = 0 if device.pending() or broker.pending() else 0.2
            readable, _, _ = select.select([device, broker], [], [], wait)
            for source, sink in ((device, broker), (broker, device)):
                if source not in readable and not source.pending():
                    continue
                try:
                    data = source.recv(16384)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                if not data:
                    return
                if source is broker and holdback is not None and holdback.keep(data):
                    continue
                send_all(sink, data)
    except OSError:
        pass
    finally:
        device.close()
        broker.close()


class RefusingFront:
    """TLS on `port` with the development broker certificate, requiring a client certificate
    from the development CA as the real broker does. The first `refusals` CONNECTs are
    answered with CONNACK `code`; the later ones are relayed to Mosquitto on `backend`.
    Records when each CONNECT arrived and when each refusal went out (time.monotonic())."""

    def __init__(self, port: int, backend: int, code: int, refusals: int):
        self.port = port
        self.backend = backend
        self.code = code
        self.refusals = refusals
        self.connects = []
        self.refused_at = []
        self.relayed = 0
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.listener = TlsListener(port, broker_front_context(), self._handshake_completed, 10)

    def _handshake_completed(self, tls: ssl.SSLSocket) -> None:
        threading.Thread(target=self._serve, args=(tls,), daemon=True).start()

    def _serve(self, tls: ssl.SSLSocket) -> None:
        try:
            tls.settimeout(10)
            connect = read_packet(tls)
            assert connect[0] == 0x10, f"first packet is not CONNECT: {connect[:8].hex()}"
            with self.lock:
                self.connects.append(time.monotonic())
                refuse = len(self.connects) <= self.refusals
            if refuse:
                # MQTT 3.1.1 §3.2.2.3: session present 0, then the server closes.
                tls.sendall(bytes([0x20, 0x02, 0x00, self.code]))
                self.refused_at.append(time.monotonic())
                tls.close()
                return
            broker = connect_upstream(self.backend, "device")
            broker.sendall(connect)
            self.relayed += 1
        except (OSError, ConnectionError, AssertionError) as cause:
            print(f"front: connection dropped: {cause}")
            tls.close()
            return
        relay(tls, broker, self.stopped)

    def stop(self) -> None:
        self.stopped.set()
        self.listener.stop()


def config_value(device, name: str) -> int:
    config = (Path(device.device_config.build_dir) / "zephyr" / ".config").read_text()
    return int(re.search(rf"^{name}=(\d+)$", config, re.M).group(1))


@pytest.fixture()
def front_port() -> int:
    return free_port()


def launch(device, port: int, tmp_path, cap_ms: int, *options: str) -> None:
    device.device_config.extra_test_args = " ".join([
        f"--broker-port={port}", f"--flash={tmp_path / 'flash.bin'}",
        f"--reconnect-cap-ms={cap_ms}", *options])
    device.command = []
    device.launch()


def refusals_then_acceptance(front: RefusingFront, console: Console, device, peer, tmp_path
                             ) -> list:
    """Runs the device against `front` until it is connected through it and its status
    arrived at an observer; returns the (delay in ms, suffix) of each "reconnecting" line
    after a refusal. Asserts the refusal line of every refused connection."""
    code = front.code
    words, fix = REFUSALS[code]
    status = peer.subscribe(f"{DEVICE_TOPICS}/status")
    try:
        launch(device, front.port, tmp_path, CAP_MS)
        delays = []
        for _ in range(front.refusals):
            console.until(re.escape(f"broker refused the connection: {words} (CONNACK {code}); "
                                    f"fix: {fix}"), timeout=30)
            reconnecting = console.until(RECONNECTING.pattern, timeout=5)
            delays.append((int(reconnecting.group(1)), reconnecting.group(2) or ""))
        assert device.is_device_running(), "the firmware must survive a refusal"
        console.until("mqtt: connected", timeout=CAP_MS / 1000 + 30)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=15)
    finally:
        status.close()
    assert len(front.connects) == front.refusals + 1, front.connects
    assert front.relayed == 1
    print(f"\nCONNACK {code}: delays {delays}, CONNECTs at {front.connects}")
    return delays


@pytest.fixture()
def refusing_front(broker, front_port, request):
    """A front that refuses REFUSED_CONNECTIONS times with the test's code, then relays."""
    front = RefusingFront(front_port, broker.port, request.param, REFUSED_CONNECTIONS)
    yield front
    front.stop()


@pytest.mark.parametrize("refusing_front", [1, 2, 4, 5], indirect=True,
                         ids=["unacceptable-protocol-version", "identifier-rejected",
                              "bad-user-name-or-password", "not-authorized"])
def test_a_refusal_a_person_must_fix_is_retried_slowly_until_the_broker_accepts(
        refusing_front, device, console, peer, tmp_path):
    front = refusing_front
    delays = refusals_then_acceptance(front, console, device, peer, tmp_path)
    for delay_ms, suffix in delays:
        assert suffix == SLOW_SUFFIX, suffix
        # Equal jitter from the usual cap up to the attention cap (both CAP_MS here).
        assert CAP_MS // 2 <= delay_ms <= CAP_MS, delays
    for refused, (delay_ms, _) in zip(front.refused_at, delays):
        next_connect = min(t for t in front.connects if t > refused)
        waited_ms = (next_connect - refused) * 1000
        # The device waited at least the delay it logged (a little scheduling slack).
        assert waited_ms >= 0.95 * delay_ms and waited_ms >= 0.95 * CAP_MS / 2, \
            (waited_ms, delay_ms)


@pytest.mark.parametrize("refusing_front", [3], indirect=True, ids=["server-unavailable"])
def test_server_unavailable_is_retried_on_the_usual_schedule(refusing_front, device, console,
                                                            peer, tmp_path):
    front = refusing_front
    delays = refusals_then_acceptance(front, console, device, peer, tmp_path)
    base_ms = config_value(device, "CONFIG_APP_RECONNECT_BASE_MS")
    assert base_ms * 2 < CAP_MS // 2, "the usual schedule must be told apart from the slow one"
    for attempt, (delay_ms, suffix) in enumerate(delays):
        assert suffix == "", suffix
        # Full jitter under the usual ceiling: base, then twice the base, ...
        assert delay_ms <= min(CAP_MS, base_ms << attempt), delays


@pytest.mark.parametrize("refusing_front", [5], indirect=True, ids=["not-authorized"])
def test_a_refusal_is_retried_at_once_after_cred_commit(refusing_front, device, console, peer,
                                                       tmp_path):
    """The broker's side was fixed and the operator commits credentials (here the same ones
    again): the device must not sit out the rest of a long refusal delay."""
    front = refusing_front
    front.refusals = 1
    cap_ms = 60_000
    status = peer.subscribe(f"{DEVICE_TOPICS}/status")
    try:
        launch(device, front.port, tmp_path, cap_ms)
        console.until(re.escape("broker refused the connection: not authorized (CONNACK 5)"),
                      timeout=30)
        delay_ms = int(console.until(RECONNECTING.pattern, timeout=5).group(1))
        assert delay_ms >= cap_ms // 2
        shown = console.status()
        assert shown["state"] == "backing off", shown
        assert shown["last error"] == \
            "protocol: connection refused by the broker: not authorized (CONNACK 5)", shown

        console.command("cred image cert")
        console.until("cert from the image staged", timeout=10)
        committed = time.monotonic()  # before the command: the interval is an upper bound
        console.command("cred commit")
        console.until(r"stored; used from the next connection on", timeout=10)
        console.until(r"credentials: new set in use \(mutual TLS: true\)", timeout=10)
        console.until("mqtt: connected", timeout=20)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=15)
    finally:
        status.close()
    assert len(front.connects) == 2, front.connects
    retried_after_s = front.connects[1] - committed
    print(f"\nrefusal delay {delay_ms} ms; CONNECT {retried_after_s:.2f} s after the commit")
    assert retried_after_s < 5, retried_after_s
    assert retried_after_s * 1000 < delay_ms / 4


@pytest.mark.parametrize("code", [3, 5], ids=["server-unavailable", "not-authorized"])
def test_a_node_that_refuses_the_connect_is_left_for_the_next_endpoint(
        code, broker, front_port, device, console, peer, tmp_path):
    """With several broker endpoints (--broker-endpoints, CONFIG_APP_BROKER_ENDPOINTS), one
    node that refuses every CONNECT (its MQTT service down behind a working TLS terminator,
    or its authorization backend broken) must not hold the device: the next endpoint accepts
    it, as it would after a failed TCP connect or TLS handshake."""
    front = RefusingFront(front_port, broker.port, code, refusals=1_000_000)
    status = peer.subscribe(f"{DEVICE_TOPICS}/status")
    try:
        launch(device, front_port, tmp_path, 2000,
               f"--broker-endpoints=localhost:{front_port},localhost:{broker.port}")
        words, _ = REFUSALS[code]
        console.until(re.escape(f"broker refused the connection: {words} (CONNACK {code})"),
                      timeout=30)
        console.until("mqtt: connected", timeout=20)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=15)
    finally:
        status.close()
        front.stop()
        print(f"\nCONNECTs at the refusing node: {len(front.connects)}")
    assert front.relayed == 0
