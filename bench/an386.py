#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Measurements only the emulated board can give (ARM code, Zephyr's own IP stack), written
to docs/an386-measurements.md:

- stack high-water marks of every thread, and the peaks of the network packet/buffer pools
  and of mbedTLS's heap (`mqtt memory`), after a handshake and connect, after a credential
  upload through `cred`, and after a soak (`mqtt bench` plus telemetry);
- the network pools' peaks on an impaired link (loss, delay with reordering, duplication)
  under a burst of inbound messages and a soak, with every message checked and the log
  searched for allocation failures;
- mbedTLS's heap peak per TLS profile, chain, TLS version, and after a broker restart with
  a session cached, each case on a freshly booted device; the same worst case on images
  built with other heap sizes (pass or fail), and a P-384 chain on images built with other
  ECP window / fixed-point settings;
- CPU time of boot -> CONNACK, of a full mutual-TLS 1.3 handshake and of a resumed one, under
  QEMU's `-icount shift=0`: guest time advances 1 ns per guest instruction, so a
  microsecond of CPU time is 1,000 ARM (Thumb-2) instructions.

Run as root (a private network namespace), on images built for mps2/an386 with
-DEXTRA_CONF_FILE=pytest/an386/test.conf (each image's build directory, BUILD/zephyr/.config
beside BUILD/zephyr/zephyr.elf, says its TLS profile, heap size and mbedTLS settings):
  bench/an386.py --image BUILD/zephyr/zephyr.elf [--pool-probe ELF] [--compact-image ELF]
      [--heap-check ELF ...] [--ecp-variant ELF ...] [--out docs/an386-measurements.md]
--p256-only leaves out the RSA chain's steps, for images built with APP_TLS_PROFILE_COMPACT
(which refuses RSA credentials); bench/conf/ holds the variants docs/p256-on-arm.md compares.
--sections runs a subset (development; the document then has only those sections).
"""

import argparse
import base64
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "pytest" / "an386"))

import rig  # noqa: E402

K64F_HZ = 120_000_000
BENCH_COUNT = 1000  # messages per `mqtt bench` run, QoS 0 and QoS 1
# Kept with the stacks table it qualifies: what the impaired links did to the stacks before.
IMPAIRED_LINK_STACKS = """\
The first columns had a clean link; the `wan`, `lan` and `clean` columns are the bursts and
soaks of "Network pools on impaired links" below. Before those existed: on a link losing 10 %
of the frames each way and reordering them (300 ± 100 ms of delay,
`test_every_message_arrives_through_loss_delay_and_reordering`), TCP's work queue sends the
retransmissions through the Ethernet driver from its own stack: `tcp_work` then reached 488 B
(2026-11-26, a probe build with 2 KiB stacks), and with a 512 B stack (prj.conf's size until
then) one CI run stopped with `Stack overflow` in it. Since then `tcp_work` and `rx_q[0]`
(which sends the ACKs the same way) keep Zephyr's defaults, 1,024 and 1,792 B, and the
impaired-link test checks every sized stack keeps a tenth of it free, as
`test_every_sized_stack_keeps_a_tenth_of_its_size_free` does after a clean run: at 512 B,
488 B would fail it. frdm_k64f RAM 174,984 → 176,264 B.
"""


class Refused(Exception):
    """The device refused a step (a credential, a connection): the log line that says so."""


def upload(device: rig.Qemu, kind: str, der: bytes) -> None:
    """One credential through `cred`, checked by mbedTLS on the MQTT thread, staged."""
    device.command(f"cred begin {kind}")
    device.until(f"upload of {kind} open", timeout=10)
    text = base64.b64encode(der).decode()
    for start in range(0, len(text), 48):
        device.command(f"cred data {text[start:start + 48]}")
        device.until(rf"{kind}: \d+ bytes so far", timeout=10)
    device.command("cred end")
    answer = device.until(r"staged|^cred: .*", timeout=60)
    if "staged" not in answer.group(0):
        raise Refused(answer.string)


def commit(device: rig.Qemu) -> None:
    device.command("cred commit")
    device.until(r"stored; used from the next connection on", timeout=60)


def mkcerts_all(certs: Path, *options: str) -> Path:
    """`certs/mkcerts all` for the rig's broker name; RSA-4096 key generation can take longer
    than rig.run allows on a loaded machine."""
    certs.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(rig.REPO / "certs" / "mkcerts"), "all", "--out", str(certs),
                    "--san", f"DNS:{rig.BROKER_NAME},IP:{rig.HOST_ADDRESS}",
                    "--no-mosquitto-conf", *options],
                   check=True, capture_output=True, text=True, timeout=600)
    return certs


def rsa_chain(work: Path) -> Path:
    """The largest chain the INTEROP profile takes: an RSA-4096 root, an RSA-2048
    intermediate and broker certificate (the broker sends the intermediate), and a P-256
    device certificate from the same intermediate."""
    return mkcerts_all(work / "rsa-chain", "--intermediate", "--ca-key-type", "rsa4096",
                       "--intermediate-key-type", "rsa2048", "--broker-key-type", "rsa2048",
                       "--device-key-type", "p256")


def provision(device: rig.Qemu, certs: Path) -> None:
    """The chain's root as the only CA, and its device certificate and key; committed."""
    for kind, name in (("ca", "ca.crt.der"), ("cert", "device.crt.der"),
                       ("key", "device.key.der")):
        upload(device, kind, (certs / name).read_bytes())
    commit(device)


class Rig:
    """The emulated board's network (rig.py) for one measurement run."""

    def __init__(self, work: Path, bridge: rig.Bridge):
        self.work = work
        self.certs = rig.broker_certificates(work)
        self.dnsmasq = rig.Dnsmasq(work).start()
        self.sntp = rig.SntpServer()
        self.broker = rig.Broker(self.certs, work / "broker").start()
        self.bridge = bridge

    def switch_broker(self, certs: Path, name: str, tls_1_2_only: bool = False,
                      conf_lines: tuple = ()) -> None:
        """The broker on the same address, now with the certificate set `certs`."""
        self.broker.stop()
        self.broker = rig.Broker(certs, self.work / name, tls_1_2_only=tls_1_2_only,
                                 conf_lines=conf_lines).start()

    def device(self, name: str, icount: str = "", image: Path = None) -> rig.Qemu:
        return rig.Qemu(image or self.image, self.work / f"{name}.log", self.bridge.qemu_nic(),
                        icount)

    def stop(self) -> None:
        self.broker.stop()
        self.sntp.stop()
        self.dnsmasq.stop()


