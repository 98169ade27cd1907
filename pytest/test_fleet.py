# SPDX-License-Identifier: Apache-2.0
"""A simulated fleet: FLEET_SIZE native_sim processes (default 10), each its own MQTT client id
(`--client-id`), device certificate (certs/mkcerts, CN = client id, signed by the image's CA)
and flash file, provisioned through the `cred` shell as an operator would. Mosquitto takes the
certificate's CN as the user name and its ACL (`pattern readwrite devices/%u/#`) keeps each
device below its own topics.

1. One broker, killed (SIGKILL) and restarted on its ports: the reconnect storm is measured
   on the wire at the broker (every SYN, stamped by the kernel; each device has a listener
   port of its own, so a SYN names its device; without CAP_NET_RAW the test fails) and each
   device's first attempt after the kill must be spread by the reconnect jitter (the most in
   one 100 ms window, first to last); every numbered QoS 1 message of every device
   (before the kill, while the broker is down, after) reaches an observer with a persistent
   session; a device that publishes into another device's topics reaches nobody.
2. Two broker nodes given to every device as an endpoint list (`--broker-endpoints`), an
   observer on each; the first node dies during the run and every device moves to the
   second, losing no message it reported queued (QoS 1: at least once). An observer on each
   node rather than a bridge between them: a bridge queues of its own, and a message the
   dying node acknowledged but had not bridged yet would be the broker's loss, not the
   device's, which is what this test is about.

Memory (RSS) and CPU per simulated device are printed; docs/fleet.md keeps the figures.
The default is the short fleet of 10 (the one `scripts/test` and twister run); FLEET_SIZE=50
is the full one; docs/fleet.md says how far this machine goes.
"""

import base64
import math
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import DEV_CERTS, PersistentBroker, Peer, mkcerts, persistent_subscription
from loopback import ConnectionAttempts, free_port

FLEET_SIZE = int(os.environ.get("FLEET_SIZE", "10"))
SEQ = "seq"  # devices/<client id>/seq, payload: the message's number
UPLOAD_LINE = 48  # base64 characters per `cred data` line, as test_provisioning.py
BUCKET_MS = 100
# Reconnect backoff of the image (Kconfig defaults): the first delay after a connection is
# lost is drawn uniformly from [0, APP_RECONNECT_BASE_MS] (full jitter).
FIRST_WINDOW_MS = 1000
# The chance that a fleet reconnecting with the image's jitter fails each storm bound (a
# false alarm) is at most this; the test computes the bounds from the fleet's size.
FALSE_ALARM = 1e-3
# FLEET_SEEDS=fleet-000:0x...,fleet-001:0x... launches those devices with those entropy
# seeds (the storm test prints the line for its run): see the storm test.
SEEDS_VARIABLE = "FLEET_SEEDS"


def client_id(index: int) -> str:
    return f"fleet-{index:03d}"


