#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The fair C peer's native_sim measurements (bench/METHOD.md, "The fair C peer").

Zephyr's samples/net/mqtt_publisher built by bench/c_peer.sh with our TLS configuration
(bench/conf/c-fair-tls.conf), a client certificate and no wait between publishes
(bench/c-peer). The functions have the shapes of bench.py's c_callgrind, c_throughput and
c_heap (exe, run directory, certificate directory: ${BENCH_PREFIX}c-fair-certs) and use its
processes, callgrind parsing and heap reading; only the broker differs: Mosquitto on
127.0.0.1:8883 with our dev PKI, a client certificate required.

  c_peer.py sim OUT.json    inside a private network namespace (`unshare -n`), with
                            BENCH_RUN_DIR, BENCH_C_FAIR_CERTS, BENCH_C_FAIR_EXE set
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (C_CONNACK, C_PORT, DEV_CERTS, Proc, Subscriber, arrival_rate,  # noqa: E402
                   attempt, callgrind_dump, callgrind_parts, heap_peak, summarize_callgrind,
                   valgrind_argv, wait_for_port)

# Publish rounds per connection: CONFIG_NET_SAMPLE_APP_MAX_ITERATIONS of the image.
DEFAULT_ROUNDS = 500


class FairBroker:
    """Mosquitto on 127.0.0.1:8883 (the sample's fixed port) with our dev CA and broker
    certificate for `localhost`; a client certificate is required, and its CN becomes the
    user name (the log shows u'zephyr_publisher' for the sample). Two settings differ from
    Mosquitto's defaults, both set for the peer's sake and written in bench/METHOD.md:
    - OpenSSL's NumTickets = 0 (OPENSSL_CONF): no TLS 1.3 session tickets after the
      handshake. The sample cannot resume a session (its MQTT library never sets
      TLS_SESSION_CACHE), and on native_sim (NSOS) a ticket arriving before the CONNACK ended
      the sample's single poll() for the CONNACK without it: the sample read the ticket and
      aborted, on every attempt (strace), and connects at once without tickets.
    - max_inflight_messages 0 and max_queued_messages 0: the sample publishes QoS 1 without
      waiting, and with the defaults Mosquitto forwarded 31 of 977 to the QoS 1 subscriber.
    `max_protocol` ("TLSv1.2") caps the version (Mosquitto's tls_version is a minimum)."""

    def __init__(self, run: Path, certs: Path, max_protocol=None):
        run.mkdir(parents=True, exist_ok=True)
        try:
            wait_for_port(C_PORT, 0.2)
            raise RuntimeError("port 8883 is taken: run this inside `unshare -n`")
        except TimeoutError:
            pass
        ossl = run / "openssl.cnf"
        ossl.write_text("openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n"
                        "[ssl_sect]\nsystem_default = system_default_sect\n"
                        "[system_default_sect]\nNumTickets = 0\n"
                        + (f"MaxProtocol = {max_protocol}\n" if max_protocol else ""))
        ossl.chmod(0o644)
        conf = run / "mosquitto.conf"
        conf.write_text(f"per_listener_settings false\nallow_anonymous false\npersistence false\n"
                        f"log_dest stdout\nlog_type all\n"
                        f"max_inflight_messages 0\nmax_queued_messages 0\n"
                        f"listener {C_PORT} 127.0.0.1\n"
                        f"cafile {certs / 'ca.crt.pem'}\ncertfile {certs / 'broker.crt.pem'}\n"
                        f"keyfile {certs / 'broker.key.pem'}\nrequire_certificate true\n"
                        f"use_identity_as_username true\n")
        self.log_path = run / "broker.log"
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=self.log,
                                  stderr=subprocess.STDOUT,
                                  env={**os.environ, "OPENSSL_CONF": str(ossl)})
        wait_for_port(C_PORT)
        self.certs = certs

    def sub_args(self) -> list:
        # Our observer certificate, from the same dev CA.
        return ["-h", "localhost", "-p", str(C_PORT), "--cafile", str(self.certs / "ca.crt.pem"),
                "--cert", str(DEV_CERTS / "observer.crt.pem"),
                "--key", str(DEV_CERTS / "observer.key.pem")]

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


def rounds_of(exe: str) -> int:
    dotconfig = Path(exe).parent / ".config"
    m = re.search(r"^CONFIG_NET_SAMPLE_APP_MAX_ITERATIONS=(\d+)", dotconfig.read_text(), re.M)
    return int(m.group(1)) if m else DEFAULT_ROUNDS


def c_callgrind(exe: str, run: Path, certs: Path) -> dict:
    """As bench.c_callgrind: part 1 boot -> first CONNACK (the handshake is
    mbedtls_ssl_handshake's inclusive cost in it), part 2 the publish rounds and DISCONNECT,
    part 3 the second connection (a full handshake again: the sample has no session cache)."""
    broker = FairBroker(run / "broker", certs)
    out = run / "callgrind.out"
    proc = Proc(valgrind_argv(out, [exe]), run / "console.log")
    try:
        proc.until(C_CONNACK, 600)
        callgrind_dump(proc.p.pid)                    # part 1: boot -> CONNACK
        proc.until(r"mqtt_disconnect", 900)
        callgrind_dump(proc.p.pid)                    # part 2: the rounds, DISCONNECT
        proc.until(C_CONNACK, 600)
        callgrind_dump(proc.p.pid)                    # part 3: the reconnect
    finally:
        proc.stop()
        broker.stop()
    res = summarize_callgrind(callgrind_parts(out), 1)
    res["reconnect_ir"] = None  # no clean window: the reconnect follows the rounds at once
    return res


