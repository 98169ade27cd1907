#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Measurements of bench/run: our firmware beside Zephyr's samples/net/mqtt_publisher.

  bench.py footprint NAME BUILD_DIR OUT.json   frdm_k64f: linker memory regions, rom/ram reports
  bench.py sim OUT.json                        native_sim: callgrind, throughput, mbedTLS heap
  bench.py report RESULTS_DIR DOCS_DIR         docs/benchmark.md and docs/benchmark.png

`sim` expects the environment that bench/run sets (BENCH_* variables, a private network
namespace so that the C sample's fixed port 8883 is ours to use). Every number it writes
comes from a process it ran; a part that failed is recorded with its reason, not guessed.
"""

import glob
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "pytest"))
from loopback import free_port, wait_for_port  # noqa: E402 (needs the path above)
DEV_CERTS = REPO / "certs" / "dev-only-insecure"
CLIENT_ID = "dev-device-1"

# --- footprint -------------------------------------------------------------------------------

REGION = re.compile(r"^\s*(FLASH|RAM|SRAM\w*|IDT_LIST)\s*:\s*(\d+)\s*(B|KB|MB|GB)\s+(\d+)\s*(B|KB|MB|GB)")
UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def memory_regions(text: str) -> dict:
    regions = {}
    for line in text.splitlines():
        m = REGION.match(line)
        if m:
            regions[m.group(1)] = {"used": int(m.group(2)) * UNITS[m.group(3)],
                                   "size": int(m.group(4)) * UNITS[m.group(5)]}
    return regions


def top_contributors(report_json: Path, count: int = 10) -> list:
    """The largest entries of a footprint report (west build -t rom_report / ram_report),
    grouped by component: a source directory two levels under the workspace or Zephyr
    (e.g. `subsys/net`, `modules/crypto`), the application, or `(no path)` symbols."""
    tree = json.loads(report_json.read_text())
    groups = {}

    def walk(node, path):
        children = node.get("children") or []
        if not children:
            key = component(path)
            groups[key] = groups.get(key, 0) + int(node.get("size", 0))
            return
        for child in children:
            walk(child, path + [child.get("name", "?")])

    walk(tree["symbols"], [])
    total = int(tree["symbols"].get("size", 0))
    top = sorted(groups.items(), key=lambda kv: -kv[1])[:count]
    return [{"component": k, "size": v, "share": v / total if total else 0} for k, v in top]


def component(path: list) -> str:
    # Paths look like [Root?, "ZEPHYR_BASE"|"WORKSPACE"|"OUTPUT_DIR"|"(hidden)"|..., dirs..., file, symbol]
    parts = [p for p in path if p not in ("Root",)]
    if not parts:
        return "?"
    head = parts[0]
    dirs = parts[1:-2]  # without the file and the symbol
    if head in ("ZEPHYR_BASE", "WORKSPACE"):
        return f"{head.lower()}/" + "/".join(dirs[:2]) if dirs else head.lower()
    if head == "OUTPUT_DIR":
        return "build dir (generated; the Rust app)"
    if head == "/":
        return "/" + "/".join(dirs[:3])
    if "rustapp" in "/".join(parts) or head.endswith(".rs"):
        return "rust app"
    return head


def cmd_footprint(name: str, build_dir: str, out: str) -> None:
    build = Path(build_dir)
    memory_file = build / "bench-memory.txt"
    regions = memory_regions(memory_file.read_text()) if memory_file.exists() else {}
    result = {"name": name, "regions": regions}
    if "RAM" in regions:
        # What the board's RAM region (192 KiB on frdm_k64f) leaves for the application's own
        # threads, stacks and buffers once the image's RAM is placed.
        result["ram_left"] = regions["RAM"]["size"] - regions["RAM"]["used"]
    for kind in ("rom", "ram"):
        candidates = [build / f"{kind}.json", build / "zephyr" / f"{kind}.json"]
        found = next((p for p in candidates if p.exists()), None)
        result[f"{kind}_top"] = top_contributors(found) if found else []
        result[f"{kind}_total"] = (json.loads(found.read_text())["symbols"].get("size")
                                   if found else None)
    Path(out).write_text(json.dumps(result, indent=2))
    print(f"{name}: {regions}")


# --- processes -------------------------------------------------------------------------------

class Proc:
    """A process whose output lines (stdout and stderr) arrive on a thread with the time
    they were read, and whose stdin takes shell commands."""

    def __init__(self, argv, log_path: Path, cwd=None, env=None):
        self.log = open(log_path, "w")
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, cwd=cwd, env=env, bufsize=0)
        self.lines = queue.Queue()
        self.history = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        buf = b""
        while True:
            chunk = self.p.stdout.read1(65536) if hasattr(self.p.stdout, "read1") else self.p.stdout.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                now = time.monotonic()
                self.log.write(f"{now:.6f} {line}\n")
                self.log.flush()
                self.lines.put((now, line))
        self.lines.put((time.monotonic(), None))

    def until(self, regex: str, timeout: float):
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{regex!r} not seen within {timeout} s ({self.argv[0]})")
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.argv[0]} exited before {regex!r}")
            self.history.append(line)
            m = pattern.search(line)
            if m:
                return t, m

    def send(self, line: str) -> None:
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def stop(self, sig=signal.SIGTERM, timeout=120) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)


class Subscriber:
    """mosquitto_sub -v: (arrival time, topic, payload) per message."""

    def __init__(self, args: list, topic: str):
        self.p = subprocess.Popen(["mosquitto_sub", *args, "-t", topic, "-v", "-q", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.messages = []
        self.lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()
        time.sleep(1.0)  # subscribed before anything is published

    def _pump(self):
        for line in self.p.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            with self.lock:
                self.messages.append((time.monotonic(), topic, payload))

    def matching(self, predicate) -> list:
        with self.lock:
            return [m for m in self.messages if predicate(m)]

    def wait_count(self, predicate, count: int, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.matching(predicate)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.matching(predicate)

    def close(self):
        self.p.kill()
        self.p.wait(5)


def rate(messages: list, expected: int, started: float = None) -> dict:
    """Messages per second at the subscriber: from `started` (when the publisher began; the
    host's monotonic clock, as the arrival times) to the last arrival of distinct payloads,
    else first to last arrival. From the start, a burst that Mosquitto forwards at once after
    buffering cannot make a rate look faster than the publisher was."""
    seen = {}
    for t, _, payload in messages:
        seen.setdefault(payload, t)
    times = sorted(seen.values())
    result = {"expected": expected, "received": len(times), "duplicates": len(messages) - len(times)}
    if len(times) >= 2 and times[-1] > times[0]:
        result["span_s"] = times[-1] - times[0]
        if started is not None and times[-1] > started:
            result["msgs_per_s"] = len(times) / (times[-1] - started)
            result["from_start_s"] = times[-1] - started
        else:
            result["msgs_per_s"] = (len(times) - 1) / (times[-1] - times[0])
    return result


def arrival_rate(times: list, expected: int) -> dict:
    """Messages per second from the first to the last of `times` (arrivals in order), for the
    C sample, which sends the same payload every round: every arrival counts."""
    result = {"expected": expected, "received": len(times)}
    if len(times) >= 2 and times[-1] > times[0]:
        result["msgs_per_s"] = (len(times) - 1) / (times[-1] - times[0])
        result["span_s"] = times[-1] - times[0]
    return result


# --- callgrind -------------------------------------------------------------------------------

HANDSHAKE_FNS = ("mbedtls_ssl_handshake", "ztls_connect_ctx")


def callgrind_parts(out_base: Path) -> list:
    """[{part, total, inclusive: {fn: Ir}}] of every dump of one callgrind run, in order."""
    parts = []
    for f in sorted(glob.glob(f"{out_base}*")):
        text = Path(f).read_text(errors="replace")
        m = re.search(r"^part:\s*(\d+)", text, re.M)
        part = int(m.group(1)) if m else 1
        ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", f],
                             capture_output=True, text=True).stdout
        total = None
        inclusive = {}
        for line in ann.splitlines():
            mt = re.match(r"^\s*([\d,]+)\s+(\(\s*[\d.]+%\)\s+)?PROGRAM TOTALS", line)
            if mt:
                total = int(mt.group(1).replace(",", ""))
                continue
            mi = re.match(r"^\s*([\d,]+)\s+(\(\s*[\d.]+%\)\s+)?\S*?:(\S+)", line)
            if mi and mi.group(3) in HANDSHAKE_FNS:
                # A function can appear once per object file; the inclusive cost counts once.
                inclusive[mi.group(3)] = max(inclusive.get(mi.group(3), 0),
                                             int(mi.group(1).replace(",", "")))
        parts.append({"part": part, "file": f, "total": total, "inclusive": inclusive})
    return sorted(parts, key=lambda p: p["part"])


def callgrind_dump(pid: int) -> None:
    subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, timeout=120,
                   check=True)


def valgrind_argv(out_base: Path, argv: list) -> list:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_base}",
            "--dump-instr=no", "--collect-systime=no", "--vgdb=yes", *argv]


def summarize_callgrind(parts: list, full_part: int) -> dict:
    """Part `full_part` ends at the first CONNACK; every later part belongs to the
    reconnect (its handshake may straddle a dump)."""
    first = next(p for p in parts if p["part"] == full_part)
    later = [p for p in parts if p["part"] > full_part]
    res = {"boot_to_connack_ir": first["total"],
           "handshake_ir": first["inclusive"].get("mbedtls_ssl_handshake"),
           "tls_connect_ir": first["inclusive"].get("ztls_connect_ctx"),
           "reconnect_handshake_ir": sum(p["inclusive"].get("mbedtls_ssl_handshake", 0) for p in later) or None,
           "reconnect_tls_connect_ir": sum(p["inclusive"].get("ztls_connect_ctx", 0) for p in later) or None,
           "parts": parts}
    return res


# --- our firmware on native_sim ------------------------------------------------------------

def our_tls_args(port: int) -> list:
    return ["-h", "localhost", "-p", str(port), "--cafile", str(DEV_CERTS / "ca.crt.pem"),
            "--cert", str(DEV_CERTS / "observer.crt.pem"), "--key", str(DEV_CERTS / "observer.key.pem")]


class OurBroker:
    def __init__(self, run: Path):
        self.port = free_port()
        run.mkdir(parents=True, exist_ok=True)
        self.log = open(run / "broker.log", "w")
        self.p = subprocess.Popen([str(REPO / "certs" / "broker-up"), "--port", str(self.port),
                                   "--run-dir", str(run), "--foreground"],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


def ours_argv(exe: str, port: int, run: Path) -> list:
    flash = run / "flash.bin"
    if flash.exists():
        flash.unlink()
    return [exe, f"--broker-port={port}", f"--flash={flash}", "--reconnect-cap-ms=1000"]


OURS_CONNACK = r"mqtt: connected \(session present"
OURS_ONLINE = r"mqtt: published online"


def kick_ours(port: int) -> None:
    """Take the device's client id over: the broker closes the device's connection (MQTT
    3.1.1, 3.1.4-2), and the device reconnects with its cached TLS session."""
    subprocess.run(["mosquitto_pub", *our_tls_args(port), "-i", CLIENT_ID, "-t",
                    f"devices/{CLIENT_ID}/bench/kick", "-m", "kick"], check=True, timeout=20,
                   capture_output=True)


def ours_callgrind(exe: str, run: Path) -> dict:
    broker = OurBroker(run / "broker")
    out = run / "callgrind.out"
    proc = Proc(valgrind_argv(out, ours_argv(exe, broker.port, run)), run / "console.log")
    try:
        proc.until(OURS_CONNACK, 600)
        callgrind_dump(proc.p.pid)                    # part 1: boot -> CONNACK
        proc.until(OURS_ONLINE, 120)
        time.sleep(1)
        callgrind_dump(proc.p.pid)                    # part 2: settling, not reported
        kick_ours(broker.port)
        proc.until(OURS_CONNACK, 600)
        callgrind_dump(proc.p.pid)                    # part 3: taken over -> CONNACK again
        proc.until(OURS_ONLINE, 120)
    finally:
        proc.stop()
        broker.stop()
    parts = callgrind_parts(out)
    # Part 2 is the idle second between; the reconnect is part 3 (and the end, part 4).
    res = summarize_callgrind([p for p in parts if p["part"] != 2], 1)
    p3 = next((p for p in parts if p["part"] == 3), None)
    res["reconnect_ir"] = p3["total"] if p3 else None
    res["tls"] = next((l for l in proc.history if "tls: connected" in l), "")
    return res


def ours_throughput(exe: str, run: Path, count: int, payload_len: int) -> dict:
    broker = OurBroker(run / "broker")
    sub = Subscriber(our_tls_args(broker.port), f"devices/{CLIENT_ID}/bench/#")
    proc = Proc(ours_argv(exe, broker.port, run), run / "console.log")
    results = {}
    try:
        proc.until(OURS_ONLINE, 60)
        for qos in (0, 1):
            topic = f"devices/{CLIENT_ID}/bench/q{qos}"
            # The MQTT thread publishes the numbered messages itself (`mqtt bench`): one shell
            # line per message would measure the shell.
            proc.send(f"mqtt bench {count} {qos} {payload_len}")
            # The MQTT thread's line as it starts queueing (the shell's comes before).
            started, _ = proc.until(r"bench: \d+ messages, ", 30)
            _, done = proc.until(r"bench: done: .* in (\d+) ms", 600)
            got = sub.wait_count(lambda m, t=topic: m[1] == t, count, 60)
            r = rate(got, count, started)
            r["device_ms"] = int(done.group(1))
            results[f"qos{qos}"] = r
    finally:
        proc.stop(signal.SIGINT)
        sub.close()
        # The ceiling: mosquitto_pub from the host on the same broker, same payload size.
        # The same count as ours: rates over a few hundred messages are mostly ramp.
        results["ceiling"] = mosquitto_pub_ceiling(broker.port, count, payload_len)
        broker.stop()
    return results


def mosquitto_pub_ceiling(port: int, count: int, payload_len: int) -> dict:
    sub = Subscriber(our_tls_args(port), "bench/ceiling/#")
    res = {}
    try:
        for qos in (0, 1):
            topic = f"bench/ceiling/q{qos}"
            lines = "".join(f"{f'c{qos}-{i}'.ljust(payload_len, '.')}\n" for i in range(count))
            started = time.monotonic()
            subprocess.run(["mosquitto_pub", *our_tls_args(port), "-t", topic, "-q", str(qos), "-l"],
                           input=lines, text=True, check=True, timeout=300)
            got = sub.wait_count(lambda m, t=topic: m[1] == t, count, 60)
            res[f"qos{qos}"] = rate(got, count, started)
    finally:
        sub.close()
    return res


def heap_peak(proc: Proc) -> dict:
    proc.send("mbedtls heap")
    _, m = proc.until(r"Maximum \(peak\): (\d+) bytes, (\d+) blocks", 30)
    return {"peak_bytes": int(m.group(1)), "peak_blocks": int(m.group(2))}


def ours_heap(exe: str, run: Path) -> dict:
    broker = OurBroker(run / "broker")
    proc = Proc(ours_argv(exe, broker.port, run), run / "console.log")
    try:
        proc.until(OURS_ONLINE, 60)
        time.sleep(1)
        res = {"after_connack": heap_peak(proc)}
        kick_ours(broker.port)
        proc.until(OURS_CONNACK, 60)
        proc.until(OURS_ONLINE, 60)
        time.sleep(1)
        res["after_reconnect"] = heap_peak(proc)
    finally:
        proc.stop(signal.SIGINT)
        broker.stop()
    return res


# --- Zephyr's C sample on native_sim ---------------------------------------------------------

C_CONNACK = r"MQTT client connected!"
C_PORT = 8883  # src/config.h: SERVER_PORT with CONFIG_MQTT_LIB_TLS


class CBroker:
    """Mosquitto on 127.0.0.1:8883 with the certificate the C sample was built to trust
    (bench/run makes it: self-signed RSA-2048 for `localhost`, like the sample's own
    test_certs.h). The sample has no client certificate: anonymous clients are allowed."""

    def __init__(self, run: Path, certs: Path):
        run.mkdir(parents=True, exist_ok=True)
        try:
            wait_for_port(C_PORT, 0.2)
            raise RuntimeError("port 8883 is taken: run bench.py sim inside `unshare -n`")
        except TimeoutError:
            pass
        conf = run / "mosquitto.conf"
        conf.write_text(f"per_listener_settings false\nallow_anonymous true\npersistence false\n"
                        f"log_dest stdout\nlistener {C_PORT} 127.0.0.1\n"
                        f"cafile {certs / 'server.crt.pem'}\ncertfile {certs / 'server.crt.pem'}\n"
                        f"keyfile {certs / 'server.key.pem'}\nrequire_certificate false\n")
        self.log = open(run / "broker.log", "w")
        self.p = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=self.log,
                                  stderr=subprocess.STDOUT)
        wait_for_port(C_PORT)
        self.certs = certs

    def sub_args(self) -> list:
        return ["-h", "localhost", "-p", str(C_PORT), "--cafile", str(self.certs / "server.crt.pem")]

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


def c_callgrind(exe: str, run: Path, certs: Path) -> dict:
    broker = CBroker(run / "broker", certs)
    out = run / "callgrind.out"
    proc = Proc(valgrind_argv(out, [exe]), run / "console.log")
    try:
        proc.until(C_CONNACK, 600)
        callgrind_dump(proc.p.pid)                    # part 1: boot -> CONNACK
        proc.until(r"mqtt_disconnect", 900)
        callgrind_dump(proc.p.pid)                    # part 2: ten rounds of publishes, DISCONNECT
        proc.until(C_CONNACK, 600)
        callgrind_dump(proc.p.pid)                    # part 3: the rest of the reconnect
    finally:
        proc.stop()
        broker.stop()
    res = summarize_callgrind(callgrind_parts(out), 1)
    res["reconnect_ir"] = None  # the sample reconnects right after its publish loop: no clean window
    return res


def c_throughput(exe: str, run: Path, certs: Path) -> dict:
    broker = CBroker(run / "broker", certs)
    sub = Subscriber(broker.sub_args(), "sensors")
    proc = Proc([exe], run / "console.log")
    results = {}
    try:
        proc.until(C_CONNACK, 60)
        proc.until(r"mqtt_disconnect", 120)
        time.sleep(0.5)
        for qos in (0, 1):
            got = sub.matching(lambda m, q=qos: m[2] == f"DOORS:OPEN_QoS{q}")
            # The sample sends the same payload every round: every arrival counts.
            results[f"qos{qos}"] = arrival_rate([t for t, _, _ in got], 10)
    finally:
        proc.stop()
        sub.close()
        broker.stop()
    return results


def c_heap(exe: str, run: Path, certs: Path) -> dict:
    broker = CBroker(run / "broker", certs)
    proc = Proc([exe], run / "console.log")
    try:
        proc.until(C_CONNACK, 60)
        time.sleep(1)
        res = {"after_connack": heap_peak(proc)}
        proc.until(C_CONNACK, 120)
        time.sleep(1)
        res["after_reconnect"] = heap_peak(proc)
    finally:
        proc.stop()
        broker.stop()
    return res


def attempt(results: dict, key: str, fn, *args) -> None:
    print(f"--- {key}", flush=True)
    try:
        results[key] = fn(*args)
        print(json.dumps(results[key], default=str)[:600], flush=True)
    except Exception as e:  # recorded as the reason the number is missing
        results[key] = {"error": f"{type(e).__name__}: {e}"}
        print(f"{key} failed: {e}", flush=True)


def cmd_sim(out: str) -> None:
    env = os.environ
    run = Path(env["BENCH_RUN_DIR"])
    certs = Path(env["BENCH_C_CERTS"])
    count = int(env.get("BENCH_COUNT", "5000"))
    payload_len = int(env.get("BENCH_PAYLOAD", "15"))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    results = {"count": count, "payload_len": payload_len, "config": {}}
    for key in ("BENCH_OURS_EXE", "BENCH_C_EXE"):
        dotconfig = Path(env[key]).parent / ".config"
        m = re.search(r"^CONFIG_MBEDTLS_HEAP_SIZE=(\d+)", dotconfig.read_text(), re.M)
        results["config"][key] = {"mbedtls_heap_size": int(m.group(1)) if m else None}
    only = env.get("BENCH_ONLY", "callgrind,throughput,heap").split(",")
    if "callgrind" in only:
        attempt(results, "ours_callgrind", ours_callgrind, env["BENCH_OURS_EXE"], run / "ours-cg")
        attempt(results, "c_callgrind", c_callgrind, env["BENCH_C_EXE"], run / "c-cg", certs)
    if "throughput" in only:
        attempt(results, "ours_throughput", ours_throughput, env["BENCH_OURS_EXE"], run / "ours-tp",
                count, payload_len)
        if env.get("BENCH_OURS_BOARD_TICK_EXE"):
            attempt(results, "ours_throughput_board_tick", ours_throughput,
                    env["BENCH_OURS_BOARD_TICK_EXE"], run / "ours-tp-board-tick", count,
                    payload_len)
        attempt(results, "c_throughput", c_throughput, env["BENCH_C_EXE"], run / "c-tp", certs)
    if "heap" in only:
        attempt(results, "ours_heap", ours_heap, env["BENCH_OURS_HEAP_EXE"], run / "ours-heap")
        attempt(results, "c_heap", c_heap, env["BENCH_C_HEAP_EXE"], run / "c-heap", certs)
    Path(out).write_text(json.dumps(results, indent=2, default=str))


# --- report ----------------------------------------------------------------------------------

def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "footprint":
        cmd_footprint(*sys.argv[2:5])
    elif len(sys.argv) >= 2 and sys.argv[1] == "sim":
        cmd_sim(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "report":
        import report  # bench/report.py
        report.write(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