class SimDevice:
    """One native_sim process with its console on stdin/stdout, read on a thread of its own."""

    # The shell's answer; the MQTT thread's log line ("control: pub #...") says the same later.
    PUB_ANSWER = re.compile(
        r"(?<!control: )pub #(\d+) (queued as message \d+|rejected: .*|still queued)")
    PUB_LOGGED = re.compile(r"control: pub #(\d+) (queued|rejected)")

    def __init__(self, exe: Path, cid: str, flash: Path):
        self.exe = exe
        self.client_id = cid
        self.flash = flash
        self.process = None
        self.lines = []
        self.cursor = 0
        self.changed = threading.Condition()
        self.logged = {}  # pub ticket -> "queued" / "rejected", from the MQTT thread's log
        self.started = 0.0
        self.seed = None

    def launch(self, *options: str, seed: int = None) -> "SimDevice":
        """Starts the process with the entropy seed `seed`, else a fresh one (`self.seed`)."""
        self.seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
        command = [str(self.exe), f"--client-id={self.client_id}", f"--flash={self.flash}",
                   f"--seed={self.seed:#x}", *options]
        self.lines, self.cursor = [], 0
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()
        return self

    def _pump(self, process) -> None:
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            with self.changed:
                self.lines.append(line)
                if logged := self.PUB_LOGGED.search(line):
                    self.logged[int(logged.group(1))] = logged.group(2)
                self.changed.notify_all()

    def until(self, regex: str, timeout: float, from_start: bool = False) -> re.Match:
        """The next console line (or any since launch) that matches `regex`."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self.changed:
            position = 0 if from_start else self.cursor
            while True:
                while position < len(self.lines):
                    match = pattern.search(self.lines[position])
                    position += 1
                    if match:
                        self.cursor = max(self.cursor, position)
                        return match
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.client_id}: {regex!r} not seen within "
                                         f"{timeout} s; last lines: {self.lines[-15:]}")
                self.changed.wait(left)

    def command(self, line: str) -> None:
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def upload(self, kind: str, der: bytes) -> None:
        self.command(f"cred begin {kind}")
        self.until(f"upload of {kind} open", timeout=20)
        text = base64.b64encode(der).decode()
        for start in range(0, len(text), UPLOAD_LINE):
            self.command(f"cred data {text[start:start + UPLOAD_LINE]}")
            self.until(rf"{kind}: \d+ bytes so far", timeout=20)
        self.command("cred end")
        self.until(f"{kind} staged", timeout=20)

    def pub(self, topic: str, payload: str) -> tuple:
        """(ticket, "queued" | "rejected" | "pending", when answered): QoS 1 through
        `mqtt pub`."""
        self.command(f"mqtt pub {topic} {payload} 1")
        answer = self.until(self.PUB_ANSWER.pattern, timeout=30)
        answered = time.monotonic()
        outcome = answer.group(2).split()[0]
        return int(answer.group(1)), {"still": "pending"}.get(outcome, outcome), answered

    def first_delay_ms(self) -> int:
        """The first reconnect delay this launch drew (its log's first "reconnecting in")."""
        return int(self.until(r"reconnecting in (\d+) ms", timeout=30, from_start=True).group(1))

    def usage(self) -> tuple:
        """(resident set in KiB, CPU seconds, seconds since launch)."""
        pid = self.process.pid
        rss = next(int(line.split()[1]) for line in
                   Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return rss, cpu, time.monotonic() - self.started

    def stop(self) -> None:
        """Stops the process; its console stays in a file beside its flash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
        if self.process:
            self.process.wait(10)
            with self.changed:
                self.flash.with_suffix(".console.log").write_text("\n".join(self.lines) + "\n")


class TimedBroker(PersistentBroker):
    """PersistentBroker whose output the test reads itself, so that every log line carries
    the time it was printed at millisecond resolution (Mosquitto's own log timestamps have
    whole seconds only). A second listener, `observer_port`, with the same TLS settings, is
    for the test's own clients: the fleet's port then carries the fleet's connections only,
    and a capture there counts no observer reconnecting. `more_ports` are further listeners
    of the same kind (the storm test gives each device a port of its own)."""

    ACCEPT = re.compile(r"New connection from ([0-9.]+:\d+) on port (\d+)")
    CLIENT = re.compile(r"New client connected from ([0-9.]+:\d+) as (\S+) .*u'([^']*)'")

    def __init__(self, port: int, run_dir: Path, more_ports=()):
        super().__init__(port, run_dir)
        self.observer_port = free_port()
        self.more_ports = list(more_ports)
        self.timed = []  # (monotonic seconds, line)
        self.started_at = 0.0

    def configure(self, *mkcerts_options: str) -> Path:
        conf = super().configure(*mkcerts_options)
        text = conf.read_text()
        # The generated listener and its TLS lines, up to the blank line after them.
        block = text[text.index(f"\nlistener {self.port} "):].split("\n\n")[0]
        for port in [self.observer_port, *self.more_ports]:
            if f"\nlistener {port} " not in text:
                text += block.replace(f"listener {self.port} ", f"listener {port} ", 1) + "\n"
        conf.write_text(text)
        return conf

    def start(self) -> "TimedBroker":
        conf = self.configure("--admin-cn", "test-observer")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(["stdbuf", "-oL", "mosquitto", "-c", str(conf)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        running = threading.Event()
        threading.Thread(target=self._pump, args=(self.process, running), daemon=True).start()
        # Not a probe connection (wait_for_port): it would count as a reconnect attempt.
        assert running.wait(10), f"mosquitto on port {self.port} did not start"
        return self

    def _pump(self, process, running: threading.Event) -> None:
        with open(self.log_path, "ab") as log:
            for raw in process.stdout:
                self.timed.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))
                log.write(raw)
                log.flush()
                if raw.rstrip().endswith(b" running"):
                    running.set()

    def saved_last_change(self) -> bool:
        """Whether a save came after the last message received: a SIGKILL then loses no
        session, subscription or queued message (autosave_on_changes saves after each)."""
        last = {"Saving": 0.0, "Received": 0.0}
        for t, line in list(self.timed):
            for word in last:
                if f": {word} " in line:
                    last[word] = t
        return last["Saving"] >= last["Received"] > 0

    def clients_since(self, since: float) -> dict:
        """client id -> user name of the connections accepted since `since`."""
        return {m.group(2): m.group(3) for t, line in list(self.timed) if t >= since
                for m in [self.CLIENT.search(line)] if m}

    PUBACK = re.compile(r"Sending PUBACK to (\S+) \(m(\d+),")
    SEQ_IN = re.compile(rf"Received PUBLISH from (\S+) \(d\d, q1, r0, m(\d+), "
                        rf"'devices/\1/{SEQ}', \.\.\. \((\d+) bytes\)\)")

    def acknowledged(self) -> dict:
        """client id -> the payload lengths of the numbered messages this node acknowledged:
        its log (Mosquitto with `log_type all`) shows the PUBLISH received with a packet id,
        then the PUBACK sent for that packet id. The log shows no payload, so each number has
        a length of its own (`numbered`). What a node killed after the PUBACK had not sent
        on to an observer is the broker's loss: the device, holding a PUBACK, rightly forgot
        it."""
        received, acknowledged = {}, {}
        for _, line in list(self.timed):
            if m := self.SEQ_IN.search(line):
                received[(m.group(1), int(m.group(2)))] = int(m.group(3))
            elif (m := self.PUBACK.search(line)) and (m.group(1), int(m.group(2))) in received:
                key = (m.group(1), int(m.group(2)))
                acknowledged.setdefault(key[0], set()).add(received.pop(key))
        return acknowledged

    def first_puback_to(self, client: str) -> float:
        """When this node first sent `client` a PUBACK (inf: never)."""
        return next((t for t, line in list(self.timed)
                     if (m := self.PUBACK.search(line)) and m.group(1) == client), float("inf"))

    def fleet_connected_at(self) -> dict:
        """client id -> when its latest connection was accepted, for the fleet's devices."""
        return {m.group(2): t for t, line in list(self.timed)
                for m in [self.CLIENT.search(line)] if m and m.group(2).startswith("fleet-0")}

    def accepted_since(self, since: float, port: int = None) -> dict:
        """source port -> (when accepted, client id) of the connections accepted since
        `since` (on listener `port` only, if given)."""
        return {source: (t, cid) for source, (t, cid, listener) in
                self.accepted_on_since(since).items() if port is None or listener == port}

    def accepted_on_since(self, since: float) -> dict:
        """source port -> (when accepted, client id, listener port) of the connections
        accepted since `since`."""
        accepted, clients = {}, {}
        for t, line in list(self.timed):
            if t < since:
                continue
            if m := self.ACCEPT.search(line):
                accepted[m.group(1)] = (t, int(m.group(2)))
            elif m := self.CLIENT.search(line):
                address = m.group(1)
                when, listener = accepted.get(address, (t, None))
                clients[int(address.rsplit(":", 1)[1])] = (when, m.group(2), listener)
        return clients

    def fleet_accepts_since(self, since: float) -> list:
        """The time of the first accepted connection of each fleet device since `since`."""
        first = {}
        for t, cid in sorted(self.accepted_since(since).values()):
            if cid.startswith("fleet-0"):
                first.setdefault(cid, t)
        return sorted(first.values())


def wait_until(done, timeout: float, failure) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(failure() if callable(failure) else failure)
        time.sleep(0.2)


def in_parallel(function, items) -> list:
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(function, items))


@pytest.fixture(scope="module")
def fleet_image(request) -> Path:
    build_dir = request.config.getoption("--build-dir")
    exe = Path(build_dir) / "zephyr" / "zephyr.exe"
    if not exe.exists():
        pytest.fail(f"no native_sim image at {exe}")
    if "-client-id=" not in subprocess.run([str(exe), "--help"], capture_output=True,
                                           text=True, timeout=30).stdout:
        pytest.fail(f"{exe} has no --client-id option: rebuild it")
    return exe


@pytest.fixture(scope="module")
def provisioned(fleet_image, tmp_path_factory) -> Path:
    """A flash file per device holding its committed credential set (the image's CA, the
    device's certificate and key), made once for the module: the tests copy them."""
    root = tmp_path_factory.mktemp("fleet")
    ids = [client_id(i) for i in range(FLEET_SIZE)]

    def make_certs(cid: str) -> None:
        mkcerts("device", cid, "--out", str(root / cid), "--ca-dir", str(DEV_CERTS))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(make_certs, ids))
    print(f"fleet: {FLEET_SIZE} device certificates made in {time.monotonic() - started:.1f} s")

    # Provisioned offline: nothing listens on this port; the short cap keeps the devices
    # retrying often, and the shell is served while they back off.
    dead = free_port()
    ca = (DEV_CERTS / "ca.crt.der").read_bytes()

    def provision(cid: str) -> None:
        device = SimDevice(fleet_image, cid, root / f"{cid}.flash")
        device.launch(f"--broker-port={dead}", "--reconnect-cap-ms=2000")
        try:
            device.until("secure-mqtt starting", timeout=60)
            device.upload("ca", ca)
            device.upload("cert", (root / cid / "device.crt.der").read_bytes())
            device.upload("key", (root / cid / "device.key.der").read_bytes())
            device.command("cred commit")
            device.until(r"stored; used from the next connection on", timeout=30)
        finally:
            device.stop()

    started = time.monotonic()
    in_parallel(provision, ids)
    print(f"fleet: {FLEET_SIZE} devices provisioned in {time.monotonic() - started:.1f} s")
    return root


