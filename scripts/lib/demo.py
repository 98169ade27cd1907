# SPDX-License-Identifier: Apache-2.0
"""The demo behind scripts/demo: a development broker, the device, an observer that prints
what the device publishes, and a prompt that sends the device commands. Every process it
starts runs in a session of its own and is stopped (SIGTERM, then SIGKILL) on Ctrl-C, end of
input, or the end of --for.

Two rigs: native_sim (the image is a Linux process whose sockets are the host's; the broker
on a free loopback port) and mps2/an386 (the image in QEMU on a tap device inside a private
network namespace, with DHCP, DNS and SNTP from pytest/an386/rig.py; needs root)."""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEV_CERTS = REPO / "certs" / "dev-only-insecure"
sys.path.insert(0, str(REPO / "pytest"))
from loopback import free_port, wait_for_port  # noqa: E402

_OUTPUT = threading.Lock()


def say(text: str) -> None:
    """One message, written whole: several threads print, and print() writes the text and its
    newline separately, so another thread's line could land between them."""
    with _OUTPUT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


HELP = """commands (published to the device's cmd/ topics, answers on reply/):
  ping [TEXT]              the device answers on reply/ping with TEXT
  led [N] on|off|toggle    LED N (default 0); the device logs the change
  pub SUBTOPIC PAYLOAD     any other command, e.g. `pub cmd/reboot now` (an error reply)
  mqtt ... | cred ...      a line for the device's own shell (`mqtt status`)
  help, quit (or Ctrl-D, Ctrl-C)"""


class Demo:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.processes = []  # (name, Popen), stopped in reverse order
        self.lines = []
        self.cond = threading.Condition()
        self.host = "localhost"
        self.port = 0
        self.certs = DEV_CERTS
        self.topics = ""
        self.device = None
        self.cleanups = []  # called after the processes are stopped

    # --- processes and their output ------------------------------------------------------

    def spawn(self, name: str, command: list, stdin=subprocess.DEVNULL, env=None,
              show: bool = True) -> subprocess.Popen:
        process = subprocess.Popen([str(c) for c in command], stdin=stdin,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace", env=env,
                                   start_new_session=True)
        self.processes.append((name, process))
        threading.Thread(target=self._pump, args=(name, process, show), daemon=True).start()
        return process

    def _pump(self, name: str, process: subprocess.Popen, show: bool) -> None:
        for line in process.stdout:
            line = line.rstrip("\r\n")
            if show:
                say(f"{name:<7}| {line}")
            with self.cond:
                self.lines.append((name, line))
                self.cond.notify_all()

    def wait_for(self, name: str, regex: str, timeout: float) -> bool:
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for source, line in self.lines[seen:]:
                    if source == name and pattern.search(line):
                        return True
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)

    def stop(self, name: str) -> None:
        for entry in [e for e in self.processes if e[0] == name]:
            self._stop(entry[1])
            self.processes.remove(entry)

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for _, process in reversed(self.processes):
            self._stop(process)
        self.processes.clear()

    # --- the broker's clients -------------------------------------------------------------

    def tls_args(self) -> list:
        return ["-h", self.host, "-p", str(self.port), "--cafile", self.certs / "ca.crt.pem",
                "--cert", self.certs / "observer.crt.pem", "--key", self.certs / "observer.key.pem"]

    def observe(self) -> None:
        self.spawn("broker", ["mosquitto_sub", *self.tls_args(), "-t", f"{self.topics}/#", "-v"])

    def publish(self, subtopic: str, payload: str) -> None:
        topic = f"{self.topics}/{subtopic}"
        say(f"{'you':<7}| {topic} {payload}")
        subprocess.run([str(a) for a in ["mosquitto_pub", *self.tls_args(), "-q", "1", "-t",
                                         topic, "-m", payload]], check=False, timeout=15)

    def command(self, line: str) -> bool:
        """One line the user typed; False to quit."""
        words = line.split()
        if not words:
            return True
        verb = words[0]
        if verb in ("quit", "exit"):
            return False
        if verb == "help":
            say(HELP)
        elif verb == "ping":
            self.publish("cmd/ping", " ".join(words[1:]) or "hello")
        elif verb == "led" and len(words) in (2, 3) and words[-1] in ("on", "off", "toggle"):
            self.publish(f"cmd/led/{words[1] if len(words) == 3 else 0}", words[-1])
        elif verb == "pub" and len(words) >= 3:
            self.publish(words[1], " ".join(words[2:]))
        elif verb in ("mqtt", "cred") and self.device and self.device.poll() is None:
            self.device.stdin.write(line.strip() + "\n")
            self.device.stdin.flush()
        else:
            say(f"? {line.strip()}\n{HELP}")
        return True


def image_setting(build_dir: Path, name: str, default: str) -> str:
    config = build_dir / "zephyr" / ".config"
    if config.exists():
        found = re.search(rf'^CONFIG_{name}="(.*)"$', config.read_text(), re.M)
        if found:
            return found.group(1)
    return default


