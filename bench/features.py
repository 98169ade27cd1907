#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What each TLS feature costs on frdm_k64f: the image built once as shipped (the INTEROP
profile) and once per feature with that feature off, each in its own build directory.
Writes the linker's FLASH and RAM for each, and the differences, to docs/footprint-by-feature.md.

  bench/features.py [RESULTS.json [DOC.md]]

bench/run runs it as its part `features` (BENCH_ONLY=features). It needs the environment of
scripts/env (west, the Zephyr workspace, the Arm toolchain). Builds go to
${BENCH_PREFIX:-/tmp/bench-}feature-NAME and are incremental. A variant whose build fails is
written down with the build's own words for why; no number here is typed by hand.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "bench" / "conf"
PREFIX = os.environ.get("BENCH_PREFIX", "/tmp/bench-")

# (name, what is off, overlay files under bench/conf, how it is done). One feature off at a
# time, against the image as shipped; COMPACT is the other profile a user can choose.
VARIANTS = [
    ("tls12", "TLS 1.2", ["features/tls12.conf"], "`CONFIG_MBEDTLS_SSL_PROTO_TLS1_2=n`"),
    ("tls13", "TLS 1.3", ["features/tls13.conf"], "`CONFIG_MBEDTLS_SSL_PROTO_TLS1_3=n`"),
    ("rsa", "RSA (2048-4096: PKCS#1 v1.5, PSS, ECDHE-RSA)", ["features/rsa.conf"],
     "RSA's `PSA_WANT_*` and the profile's RSA defines out in mbedTLS's headers "
     "(`bench/conf/features/rsa.h`): the profile selects them"),
    ("p384", "the P-384 curve", ["features/p384.conf"],
     "`PSA_WANT_ECC_SECP_R1_384` out in mbedTLS's headers (`bench/conf/features/p384.h`): "
     "the profile selects it"),
    ("psa", "the PSA crypto layer", ["features/psa.conf"], "`CONFIG_MBEDTLS_PSA_CRYPTO_C=n`"),
    ("tickets", "session tickets (resumption by ticket, TLS 1.3's psk_dhe_ke)",
     ["features/tickets.conf"],
     "`CONFIG_MBEDTLS_SSL_SESSION_TICKETS=n`, "
     "`CONFIG_MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED=n`"),
    ("alpn", "ALPN", ["features/alpn.conf"], "`CONFIG_MBEDTLS_SSL_ALPN=n`"),
    ("sni", "SNI (the host name is still verified)", ["features/sni.conf"],
     "`CONFIG_MBEDTLS_SERVER_NAME_INDICATION=n`"),
    ("nist-optim", "the fast NIST-prime reduction", ["features/nist-optim.conf"],
     "`MBEDTLS_ECP_NIST_OPTIM` undefined (`bench/conf/features/nist-optim.h`)"),
    ("p256-cortex-m4", "P256-Cortex-M4 (mbedTLS's own P-256 code instead)",
     ["no-p256-cortex-m4.conf"], "`CONFIG_APP_P256_CORTEX_M4=n`"),
    ("compact", "RSA and P-384 together: the COMPACT profile", ["compact.conf"],
     "`CONFIG_APP_TLS_PROFILE_COMPACT=y` (its mbedTLS heap is 40 KiB instead of 48 KiB)"),
]

# The linker writes a size that is a whole number of KiB as "301 KB".
# Why a variant cannot be built, where the build's words alone do not say it.
WHY = {"psa": "Every algorithm this image uses is asked for as a `PSA_WANT_*` symbol, and "
              "mbedTLS 3.6's TLS 1.3 needs PSA (`check_config.h`: `MBEDTLS_SSL_PROTO_TLS1_3` "
              "requires `MBEDTLS_PSA_CRYPTO_CLIENT` and PSA's HKDF): without PSA the image "
              "would be another configuration altogether (TLS 1.2 only, on mbedTLS's legacy "
              "ECP, ECDH, ECDSA, RSA, GCM and SHA modules), not this one less a layer."}

