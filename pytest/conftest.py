# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the firmware's end-to-end tests: a real Mosquitto with TLS on a free loopback
port (certificates and configuration from the repository's certs/ tooling), MQTT peers
through the mosquitto_pub/mosquitto_sub clients, and the native_sim image started by the
twister harness with --broker-port pointing at that broker.

Run by twister (`west twister -T . -p native_sim/native/64`) or directly on a build:
  pytest --twister-harness --device-type=native --build-dir=BUILD -p twister_harness.plugin pytest
"""

import collections
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from twister_harness.exceptions import TwisterHarnessTimeoutException

from loopback import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
DEV_CERTS = REPO / "certs" / "dev-only-insecure"
CLIENT_ID = "dev-device-1"
DEVICE_TOPICS = f"devices/{CLIENT_ID}"


MKCERTS = REPO / "certs" / "mkcerts"


def broker_front_context() -> ssl.SSLContext:
    """TLS as the development broker presents it, requiring a client certificate from the
    development CA as Mosquitto does: for the test fronts that stand between the device and
    Mosquitto."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(DEV_CERTS / "broker.crt.pem", DEV_CERTS / "broker.key.pem")
    context.load_verify_locations(DEV_CERTS / "ca.crt.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def connect_upstream(port: int, identity: str) -> ssl.SSLSocket:
    """A TLS connection to the Mosquitto on `port` as `identity` of the development set
    ("device", "observer"): the broker's ACL treats it as that client."""
    context = ssl.create_default_context(cafile=str(DEV_CERTS / "ca.crt.pem"))
    context.load_cert_chain(DEV_CERTS / f"{identity}.crt.pem", DEV_CERTS / f"{identity}.key.pem")
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def mkcerts(*args) -> None:
    """The project's certificate tool (certs/mkcerts), failing the test if it fails. RSA-4096
    key generation is a random search that took over 60 s on a loaded two-core machine."""
    subprocess.run([str(MKCERTS), *args], check=True, capture_output=True, timeout=300)


def expect_refusal_and_retry(device, port: int, reason: str) -> None:
    """Starts the device; it must refuse the broker on `port` for `reason` (its log line),
    back off on the slow schedule of refusals that need a person, and try again, and keep
    running. The reconnect caps are 2 s here (`--reconnect-cap-ms`), not the hour a fleet
    waits at most."""
    device.device_config.extra_test_args += " --reconnect-cap-ms=2000"
    device.command = []
    device.launch()
    for attempt in range(2):
        device.readlines_until(regex=f"connect to localhost:{port} failed: {reason}", timeout=60)
        device.readlines_until(regex=r"reconnecting in [0-9]+ ms \(refused", timeout=5)
    assert device.is_device_running(), "the firmware must survive a refused broker"


class Broker:
    """Mosquitto started through certs/broker-up, in the foreground so we own its pid."""

    def __init__(self, port: int, run_dir: Path, certs: Path = DEV_CERTS,
                 conf_lines: tuple = ()):
        self.port = port
        self.run_dir = run_dir
        self.certs = certs
        self.conf_lines = conf_lines  # mosquitto.conf lines for the listener, e.g. crlfile
        self.process = None
        self.log_path = run_dir / "broker-stdout.log"

    def start(self) -> "Broker":
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            pytest.fail("mosquitto is not installed: apt-get install mosquitto mosquitto-clients")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(REPO / "certs" / "broker-up"), "--certs", str(self.certs), "--port", str(self.port),
             "--run-dir", str(self.run_dir), "--foreground",
             *(arg for line in self.conf_lines for arg in ("--conf-line", line))],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 10)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Peer:
    """An MQTT client on the broker with the observer's certificate (allowed on every topic)."""

    def __init__(self, port: int, certs: Path = DEV_CERTS):
        self.port = port
        self.certs = certs

    def tls_args(self) -> list:
        return ["-h", "localhost", "-p", str(self.port), "--cafile", str(self.certs / "ca.crt.pem"),
                "--cert", str(self.certs / "observer.crt.pem"),
                "--key", str(self.certs / "observer.key.pem")]

    def publish(self, topic: str, payload: str, qos: int = 1) -> None:
        subprocess.run(["mosquitto_pub", *self.tls_args(), "-t", topic, "-m", payload,
                        "-q", str(qos)], check=True, timeout=10)

    def subscribe(self, topic_filter: str) -> "Subscription":
        return Subscription(["mosquitto_sub", *self.tls_args(), "-t", topic_filter, "-v",
                             "-q", "1"])


