# SPDX-License-Identifier: Apache-2.0
"""TLS records of every size TLS allows (RFC 8446 §5.1, RFC 5246 §6.2: up to 16,384 bytes of
plaintext) reach the device, and MQTT packets larger than it keeps are dealt with without a
reconnect loop.

- A burst of small commands that a broker writes as one 16 KiB record: the front below
  terminates TLS, relays to Mosquitto with the device's certificate (so the broker's ACL
  treats it as the device), holds what Mosquitto sends until the burst is complete, and
  writes it with one `sendall`, which OpenSSL sends as one record. The device must see every
  command and keep its connection.
- A 12 KiB QoS 1 command through Mosquitto itself (which writes each packet as one record):
  larger than the device's 1 KiB packets, so it is acknowledged, read past and dropped with
  a line in words; the connection stays and the next command arrives.
- A message far larger than anything read past (100 KiB) still ends the connection, named."""

import re
import subprocess
import threading

import pytest

from conftest import DEVICE_TOPICS, Console, broker_front_context, connect_upstream
from loopback import TlsListener, free_port
from test_broker_refusals import read_packet, relay

MAX_RECORD = 16384
# Each command: a PUBLISH on devices/dev-device-1/cmd/ping with this much payload, QoS 0 (so
# the device owes nothing back while the burst is held).
PAYLOAD = 300


class Holdback:
    """While `hold()` is in force, bytes from Mosquitto to the device are kept back;
    `release()` has the relay write them with one `sendall`, one TLS record."""

    def __init__(self):
        self.lock = threading.Condition()
        self.held = None  # bytearray while holding
        self.releasing = False
        self.released = []  # sizes of the writes made on release()

    def hold(self) -> None:
        with self.lock:
            self.held = bytearray()

    def wait_until_holding(self, n: int, timeout: float) -> int:
        """Waits until `n` bytes are held back (or `timeout`); returns how many are."""
        with self.lock:
            self.lock.wait_for(lambda: len(self.held or b"") >= n, timeout)
            return len(self.held or b"")

    def release(self) -> None:
        with self.lock:
            self.releasing = True

    # The relay's side.
    def keep(self, data: bytes) -> bool:
        with self.lock:
            if self.held is None:
                return False
            self.held += data
            self.lock.notify_all()
            return True

    def take_release(self):
        with self.lock:
            if not self.releasing:
                return None
            burst, self.held, self.releasing = bytes(self.held or b""), None, False
            self.released.append(len(burst))
            return burst


class CoalescingFront:
    """TLS on `port` as the broker; relays each connection to Mosquitto on `backend` as the
    device, through `holdback`."""

    def __init__(self, port: int, backend: int):
        self.port = port
        self.backend = backend
        self.holdback = Holdback()
        self.stopped = threading.Event()
        self.listener = TlsListener(port, broker_front_context(), self._accepted, 10)

    def _accepted(self, tls) -> None:
        threading.Thread(target=self._serve, args=(tls,), daemon=True).start()

    def _serve(self, device) -> None:
        try:
            device.settimeout(10)
            connect = read_packet(device)
            broker = connect_upstream(self.backend, "device")
            broker.sendall(connect)
        except (OSError, ConnectionError) as cause:
            print(f"front: connection dropped: {cause}")
            device.close()
            return
        relay(device, broker, self.stopped, self.holdback)

    def stop(self) -> None:
        self.stopped.set()
        self.listener.stop()


def launch(device, port: int, tmp_path) -> Console:
    device.device_config.extra_test_args = (
        f"--broker-port={port} --flash={tmp_path / 'flash.bin'}")
    device.command = []
    device.launch()
    return Console(device)


def ping_publish_len(payload_len: int) -> int:
    """Bytes of one QoS 0 PUBLISH on the ping topic with `payload_len` bytes of payload."""
    remaining = 2 + len(f"{DEVICE_TOPICS}/cmd/ping") + payload_len
    return 1 + (1 if remaining < 128 else 2) + remaining


@pytest.fixture()
def front(broker):
    f = CoalescingFront(free_port(), broker.port)
    yield f
    f.stop()


def test_a_burst_of_commands_in_one_16_kib_tls_record_reaches_the_device(front, peer, device,
                                                                       tmp_path):
    console = launch(device, front.port, tmp_path)
    console.until(r"mqtt: subscribed", timeout=60)
    # Room for a few small packets Mosquitto may send meanwhile (PUBACKs of the device's
    # status and telemetry, PINGRESP): what is held goes out in one record all the same.
    count = (MAX_RECORD - 64) // ping_publish_len(PAYLOAD)
    burst_len = count * ping_publish_len(PAYLOAD)
    front.holdback.hold()
    payloads = [f"{n:04d}".ljust(PAYLOAD, "x") for n in range(count)]
    with open(tmp_path / "burst.txt", "w") as lines:
        lines.write("\n".join(payloads) + "\n")
    subprocess.run(["mosquitto_pub", *peer.tls_args(), "-t", f"{DEVICE_TOPICS}/cmd/ping",
                    "-q", "0", "-l"], stdin=open(tmp_path / "burst.txt"), check=True,
                   timeout=30)
    held = front.holdback.wait_until_holding(burst_len, timeout=10)
    assert burst_len <= held <= MAX_RECORD, f"the front holds {held} bytes, the burst is {burst_len}"
    front.holdback.release()
    for n in range(count):
        console.until(re.escape(f"mqtt: ping ({PAYLOAD} bytes)"), timeout=30)
    assert front.holdback.released == [held]
    assert held > MAX_RECORD - 400, "the record is not near the largest TLS allows"
    # Still on the same connection: a command after the burst arrives too.
    peer.publish(f"{DEVICE_TOPICS}/cmd/ping", "after-burst")
    console.until(re.escape("mqtt: ping (11 bytes)"), timeout=15)
    status = console.status()
    assert status["state"] == "connected", status
    assert status["reconnects"] == "0", status
    print(f"\none TLS record of {held} bytes: {count} commands of {PAYLOAD} bytes")


def test_a_12_kib_command_is_acknowledged_and_dropped_with_the_connection_kept(broker, peer,
                                                                              device, tmp_path):
    console = launch(device, broker.port, tmp_path)
    console.until(r"mqtt: subscribed", timeout=60)
    topic = f"{DEVICE_TOPICS}/cmd/ping"
    peer.publish(topic, "y" * (12 * 1024), qos=1)
    dropped = console.until(
        rf"mqtt: message on {re.escape(topic)} dropped: (\d+) bytes, more than the 1024 this "
        r"device accepts \(QoS 1: acknowledged, not delivered\)", timeout=15)
    assert int(dropped.group(1)) == 1 + 2 + 2 + len(topic) + 2 + 12 * 1024
    peer.publish(topic, "after")
    console.until(re.escape("mqtt: ping (5 bytes)"), timeout=15)
    status = console.status()
    assert status["state"] == "connected", status
    assert status["reconnects"] == "0", status


def test_a_message_larger_than_anything_read_past_ends_the_connection(broker, peer, device,
                                                                      tmp_path):
    console = launch(device, broker.port, tmp_path)
    console.until(r"mqtt: subscribed", timeout=60)
    # QoS 0: the broker keeps no copy, so the device's next connection is clean.
    peer.publish(f"{DEVICE_TOPICS}/cmd/ping", "z" * (100 * 1024), qos=0)
    console.until(r"mqtt: connection lost: protocol: packet larger than the maximum",
                  timeout=15)
    console.until(r"mqtt: connected", timeout=30)