def measure_memory(net: Rig, with_rsa: bool = True) -> list:
    device = net.device("memory").start()
    try:
        device.until(r"mqtt: subscribed", timeout=120)
        phases = [("after a mutual-TLS 1.3 handshake and connect", rig.memory(device))]
        device.command("mqtt bench 500 1")
        device.until(r"bench: done: \d+", timeout=300)
        for _ in range(2):
            device.until(r"mqtt: telemetry queued", timeout=30)
        phases.append(("after a soak (500 QoS 1 messages, telemetry)", rig.memory(device)))
        if not with_rsa:
            return phases
        # The broker moves to the largest chain: its root, and a device certificate and key
        # from it, provisioned through cred; the next connection is a full handshake on it.
        chain = rsa_chain(net.work)
        provision(device, chain)
        net.switch_broker(chain, "rsa-broker")
        device.until(rf"tls: connected to {rig.BROKER_NAME}", timeout=120)
        device.until(r"mqtt: subscribed", timeout=60)
        phases.append(("after an RSA-4096/2048 chain provisioned (cred) and its handshake",
                       rig.memory(device)))
        return phases
    finally:
        device.stop()


def measure_cpu(net: Rig, with_rsa: bool = True) -> dict:
    net.switch_broker(net.certs, "cpu-broker")
    device = net.device("cpu", icount="shift=0,sleep=on").start()
    try:
        full = int(device.until(r"cpu: handshake took (\d+) us", timeout=300).group(1))
        boot = int(device.until(r"cpu: (\d+) us used since boot", timeout=60).group(1))
        device.until(r"mqtt: subscribed", timeout=60)
        # A lost link: the next connection resumes the TLS 1.3 session by its ticket.
        rig.set_link(False)
        device.until(r"mqtt: connection lost", timeout=120)
        rig.set_link(True)
        resumed = int(device.until(r"cpu: handshake took (\d+) us", timeout=300).group(1))
        device.until(r"mqtt: connected", timeout=60)
        result = {"boot_to_connack_us": boot, "full_handshake_us": full,
                  "resumed_handshake_us": resumed}
        for qos in (0, 1):
            device.command(f"mqtt bench {BENCH_COUNT} {qos} 15")
            done = device.until(r"bench: done: .* in (\d+) ms", timeout=300)
            cost = device.until(r"cpu: bench took (\d+) us of all threads, (\d+) us of the "
                                r"MQTT thread", timeout=30)
            result[f"bench_qos{qos}"] = {"ms": int(done.group(1)),
                                         "all_us": int(cost.group(1)),
                                         "mqtt_us": int(cost.group(2))}
        if not with_rsa:
            return result
        # The largest chain: verifying an RSA-4096 root's signature and an RSA-2048 one.
        chain = rsa_chain(net.work / "cpu")
        provision(device, chain)
        net.switch_broker(chain, "cpu-rsa-broker")
        rsa = int(device.until(r"cpu: handshake took (\d+) us", timeout=300).group(1))
        return {**result, "rsa_handshake_us": rsa}
    finally:
        rig.set_link(True)
        device.stop()


ICOUNT = "shift=0,sleep=on"
# The impaired links. The kernel here has no netem (CONFIG_NET_SCH_NETEM is not set), so the
# rig's bridge between QEMU and the tap impairs the frames (rig.Bridge), each way.
IMPAIRMENTS = (
    ("wan", "10 % of the frames lost, 300 ± 100 ms delay (frames overtake each other), "
            "5 % duplicated, each way",
     {"loss": 0.10, "delay_ms": 300, "jitter_ms": 100, "duplicate": 0.05}),
    ("lan", "3 % lost, 10 ± 8 ms delay (reordering), 5 % duplicated, each way",
     {"loss": 0.03, "delay_ms": 10, "jitter_ms": 8, "duplicate": 0.05}),
    ("clean", "not impaired: the same burst and soak at the emulated link's full speed", {}),
)
# The burst: inbound at once, while the device publishes BURST_BENCH messages at QoS 1.
BURST_QOS1_PINGS = 100  # 5-byte pings at QoS 1 (the broker keeps 20 in flight to the device)
BURST_QOS0_PINGS = 300  # 1-byte pings at QoS 0: as many small TLS records as TCP's window holds
BURST_LARGE = 4  # 12 KiB messages: read past and acknowledged (more than the device takes)
BURST_BENCH = 200
# Bursts per link: how fast the device reads decides how much of the window waits in the
# pools, and that varies from burst to burst; more rounds where they are quick.
BURST_ROUNDS = {"wan": 1, "lan": 3, "clean": 5}
# The soak: pings at SOAK_PING_RATE a second for SOAK_S seconds, while the device publishes
# SOAK_BENCH messages at QoS 1 and its telemetry.
SOAK_S = 60
SOAK_PING_RATE = 10
SOAK_BENCH = 300
# mbedTLS's memory_header: eight words, not counted in the heap's byte figures.
HEAP_HEADER_BYTES = 8 * 4
# Chains for mbedTLS's heap, per profile; made by certs/mkcerts all. The broker sends the
# intermediate; the device trusts only the root.
HEAP_CHAINS = {
    "rsa": ("RSA-4096 root -> RSA-2048 intermediate -> RSA-2048 broker and device",
            ["--intermediate", "--ca-key-type", "rsa4096", "--intermediate-key-type", "rsa2048",
             "--key-type", "rsa2048"], ("INTEROP",)),
    "p384": ("P-384 root -> P-384 intermediate -> P-384 broker and device",
             ["--intermediate", "--key-type", "p384"], ("INTEROP",)),
    "p256": ("P-256 root -> P-256 intermediate -> P-256 broker and device",
             ["--intermediate", "--key-type", "p256"], ("INTEROP", "COMPACT")),
}
TLS_VERSIONS = ("1.3", "1.2")