class Subscription:
    """Lines "topic payload" as mosquitto_sub prints them, read on a thread."""

    def __init__(self, command: list):
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, expected: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if line == expected:
                return
        raise AssertionError(f"{expected!r} not received within {timeout} s; got {self.seen}")

    def wait_for_all(self, expected: set, timeout: float) -> set:
        """Reads until every line of `expected` was seen or `timeout` passed; returns the
        lines still missing. One set lookup per line: soaks read tens of thousands."""
        missing = set(expected)
        missing.difference_update(self.seen)
        deadline = time.monotonic() + timeout
        while missing and time.monotonic() < deadline:
            try:
                missing.discard(self.next_line(timeout=max(0.1, deadline - time.monotonic())))
            except AssertionError:
                break
        return missing

    def next_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing received within {timeout} s; got {self.seen}")
        self.seen.append(line)
        return line

    def close(self) -> None:
        self.process.kill()
        self.process.wait(5)


@pytest.fixture()
def broker_port() -> int:
    return free_port()


@pytest.fixture()
def broker(tmp_path, broker_port):
    b = Broker(broker_port, tmp_path / "broker").start()
    yield b
    b.stop()
    print(b.log())


@pytest.fixture()
def peer(broker) -> Peer:
    return Peer(broker.port)


@pytest.fixture()
def device(unlaunched_dut, broker_port, tmp_path):
    """The firmware image, pointed at the test's broker port, with a flash of its own (the
    settings partition survives a relaunch, as on a real board); not started yet."""
    unlaunched_dut.device_config.extra_test_args = (
        f"--broker-port={broker_port} --flash={tmp_path / 'flash.bin'}")
    # The adapter builds its command line once per session; each test has its own port.
    unlaunched_dut.command = []
    fresh_seed_per_launch(unlaunched_dut)
    return unlaunched_dut


SEED_VARIABLE = "APP_NATIVE_SIM_SEED"


def fresh_seed_per_launch(dut) -> None:
    """native_sim's test entropy starts from one fixed seed, so every simulated device would
    draw the same reconnect jitter. Each launch gets its own `--seed` (the fake entropy
    driver's option) from the host, printed so that a failing run can be replayed with
    APP_NATIVE_SIM_SEED=<seed>. Other device types (QEMU, boards) keep their own entropy."""
    if dut.device_config.type != "native":
        return
    run = dut._flash_and_run

    def run_with_seed() -> None:
        given = os.environ.get(SEED_VARIABLE)
        seed = int(given, 0) if given else int.from_bytes(os.urandom(4), "little")
        dut.command = [arg for arg in dut.command if not arg.startswith("--seed=")]
        dut.command.append(f"--seed={seed:#x}")
        print(f"native_sim entropy seed {seed:#x} (replay: {SEED_VARIABLE}={seed:#x})")
        run()

    dut._flash_and_run = run_with_seed


# --- Fault tests (test_faults.py): a broker that survives SIGKILL, an observer that comes
# back after it, and the device's shell ----------------------------------------------------