def fleet_from(provisioned: Path, image: Path, run_dir: Path) -> list:
    run_dir.mkdir(parents=True, exist_ok=True)
    devices = []
    for i in range(FLEET_SIZE):
        cid = client_id(i)
        shutil.copy(provisioned / f"{cid}.flash", run_dir / f"{cid}.flash")
        devices.append(SimDevice(image, cid, run_dir / f"{cid}.flash"))
    return devices


def stop_all(devices, *others) -> None:
    for device in devices:
        device.stop()
    for other in others:
        if other is not None:
            other.close() if hasattr(other, "close") else other.stop()


def publish_numbers(device: SimDevice, numbers) -> dict:
    """Publishes each number to the device's own seq topic; number -> (ticket, outcome,
    when answered)."""
    return {n: device.pub(f"devices/{device.client_id}/{SEQ}", str(n)) for n in numbers}


def settled(device: SimDevice, results: dict, timeout: float) -> set:
    """The numbers the device reported queued (at once, or later in its log)."""
    wait_until(lambda: all(outcome != "pending" or ticket in device.logged
                           for ticket, outcome, _ in results.values()), timeout,
               f"{device.client_id}: a pending publish never got its answer")
    return {n for n, (ticket, outcome, _) in results.items()
            if outcome == "queued" or device.logged.get(ticket) == "queued"}