class Image:
    """A built image and what its build directory (BUILD/zephyr/.config) says about it."""

    def __init__(self, elf: Path):
        self.elf = elf
        config = elf.parent / ".config"
        self.config = dict(re.findall(r"^(CONFIG_\w+)=(.*)$", config.read_text(), re.M)) \
            if config.exists() else {}
        self.profile = ("COMPACT" if self.config.get("CONFIG_APP_TLS_PROFILE_COMPACT") == "y"
                        else "INTEROP")
        self.heap_size = int(self.config.get("CONFIG_MBEDTLS_HEAP_SIZE", "0"))
        user = self.config.get("CONFIG_MBEDTLS_USER_CONFIG_FILE", '""').strip('"')
        self.user_config = user
        self.ecp_window, self.ecp_fixed_point = ecp_settings(user)

    def build(self) -> str:
        """How it was built: the overlays and Kconfig values given to west build."""
        cache = self.elf.parent.parent / "CMakeCache.txt"
        if not cache.exists():
            return "?"
        entries = dict(re.findall(r"^(EXTRA_CONF_FILE|CONFIG_\w+):\w+=(.*)$",
                                  cache.read_text(), re.M))
        parts = [f"`-DEXTRA_CONF_FILE={entries.pop('EXTRA_CONF_FILE', '')}`"]
        parts += [f"`-D{key}={value}`" for key, value in sorted(entries.items())]
        return " ".join(parts)

    def flash(self) -> int:
        """text + data: what the image takes of flash."""
        out = subprocess.run(["arm-none-eabi-size", str(self.elf)], check=True,
                             capture_output=True, text=True).stdout.splitlines()[1].split()
        return int(out[0]) + int(out[1])

    def ecp(self) -> str:
        return (f"window {self.ecp_window}, fixed-point tables "
                f"{'on' if self.ecp_fixed_point else 'off'}")


def ecp_settings(user_config: str) -> tuple:
    """MBEDTLS_ECP_WINDOW_SIZE and MBEDTLS_ECP_FIXED_POINT_OPTIM as the image's mbedTLS user
    config file (and what it includes) leaves them; mbedTLS's defaults are 4 and 1. The
    file is read from the source tree, so it must be as it was when the image was built."""
    values = {"MBEDTLS_ECP_WINDOW_SIZE": 4, "MBEDTLS_ECP_FIXED_POINT_OPTIM": 1}
    include_dir = REPO / "src" / "mbedtls"

    def scan(path: Path) -> None:
        for line in path.read_text().splitlines():
            if match := re.match(r'\s*#\s*include\s+"([^"]+)"', line):
                for base in (path.parent, include_dir):
                    if (base / match.group(1)).exists():
                        scan((base / match.group(1)).resolve())
                        break
            elif match := re.match(r"\s*#\s*define\s+(MBEDTLS_ECP_\w+)\s+(\d+)", line):
                if match.group(1) in values:
                    values[match.group(1)] = int(match.group(2))

    if user_config and (include_dir / user_config).exists():
        scan((include_dir / user_config).resolve())
    return values["MBEDTLS_ECP_WINDOW_SIZE"], values["MBEDTLS_ECP_FIXED_POINT_OPTIM"]


def count_lines(device: rig.Qemu, regex: str, start: int) -> int:
    """Console lines read so far, from line `start` on, that match `regex`."""
    pattern = re.compile(regex)
    return sum(1 for line in device.console.seen[start:] if pattern.search(line))