REGION = re.compile(r"^\s*(FLASH|RAM):\s*(\d+)\s*(B|KB|MB)\s")
UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2}
# Symbols whose change a variant brings along (Kconfig dependencies), listed beside it.
TRACKED = re.compile(r"^(CONFIG_(?:MBEDTLS|PSA_WANT|APP_TLS_PROFILE|APP_P256)\w*)=(.*)$")


def build(name: str, overlays: list) -> dict:
    build_dir = Path(f"{PREFIX}feature-{name}")
    log = Path(f"{PREFIX}feature-{name}.log")
    args = ["west", "build", "-b", "frdm_k64f", "-d", str(build_dir), str(REPO), "--",
            "-DTOOLCHAIN_HAS_PICOLIBC=ON"]
    if overlays:
        args.append("-DEXTRA_CONF_FILE=" + ";".join(str(CONF / o) for o in overlays))
    fresh = not (build_dir / "build.ninja").exists()
    # The linker prints its memory regions only when it links: make it link every time.
    (build_dir / "zephyr" / "zephyr.elf").unlink(missing_ok=True)
    env = dict(os.environ, ZEPHYR_TOOLCHAIN_VARIANT=os.environ.get("K64F_TOOLCHAIN_VARIANT",
                                                                   "gnuarmemb"))
    env.setdefault("GNUARMEMB_TOOLCHAIN_PATH", "/usr")
    started = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    result = {"name": name, "seconds": round(time.monotonic() - started), "fresh": fresh,
              "log": str(log)}
    text = log.read_text(errors="replace")
    regions = {m.group(1): int(m.group(2)) * UNITS[m.group(3)]
               for m in map(REGION.match, text.splitlines()) if m}
    if rc != 0:
        result["error"] = why_it_failed(text)
        return result
    if set(regions) != {"FLASH", "RAM"}:
        result["error"] = "the link printed no FLASH and RAM lines"
        return result
    result.update(flash=regions["FLASH"], ram=regions["RAM"],
                  config=tracked_config(build_dir / "zephyr" / ".config"))
    return result


def why_it_failed(text: str) -> str:
    """The build's first words about what went wrong: Kconfig's refused assignments (with
    the dependency that refused them), or the compiler's or linker's first error."""
    lines = text.splitlines()
    refused = []
    for i, line in enumerate(lines):
        m = re.match(r"warning: (\w+) \(defined at", line)
        if m:
            tail = " ".join(lines[i:i + 4])
            dep = re.search(r"unsatisfied dependencies: (.*?) \(=n\)", tail)
            refused.append((m.group(1), dep.group(1) if dep else None))
    if refused:
        deps = sorted({d for _, d in refused if d})
        names = ", ".join(n for n, _ in refused[:6]) + (", ..." if len(refused) > 6 else "")
        return (f"Kconfig refuses it: {len(refused)} symbols the configuration asks for (" + names
                + ") depend on what was turned off"
                + (f" (unsatisfied: {'; '.join(deps)})" if deps else ""))
    for line in lines:
        if re.search(r"error:|undefined reference|#error", line):
            return line.strip()
    return "the build failed; see its log"


def tracked_config(path: Path) -> dict:
    config = {}
    for line in path.read_text().splitlines():
        m = TRACKED.match(line)
        if m:
            config[m.group(1)] = m.group(2)
        m = re.match(r"^# (CONFIG_\w+) is not set$", line)
        if m and TRACKED.match(m.group(1) + "=n"):
            config[m.group(1)] = "n"
    return config


def set_by(overlays: list) -> set:
    """The symbols the variant's own files set."""
    return {m.group(1) for o in overlays for line in (CONF / o).read_text().splitlines()
            if (m := re.match(r"^(CONFIG_\w+)=", line))}


def config_changes(base: dict, variant: dict) -> list:
    keys = sorted(set(base) | set(variant))
    return [f"{k.removeprefix('CONFIG_')}={variant.get(k, 'n')}" for k in keys
            if base.get(k, "n") != variant.get(k, "n")]