def idle_cpu_percent(devices, seconds: float) -> None:
    """CPU of the connected fleet doing nothing but keep its connections (and telemetry)."""
    start = [d.usage()[1] for d in devices]
    time.sleep(seconds)
    used = [d.usage()[1] - s for d, s in zip(devices, start)]
    print(f"fleet idle: {len(devices)} connected devices over {seconds} s: CPU per device "
          f"mean {100 * sum(used) / len(used) / seconds:.2f} %, max "
          f"{100 * max(used) / seconds:.2f} % of a core")


def report_usage(devices, label: str) -> None:
    usage = [d.usage() for d in devices]
    rss = [u[0] for u in usage]
    cpu = [u[1] for u in usage]
    lifetime = sum(u[2] for u in usage) / len(usage)
    print(f"fleet {label}: {len(devices)} devices over {lifetime:.0f} s: RSS per device "
          f"mean {sum(rss) / len(rss) / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB, total "
          f"{sum(rss) / 1024:.0f} MiB; CPU per device mean {sum(cpu) / len(cpu):.2f} s "
          f"({100 * sum(cpu) / len(cpu) / lifetime:.1f} % of a core), max {max(cpu):.2f} s; "
          f"fleet total {sum(cpu):.1f} CPU s ({os.cpu_count()} cores)")


def numbered(n: int) -> str:
    """The cluster test's payload for number n: n, padded to n + 2 bytes, so that its length
    alone names it in a broker log."""
    return str(n).ljust(n + 2, ".")


def replay_seeds() -> dict:
    """client id -> seed, from FLEET_SEEDS."""
    given = os.environ.get(SEEDS_VARIABLE, "")
    return {cid: int(seed, 0) for cid, seed in
            (entry.split(":") for entry in given.split(",") if entry)}


def window_chance(fleet: int, width_ms: float, count: int, tick_ms: float) -> float:
    """At most the chance that some window of `width_ms` holds `count` or more of the first
    connection attempts after the kill of a fleet of `fleet` devices with the image's jitter.

    The model (crates/mqtt-core/src/backoff.rs): each device's first attempt comes a delay
    after it saw the connection lost, the delay drawn uniformly from the integers 0..W ms
    (W = FIRST_WINDOW_MS; wider after failed attempts at boot), independent of the other
    devices' draws and of the instant each saw the loss; the wait ends on the device's next
    kernel tick (`tick_ms`). So whatever instant t, another device's first attempt falls in
    [t, t + width] with a chance of at most p = (width + tick) / (W + 1) (the delays whose
    ticks lie there). A window holding `count` attempts has, after its earliest attempt,
    `count` - 1 others within `width`: over the devices, a chance of at most
    fleet * P(Binomial(fleet - 1, p) >= count - 1)."""
    p = min(1.0, (width_ms + tick_ms) / (FIRST_WINDOW_MS + 1))
    others = fleet - 1
    tail = sum(math.comb(others, j) * p ** j * (1 - p) ** (others - j)
               for j in range(max(0, count - 1), others + 1))
    return min(1.0, fleet * tail)


