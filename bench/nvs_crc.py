#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What NVS's data CRC (CONFIG_NVS_DATA_CRC) costs the MQTT thread on the emulated board
(mps2/an386, a Cortex-M4 in QEMU), in instructions: a credential change (each `cred`
upload, whose `cred end` writes its record, and `cred commit`), a QoS 1 publish queued
offline (its outbox record written) and the acknowledgement of 3 such messages (their
records deleted), on two images that differ in that option alone.

QEMU runs with `-icount shift=0`: guest time advances 1 ns per instruction, so the MQTT
thread's execution cycles (`kernel thread list`, Zephyr's runtime statistics; the `main`
thread) count its instructions, one cycle per 1e9 / CONFIG_SYS_CLOCK_HW_CYCLES_PER_SEC of
them (40 at 25 MHz). Each step is read between two such lists. The broker is a small one of
this script's (`HoldingBroker`, on the rig's network, pytest/an386/rig.py) that holds the
PUBACKs of the measured topic until the script releases them, so that the deletes can be
measured apart from the reconnect that sends their messages; messages published while
connected (no record) are released the same way, for the baseline.

Run as root (a private network namespace), on images built with
  -DEXTRA_CONF_FILE=pytest/an386/test.conf -DCONFIG_KERNEL_SHELL=y
  -DCONFIG_APP_PERSISTENT_OUTBOX=y [-DCONFIG_NVS_DATA_CRC=n]
  bench/nvs_crc.py --image crc=BUILD_A/zephyr/zephyr.elf --image nocrc=BUILD_B/zephyr/zephyr.elf
"""

import argparse
import json
import re
import socket
import ssl
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "pytest" / "an386"))
sys.path.insert(0, str(REPO / "bench"))

import an386  # noqa: E402
import rig  # noqa: E402

TOPIC = f"{rig.DEVICE_TOPICS}/nvs"
REPS = 4
BATCH = 3  # messages per release


class HoldingBroker:
    """MQTT 3.1.1 over TLS (the rig's broker certificate, the client's required): answers
    CONNECT, SUBSCRIBE, PINGREQ and every publish at once, but holds the PUBACKs of QoS 1
    publishes to `hold_prefix` until `release()`."""

    def __init__(self, certs: Path, address: str, port: int, hold_prefix: str):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs / "broker.crt.pem", certs / "broker.key.pem")
        self.context.load_verify_locations(certs / "ca.crt.pem")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.hold_prefix = hold_prefix.encode()
        self.listener = socket.create_server((address, port))
        self.held = []
        self.conn = None
        self.lock = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _packet(self, conn) -> tuple:
        first = self._read(conn, 1)[0]
        length, shift = 0, 0
        while True:
            byte = self._read(conn, 1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return first, self._read(conn, length)

    def _send(self, data: bytes) -> None:
        with self.lock:
            self.conn.sendall(data)

    def _session(self, conn) -> None:
        with self.lock:
            self.conn, self.held = conn, []
        try:
            while True:
                first, body = self._packet(conn)
                kind = first >> 4
                if kind == 1:  # CONNECT: accepted, no session
                    self._send(b"\x20\x02\x00\x00")
                elif kind == 8:  # SUBSCRIBE: QoS 1 granted to each filter
                    rest, count = body[2:], 0
                    while rest:
                        rest = rest[2 + struct.unpack("!H", rest[:2])[0] + 1:]
                        count += 1
                    self._send(bytes([0x90, 2 + count]) + body[:2] + b"\x01" * count)
                elif kind == 3 and (first >> 1) & 3:  # PUBLISH, QoS 1 or 2
                    n = struct.unpack("!H", body[:2])[0]
                    topic, pid = body[2:2 + n], body[2 + n:4 + n]
                    if (first >> 1) & 3 == 2:
                        self._send(b"\x50\x02" + pid)  # PUBREC
                    elif topic.startswith(self.hold_prefix):
                        with self.lock:
                            self.held.append(pid)
                            self.lock.notify_all()
                    else:
                        self._send(b"\x40\x02" + pid)
                elif kind == 6:  # PUBREL
                    self._send(b"\x70\x02" + body[:2])
                elif kind == 12:  # PINGREQ
                    self._send(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return
        except (EOFError, OSError, ssl.SSLError):
            pass

    def wait_held(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.held) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.held)} of {count} publishes held")
                self.lock.wait(left)

    def release(self) -> None:
        """Every held PUBACK in one write: one TLS record, one round of the MQTT thread."""
        with self.lock:
            held, self.held = self.held, []
        self._send(b"".join(b"\x40\x02" + pid for pid in held))

    def stop(self) -> None:
        self.listener.close()
        if self.conn:
            self.conn.close()


def mqtt_thread_cycles(device: rig.Qemu) -> int:
    """The MQTT thread's (`main`) execution cycles, from `kernel thread list`."""
    device.command("kernel thread list")
    device.until(r"^\s*\*?0x[0-9a-f]+ main\b", timeout=30)
    return int(device.until(r"Total execution cycles: (\d+)", timeout=30).group(1))