def run(results: Path) -> dict:
    meta = {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--", "src", "prj.conf", "Kconfig",
                              "CMakeLists.txt", "boards", "crates", "bench/conf")),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    print("=== features: baseline (INTEROP, as shipped)", flush=True)
    base = build("baseline", [])
    if "error" in base:
        raise SystemExit(f"bench/features.py: the baseline does not build: {base['error']}")
    rows = []
    for name, off, overlays, how in VARIANTS:
        print(f"=== features: without {off}", flush=True)
        row = build(name, overlays)
        row.update(off=off, how=how)
        if "error" not in row:
            own = set_by(overlays)
            row["changes"] = [c for c in config_changes(base["config"], row.pop("config"))
                              if "CONFIG_" + c.split("=")[0] not in own]
        rows.append(row)
        print(f"    {row.get('flash', '-')} B FLASH, {row.get('ram', '-')} B RAM, "
              f"{row['seconds']} s" + (f": {row['error']}" if "error" in row else ""), flush=True)
    base.pop("config")
    data = {"meta": meta, "baseline": base, "variants": rows}
    results.write_text(json.dumps(data, indent=2))
    return data


def git(*args) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                          text=True).stdout.strip()


def signed(v: int) -> str:
    return f"{v:+,}".replace("-", "−") if v else "0"


def write_doc(data: dict, doc: Path) -> None:
    base, meta = data["baseline"], data["meta"]
    builds = [base] + data["variants"]
    total = sum(r["seconds"] for r in builds)
    fresh = sum(1 for r in builds if r.get("fresh") and "error" not in r)
    md = ["# frdm_k64f footprint by TLS feature\n",
          "Generated by `bench/features.py` (`BENCH_ONLY=features bench/run`; do not edit: run it "
          f"again). Run: {meta['date']}, firmware commit {meta['commit']}"
          f"{' (+ uncommitted changes)' if meta['dirty'] else ''}; {len(builds)} builds "
          f"({fresh} in new build directories, the others incremental) in {total // 60} min "
          f"{total % 60} s.\n",
          "Each row is the image as shipped (the INTEROP profile) built again with one feature "
          "off; the numbers are the linker's `Memory region` lines and their difference from the "
          f"image as shipped: **FLASH {base['flash']:,} B, RAM {base['ram']:,} B**. RAM is what "
          "the linker places (mbedTLS's heap is a fixed array in it, so the heap's own peak "
          "does not show here); it moves in steps of 64 B, the alignment of the thread stacks "
          "placed after `.bss`. *Also changed* lists the Kconfig symbols the change took along "
          "through their dependencies.\n",
          "| without | FLASH | Δ FLASH | RAM | Δ RAM | how | also changed |",
          "|---|---:|---:|---:|---:|---|---|"]
    failed = []
    for r in data["variants"]:
        if "error" in r:
            failed.append(r)
            md.append(f"| {r['off']} | — | — | — | — | {r['how']} | does not build: see below |")
            continue
        also = ", ".join(f"`{c}`" for c in r["changes"])
        md.append(f"| {r['off']} | {r['flash']:,} | {signed(r['flash'] - base['flash'])} | "
                  f"{r['ram']:,} | {signed(r['ram'] - base['ram'])} | {r['how']} | {also} |")
    if failed:
        md.append("\nVariants that do not build, in the build's words:\n")
        for r in failed:
            md.append(f"- without {r['off']} ({r['how']}): {r['error']}."
                      + (f" {WHY[r['name']]}" if r["name"] in WHY else ""))
    md.append("\nWhat the rows cannot show: features depend on each other, so the savings do not "
              "add up (without TLS 1.2 the ECDHE-RSA key exchange goes too, and with it part of "
              "what RSA costs). The RSA and P-384 rows remove only mbedTLS's code: the "
              "application's `cred` checks still name those key types.")
    doc.write_text("\n".join(md) + "\n")
    print(f"wrote {doc}")


def main() -> None:
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(f"{PREFIX}results/features.json")
    doc = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "docs" / "footprint-by-feature.md"
    results.parent.mkdir(parents=True, exist_ok=True)
    write_doc(run(results), doc)


if __name__ == "__main__":
    main()