class PersistentBroker(Broker):
    """Mosquitto with persistence on, so that a restart after SIGKILL keeps the sessions,
    subscriptions and queued messages it had saved. SIGKILL skips the save at shutdown, so it
    saves after every change (`autosave_on_changes` with an interval of 1). broker-up writes
    `persistence false` and starts the broker itself, so this generates the same
    configuration with `mkcerts mosquitto-conf`, appends the persistence lines and starts
    mosquitto directly.

    The store lives in memory (tmpfs) when the machine has one: Mosquitto writes and fsyncs
    its whole store after every change, in the one thread that serves every client, and on
    a disk busy with other work one fsync took seconds, long enough for the TLS handshakes
    waiting behind it to time out. The tests kill the broker's process, not the machine, so
    a store in memory survives a kill as one on disk does."""

    MEMORY = Path("/dev/shm")

    def __init__(self, port: int, run_dir: Path, certs: Path = DEV_CERTS):
        super().__init__(port, run_dir, certs)
        self.store = None

    def configure(self, *mkcerts_options: str) -> Path:
        """The configuration file, written at the first start and kept for restarts."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        conf = self.run_dir / "mosquitto.conf"
        if not conf.exists():
            mkcerts("mosquitto-conf", "--out", str(self.run_dir), "--ca-dir", str(self.certs),
                    "--port", str(self.port), "--force", *mkcerts_options)
            self.store = self.run_dir
            if self.MEMORY.is_dir() and os.access(self.MEMORY, os.W_OK):
                self.store = Path(tempfile.mkdtemp(prefix="mosquitto-store-", dir=self.MEMORY))
            with conf.open("a") as f:
                # Later lines win: these override the generated `persistence false`.
                f.write(f"persistence true\npersistence_location {self.store}/\n"
                        "autosave_on_changes true\nautosave_interval 1\n")
        return conf

    def start(self) -> "PersistentBroker":
        conf = self.configure()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(["stdbuf", "-oL", "mosquitto", "-c", str(conf)],
                                        stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 10)
        return self

    def stop(self) -> None:
        super().stop()
        if self.store is not None and self.store != self.run_dir:
            shutil.rmtree(self.store, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no last save."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def connections_of(self, client_id: str) -> int:
        return self.log().count(f" as {client_id} ")

    def saves(self) -> int:
        return self.log().count("Saving in-memory database")


class ReconnectingSubscription(Subscription):
    """mosquitto_sub with a persistent session (-c -i ID, QoS 1), started again whenever it
    exits: mosquitto_sub does not reconnect by itself after the broker goes away."""

    def __init__(self, command: list):
        self.command = command
        self.closed = False
        self.lines = queue.Queue()
        self.seen = []
        self.process = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.closed:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, text=True)
            for line in self.process.stdout:
                self.lines.put(line.rstrip("\n"))
            self.process.wait()
            time.sleep(0.2)

    def close(self) -> None:
        self.closed = True
        if self.process:
            self.process.kill()
            self.process.wait(5)


def persistent_subscription(peer: Peer, client_id: str, topic_filter: str):
    return ReconnectingSubscription(["mosquitto_sub", *peer.tls_args(), "-c", "-i", client_id,
                                     "-q", "1", "-t", topic_filter, "-v"])


class Console:
    """The device's shell (`mqtt status`, `mqtt pub`) through the twister harness, reading
    the one output stream in order: shell answers and log lines interleave on it. The lines
    a shell command skips while it waits for its answer are kept for the next `until`, so a
    log line printed during `pub` is not lost to the test waiting for it."""

    PUB_ANSWER = re.compile(r"^pub #(\d+) (queued as message \d+|rejected: .*|still queued.*)")
    PUB_LOGGED = re.compile(r"control: pub #(\d+) (queued|rejected)")

    def __init__(self, dut):
        self.dut = dut
        self.logged = {}  # ticket -> "queued" / "rejected", from the MQTT thread's log lines
        self.skipped = collections.deque()  # lines read by a shell command, not yet by a test

    def until(self, regex: str, timeout: float) -> re.Match:
        """The first line from here on that matches, skipped lines first."""
        pattern = re.compile(regex)
        while self.skipped:
            if match := pattern.search(self.skipped.popleft()):
                return match
        return self._read_until(pattern, timeout)

    def _answer(self, regex: str, timeout: float) -> re.Match:
        """A shell command's answer line; the lines before it are kept for `until`."""
        return self._read_until(re.compile(regex), timeout, keep=self.skipped)

    def _read_until(self, pattern: re.Pattern, timeout: float, keep=None) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{pattern.pattern!r} not seen on the console within {timeout} s")
            try:
                line = self.dut.readline(timeout=left)
            except TwisterHarnessTimeoutException:
                continue
            if logged := self.PUB_LOGGED.search(line):
                self.logged[int(logged.group(1))] = logged.group(2)
            if match := pattern.search(line):
                return match
            if keep is not None:
                keep.append(line)

    def command(self, line: str) -> None:
        self.dut.write(f"{line}\n".encode())

    def pub(self, topic: str, payload: str, qos: int = 1) -> tuple:
        """(ticket, "queued" | "rejected" | "pending", answer line)."""
        self.command(f"mqtt pub {topic} {payload} {qos}")
        answer = self._answer(self.PUB_ANSWER.pattern, timeout=15)
        outcome = re.match(r"\w+", answer.group(2)).group(0)
        return int(answer.group(1)), {"still": "pending"}.get(outcome, outcome), answer.group(0)

    def status(self) -> dict:
        """`mqtt status` as a dict of its "key: value" lines."""
        self.command("mqtt status")
        fields = {}
        for key in ("state", "broker", "tls", "in flight", "outbox", "published",
                    "reconnects", "last error", "heap free", "tls heap"):
            fields[key] = self._answer(f"^{key}: (.*)$", timeout=10).group(1).strip()
        return fields


@pytest.fixture()
def console(device):
    return Console(device)
