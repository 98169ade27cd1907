# SPDX-License-Identifier: Apache-2.0
"""A board in a box: the firmware image for mps2/an386 (Cortex-M4) in QEMU, on a network of
its own that only root on this machine is needed for.

The test process moves itself into a private network namespace (unshare(CLONE_NEWNET)) and
builds there:
- a tap device `zeth` (192.0.2.1/24, and 192.0.2.3 for a second broker) that QEMU's LAN9118
  is plugged into;
- dnsmasq: DHCPv4 for the device, and DNS with `broker.test` and `time.test` from a hosts
  file that the tests rewrite (SIGHUP reloads it);
- an SNTP responder (time.test), since the board has no battery-backed clock and the
  device checks certificate dates against what SNTP says;
- Mosquitto over TLS (certs/broker-up), with a broker certificate for `broker.test` signed by
  the development CA (certs/mkcerts), so the image's built-in credentials are used as is.
Nothing of it is visible outside the namespace, and it all goes away with the process.
"""

import ctypes
import fcntl
import heapq
import os
import random
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
DEV_CERTS = REPO / "certs" / "dev-only-insecure"
CLIENT_ID = "dev-device-1"
DEVICE_TOPICS = f"devices/{CLIENT_ID}"

TAP = "zeth"
HOST_ADDRESS = "192.0.2.1"
SECOND_ADDRESS = "192.0.2.3"
PREFIX = 24
BROKER_NAME = "broker.test"
TIME_NAME = "time.test"
BROKER_PORT = 8883

CLONE_NEWNET = 0x40000000


def run(*command, check=True) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], check=check, capture_output=True,
                          text=True, timeout=60)