def c_throughput(exe: str, run: Path, certs: Path) -> dict:
    """Messages per second at a QoS 1 mosquitto_sub over the first connection's rounds, first
    to last arrival per QoS. Every round sends the same payload, so every arrival counts."""
    rounds = rounds_of(exe)
    broker = FairBroker(run / "broker", certs)
    sub = Subscriber(broker.sub_args(), "sensors")
    proc = Proc([exe], run / "console.log")
    results = {"rounds": rounds}
    try:
        proc.until(C_CONNACK, 60)
        proc.until(r"mqtt_disconnect", 600)
        proc.until(C_CONNACK, 60)
        proc.until(r"mqtt_disconnect", 600)
        time.sleep(1)
        # Both connections' messages are in; the console's lines reach us too late to tell
        # them apart, the reconnect's handshake does: the longest pause between arrivals.
        arrivals = sorted(t for t, _, p in sub.matching(lambda m: True)
                          if p.startswith("DOORS:OPEN_QoS"))
        gaps = [(b - a, b) for a, b in zip(arrivals, arrivals[1:])]
        second = max(gaps)[1] if gaps else float("inf")
        results["reconnect_gap_s"] = max(gaps)[0] if gaps else None
        for qos in (0, 1, 2):
            got = sub.matching(lambda m, q=qos: m[2] == f"DOORS:OPEN_QoS{q}" and m[0] < second)
            results[f"qos{qos}"] = arrival_rate([t for t, _, _ in got], rounds)
    finally:
        proc.stop()
        sub.close()
        broker.stop()
    return results


def c_heap(exe: str, run: Path, certs: Path) -> dict:
    """mbedTLS's heap peak since boot (`mbedtls heap`), asked for at the first CONNACK. Without
    its waits the sample's main thread leaves the shell no time until the connection's rounds
    are done, so the answer covers the first handshake and the 500 rounds. There is no reading
    after the reconnect: after its second connection the sample calls exit() before the shell
    runs again."""
    broker = FairBroker(run / "broker", certs)
    proc = Proc([exe], run / "console.log")
    try:
        proc.until(C_CONNACK, 60)
        res = {"after_connack": heap_peak(proc), "after_reconnect": None}
    finally:
        proc.stop()
        broker.stop()
    return res


def tls_check(exe: str, run: Path, certs: Path, max_protocol=None) -> dict:
    """The handshake as the broker's side sees it: `openssl s_server -brief` on 8883 with the
    same certificates, a client certificate required, NumTickets 0 as FairBroker, and
    `max_protocol` ("TLSv1.2") capping the version. Reads its lines for the first connection
    (protocol, cipher suite, the client certificate's subject, the key exchange group)."""
    run.mkdir(parents=True, exist_ok=True)
    # Two connections: wait_for_port's probe, then the sample.
    args = ["openssl", "s_server", "-brief", "-accept", str(C_PORT), "-naccept", "2",
            "-cert", str(certs / "broker.crt.pem"), "-key", str(certs / "broker.key.pem"),
            "-CAfile", str(certs / "ca.crt.pem"), "-Verify", "2", "-verify_return_error",
            "-num_tickets", "0"]
    if max_protocol:
        args += ["-max_protocol", max_protocol]
    server = Proc(args, run / "s_server.log")
    wait_for_port(C_PORT)
    proc = Proc([exe], run / "console.log")
    res = {}
    keys = ("Protocol version", "Ciphersuite", "Peer certificate", "Signature type",
            "Verification", "Supported groups", "Shared groups", "Negotiated TLS1.3 group",
            "Supported Elliptic Groups", "Shared Elliptic groups")
    try:
        _, m = server.until(r"^(Protocol version): (.*)$", 60)
        res[m.group(1)] = m.group(2)
        try:
            while True:  # the summary's lines, until s_server is quiet or gone
                _, m = server.until(r"^(%s): (.*)$" % "|".join(keys), 5)
                res[m.group(1)] = m.group(2)
        except (TimeoutError, RuntimeError):
            pass
    except (TimeoutError, RuntimeError) as e:
        res["error"] = str(e)
    finally:
        proc.stop()
        server.stop()
    return res


def cmd_sim(out: str) -> None:
    env = os.environ
    run = Path(env["BENCH_RUN_DIR"])
    certs = Path(env["BENCH_C_FAIR_CERTS"])
    exe = env["BENCH_C_FAIR_EXE"]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    results = {}
    only = env.get("BENCH_ONLY", "tls,callgrind,throughput,heap").split(",")
    if "tls" in only:
        attempt(results, "c_fair_tls13", tls_check, exe, run / "fair-tls13", certs)
        attempt(results, "c_fair_tls12", tls_check, exe, run / "fair-tls12", certs, "TLSv1.2")
    if "callgrind" in only:
        attempt(results, "c_fair_callgrind", c_callgrind, exe, run / "fair-cg", certs)
    if "throughput" in only:
        attempt(results, "c_fair_throughput", c_throughput, exe, run / "fair-tp", certs)
    if "heap" in only:
        attempt(results, "c_fair_heap", c_heap, exe, run / "fair-heap", certs)
    Path(out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sim":
        cmd_sim(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