def wait_outbox(device: rig.Qemu, count: int, timeout: float = 120) -> None:
    """Until `mqtt status` (the shell's thread, not the MQTT thread) says `count`."""
    deadline = time.monotonic() + timeout
    while True:
        device.command("mqtt status")
        if int(device.until(r"^outbox: (\d+)", timeout=30).group(1)) == count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the outbox did not come to {count}")
        time.sleep(0.05)


def cycles_of(device: rig.Qemu, step) -> int:
    before = mqtt_thread_cycles(device)
    step()
    return mqtt_thread_cycles(device) - before


def publish(device: rig.Qemu, payload: str) -> None:
    device.command(f"mqtt pub {TOPIC} {payload} 1")
    answer = device.until(r"^pub #\d+ (.*)", timeout=60).group(1)
    if not answer.startswith("queued"):
        raise AssertionError(f"pub {payload}: {answer}")


def released(device: rig.Qemu, broker: HoldingBroker) -> int:
    """The MQTT thread's cycles from the release of the held PUBACKs to an empty outbox,
    started right after a telemetry message is acknowledged: the next is 10 s away
    (pytest/an386/test.conf), and nothing else runs on that thread meanwhile."""
    broker.wait_held(BATCH)
    while not device.console.queue.empty():  # lines already printed: not the next one
        device.until(r".", timeout=1)
    device.until(r"mqtt: telemetry queued", timeout=30)
    wait_outbox(device, BATCH)
    return cycles_of(device, lambda: (broker.release(), wait_outbox(device, 0)))


def measure(image: Path, work: Path, bridge: rig.Bridge) -> dict:
    rig.set_link(True)
    net = an386.Rig(work, bridge)
    net.broker.stop()
    broker = HoldingBroker(net.certs, rig.HOST_ADDRESS, rig.BROKER_PORT, TOPIC)
    device = net.device(work.name, icount="shift=0,sleep=on", image=image).start()
    steps = {name: [] for name in ("idle", "upload ca", "upload cert", "upload key",
                                   "cred commit", "offline publish", "release offline",
                                   "release online")}
    try:
        device.until(r"mqtt: subscribed", timeout=300)
        for rep in range(REPS):
            rig.set_link(False)
            device.until(r"mqtt: connection lost", timeout=120)
            steps["idle"].append(cycles_of(device, lambda: None))
            for kind, name in (("ca", "ca.crt.der"), ("cert", "device.crt.der"),
                               ("key", "device.key.der")):
                der = (rig.DEV_CERTS / name).read_bytes()
                steps[f"upload {kind}"].append(
                    cycles_of(device, lambda: an386.upload(device, kind, der)))
            steps["cred commit"].append(cycles_of(device, lambda: an386.commit(device)))
            for i in range(BATCH):
                steps["offline publish"].append(
                    cycles_of(device, lambda: publish(device, f"off-{rep}-{i}")))
            rig.set_link(True)
            device.until(r"mqtt: connected", timeout=300)
            steps["release offline"].append(released(device, broker))
            for i in range(BATCH):
                publish(device, f"on-{rep}-{i}")
            steps["release online"].append(released(device, broker))
            print(f"{image}: {json.dumps(steps)}", flush=True)
    finally:
        device.stop()
        broker.stop()
        net.stop()
    return steps


def instructions_per_cycle(image: Path) -> float:
    config = (image.parent / ".config").read_text()
    hz = int(re.search(r"^CONFIG_SYS_CLOCK_HW_CYCLES_PER_SEC=(\d+)$", config, re.M).group(1))
    return 1e9 / hz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", action="append", required=True,
                        help="NAME=ELF, e.g. crc=build/zephyr/zephyr.elf")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args()
    images = dict(arg.split("=", 1) for arg in args.image)
    rig.enter_private_network()
    rig.make_tap()
    bridge = rig.Bridge()
    results = {}
    with tempfile.TemporaryDirectory(prefix="nvs-crc-") as work:
        for name, elf in images.items():
            results[name] = measure(Path(elf), Path(work) / name, bridge)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    # The images run the same steps in the same order, so step k of one meets its flash in
    # the state step k of the other does (but for the garbage collections, which the longer
    # records of the CRC image bring sooner): the difference is taken step by step.
    base, other = list(images)[:2]
    scale = instructions_per_cycle(Path(images[base]))
    print(f"| step | {base}: instructions, median (min-max) | {other} | {base} - {other}, "
          f"median of the step-by-step differences (min-max) |")
    print("|---|---:|---:|---:|")
    for step in results[base]:
        a, b = results[base][step], results[other][step]
        differences = [(x - y) * scale for x, y in zip(a, b)]
        cells = [f"{statistics.median(v) * scale:,.0f} ({min(v) * scale:,.0f}-"
                 f"{max(v) * scale:,.0f})" for v in (a, b)]
        cells.append(f"{statistics.median(differences):+,.0f} ({min(differences):+,.0f} to "
                     f"{max(differences):+,.0f})")
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