def enter_private_network() -> None:
    """Moves this process (and every child it starts from now on) into a new network
    namespace with only a loopback interface."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNET) failed: {os.strerror(errno)}; run as root")
    run("ip", "link", "set", "lo", "up")


def make_tap() -> None:
    run("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
    run("ip", "addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", TAP)
    run("ip", "addr", "add", f"{SECOND_ADDRESS}/{PREFIX}", "dev", TAP)
    run("ip", "link", "set", TAP, "up")


def set_link(up: bool) -> None:
    run("ip", "link", "set", TAP, "up" if up else "down")


class Bridge:
    """Relays Ethernet frames between QEMU (its `-nic socket` sends each frame as one UDP
    datagram on loopback) and the tap device, and impairs them on the way, in both
    directions: loss, delay with jitter (frames overtake each other: reordering), and
    duplication (a second copy with a delay of its own).

    This stands in for `tc netem`, which the kernel of the machine the tests were written on
    lacks (CONFIG_NET_SCH_NETEM is not set); it works wherever a tap device does."""

    TUNSETIFF = 0x400454CA
    IFF_TAP = 0x0002
    IFF_NO_PI = 0x1000

    def __init__(self):
        self.tap = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(self.tap, self.TUNSETIFF,
                    struct.pack("16sH", TAP.encode(), self.IFF_TAP | self.IFF_NO_PI))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.qemu_port = free_udp_port()
        self.loss = 0.0
        self.delay_s = 0.0
        self.jitter_s = 0.0
        self.relayed = 0
        self.dropped = 0
        self.duplicated = 0
        self.duplicate = 0.0
        self.reordered = 0  # frames delivered after one scheduled later than them
        self.last_delivered = 0
        self.random = random.Random(2131)
        self.pending = []  # heap of (due, sequence, send function, frame)
        self.sequence = 0
        self.lock = threading.Condition()
        for target in (self._from_tap, self._from_qemu, self._deliver):
            threading.Thread(target=target, daemon=True).start()

    def qemu_nic(self) -> str:
        return f"socket,udp=127.0.0.1:{self.port},localaddr=127.0.0.1:{self.qemu_port}"

    def impair(self, loss: float = 0.0, delay_ms: int = 0, jitter_ms: int = 0,
               duplicate: float = 0.0) -> None:
        with self.lock:
            self.loss = loss
            self.delay_s = delay_ms / 1000
            self.jitter_s = jitter_ms / 1000
            self.duplicate = duplicate

    def _schedule(self, send, frame: bytes) -> None:
        with self.lock:
            if self.random.random() < self.loss:
                self.dropped += 1
                return
            copies = 1
            if self.random.random() < self.duplicate:
                self.duplicated += 1
                copies = 2
            for _ in range(copies):
                delay = max(0.0, self.delay_s
                            + self.random.uniform(-self.jitter_s, self.jitter_s))
                self.sequence += 1
                heapq.heappush(self.pending,
                               (time.monotonic() + delay, self.sequence, send, frame))
            self.lock.notify()

    def _to_tap(self, frame: bytes) -> None:
        try:
            os.write(self.tap, frame)
        except OSError:
            pass  # the tap is down (`ip link set zeth down`): the frame is lost

    def _to_qemu(self, frame: bytes) -> None:
        self.udp.sendto(frame, ("127.0.0.1", self.qemu_port))

    def _from_tap(self) -> None:
        while True:
            try:
                frame = os.read(self.tap, 65536)
            except OSError:
                time.sleep(0.05)
                continue
            self._schedule(self._to_qemu, frame)

    def _from_qemu(self) -> None:
        while True:
            frame, _ = self.udp.recvfrom(65536)
            self._schedule(self._to_tap, frame)

    def _deliver(self) -> None:
        while True:
            with self.lock:
                while not self.pending or self.pending[0][0] > time.monotonic():
                    wait = self.pending[0][0] - time.monotonic() if self.pending else None
                    self.lock.wait(wait)
                _, sequence, send, frame = heapq.heappop(self.pending)
                self.relayed += 1
                if sequence < self.last_delivered:
                    self.reordered += 1
                self.last_delivered = max(self.last_delivered, sequence)
            send(frame)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dnsmasq:
    """DHCPv4 and DNS for the device on the tap; names from a hosts file we rewrite."""

    def __init__(self, work: Path, lease: str = "1h"):
        self.work = work
        self.lease = lease
        self.hosts = work / "hosts"
        self.log_path = work / "dnsmasq.log"
        self.process = None

    def set_names(self, names: dict) -> None:
        """{name: address or [addresses]}: a name with several addresses gets them all."""
        lines = []
        for name, addresses in names.items():
            for address in [addresses] if isinstance(addresses, str) else addresses:
                lines.append(f"{address} {name}\n")
        self.hosts.write_text("".join(lines))
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)  # rereads the hosts file

    def start(self, dhcp: bool = True) -> "Dnsmasq":
        if not self.hosts.exists():
            self.set_names({BROKER_NAME: HOST_ADDRESS, TIME_NAME: HOST_ADDRESS})
        command = ["dnsmasq", "--keep-in-foreground", f"--interface={TAP}", "--bind-interfaces",
                   "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}",
                   "--log-queries", "--log-facility=-", "--pid-file=",
                   f"--dhcp-leasefile={self.work / 'leases'}", "--user=root"]
        if dhcp:
            command += [f"--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,{self.lease}",
                        "--log-dhcp"]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while "started" not in self.log() and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.log()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class SntpServer:
    """Answers SNTP requests (RFC 4330) in server mode with the host's clock, echoing the
    client's transmit timestamp as the originate timestamp (as a real server must)."""

    NTP_EPOCH_OFFSET = 2_208_988_800

    def __init__(self, address: str = HOST_ADDRESS, offset_s: int = 0):
        self.offset_s = offset_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 123))
        self.sock.settimeout(0.2)
        self.requests = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _timestamp(self) -> bytes:
        now = time.time() + self.offset_s + self.NTP_EPOCH_OFFSET
        return struct.pack("!II", int(now) & 0xFFFF_FFFF, int((now % 1) * 2**32))

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                request, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(request) < 48:
                continue
            self.requests += 1
            received = self._timestamp()
            # LI 0, version 4, mode 4 (server); stratum 1; poll; precision; root delay and
            # dispersion; reference id "LOCL".
            header = struct.pack("!BBbbII4s", (0 << 6) | (4 << 3) | 4, 1, 6, -20, 0, 0, b"LOCL")
            reply = header + received + request[40:48] + received + self._timestamp()
            self.sock.sendto(reply, peer)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