def start_native_sim(demo: Demo, build_dir: Path) -> None:
    demo.port = free_port()
    demo.spawn("mosquitto", [REPO / "certs" / "broker-up", "--port", demo.port,
                             "--run-dir", demo.run_dir / "broker", "--foreground"], show=False)
    wait_for_port(demo.port, 10)
    say(f"demo   | broker: Mosquitto, TLS on localhost:{demo.port}, development certificates")
    demo.observe()
    demo.device = demo.spawn("device", [build_dir / "zephyr" / "zephyr.exe",
                                        f"--broker-port={demo.port}",
                                        f"--flash={demo.run_dir / 'flash.bin'}"],
                             stdin=subprocess.PIPE)


def start_an386(demo: Demo, build_dir: Path) -> None:
    sys.path.insert(0, str(REPO / "pytest" / "an386"))
    import rig  # noqa: E402 (pytest/an386/rig.py: the emulated board's network)

    rig.enter_private_network()
    rig.make_tap()
    bridge = rig.Bridge()
    dnsmasq = rig.Dnsmasq(demo.run_dir).start()
    demo.cleanups.append(dnsmasq.stop)
    sntp = rig.SntpServer()
    demo.cleanups.append(sntp.stop)
    demo.certs = rig.broker_certificates(demo.run_dir)
    demo.host, demo.port = rig.HOST_ADDRESS, rig.BROKER_PORT
    demo.spawn("mosquitto", [REPO / "certs" / "broker-up", "--certs", demo.certs, "--port",
                             demo.port, "--bind", demo.host, "--run-dir",
                             demo.run_dir / "broker", "--foreground"], show=False)
    wait_for_port_at(demo.host, demo.port, 10)
    say(f"demo   | private network: tap {rig.TAP} {rig.HOST_ADDRESS}/{rig.PREFIX}, DHCP and "
        f"DNS ({rig.BROKER_NAME}, {rig.TIME_NAME}), SNTP; broker {rig.BROKER_NAME}:"
        f"{demo.port}")
    demo.observe()
    demo.device = demo.spawn("device", [REPO / "scripts" / "qemu-an386",
                                        build_dir / "zephyr" / "zephyr.elf"],
                             stdin=subprocess.PIPE,
                             env=dict(os.environ, APP_QEMU_NIC=bridge.qemu_nic()))


def wait_for_port_at(host: str, port: int, timeout: float) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def scripted(demo: Demo, seconds: float) -> int:
    """--for: waits for the device to come online, pings it once, runs out the time."""
    deadline = time.monotonic() + seconds
    status = f"^{re.escape(demo.topics)}/status online$"
    if not demo.wait_for("broker", status, max(0.0, deadline - time.monotonic())):
        say("demo   | FAILED: the device did not publish `status online`")
        return 1
    token = f"demo-{os.getpid()}"
    demo.command(f"ping {token}")
    reply = f"^{re.escape(demo.topics)}/reply/ping {token}$"
    if not demo.wait_for("broker", reply, max(5.0, deadline - time.monotonic())):
        say("demo   | FAILED: no reply to the ping")
        return 1
    time.sleep(max(0.0, deadline - time.monotonic()))
    return 0


def interactive(demo: Demo) -> int:
    say(HELP)
    try:
        import readline  # noqa: F401 (line editing for input())
    except ImportError:
        pass
    while True:
        try:
            line = input()
        except EOFError:
            return 0
        if not demo.command(line):
            return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", choices=["native_sim", "mps2/an386"], default="native_sim")
    parser.add_argument("--build-dir", type=Path, required=True)
    parser.add_argument("--for", dest="seconds", type=float,
                        help="run this long without a prompt, pinging the device once")
    args = parser.parse_args()

    for tool in ("mosquitto", "mosquitto_sub", "mosquitto_pub"):
        if shutil.which(tool) is None:
            sys.exit(f"demo: {tool} not found: run scripts/setup")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    run_dir = Path(tempfile.mkdtemp(prefix="secure-mqtt-demo."))
    demo = Demo(run_dir)
    client_id = image_setting(args.build_dir, "APP_MQTT_CLIENT_ID", "dev-device-1")
    demo.topics = f"{image_setting(args.build_dir, 'APP_TOPIC_PREFIX', 'devices')}/{client_id}"
    status = 1
    try:
        if args.board == "native_sim":
            start_native_sim(demo, args.build_dir)
        else:
            start_an386(demo, args.build_dir)
        say(f"demo   | device {client_id}: topics {demo.topics}/#")
        status = scripted(demo, args.seconds) if args.seconds else interactive(demo)
    except KeyboardInterrupt:
        status = 0
    finally:
        # The device first, so that the observer sees its will (`status offline`).
        demo.stop("device")
        demo.wait_for("broker", f"^{re.escape(demo.topics)}/status offline$", 2)
        demo.stop_all()
        for cleanup in demo.cleanups:
            cleanup()
        shutil.rmtree(run_dir, ignore_errors=True)
        say("demo   | stopped; everything it started is gone")
    return status


if __name__ == "__main__":
    sys.exit(main())