def wait_for_counts(device: rig.Qemu, wanted: dict, start: int, timeout: float) -> dict:
    """Reads the console until every regex of `wanted` ({regex: count}) has matched that
    many lines from line `start` on, or `timeout`; returns the counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {regex: count_lines(device, regex, start) for regex in wanted}
        left = deadline - time.monotonic()
        if all(counts[regex] >= wanted[regex] for regex in wanted) or left <= 0:
            return counts
        try:
            device.until(r"", timeout=left)
        except AssertionError:
            return {regex: count_lines(device, regex, start) for regex in wanted}


class Publisher:
    """mosquitto_pub -l at the broker (the observer's identity): each line written is one
    message to `topic`."""

    def __init__(self, observer: rig.Observer, topic: str, qos: int):
        self.process = subprocess.Popen(["mosquitto_pub", *observer.tls_args(), "-t", topic,
                                         "-q", str(qos), "-l"], stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        text=True, start_new_session=True)

    def send(self, payloads) -> None:
        for payload in payloads:
            self.process.stdin.write(payload + "\n")
        self.process.stdin.flush()

    def close(self, timeout: float = 300) -> None:
        """Ends the input; waits until mosquitto_pub has handed every message over."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def bench_lines(count: int, size: int) -> set:
    """What a subscriber to the benchmark's topic sees of `mqtt bench count 1 size`."""
    return {f"{rig.DEVICE_TOPICS}/bench/q1 " + str(n).ljust(size, ".") for n in range(count)}


def measure_impaired(net: Rig, name: str, impairment: dict, image: Path = None) -> dict:
    """On a freshly booted device, the link impaired: a burst of inbound messages while the
    device publishes, then a soak of both; pool peaks after each, every message checked.
    The broker sends each message as soon as it has it (TCP_NODELAY, as brokers that favour
    latency do; Mosquitto's default waits for the ACK of the last segment): the most
    segments, and so network packets, for the bytes."""
    observer = rig.Observer(net.certs)
    net.switch_broker(net.certs, f"impaired-{name}-broker",
                      conf_lines=("set_tcp_nodelay true",))
    device = net.device(f"impaired-{name}", image=image).start()
    stream = observer.subscribe(f"{rig.DEVICE_TOPICS}/bench/q1")
    bridge = net.bridge
    result = {"phases": [], "checks": {}}
    try:
        device.until(r"mqtt: subscribed", timeout=120)
        time.sleep(1)
        before = (bridge.dropped, bridge.duplicated, bridge.reordered)
        bridge.impair(**impairment)
        start = len(device.console.seen)
        ping = f"{rig.DEVICE_TOPICS}/cmd/ping"
        rounds = BURST_ROUNDS[name]
        checks = {"bench_done": 0, "bench_missing": 0}
        for burst in range(rounds):
            # The benchmark's payload size tells the rounds apart at the subscriber.
            size = 64 + burst
            qos1 = Publisher(observer, ping, 1)
            qos0 = Publisher(observer, ping, 0)
            device.command(f"mqtt bench {BURST_BENCH} 1 {size}")
            qos1.send(f"b{n:04d}" for n in range(BURST_QOS1_PINGS))
            qos0.send("z" for _ in range(BURST_QOS0_PINGS))
            for _ in range(BURST_LARGE):
                rig.run("mosquitto_pub", *observer.tls_args(), "-t", ping, "-q", "1",
                        "-m", "L" * 12 * 1024)
            done = r"bench: done: \d+"
            counts = wait_for_counts(device, {
                done: burst + 1, r"mqtt: ping \(5 bytes\)": BURST_QOS1_PINGS * (burst + 1),
                r"mqtt: message on .* dropped: \d+ bytes": BURST_LARGE * (burst + 1)},
                start, timeout=900)
            qos1.close()
            qos0.close()
            # QoS 0 pings are not resent after a reconnect; give the last of them a moment.
            counts.update(wait_for_counts(
                device, {r"mqtt: ping \(1 bytes\)": BURST_QOS0_PINGS * (burst + 1)}, start,
                timeout=30))
            checks["bench_done"] = counts[done]
            checks["bench_missing"] += len(stream.collect(bench_lines(BURST_BENCH, size),
                                                          timeout=60))
        result["checks"]["burst"] = {
            **checks, "rounds": rounds,
            "qos1_pings": counts[r"mqtt: ping \(5 bytes\)"],
            "qos0_pings": counts[r"mqtt: ping \(1 bytes\)"],
            "large": counts[r"mqtt: message on .* dropped: \d+ bytes"]}
        result["phases"].append(("burst", rig.memory(device)))

        soak = Publisher(observer, ping, 1)
        soak_start = len(device.console.seen)
        device.command(f"mqtt bench {SOAK_BENCH} 1 48")
        soak_end = time.monotonic() + SOAK_S
        sent = 0

        def feed() -> None:
            nonlocal sent
            while time.monotonic() < soak_end:
                soak.send([f"s{sent:08d}"])
                sent += 1
                time.sleep(1 / SOAK_PING_RATE)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        counts = wait_for_counts(device, {r"bench: done: \d+": 1}, soak_start, timeout=900)
        feeder.join()
        soak.close()
        counts.update(wait_for_counts(device, {r"mqtt: ping \(9 bytes\)": sent}, soak_start,
                                      timeout=600))
        missing = stream.collect(bench_lines(SOAK_BENCH, 48), timeout=60)
        result["checks"]["soak"] = {
            "bench_done": counts[r"bench: done: \d+"] >= 1, "bench_missing": len(missing),
            "pings_sent": sent, "pings": counts[r"mqtt: ping \(9 bytes\)"]}
        result["phases"].append(("soak", rig.memory(device)))
        bridge.impair()
        lines = device.console.seen[start:]
        result["checks"]["reconnects"] = sum("mqtt: connection lost" in line for line in lines)
        result["checks"]["alloc_failures"] = [line for line in lines
                                              if rig.ALLOC_FAILURE.search(line)]
        after = (bridge.dropped, bridge.duplicated, bridge.reordered)
        result["checks"]["frames"] = dict(zip(("dropped", "duplicated", "reordered"),
                                              (a - b for a, b in zip(after, before))))
        # Not wedged: a command on the clean link is answered.
        replies = observer.subscribe(f"{rig.DEVICE_TOPICS}/reply/ping")
        try:
            time.sleep(1)
            observer.publish(ping, "alive")
            replies.until(rf"^{rig.DEVICE_TOPICS}/reply/ping alive$", timeout=60)
            result["checks"]["answers_after"] = True
        except AssertionError:
            result["checks"]["answers_after"] = False
        finally:
            replies.close()
        return result
    finally:
        bridge.impair()
        stream.close()
        device.stop()


def heap_case(net: Rig, image: Image, chain: str, version: str, certs: Path) -> dict:
    """One fresh boot (the peaks count from boot): the chain provisioned through `cred`
    while no broker listens, a full handshake with a broker that offers TLS `version` at
    most, then the broker restarted (its tickets and session cache gone with it) and the
    next handshake, a full one while the device holds the old session to offer. mbedTLS's
    heap after each; a step that fails is reported with the device's words."""
    tag = f"{image.profile}-{image.heap_size}-{chain}-tls{version}"
    net.broker.stop()
    device = net.device(f"heap-{tag}", icount=ICOUNT, image=image.elf).start()
    result = {"chain": chain, "version": version, "steps": [], "failed": None}
    try:
        device.until(r"connect to \S+ failed", timeout=180)
        try:
            provision(device, certs)
        except Refused as refused:
            result["failed"] = f"provisioning: {refused}"
            return result
        for step in ("first", "restart"):
            net.switch_broker(certs, f"heap-{tag}-{step}", tls_1_2_only=version == "1.2")
            deadline = time.monotonic() + 300
            while True:
                line = device.until(r"tls: connected to \S+ \((TLSv1\.[23]), (\w+)\)|"
                                    r"connect to \S+ failed: .*",
                                    timeout=max(1, deadline - time.monotonic()))
                if line.group(1):
                    break
                # An attempt refused before the broker listened, or lost with the old one.
                if not re.search(r"connection refused|reset or dropped", line.group(0)):
                    result["failed"] = f"{step} handshake: {line.group(0)}"
                    return result
            cpu = int(device.until(r"cpu: handshake took (\d+) us", timeout=30).group(1))
            device.until(r"mqtt: subscribed", timeout=120)
            memory = rig.memory(device)
            result["steps"].append({
                "step": step, "version": line.group(1), "suite": line.group(2), "cpu_us": cpu,
                "peak": memory["tls_heap"][0], "size": memory["tls_heap"][1],
                "blocks": memory["tls_heap_blocks"], "used": memory["tls_heap_used"]})
        # An operator's upload while connected: mbedTLS parses each credential, and checks
        # the key against the certificate, beside the open connection's buffers.
        try:
            for kind, name in (("ca", "ca.crt.der"), ("cert", "device.crt.der"),
                               ("key", "device.key.der")):
                upload(device, kind, (certs / name).read_bytes())
        except Refused as refused:
            result["failed"] = f"upload while connected: {refused}"
            return result
        device.command("cred abort")
        device.until(r"staged changes dropped", timeout=30)
        memory = rig.memory(device)
        last = result["steps"][-1]
        result["steps"].append({
            "step": "cred", "version": last["version"], "suite": last["suite"], "cpu_us": None,
            "peak": memory["tls_heap"][0], "size": memory["tls_heap"][1],
            "blocks": memory["tls_heap_blocks"], "used": memory["tls_heap_used"]})
        return result
    except AssertionError as lost:
        result["failed"] = f"no answer: {str(lost).splitlines()[0]}"
        return result
    finally:
        device.stop()


def chain_certs(net: Rig, chain: str) -> Path:
    certs = net.work / "chains" / chain
    if not (certs / "ca.crt.der").exists():
        mkcerts_all(certs, *HEAP_CHAINS[chain][1])
    return certs


def measure_heap(net: Rig, image: Image) -> list:
    """Every chain of the image's profile over TLS 1.3 and TLS 1.2."""
    cases = []
    for chain, (_, _, profiles) in HEAP_CHAINS.items():
        if image.profile not in profiles:
            continue
        for version in TLS_VERSIONS:
            cases.append(heap_case(net, image, chain, version, chain_certs(net, chain)))
    return cases


def case_peak(case: dict) -> int:
    return max((step["peak"] for step in case["steps"]), default=0)


def worst_case(cases: list) -> dict:
    return max(cases, key=case_peak)


def check_heap(net: Rig, image: Image, worst: dict) -> dict:
    """The profile's worst case on an image built with another heap size."""
    return heap_case(net, image, worst["chain"], worst["version"],
                     chain_certs(net, worst["chain"]))


def instructions(us: int) -> str:
    return f"{us * 1000 / 1e6:.1f} M"


def k64f_ms(us: int) -> str:
    return f"{us * 1000 / K64F_HZ * 1000:.0f}"


def report(results: dict) -> str:
    lines = ["# Measured on the emulated board (mps2/an386, Cortex-M4, QEMU)", "",
             "Written by `bench/an386.py` (README, \"The emulated board\"). The image is the "
             "mps2/an386 test image (`pytest/an386/test.conf`): the same application, IP "
             "stack and TLS settings as frdm_k64f, plus the counters that produce these "
             "figures (thread analyzer, runtime statistics, pool and mbedTLS heap usage) and "
             "the IP stack's error log.", ""]
    main_image = results["image"]
    images = [("this image", main_image)]
    if results.get("probe"):
        images.append(("pool probe", results["probe"][0]))
    images += [(f"{image.profile} heap", image) for image, _ in results.get("heap", [])[1:]]
    images += [(f"heap check, {image.profile}", image) for image, _ in results.get("checks", [])]
    images += [("ECP variant", image) for image, _ in results.get("ecp", [])[1:]]
    lines += ["Made by `bench/an386.py " + " ".join(results["argv"]) + "`, on images built "
              "with `west build -b mps2/an386 . -- -DTOOLCHAIN_HAS_PICOLIBC=ON` and:", ""]
    lines += [f"- {label} (`{image.elf}`): {image.build()}" for label, image in images]
    lines.append("")
    lines += [f"Image: {main_image.profile} profile, mbedTLS heap {main_image.heap_size:,} B, "
              f"ECP {main_image.ecp()}; network pools: {pool_counts(main_image)} (buffers of "
              f"{main_image.config.get('CONFIG_NET_BUF_DATA_SIZE', '?')} B), TCP windows "
              f"{main_image.config.get('CONFIG_NET_TCP_MAX_RECV_WINDOW_SIZE', '?')} B in and "
              f"{main_image.config.get('CONFIG_NET_TCP_MAX_SEND_WINDOW_SIZE', '?')} B out "
              "(0: derived from the pools).", ""]
    cpu = results.get("cpu")
    if cpu:
        lines += cpu_section(cpu)
    phases = results.get("phases", [])
    impaired = results.get("impaired", [])
    impaired_phases = [(f"{name} link, after the {phase}", memory)
                       for name, _, result in impaired for phase, memory in result["phases"]]
    if phases or impaired_phases:
        lines += stacks_section(phases + impaired_phases)
    if phases:
        lines += ["## Network pools and mbedTLS heap: peaks (clean link)", "",
                  "| pool | " + " | ".join(name for name, _ in phases) + " |",
                  "|---|" + "---:|" * len(phases)]
        lines += pool_rows(phases)
        cells = [f"{m['tls_heap'][0]} of {m['tls_heap'][1]} B" for _, m in phases]
        lines += ["| mbedTLS heap | " + " | ".join(cells) + " |", ""]
    if impaired:
        lines += impaired_section(main_image, impaired, phases, results.get("probe"))
    if results.get("heap"):
        lines += heap_section(results["heap"], results.get("checks", []))
    if results.get("ecp"):
        lines += ecp_section(results["ecp"])
    return "\n".join(lines).rstrip("\n") + "\n"


def cpu_section(cpu: dict) -> list:
    lines = ["## CPU time (instructions under `-icount shift=0`)", "",
             "QEMU's `-icount shift=0,sleep=on` advances guest time by 1 ns per guest "
             "instruction while the guest runs (idle time follows the host clock and is not "
             "counted: Zephyr's runtime statistics exclude the idle thread). So 1 us of CPU "
             "time is 1,000 Thumb-2 instructions. The K64F estimate assumes one instruction "
             "per cycle at 120 MHz; flash wait states and multi-cycle instructions (UMULL, "
             "loads) make the real figure higher, so read it as a lower bound.", "",
             "| step | instructions | est. K64F time at 120 MHz (ms, lower bound) |",
             "|---|---:|---:|"]
    for name, key in (("boot -> CONNACK, all threads", "boot_to_connack_us"),
                      ("full mutual-TLS 1.3 handshake (MQTT thread)", "full_handshake_us"),
                      ("resumed TLS 1.3 handshake, ticket + ECDHE (MQTT thread)",
                       "resumed_handshake_us"),
                      ("full TLS 1.3 handshake, RSA-4096 root -> RSA-2048 intermediate and "
                       "leaf, P-256 device key (MQTT thread)", "rsa_handshake_us")):
        if key in cpu:
            lines.append(f"| {name} | {instructions(cpu[key])} | {k64f_ms(cpu[key])} |")
    ratio = cpu["resumed_handshake_us"] / max(1, cpu["full_handshake_us"])
    lines += ["", f"Resumed / full: {ratio:.2f}.", ""]
    if "rsa_handshake_us" in cpu:
        lines += ["The RSA chain swaps two of the handshake's ECDSA P-256 verifications (the "
                  "CA's signature on the broker certificate, and the broker's "
                  "CertificateVerify) for RSA ones (public exponent 65537, on mbedTLS's "
                  "bignum code); ECDHE and the device's own ECDSA signature remain. It costs "
                  f"{cpu['rsa_handshake_us'] / max(1, cpu['full_handshake_us']):.1f} times "
                  "the P-256 chain's handshake in this image.", ""]
    if "bench_qos0" in cpu:
        lines += ["## Publishing: CPU per message", "",
                  f"`mqtt bench {BENCH_COUNT} QOS 15` after the resumed handshake, to the "
                  "broker on the host through the emulated Ethernet. CPU time of all threads "
                  "(the MQTT thread, the IP stack, the Ethernet driver) while it ran, per "
                  "message; the K64F rate is what that CPU time alone would allow at 120 MHz "
                  "(an upper bound, as the time per instruction is a lower one; the network's "
                  "round trips come on top for QoS 1).", "",
                  "| QoS | instructions per message, all threads | of them the MQTT thread "
                  "| est. K64F messages/s, CPU-bound |", "|---|---:|---:|---:|"]
        for qos in (0, 1):
            b = cpu[f"bench_qos{qos}"]
            per_message = b["all_us"] * 1000 / BENCH_COUNT
            lines.append(f"| {qos} | {per_message:,.0f} | "
                         f"{b['mqtt_us'] * 1000 / BENCH_COUNT:,.0f} | "
                         f"{K64F_HZ / per_message:,.0f} |")
        lines.append("")
    return lines


def stacks_section(phases: list) -> list:
    lines = ["## Stacks: high-water marks (bytes used of size)", ""]
    threads = sorted({t for _, m in phases for t in m["stacks"]})
    lines.append("| thread | " + " | ".join(name for name, _ in phases) + " | peak |")
    lines.append("|---|" + "---:|" * (len(phases) + 1))
    for thread in threads:
        cells = []
        peak = 0
        for _, m in phases:
            used, size = m["stacks"].get(thread, (0, 0))
            peak = max(peak, used)
            cells.append(f"{used} / {size}")
        lines.append(f"| {thread} | " + " | ".join(cells) + f" | {peak} |")
    return lines + ["", *IMPAIRED_LINK_STACKS.splitlines(), ""]


def pool_rows(phases: list) -> list:
    rows = []
    for pool in sorted({p for _, m in phases for p in m["pools"]}):
        cells = [f"{m['pools'][pool][0]} of {m['pools'][pool][1]}" for _, m in phases]
        rows.append(f"| {pool} | " + " | ".join(cells) + " |")
    return rows


IMPAIRED_METHOD = (
    "Each link on a freshly booted device (the peaks count from boot), impaired once MQTT is "
    "up; this kernel has no `netem` (`CONFIG_NET_SCH_NETEM` is not set), so the rig's bridge "
    "between QEMU and the tap drops, delays and duplicates the frames (`rig.Bridge`). The "
    "broker sends each message at once (`set_tcp_nodelay true`, as brokers that favour "
    "latency do; Mosquitto's default coalesces small messages while a segment is "
    "unacknowledged): the most segments, and so network packets, for the bytes. A burst: at "
    f"once, {BURST_QOS1_PINGS} pings at QoS 1 and {BURST_QOS0_PINGS} one-byte pings at QoS 0 "
    f"(`mosquitto_pub -l`), {BURST_LARGE} messages of 12 KiB (more than the device takes: read "
    "past and acknowledged), while the device publishes "
    f"`mqtt bench {BURST_BENCH} 1 64`; how fast the device reads decides how much of TCP's "
    "receive window waits in the pools, which varies from burst to burst, so the quicker "
    "links have several. The soak: "
    f"{SOAK_PING_RATE} pings a second for {SOAK_S} s while the device publishes "
    f"`mqtt bench {SOAK_BENCH} 1 48` and its telemetry. Every benchmark message must reach a "
    "subscriber, every QoS 1 ping must reach the device (it logs each), and the log must hold "
    "no allocation failure.")


def pool_counts(image: Image) -> str:
    return ", ".join(f"{key.removeprefix('CONFIG_')} {image.config.get(key, '?')}"
                     for key in ("CONFIG_NET_PKT_RX_COUNT", "CONFIG_NET_PKT_TX_COUNT",
                                 "CONFIG_NET_BUF_RX_COUNT", "CONFIG_NET_BUF_TX_COUNT"))


def impaired_runs(runs: list) -> list:
    lines = []
    for name, description, result in runs:
        lines += [f"#### {name}: {description}", "",
                  "| pool | " + " | ".join(f"after the {p}" for p, _ in result["phases"]) + " |",
                  "|---|" + "---:|" * len(result["phases"])]
        lines += pool_rows(result["phases"])
        c = result["checks"]
        burst, soak = c.get("burst", {}), c.get("soak", {})
        rounds = burst.get("rounds", 1)
        frames = c.get("frames", {})
        lines += ["",
                  f"- frames: {frames.get('dropped', 0):,} dropped, "
                  f"{frames.get('duplicated', 0):,} duplicated, "
                  f"{frames.get('reordered', 0):,} delivered after a later one",
                  f"- {rounds} burst{'s' if rounds > 1 else ''}: benchmark done "
                  f"{burst.get('bench_done', 0)} of {rounds} times, "
                  f"{BURST_BENCH * rounds - burst.get('bench_missing', 0)} of "
                  f"{BURST_BENCH * rounds} messages at the subscriber; QoS 1 pings "
                  f"{burst.get('qos1_pings', 0)} of {BURST_QOS1_PINGS * rounds}; QoS 0 pings "
                  f"{burst.get('qos0_pings', 0)} of {BURST_QOS0_PINGS * rounds}; 12 KiB "
                  f"messages read past {burst.get('large', 0)} of {BURST_LARGE * rounds}",
                  f"- soak: benchmark {'done' if soak.get('bench_done') else 'NOT done'}, "
                  f"{SOAK_BENCH - soak.get('bench_missing', SOAK_BENCH)} of {SOAK_BENCH} at "
                  f"the subscriber; pings {soak.get('pings', 0)} of {soak.get('pings_sent', 0)}",
                  f"- connections lost meanwhile: {c.get('reconnects', '?')}; a ping on the "
                  "clean link afterwards "
                  f"{'answered' if c.get('answers_after') else 'NOT answered'}",
                  f"- allocation failures in the log: {len(c.get('alloc_failures', []))}"]
        lines += [f"  - `{line.strip()}`" for line in c.get("alloc_failures", [])[:5]]
        lines.append("")
    return lines


def largest_peaks(phases: list) -> dict:
    """{pool: (largest peak, count)} over `phases`."""
    return {pool: (max(m["pools"][pool][0] for _, m in phases if pool in m["pools"]),
                   max(m["pools"][pool][1] for _, m in phases if pool in m["pools"]))
            for pool in sorted({p for _, m in phases for p in m["pools"]})}


def impaired_section(image: Image, runs: list, clean_phases: list, probe) -> list:
    lines = ["## Network pools on impaired links", "", IMPAIRED_METHOD, ""]
    needed = {}
    if probe:
        probe_image, probe_runs = probe
        lines += ["### What the traffic needs: an image with far larger pools", "",
                  f"`bench/conf/net-pools-probe.conf` ({pool_counts(probe_image)}, TCP's windows "
                  "held at this image's), so that no pool caps what the traffic puts in it.", ""]
        lines += impaired_runs(probe_runs)
        needed = largest_peaks([(p, m) for _, _, r in probe_runs for p, m in r["phases"]])
    lines += [f"### This image ({pool_counts(image)})", ""]
    lines += impaired_runs(runs)
    here = largest_peaks(clean_phases + [(p, m) for _, _, r in runs for p, m in r["phases"]])
    lines += ["### Largest peak of each pool", "",
              "| pool | needed (the probe image, every link) | this image (every run in this "
              "document) | count in this image | free at this image's peak |",
              "|---|---:|---:|---:|---:|"]
    for pool, (peak, count) in here.items():
        lines.append(f"| {pool} | {needed.get(pool, ('', ''))[0]} | {peak} | {count} | "
                     f"{count - peak} |")
    return lines + [""]


def footprint(step: dict) -> int:
    """Peak bytes plus a header per block at the peak: what the heap held at most, before
    fragmentation (the two peaks need not coincide, so this bounds it from above)."""
    return step["peak"] + (step["blocks"] or 0) * HEAP_HEADER_BYTES


def heap_section(heap: list, checks: list) -> list:
    lines = ["## mbedTLS heap per TLS profile", "",
             "Each case on a freshly booted device (peaks count from boot), under "
             "`-icount shift=0` (handshakes in instructions of the MQTT thread): the chain's "
             "root, device certificate and key provisioned through `cred` while no broker "
             "listens, then a full handshake with Mosquitto offering TLS 1.3, or at most TLS "
             "1.2 (OpenSSL's `MaxProtocol`, as Mosquitto's `tls_version` is only a minimum), "
             "then the broker restarted: its tickets and session cache are gone, so the next "
             "handshake is a full one while the device still holds the old session to offer; "
             "then, still connected, the same chain uploaded again through `cred` (mbedTLS "
             "parses each credential and checks the key against the certificate beside the "
             "open connection's buffers) and dropped (`cred abort`). "
             "\"peak\" is mbedTLS's count of bytes (`mbedtls_memory_buffer_alloc_max_get`), "
             f"which leaves out the {HEAP_HEADER_BYTES} B header of each block; \"with "
             "headers\" adds them for the largest number of blocks, an upper bound of what "
             "the heap held before fragmentation (the allocator is first-fit).", ""]
    for image, cases in heap:
        lines += [f"### {image.profile} (heap {image.heap_size:,} B, ECP {image.ecp()})", "",
                  "| chain | TLS | after | negotiated | handshake | in use, connected | peak "
                  "since boot | blocks at peak | with headers | free of the heap |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for case in cases:
            label = HEAP_CHAINS[case["chain"]][0]
            for step in case["steps"]:
                after = {"first": "first handshake",
                         "restart": "broker restart, session cached",
                         "cred": "the chain uploaded again through `cred` while connected"
                         }[step["step"]]
                cost = instructions(step["cpu_us"]) if step["cpu_us"] is not None else ""
                lines.append(
                    f"| {label} | {case['version']} | {after} | {step['version']} "
                    f"{step['suite']} | {cost} | {step['used']:,} | {step['peak']:,} | "
                    f"{step['blocks'] if step['blocks'] is not None else '?'} | "
                    f"{footprint(step):,} | {step['size'] - footprint(step):,} |")
            if case["failed"]:
                lines.append(f"| {label} | {case['version']} | FAILED | {case['failed']} "
                             "| | | | | | |")
        good = [c for c in cases if c["steps"]]
        if good:
            worst = worst_case(good)
            step = max(worst["steps"], key=lambda s: s["peak"])
            lines += ["", f"Worst case: {HEAP_CHAINS[worst['chain']][0]} over TLS "
                      f"{worst['version']}, peak {step['peak']:,} B ({footprint(step):,} B "
                      f"with headers) of {step['size']:,} B.", ""]
    if checks:
        lines += ["### The worst case on images with other heap sizes", "",
                  "The profile's worst case above, repeated on an image built with another "
                  "`CONFIG_MBEDTLS_HEAP_SIZE`: does the first-fit allocator find room?", "",
                  "| profile | heap | case | outcome |", "|---|---:|---|---|"]
        for image, case in checks:
            label = f"{HEAP_CHAINS[case['chain']][0]}, TLS {case['version']}"
            if case["failed"]:
                outcome = f"fails: {case['failed']}"
            else:
                outcome = (f"passes (peak {case_peak(case):,} B, both handshakes and the "
                           "broker restart)")
            lines.append(f"| {image.profile} | {image.heap_size:,} B | {label} | {outcome} |")
        lines.append("")
    return lines


def ecp_section(ecp: list) -> list:
    lines = ["## ECP window and fixed-point tables: a P-384 chain", "",
             f"{HEAP_CHAINS['p384'][0]}, TLS 1.3, on images that differ only in "
             "`MBEDTLS_ECP_WINDOW_SIZE` and `MBEDTLS_ECP_FIXED_POINT_OPTIM` (P-256 runs in "
             "P256-Cortex-M4's assembly whatever they are: docs/p256-on-arm.md). The broker "
             "verifies the device's P-384 signature, the device verifies three P-384 "
             "signatures (root -> intermediate -> broker certificate, and the broker's "
             "CertificateVerify) and signs with its P-384 key; ECDHE stays on P-256.", "",
             "| settings | full handshake | est. K64F ms | after a broker restart | mbedTLS heap "
             "peak | with headers | flash (text + data) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for image, case in ecp:
        if case["failed"] or len(case["steps"]) < 2:
            lines.append(f"| {image.ecp()} | failed: {case['failed']} | | | | | |")
            continue
        first, restart = case["steps"][:2]
        step = max(case["steps"], key=lambda s: s["peak"])
        lines.append(f"| {image.ecp()} | {instructions(first['cpu_us'])} | "
                     f"{k64f_ms(first['cpu_us'])} | {instructions(restart['cpu_us'])} | "
                     f"{step['peak']:,} | {footprint(step):,} | {image.flash():,} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, type=Path)
    parser.add_argument("--compact-image", type=Path,
                        help="an image built with APP_TLS_PROFILE_COMPACT: its heap's cases")
    parser.add_argument("--pool-probe", type=Path,
                        help="an image with far larger network pools (bench/conf/"
                        "net-pools-probe.conf): what the impaired links need")
    parser.add_argument("--heap-check", type=Path, action="append", default=[],
                        help="an image with another heap size: its profile's worst case")
    parser.add_argument("--ecp-variant", type=Path, action="append", default=[],
                        help="an image with other ECP settings: the P-384 chain")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "an386-measurements.md")
    parser.add_argument("--json", type=Path, help="also write the CPU figures as JSON here")
    parser.add_argument("--raw", type=Path,
                        help="also write every figure measured as JSON here")
    parser.add_argument("--p256-only", action="store_true",
                        help="skip the RSA chain's steps (images built for APP_TLS_PROFILE_COMPACT)")
    parser.add_argument("--sections", default="clean,impaired,heap,cpu",
                        help="comma-separated subset of clean,impaired,heap,cpu")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    image = Image(args.image)
    rig.enter_private_network()
    rig.make_tap()
    bridge = rig.Bridge()
    results = {"image": image, "argv": sys.argv[1:]}
    with tempfile.TemporaryDirectory(prefix="an386-bench-") as work:
        net = Rig(Path(work), bridge)
        net.image = args.image
        try:
            if "clean" in sections:
                results["phases"] = measure_memory(net, with_rsa=not args.p256_only)
            if args.pool_probe and "impaired" in sections:
                probe = Image(args.pool_probe)
                results["probe"] = (probe, [
                    (name, description, measure_impaired(net, name, impair, probe.elf))
                    for name, description, impair in IMPAIRMENTS])
            if "impaired" in sections:
                results["impaired"] = [(name, description, measure_impaired(net, name, impair))
                                       for name, description, impair in IMPAIRMENTS]
            images = [image] + ([Image(args.compact_image)] if args.compact_image else [])
            if "heap" in sections:
                results["heap"] = [(i, measure_heap(net, i)) for i in images]
                worst = {i.profile: worst_case([c for c in cases if c["steps"]])
                         for i, cases in results["heap"] if any(c["steps"] for c in cases)}
                checks = [Image(path) for path in args.heap_check]
                results["checks"] = [(i, check_heap(net, i, worst[i.profile]))
                                     for i in checks if i.profile in worst]
            if args.ecp_variant:
                p384 = chain_certs(net, "p384")
                # The main image's own P-384 case, if the heap's cases ran it already.
                own = [c for i, cases in results.get("heap", []) if i is image for c in cases
                       if c["chain"] == "p384" and c["version"] == "1.3"]
                results["ecp"] = [(image, own[0] if own
                                   else heap_case(net, image, "p384", "1.3", p384))]
                results["ecp"] += [(i, heap_case(net, i, "p384", "1.3", p384))
                                   for i in (Image(p) for p in args.ecp_variant)]
            if "cpu" in sections:
                results["cpu"] = measure_cpu(net, with_rsa=not args.p256_only)
        finally:
            net.stop()
    if args.raw:
        args.raw.write_text(json.dumps(results, default=lambda o: str(getattr(o, "elf", o)),
                                       indent=1))
    text = report(results)
    args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"cpu": results.get("cpu"), "bench_count": BENCH_COUNT,
                                         "k64f_hz": K64F_HZ}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