class Broker:
    """Mosquitto over TLS on one address of the tap (certs/broker-up in the foreground).

    `tls_1_2_only`: the listener offers nothing newer than TLS 1.2. Mosquitto's `tls_version`
    is a minimum, so the cap comes from OpenSSL's own configuration (`MaxProtocol` in an
    OPENSSL_CONF file, which Mosquitto loads at start). `conf_lines`: more lines for its
    mosquitto.conf (certs/broker-up --conf-line)."""

    def __init__(self, certs: Path, run_dir: Path, bind: str = HOST_ADDRESS,
                 tls_1_2_only: bool = False, conf_lines: tuple = ()):
        self.certs = certs
        self.run_dir = run_dir
        self.bind = bind
        self.tls_1_2_only = tls_1_2_only
        self.conf_lines = conf_lines
        self.log_path = run_dir / "broker-stdout.log"
        self.process = None

    def start(self) -> "Broker":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.tls_1_2_only:
            conf = self.run_dir / "openssl-tls12.cnf"
            conf.write_text("openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\n"
                            "system_default = tls\n[tls]\nMaxProtocol = TLSv1.2\n")
            env["OPENSSL_CONF"] = str(conf)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(REPO / "certs" / "broker-up"), "--certs", str(self.certs), "--port",
             str(BROKER_PORT), "--bind", self.bind, "--run-dir", str(self.run_dir),
             "--foreground", *(arg for line in self.conf_lines for arg in ("--conf-line", line))],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex((self.bind, BROKER_PORT)) == 0:
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"broker on {self.bind} did not start: {self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log(self) -> str:
        log = self.run_dir / "mosquitto.log"
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text + (log.read_text(errors="replace") if log.exists() else "")


def broker_certificates(work: Path) -> Path:
    """The development set with a broker certificate for `broker.test` (and both tap
    addresses, for the test's own clients), signed by the development CA."""
    certs = work / "certs"
    shutil.copytree(DEV_CERTS, certs, ignore=shutil.ignore_patterns("mosquitto.conf", "acl"))
    run(REPO / "certs" / "mkcerts", "broker", "--out", certs, "--ca-dir", certs, "--san",
        f"DNS:{BROKER_NAME},IP:{HOST_ADDRESS},IP:{SECOND_ADDRESS}", "--force")
    return certs


