#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Measurements only the emulated board can give (ARM code, Zephyr's own IP stack), written
to docs/an386-measurements.md:

- stack high-water marks of every thread, and the peaks of the network packet/buffer pools
  and of mbedTLS's heap (`mqtt memory`), after a handshake and connect, after a credential
  upload through `cred`, and after a soak (`mqtt bench` plus telemetry);
- CPU time of boot -> CONNACK, of a full mutual-TLS 1.3 handshake and of a resumed one, under
  QEMU's `-icount shift=0`: guest time advances 1 ns per guest instruction, so a
  microsecond of CPU time is 1,000 ARM (Thumb-2) instructions.

Run as root (a private network namespace), on an image built for mps2/an386 with
-DEXTRA_CONF_FILE=pytest/an386/test.conf:
  bench/an386.py --image build/an386/zephyr/zephyr.elf [--out docs/an386-measurements.md]
--p256-only leaves out the RSA chain's steps, for images built with APP_TLS_PROFILE_COMPACT
(which refuses RSA credentials); bench/conf/ holds the variants docs/p256-on-arm.md compares.
"""

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "pytest" / "an386"))

import rig  # noqa: E402

K64F_HZ = 120_000_000
BENCH_COUNT = 1000  # messages per `mqtt bench` run, QoS 0 and QoS 1
# Measured apart from the runs above (they have a clean link); kept with the table it qualifies.
IMPAIRED_LINK_STACKS = """\
These runs had a clean link. On a link losing 10 % of the frames each way and reordering
them (300 ± 100 ms of delay, `test_every_message_arrives_through_loss_delay_and_reordering`),
TCP's work queue sends the retransmissions through the Ethernet driver from its own stack:
`tcp_work` then reached 488 B (2026-11-26, a probe build with 2 KiB stacks), and with a
512 B stack (prj.conf's size until then) one CI run stopped with `Stack overflow` in it. Since then `tcp_work` and
`rx_q[0]` (which sends the ACKs the same way) keep Zephyr's defaults, 1,024 and 1,792 B,
and the impaired-link test checks every sized stack keeps a tenth of it free, as
`test_every_sized_stack_keeps_a_tenth_of_its_size_free` does after a clean run: at 512 B,
488 B would fail it. frdm_k64f RAM 174,984 → 176,264 B.
"""


def upload(device: rig.Qemu, kind: str, der: bytes) -> None:
    """One credential through `cred`, checked by mbedTLS on the shell's thread, staged."""
    device.command(f"cred begin {kind}")
    device.until(f"upload of {kind} open", timeout=10)
    text = base64.b64encode(der).decode()
    for start in range(0, len(text), 48):
        device.command(f"cred data {text[start:start + 48]}")
        device.until(rf"{kind}: \d+ bytes so far", timeout=10)
    device.command("cred end")
    device.until(r"staged", timeout=60)


def commit(device: rig.Qemu) -> None:
    device.command("cred commit")
    device.until(r"stored; used from the next connection on", timeout=60)


def rsa_chain(work: Path) -> Path:
    """The largest chain the INTEROP profile takes: an RSA-4096 root, an RSA-2048
    intermediate and broker certificate (the broker sends the intermediate), and a P-256
    device certificate from the same intermediate."""
    certs = work / "rsa-chain"
    work.mkdir(parents=True, exist_ok=True)
    rig.run(rig.REPO / "certs" / "mkcerts", "all", "--out", certs, "--intermediate",
            "--ca-key-type", "rsa4096", "--intermediate-key-type", "rsa2048",
            "--broker-key-type", "rsa2048", "--device-key-type", "p256",
            "--san", f"DNS:{rig.BROKER_NAME},IP:{rig.HOST_ADDRESS}", "--no-mosquitto-conf")
    return certs


class Rig:
    """The emulated board's network (rig.py) for one measurement run."""

    def __init__(self, work: Path, bridge: rig.Bridge):
        self.work = work
        self.certs = rig.broker_certificates(work)
        self.dnsmasq = rig.Dnsmasq(work).start()
        self.sntp = rig.SntpServer()
        self.broker = rig.Broker(self.certs, work / "broker").start()
        self.bridge = bridge

    def switch_broker(self, certs: Path, name: str) -> None:
        """The broker on the same address, now with the certificate set `certs`."""
        self.broker.stop()
        self.broker = rig.Broker(certs, self.work / name).start()

    def device(self, name: str, icount: str = "") -> rig.Qemu:
        return rig.Qemu(self.image, self.work / f"{name}.log", self.bridge.qemu_nic(), icount)

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
        device.until(r"bench: done", timeout=300)
        for _ in range(2):
            device.until(r"mqtt: telemetry queued", timeout=30)
        phases.append(("after a soak (500 QoS 1 messages, telemetry)", rig.memory(device)))
        if not with_rsa:
            return phases
        # The broker moves to the largest chain: its root, and a device certificate and key
        # from it, provisioned through cred; the next connection is a full handshake on it.
        chain = rsa_chain(net.work)
        for kind, name in (("ca", "ca.crt.der"), ("cert", "device.crt.der"),
                           ("key", "device.key.der")):
            upload(device, kind, (chain / name).read_bytes())
        commit(device)
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
        for kind, name in (("ca", "ca.crt.der"), ("cert", "device.crt.der"),
                           ("key", "device.key.der")):
            upload(device, kind, (chain / name).read_bytes())
        commit(device)
        net.switch_broker(chain, "cpu-rsa-broker")
        rsa = int(device.until(r"cpu: handshake took (\d+) us", timeout=300).group(1))
        return {**result, "rsa_handshake_us": rsa}
    finally:
        rig.set_link(True)
        device.stop()


def instructions(us: int) -> str:
    return f"{us * 1000 / 1e6:.1f} M"


def k64f_ms(us: int) -> str:
    return f"{us * 1000 / K64F_HZ * 1000:.0f}"


def report(phases: list, cpu: dict) -> str:
    lines = ["# Measured on the emulated board (mps2/an386, Cortex-M4, QEMU)", "",
             "Written by `bench/an386.py` (README, \"The emulated board\"). The image is the "
             "mps2/an386 test image (`pytest/an386/test.conf`): the same application, IP "
             "stack and TLS settings as frdm_k64f, plus the counters that produce these "
             "figures (thread analyzer, runtime statistics, pool and mbedTLS heap usage).", "",
             "## CPU time (instructions under `-icount shift=0`)", "",
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
    lines += ["## Stacks: high-water marks (bytes used of size)", ""]
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
    lines += ["", *IMPAIRED_LINK_STACKS.splitlines()]
    lines += ["", "## Network pools and mbedTLS heap: peaks", "",
              "| pool | " + " | ".join(name for name, _ in phases) + " |",
              "|---|" + "---:|" * len(phases)]
    for pool in sorted({p for _, m in phases for p in m["pools"]}):
        cells = [f"{m['pools'][pool][0]} of {m['pools'][pool][1]}" for _, m in phases]
        lines.append(f"| {pool} | " + " | ".join(cells) + " |")
    cells = [f"{m['tls_heap'][0]} of {m['tls_heap'][1]} B" for _, m in phases]
    lines.append("| mbedTLS heap | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "an386-measurements.md")
    parser.add_argument("--json", type=Path, help="also write the CPU figures as JSON here")
    parser.add_argument("--p256-only", action="store_true",
                        help="skip the RSA chain's steps (images built for APP_TLS_PROFILE_COMPACT)")
    args = parser.parse_args()
    rig.enter_private_network()
    rig.make_tap()
    bridge = rig.Bridge()
    with tempfile.TemporaryDirectory(prefix="an386-bench-") as work:
        net = Rig(Path(work), bridge)
        net.image = args.image
        try:
            phases = measure_memory(net, with_rsa=not args.p256_only)
            cpu = measure_cpu(net, with_rsa=not args.p256_only)
        finally:
            net.stop()
    text = report(phases, cpu)
    args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "bench_count": BENCH_COUNT,
                                         "k64f_hz": K64F_HZ}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