def peak_limit(fleet: int, tick_ms: float) -> tuple:
    """(k, chance): the fewest first attempts one BUCKET_MS window holds with a chance of
    at most FALSE_ALARM in a jittered fleet (fleet + 1: none, the fleet is too small)."""
    for k in range(1, fleet + 1):
        chance = window_chance(fleet, BUCKET_MS, k, tick_ms)
        if chance <= FALSE_ALARM:
            return k, chance
    return fleet + 1, 0.0


def spread_limit(fleet: int, tick_ms: float) -> tuple:
    """(width, chance): the first attempts of a jittered fleet all lie within `width` ms
    with a chance of at most FALSE_ALARM: fleet * p^(fleet - 1) with p as in
    `window_chance`."""
    p = (FALSE_ALARM / fleet) ** (1 / (fleet - 1))
    width = p * (FIRST_WINDOW_MS + 1) - tick_ms
    return width, window_chance(fleet, width, fleet, tick_ms)


def busiest_window(times: list, width: float) -> int:
    """The most of `times` (sorted) that one window of `width` holds."""
    return max(sum(1 for u in times[i:] if u - t <= width) for i, t in enumerate(times))


def test_reconnect_storm_after_a_broker_kill_is_spread_by_jitter_and_loses_nothing(
        fleet_image, provisioned, tmp_path):
    """The reconnect storm after a broker kill, measured on the wire: the devices' first
    attempts must be spread as the jitter spreads them (bounds with a false alarm of at
    most FALSE_ALARM each, docs/fleet.md); no numbered message is lost; the ACL holds.

    Each device's entropy seed (`--seed`) decides its reconnect delays; the test prints
    them all as `FLEET_SEEDS=fleet-000:0x...,...`, with each device's first reconnect delay.
    To replay a failed storm, run this test again with that line in the environment
    (FLEET_SEEDS=... FLEET_SIZE=<the same> python3 -m pytest ... -k storm -s): every device
    draws the same delays again, which the test checks at its end on each device (a second
    launch with the same seed must draw the same first delay). What a replay cannot repeat
    is the machine's timing (when each device saw the connection lost, how long the broker
    stayed down). APP_NATIVE_SIM_SEED (the other tests' replay) would give every device the
    one seed and bring them back in lockstep, so the fleet has a seed per device instead."""
    # A listener of the one broker per device: the port a SYN goes to names its device, so
    # that each device's first attempt after the kill is known, refused ones too.
    ports = [free_port() for _ in range(FLEET_SIZE)]
    # Before anything starts: a run that cannot see the wire fails here, by name, rather
    # than measure the broker's accept times, which a slow broker bunches or spreads.
    wire = ConnectionAttempts.open(ports)
    if wire is None:
        pytest.fail("the storm is measured on the wire at the broker's ports with a packet "
                    "socket, which needs CAP_NET_RAW: run the test as root or give its "
                    "python3 cap_net_raw")
    broker = TimedBroker(ports[0], tmp_path / "broker", more_ports=ports[1:]).start()
    # The observer on its own listener: the fleet's ports carry the fleet's attempts only.
    peer = Peer(broker.observer_port)
    observer = persistent_subscription(peer, "fleet-observer", "devices/#")
    devices = fleet_from(provisioned, fleet_image, tmp_path / "devices")
    port_of = {d.client_id: p for d, p in zip(devices, ports)}
    seeds = replay_seeds()
    tick_ms = 1000 / kernel_tick_rate(fleet_image)
    try:
        wait_until(lambda: "fleet-observer" in broker.clients_since(0), 15, "no observer")
        launched = time.monotonic()
        in_parallel(lambda d: d.launch(f"--broker-port={port_of[d.client_id]}",
                                       seed=seeds.get(d.client_id)), devices)
        print(f"fleet seeds: {SEEDS_VARIABLE}="
              + ",".join(f"{d.client_id}:{d.seed:#x}" for d in devices))
        in_parallel(lambda d: d.until("mqtt: subscribed .*granted QoS", timeout=90), devices)
        print(f"fleet: {FLEET_SIZE} devices booted and subscribed in "
              f"{time.monotonic() - launched:.1f} s")
        # Each under its own identity: CN = client id = user name.
        clients = broker.clients_since(0)
        assert all(clients.get(d.client_id) == d.client_id for d in devices), clients
        idle_cpu_percent(devices, seconds=5)

        # Before the kill: 1..5, and one device writes into another device's topics.
        before = in_parallel(lambda d: publish_numbers(d, range(1, 6)), devices)
        intruder, victim = devices[0], devices[1 % FLEET_SIZE]
        intruder.pub(f"devices/{victim.client_id}/{SEQ}", f"intrusion-from-{intruder.client_id}")
        expected = {f"devices/{d.client_id}/{SEQ} {n}" for d in devices for n in range(1, 6)}
        missing = observer.wait_for_all(expected, timeout=60)
        assert not missing, f"{len(missing)} lost before the kill: {sorted(missing)[:20]}"
        wait_until(broker.saved_last_change, 10, "the broker did not save the sessions")

        # The kill: every device loses the broker at the same instant. While it is down,
        # 6..8 go to each device's outbox; then the broker is back on its port.
        broker.kill()
        killed, killed_wall = time.monotonic(), time.time()
        in_parallel(lambda d: d.until("mqtt: connection lost", timeout=30), devices)
        during = in_parallel(lambda d: publish_numbers(d, range(6, 9)), devices)
        broker.start()
        restarted = time.monotonic()
        wait_until(lambda: len(broker.fleet_accepts_since(killed)) >= FLEET_SIZE, 90,
                   lambda: f"only {len(broker.fleet_accepts_since(killed))} of "
                           f"{FLEET_SIZE} devices came back")
        after = in_parallel(lambda d: publish_numbers(d, range(9, 11)), devices)

        attempts, firsts, refused = storm_attempts(broker, wire, port_of, killed, killed_wall)
        # Seconds after the kill, the instant every device shares; buckets from there on.
        buckets = Counter(int(t * 1000 // BUCKET_MS) for t in attempts)
        first_times = sorted(firsts.values())
        peak = busiest_window(first_times, BUCKET_MS / 1000)
        spread_ms = (first_times[-1] - first_times[0]) * 1000
        limit, peak_chance = peak_limit(FLEET_SIZE, tick_ms)
        width, spread_chance = spread_limit(FLEET_SIZE, tick_ms)
        accepted = broker.fleet_accepts_since(killed)
        print(f"fleet storm: {FLEET_SIZE} devices, broker down {1000 * (restarted - killed):.0f}"
              f" ms; first attempts after the kill, on the wire: "
              f"{1000 * first_times[0]:.0f} to {1000 * first_times[-1]:.0f} ms (spread "
              f"{spread_ms:.0f} ms), at most {peak} in one {BUCKET_MS} ms window; bounds: "
              f"fewer than {limit} in a window (false alarm {peak_chance:.1e}), spread over "
              f"{width:.0f} ms (false alarm {spread_chance:.1e}); all {len(attempts)} "
              f"attempts ({refused} not accepted: refused while it was down, or given up), "
              f"peak {max(buckets.values())} in {BUCKET_MS} ms, per bucket from the kill: "
              f"{[buckets.get(b, 0) for b in range(max(buckets) + 1)]}; accepted by the "
              f"broker over {1000 * (accepted[-1] - accepted[0]):.0f} ms")
        print("fleet first reconnect delays (ms): "
              + ", ".join(f"{d.client_id} {d.first_delay_ms()}" for d in devices))
        # A fleet too small for the bound to tell jitter from lockstep passes nothing.
        assert limit <= FLEET_SIZE, \
            f"a fleet of {FLEET_SIZE} is too small for the storm's bound: even all of it in " \
            f"one {BUCKET_MS} ms window is within a false alarm of {FALSE_ALARM}"
        assert peak < limit, f"the storm is not spread: {peak} of {FLEET_SIZE} first " \
                             f"attempts in one {BUCKET_MS} ms window, {limit} or more has a " \
                             f"chance of {peak_chance:.1e} with the jitter: {firsts}"
        assert spread_ms > width, \
            f"the storm is not spread: the first attempts lie within {spread_ms:.0f} ms, " \
            f"a chance of {spread_chance:.1e} with the jitter: {firsts}"

        # Every numbered message of every device, however it went: 1..10, at least once.
        queued = {device.client_id: settled(device, {**b, **d, **a}, timeout=30)
                  for device, b, d, a in zip(devices, before, during, after)}
        assert all(numbers == set(range(1, 11)) for numbers in queued.values()), queued
        expected = {f"devices/{cid}/{SEQ} {n}" for cid in queued for n in range(1, 11)}
        missing = observer.wait_for_all(expected, timeout=90)
        assert not missing, f"{len(missing)} lost: {sorted(missing)[:20]}"

        # The ACL: the broker took the intruder's message (QoS 1 is acknowledged anyway in
        # MQTT 3.1.1) and delivered it to nobody.
        assert not [line for line in observer.seen if "intrusion" in line]
        assert f"Denied PUBLISH from {intruder.client_id}" in broker.log()
        report_usage(devices, "single broker")
        print(f"fleet broker: {broker_usage(broker)}")

        # The seeds replay: each device launched again with its seed, from the same flash it
        # started from, draws the same first reconnect delay (here refused by a closed port).
        stop_all(devices)
        dead = free_port()
        replays = fleet_from(provisioned, fleet_image, tmp_path / "replay")
        in_parallel(lambda pair: pair[1].launch(f"--broker-port={dead}", seed=pair[0].seed),
                    list(zip(devices, replays)))
        try:
            again = in_parallel(lambda d: d.first_delay_ms(), replays)
        finally:
            stop_all(replays)
        drawn = [d.first_delay_ms() for d in devices]
        print(f"fleet replay: first reconnect delays {drawn}, with the same seeds again {again}")
        assert again == drawn, "a seed did not replay its device's reconnect delays"
    finally:
        stop_all(devices, observer, wire)
        broker.stop()


def storm_attempts(broker: TimedBroker, wire, port_of: dict, killed: float,
                   killed_wall: float) -> tuple:
    """(the connection attempts on the wire at the fleet's ports since the kill, in seconds
    after it; client id -> its first attempt; how many attempts never became a client of
    the broker). Every attempt counts when the device made it, refused ones included, so
    that a broker slow to accept cannot bunch or spread them; each device has a port of its
    own, so its attempts are known by their port. The test's own clients use another
    listener; the capture checks itself against the broker's log."""
    accepted = broker.accepted_on_since(killed)
    strays = sorted({(cid, listener) for _, cid, listener in accepted.values()
                     if listener in port_of.values() and port_of.get(cid) != listener})
    assert not strays, f"clients on a fleet device's port not their own: {strays}"
    device_of = {port: cid for cid, port in port_of.items()}
    seen = [(t, source, device_of[port]) for t, source, port in wire.since(killed_wall)]
    # The capture must have seen every connection the broker accepted there.
    fleet_sources = {source for source, (_, _, listener) in accepted.items()
                     if listener in device_of}
    assert fleet_sources <= {source for _, source, _ in seen}, "the capture missed connections"
    refused = sum(1 for _, source, _ in seen if source not in fleet_sources)
    firsts = {}
    for t, _, cid in seen:
        firsts.setdefault(cid, t - killed_wall)
    assert set(firsts) == set(port_of), f"no attempt seen from {set(port_of) - set(firsts)}"
    return [t - killed_wall for t, _, _ in seen], firsts, refused


def kernel_tick_rate(image: Path) -> int:
    """CONFIG_SYS_CLOCK_TICKS_PER_SEC of the image's build."""
    config = (image.parent / ".config").read_text()
    return int(re.search(r"^CONFIG_SYS_CLOCK_TICKS_PER_SEC=(\d+)$", config, re.M).group(1))


def broker_usage(broker) -> str:
    pid = broker.process.pid
    if broker.process.poll() is not None:
        return "gone"
    rss = next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return f"mosquitto RSS {int(rss) / 1024:.1f} MiB"


def test_devices_move_to_the_second_node_when_the_first_dies_and_lose_nothing(
        fleet_image, provisioned, tmp_path):
    """Every device starts on the first node (the second starts only once all are there),
    every one moves to the second when the first dies, and every numbered message it
    reported queued reaches an observer, matched by number; the only excuse for one that
    does not is the first node's log showing the PUBACK it sent for that very message (the
    packet id it received it with) before it died. A publish refused (outbox full) must have been refused while
    its device was between nodes."""
    ports = free_port(), free_port()
    nodes = [TimedBroker(port, tmp_path / f"node-{i}") for i, port in enumerate(ports)]
    nodes[0].start()
    observers = [persistent_subscription(Peer(nodes[0].observer_port), "fleet-observer-0",
                                         "devices/#")]
    devices = fleet_from(provisioned, fleet_image, tmp_path / "devices")
    endpoints = ",".join(f"localhost:{port}" for port in ports)
    total = 12
    try:
        wait_until(lambda: "fleet-observer-0" in nodes[0].clients_since(0), 15,
                   "no observer on node 0")
        in_parallel(lambda d: d.launch(f"--broker-endpoints={endpoints}"), devices)
        in_parallel(lambda d: d.until("mqtt: subscribed .*granted QoS", timeout=90), devices)
        on_first = set(nodes[0].fleet_connected_at())
        assert on_first == {d.client_id for d in devices}, \
            f"not on the first node (the only one up): {sorted({d.client_id for d in devices} - on_first)}"
        nodes[1].start()
        observers.append(persistent_subscription(Peer(nodes[1].observer_port),
                                                 "fleet-observer-1", "devices/#"))
        wait_until(lambda: "fleet-observer-1" in nodes[1].clients_since(0), 15,
                   "no observer on node 1")
        wait_until(nodes[0].saved_last_change, 10, "the first node did not save the sessions")

        # The numbered messages go out while the first node dies under them.
        progress = {d.client_id: 0 for d in devices}

        def run(device: SimDevice) -> dict:
            results = {}
            for n in range(1, total + 1):
                results[n] = device.pub(f"devices/{device.client_id}/{SEQ}", numbered(n))
                progress[device.client_id] = n
                time.sleep(0.2)
            return results

        with ThreadPoolExecutor(max_workers=FLEET_SIZE) as pool:
            running = [pool.submit(run, d) for d in devices]
            wait_until(lambda: min(progress.values()) >= total // 3, 120, "publishing stalls")
            nodes[0].kill()
            died = time.monotonic()
            results = [job.result(timeout=300) for job in running]

        def moved() -> dict:
            return {cid: t for cid, t in nodes[1].fleet_connected_at().items()
                    if cid in on_first and t >= died}

        wait_until(lambda: len(moved()) == len(on_first), 90,
                   lambda: f"not moved to the second node: {sorted(on_first - set(moved()))}")
        times = sorted(moved().values())
        print(f"fleet cluster: all {len(times)} devices moved to the second node "
              f"{1000 * (times[0] - died):.0f}..{1000 * (times[-1] - died):.0f} ms after the "
              f"first died")
        queued = {d.client_id: settled(d, r, timeout=60) for d, r in zip(devices, results)}

        # A refusal is not a loss, and it has one cause here: the device was between nodes,
        # its 8-slot outbox full of what it could not send. So it must say so, and come
        # after the first node died and before the second acknowledged anything of that
        # device (plus a second for that PUBACK to reach it on a loaded machine).
        refused = []
        for device, r in zip(devices, results):
            cid = device.client_id
            for n in sorted(set(range(1, total + 1)) - queued[cid]):
                ticket, _, answered = r[n]
                assert any(f"pub #{ticket} rejected: resource exhausted: outbox full" in line
                           for line in list(device.lines)), f"{cid}: pub #{ticket} ({n})"
                assert died <= answered <= nodes[1].first_puback_to(cid) + 1.0, \
                    f"{cid}: {n} refused {answered - died:.2f} s after the first node died, " \
                    f"not while it was between nodes"
                refused.append((cid, n))
        expected = {(cid, n) for cid, numbers in queued.items() for n in numbers}
        print(f"fleet cluster: {len(expected)} numbered messages queued, {len(refused)} "
              f"refused while the outbox was full: {refused}")

        # Each numbered message matched at the observers by device and number.
        message = lambda cid, n: f"devices/{cid}/{SEQ} {numbered(n)}"
        missing = {message(cid, n) for cid, n in expected}
        deadline = time.monotonic() + 90
        while missing and time.monotonic() < deadline:
            for observer in observers:
                missing = observer.wait_for_all(missing, timeout=1)
        # The excuse, message by message: the first node's PUBACK for that message.
        acknowledged = nodes[0].acknowledged()
        excused, lost = [], []
        for cid, numbers in queued.items():
            for n in sorted(numbers):
                if message(cid, n) in missing:
                    by_first = len(numbered(n)) in acknowledged.get(cid, set())
                    (excused if by_first else lost).append((cid, n))
        assert not lost, f"{len(lost)} lost (device, number): {lost}; excused, acknowledged " \
                         f"by the first node before it died: {excused}"
        print(f"fleet cluster: {len(expected) - len(missing)} of {len(expected)} numbered "
              f"messages delivered; {len(excused)} acknowledged by the first node (its log "
              f"shows the PUBACK) in its last moment and lost with it: {excused}")
        report_usage(devices, "cluster")
    finally:
        stop_all(devices, *observers)
        for node in nodes:
            node.stop()