class Observer:
    """mosquitto_sub/pub with the observer's certificate, against one broker address."""

    def __init__(self, certs: Path, address: str = HOST_ADDRESS):
        self.certs = certs
        self.address = address

    def tls_args(self) -> list:
        return ["-h", self.address, "-p", str(BROKER_PORT), "--cafile",
                str(self.certs / "ca.crt.pem"), "--cert", str(self.certs / "observer.crt.pem"),
                "--key", str(self.certs / "observer.key.pem")]

    def publish(self, topic: str, payload: str, qos: int = 1) -> None:
        run("mosquitto_pub", *self.tls_args(), "-t", topic, "-m", payload, "-q", str(qos))

    def subscribe(self, topic_filter: str, session: Optional[str] = None) -> "Lines":
        """With `session`, a persistent session of that client id: the broker keeps what
        arrives while the observer is away and hands it over when it subscribes again."""
        persistent = ["-c", "-i", session] if session else []
        process = subprocess.Popen(["mosquitto_sub", *self.tls_args(), *persistent,
                                    "-t", topic_filter, "-v", "-q", "1"],
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        return Lines(process)


class Lines:
    """The output lines of a process, read on a thread, matched in order."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.queue = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.queue.put(line.rstrip("\r\n"))
        self.queue.put(None)

    def until(self, regex: str, timeout: float) -> re.Match:
        """The first line from here on that matches `regex`."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                tail = "\n".join(self.seen[-40:])
                raise AssertionError(f"{regex!r} not seen within {timeout} s; last lines:\n{tail}")
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.queue.put(None)
                raise AssertionError(f"{regex!r} not seen: the process ended; last lines:\n"
                                     + "\n".join(self.seen[-40:]))
            self.seen.append(line)
            if match := pattern.search(line):
                return match

    def collect(self, expected: set, timeout: float) -> set:
        """Reads until every line of `expected` was seen; returns the ones still missing."""
        missing = set(expected) - set(self.seen)
        deadline = time.monotonic() + timeout
        while missing and time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            missing.discard(line)
        return missing

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(5)


class Qemu:
    """The firmware in QEMU (scripts/qemu-an386), its console on stdin/stdout."""

    def __init__(self, image: Path, log_path: Path, nic: str, icount: str = ""):
        self.image = image
        self.nic = nic
        self.log_path = log_path
        self.icount = icount
        self.process = None
        self.console = None

    def start(self) -> "Qemu":
        env = dict(os.environ, APP_QEMU_NIC=self.nic)
        if self.icount:
            env["APP_QEMU_ICOUNT"] = self.icount
        self.process = subprocess.Popen([str(REPO / "scripts" / "qemu-an386"), str(self.image)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env,
                                        start_new_session=True)
        self.console = Lines(self.process)
        return self

    def until(self, regex: str, timeout: float) -> re.Match:
        return self.console.until(regex, timeout)

    def seen(self, regex: str) -> bool:
        """Whether any console line read so far matches `regex`."""
        pattern = re.compile(regex)
        return any(pattern.search(line) for line in self.console.seen)

    def command(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        if self.console:
            self.log_path.write_text("\n".join(self.console.seen) + "\n")


# What a network pool running dry leaves in the log: the IP stack's own errors (the test image
# logs them: test.conf), the Ethernet driver's, and the words the firmware gives ENOMEM and
# ENOBUFS (src/net.rs).
ALLOC_FAILURE = re.compile(r"allocation failed|Failed to obtain RX buffer|Failed to get|"
                           r"pkt alloc|Cannot allocate|out of sockets, buffers or memory")
THREAD_LINE = re.compile(r"^\s*(\S.*?)\s*: STACK: unused (\d+) usage (\d+) / (\d+)")
ISR_LINE = re.compile(r"^\s*ISR\d*\s*: STACK: unused (\d+) usage (\d+) / (\d+)")
POOL_LINE = re.compile(r"^(net (?:pkt|buf) (?:rx|tx)): peak (\d+) of (\d+)")
TLS_HEAP_LINE = re.compile(r"^tls heap: (\d+) used, peak (\d+) of (\d+)"
                           r"(?:; blocks (\d+) in use, peak (\d+))?")


def memory(device: "Qemu") -> dict:
    """`mqtt memory` (the test image's thread analyzer, pools and heaps) parsed:
    {"stacks": {thread: (used, size)}, "pools": {...}, "tls_heap": (peak, size),
    "tls_heap_used": bytes in use now, "tls_heap_blocks": peak blocks or None}."""
    device.command("mqtt memory")
    result = {"stacks": {}, "pools": {}, "tls_heap": None}
    while result["tls_heap"] is None:
        line = device.until(r".", timeout=20).string
        if match := ISR_LINE.match(line):
            result["stacks"]["ISR"] = (int(match.group(2)), int(match.group(3)))
        elif match := THREAD_LINE.match(line):
            result["stacks"][match.group(1)] = (int(match.group(3)), int(match.group(4)))
        elif match := POOL_LINE.match(line):
            result["pools"][match.group(1)] = (int(match.group(2)), int(match.group(3)))
        elif match := TLS_HEAP_LINE.match(line):
            result["tls_heap"] = (int(match.group(2)), int(match.group(3)))
            result["tls_heap_used"] = int(match.group(1))
            result["tls_heap_blocks"] = int(match.group(5)) if match.group(5) else None
    return result
