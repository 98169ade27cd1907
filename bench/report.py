# SPDX-License-Identifier: Apache-2.0
"""docs/benchmark.md and docs/benchmark.png from the JSON files that bench/run measured.
Nothing here is a number of its own: a value the run did not produce is shown as missing,
with the reason the run recorded."""

import json
import re
from pathlib import Path

KIB = 1024


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def fmt_int(v):
    return "—" if v is None else f"{v:,}"


def fmt_kib(v):
    return "—" if v is None else f"{v / KIB:,.1f} KiB"


def fmt_rate(v):
    return "—" if v is None else f"{v:,.2f}"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def verdict(value, limit, at_least=False):
    if value is None:
        return "not measured"
    ok = value >= limit if at_least else value <= limit
    return "**met**" if ok else "**missed**"


# The groups of rows each measurement file holds: when a run did not make the file (a run of
# some parts only, e.g. BENCH_ONLY=footprint,features,report), the rows come from the
# docs/benchmark.md that an earlier run wrote, marked with that run.
SIM_GROUPS = ("native_sim CPU (callgrind Ir)", "publish over TLS (msgs/s at a subscriber)",
              "mbedTLS heap")
ARM_GROUPS = ("Cortex-M4 CPU (mps2/an386 in QEMU, instructions)",)
CARRIED = "†"
LIMIT = re.compile(r"([≤≥])\s*([\d.]+)×")


def previous_run(doc: Path) -> dict:
    """Rows, detail lines and the run they came from, read back from an earlier
    docs/benchmark.md; what it had carried over itself keeps its own run."""
    if not doc.exists():
        return {}
    text = doc.read_text()
    m = re.search(r"Run: (.*?), Zephyr .*?, firmware commit (\w+)", text)
    run = f"the run of {m.group(1)} (firmware commit {m.group(2)})" if m else "an earlier run"
    m = re.search(rf"^{CARRIED} Not measured in this run: (?:taken|carried over) from (.*?)\.$",
                  text, re.M)
    run = m.group(1) if m else run
    rows, details, in_details = [], [], False
    for line in text.splitlines():
        if line.startswith("## "):
            in_details = line == "## Details"
            continue
        if in_details and line.startswith("- "):
            details.append(line)
        cells = [c.strip() for c in line.split(" | ")]
        if not line.startswith("| ") or len(cells) != 7 or cells[0] in ("| group", "|---"):
            continue
        group, metric, ours, c, ratio_text, target, result = cells
        group, result = group.removeprefix("| "), result.removesuffix(" |").removesuffix("|")
        limit = LIMIT.search(target)
        ratio_value = ratio_text.removesuffix("×").replace(",", "")
        rows.append({"group": group, "metric": metric.removesuffix(f" {CARRIED}"), "ours": ours,
                     "c": c, "ratio": float(ratio_value) if re.fullmatch(r"[\d.]+", ratio_value)
                     else None, "target": target, "verdict": result.strip(),
                     "limit": float(limit.group(2)) if limit else None,
                     "at_least": bool(limit) and limit.group(1) == "≥", "carried": True})
    return {"run": run, "rows": rows, "details": details}


def carry_over(rows: list, previous: dict, groups: tuple) -> list:
    """`rows` with those of `groups` replaced by the earlier run's."""
    old = [r for r in previous.get("rows", []) if r["group"] in groups]
    if not old:
        return rows
    at = next((i for i, r in enumerate(rows) if r["group"] in groups), len(rows))
    kept = [r for r in rows if r["group"] not in groups]
    return kept[:at] + old + kept[at:]


def error_of(sim, key):
    e = get(sim, key, "error")
    return f" ({key}: {e})" if e else ""


def write(results: Path, docs: Path) -> None:
    ours_fp = load(results / "footprint-ours.json")
    compact_fp = load(results / "footprint-ours-compact.json")
    c_fp = load(results / "footprint-c.json")
    fair_fp = load(results / "footprint-c-fair.json")
    fair_compact_fp = load(results / "footprint-c-fair-compact.json")
    sim = load(results / "sim.json")
    fair = load(results / "sim-fair.json")
    arm = load(results / "an386.json")
    meta = load(results / "meta.json")
    docs.mkdir(parents=True, exist_ok=True)

    rows = []  # (group, metric, ours, c, ratio_text, target, verdict, ratio_value, target_value, higher_is_better)

    def add(group, metric, o, c, fmt, target_text=None, limit=None, at_least=False, r=None,
            note=""):
        r = ratio(o, c) if r is None else r
        rows.append({"group": group, "metric": metric, "ours": fmt(o), "c": fmt(c),
                     "ratio": r, "target": target_text or "", "limit": limit,
                     "at_least": at_least,
                     "verdict": verdict(r, limit, at_least) if limit is not None else "",
                     "note": note})

    # Footprint, for both TLS profiles: what the image takes, and what the board's RAM region
    # leaves for the application (higher is better there).
    ram_size = get(ours_fp, "regions", "RAM", "size")
    beside = "beside the fair C peer of the same profile"
    for profile, ours, peer in (("INTEROP", ours_fp, fair_fp),
                                ("COMPACT", compact_fp, fair_compact_fp)):
        for region, limit in (("FLASH", 1.0), ("RAM", 1.0)):
            add("frdm_k64f footprint", f"{region} used, {profile} (linker)",
                get(ours, "regions", region, "used"), get(c_fp, "regions", region, "used"),
                fmt_kib, f"≤ {limit}× C", limit)
        add("frdm_k64f footprint", f"RAM left for the application, {profile} "
            f"({fmt_int(ram_size)} B RAM region − RAM used)", get(ours, "ram_left"),
            get(c_fp, "ram_left"), fmt_kib)
        for region in ("FLASH", "RAM"):
            add("frdm_k64f footprint", f"{region} used, {profile}, {beside}",
                get(ours, "regions", region, "used"), get(peer, "regions", region, "used"),
                fmt_kib)
        add("frdm_k64f footprint", f"RAM left for the application, {profile}, {beside}",
            get(ours, "ram_left"), get(peer, "ram_left"), fmt_kib)

    # Instructions
    oc, cc = get(sim, "ours_callgrind") or {}, get(sim, "c_callgrind") or {}
    add("native_sim CPU (callgrind Ir)", "boot → CONNACK, whole process",
        oc.get("boot_to_connack_ir"), cc.get("boot_to_connack_ir"), fmt_int)
    add("native_sim CPU (callgrind Ir)", "first TLS handshake (`mbedtls_ssl_handshake`, inclusive)",
        oc.get("handshake_ir"), cc.get("handshake_ir"), fmt_int)
    add("native_sim CPU (callgrind Ir)", "TLS connect incl. credential setup (`ztls_connect_ctx`)",
        oc.get("tls_connect_ir"), cc.get("tls_connect_ir"), fmt_int)
    add("native_sim CPU (callgrind Ir)", "reconnect handshake (`mbedtls_ssl_handshake`)",
        oc.get("reconnect_handshake_ir"), cc.get("reconnect_handshake_ir"), fmt_int)
    add("native_sim CPU (callgrind Ir)", "reconnect ÷ first handshake, ours (resumption)",
        None, None, fmt_int,
        r=ratio(oc.get("reconnect_handshake_ir"), oc.get("handshake_ir")))
    rows[-1]["ours"] = fmt_ratio(rows[-1]["ratio"])
    rows[-1]["c"] = fmt_ratio(ratio(cc.get("reconnect_handshake_ir"), cc.get("handshake_ir")))
    fc = get(fair, "c_fair_callgrind") or {}
    add("native_sim CPU (callgrind Ir)", "first TLS handshake, beside the fair C peer",
        oc.get("handshake_ir"), fc.get("handshake_ir"), fmt_int)
    add("native_sim CPU (callgrind Ir)", "boot → CONNACK, beside the fair C peer",
        oc.get("boot_to_connack_ir"), fc.get("boot_to_connack_ir"), fmt_int)

    # Throughput
    # The board's CPU: the emulated Cortex-M4 (bench/an386.py), 1 instruction per ns of guest
    # time under -icount shift=0; the K64F estimate takes one instruction per cycle at 120 MHz.
    cpu = get(arm, "cpu") or {}
    hz = get(arm, "k64f_hz") or 120_000_000
    arm_group = "Cortex-M4 CPU (mps2/an386 in QEMU, instructions)"

    def arm_row(metric, us, target_text=None, limit=None):
        if us is None:
            return
        ms = us * 1000 / hz * 1000
        add(arm_group, metric, None, None, fmt_int, target_text, limit, r=ms / 1000)
        rows[-1]["ours"] = f"{us / 1000:,.1f} M (est. K64F {ms:,.0f} ms)"
        rows[-1]["c"] = ""
        rows[-1]["ratio"] = None
        if limit is not None:
            rows[-1]["verdict"] = verdict(ms / 1000, limit)

    arm_row("full mutual-TLS 1.3 handshake (MQTT thread)", cpu.get("full_handshake_us"),
            "≤ 0.1 s est. K64F", 0.1)
    arm_row("resumed TLS 1.3 handshake, ticket + ECDHE", cpu.get("resumed_handshake_us"))
    arm_row("boot → CONNACK, all threads", cpu.get("boot_to_connack_us"))
    if cpu.get("full_handshake_us") and cpu.get("resumed_handshake_us"):
        add(arm_group, "resumed ÷ full handshake", None, None, fmt_int, "≤ 0.3× full", 0.3,
            r=cpu["resumed_handshake_us"] / cpu["full_handshake_us"])
        rows[-1]["ours"] = fmt_ratio(rows[-1]["ratio"])
    count = get(arm, "bench_count")
    for qos in (0, 1):
        b = cpu.get(f"bench_qos{qos}")
        if b and count:
            per_message = b["all_us"] * 1000 / count
            add(arm_group, f"QoS {qos} publish, instructions per message (all threads)",
                None, None, fmt_int)
            rows[-1]["ours"] = (f"{per_message:,.0f} (est. K64F CPU-bound "
                                f"{hz / per_message:,.0f} msgs/s)")

    # Ours against the ceiling measured in the same run (the stock C sample sleeps 500 ms
    # between publishes, so its rate measures the sleep). The board-tick image is native_sim
    # at the board's 10 kHz tick: the simulator syncs to real time only at ticks (METHOD.md).
    ot, ct = get(sim, "ours_throughput") or {}, get(sim, "c_throughput") or {}
    tick = get(sim, "ours_throughput_board_tick") or {}
    group = "publish over TLS (msgs/s at a subscriber)"
    for qos in (0, 1):
        add(group, f"QoS {qos}, native_sim at 100 Hz tick", get(ot, f"qos{qos}", "msgs_per_s"),
            get(ct, f"qos{qos}", "msgs_per_s"), fmt_rate)
    ft = get(fair, "c_fair_throughput") or {}
    for qos in (0, 1):
        add(group, f"QoS {qos}, beside the fair C peer (no sleep)",
            get(ot, f"qos{qos}", "msgs_per_s"), get(ft, f"qos{qos}", "msgs_per_s"), fmt_rate)
    for qos in (0, 1):
        v = get(ot, "ceiling", f"qos{qos}", "msgs_per_s")
        add(group, f"ceiling: host `mosquitto_pub -l`, QoS {qos}", v, None, fmt_rate)
    for name, t in (("100 Hz tick", ot), ("board tick 10 kHz", tick)):
        for qos, limit in ((0, 0.8), (1, 0.5)):
            o = get(t, f"qos{qos}", "msgs_per_s")
            c = get(t, "ceiling", f"qos{qos}", "msgs_per_s")
            if o is None:
                continue
            add(group, f"QoS {qos} ÷ ceiling, native_sim at {name}", None, None, fmt_rate,
                f"≥ {limit:g}× ceiling", limit, at_least=True, r=ratio(o, c))
            rows[-1]["ours"] = f"{fmt_rate(o)} ÷ {fmt_rate(c)}"
            rows[-1]["c"] = ""

    # Heap
    oh, ch = get(sim, "ours_heap") or {}, get(sim, "c_heap") or {}
    o_peak = get(oh, "after_connack", "peak_bytes")
    c_peak = get(ch, "after_connack", "peak_bytes")
    add("mbedTLS heap", "peak after boot + first handshake", o_peak, c_peak, fmt_kib)
    rows[-1]["target"] = "ours ≤ 40 KiB"
    rows[-1]["verdict"] = verdict(o_peak, 40 * KIB) if o_peak is not None else "not measured"
    add("mbedTLS heap", "peak after boot + first handshake, beside the fair C peer", o_peak,
        get(fair, "c_fair_heap", "after_connack", "peak_bytes"), fmt_kib)
    add("mbedTLS heap", "peak after a reconnect", get(oh, "after_reconnect", "peak_bytes"),
        get(ch, "after_reconnect", "peak_bytes"), fmt_kib)
    add("mbedTLS heap", "configured `CONFIG_MBEDTLS_HEAP_SIZE`",
        get(sim, "config", "BENCH_OURS_EXE", "mbedtls_heap_size"),
        get(sim, "config", "BENCH_C_EXE", "mbedtls_heap_size"), fmt_kib)

    previous = previous_run(docs / "benchmark.md")
    carried_groups = (SIM_GROUPS if not sim else ()) + (ARM_GROUPS if not arm else ())
    rows = carry_over(rows, previous, carried_groups)
    carried = any(r.get("carried") for r in rows)

    md = []
    md.append("# Benchmark: our firmware beside Zephyr's `samples/net/mqtt_publisher`\n")
    md.append("Generated by `bench/run` (do not edit: run it again). "
              f"Run: {meta.get('date', '?')}, Zephyr {meta.get('zephyr', '?')}, "
              f"firmware commit {meta.get('commit', '?')}{meta.get('dirty', '')}.\n")
    md.append("Ratios are ours ÷ C sample. The C sample is built from the workspace with "
              "`overlay-tls.conf`; rows *beside the fair C peer* compare with the same sample "
              "built with our TLS configuration, a client certificate and no sleep between "
              "publishes (*The fair C peer* below). What else each needed, and why, is under "
              "*Method*.\n")
    md.append("| group | metric | ours | C sample | ratio | target | result |")
    md.append("|---|---|---:|---:|---:|---|---|")
    for r in rows:
        mark = f" {CARRIED}" if r.get("carried") else ""
        md.append(f"| {r['group']} | {r['metric']}{mark} | {r['ours']} | {r['c']} | "
                  f"{fmt_ratio(r['ratio']) if r['group'] != 'native_sim CPU (callgrind Ir)' or 'resumption' not in r['metric'] else ''} | "
                  f"{r['target']} | {r['verdict']} |")
    errors = [error_of(sim, k) for k in ("ours_callgrind", "c_callgrind", "ours_throughput",
                                          "ours_throughput_board_tick", "c_throughput",
                                          "ours_heap", "c_heap")]
    errors += [error_of(fair, k) for k in ("c_fair_tls13", "c_fair_tls12", "c_fair_callgrind",
                                           "c_fair_throughput", "c_fair_heap")]
    errors = [e for e in errors if e]
    if carried:
        md.append(f"\n{CARRIED} Not measured in this run: carried over from "
                  f"{previous['run']}.")
    if errors:
        md.append("\nParts that failed in this run:" + "".join(f"\n- {e.strip(' ()')}" for e in errors))

    md.append("\n## frdm_k64f footprint, both TLS profiles\n")
    images = (("ours, INTEROP", ours_fp), ("ours, COMPACT", compact_fp), ("C sample", c_fp),
              ("fair C peer, INTEROP", fair_fp), ("fair C peer, COMPACT", fair_compact_fp))
    sraml = {get(fp, "regions", "SRAML", "used") for _, fp in images}
    md.append("The linker's `Memory region` lines. *RAM left for the application* is the "
              f"board's RAM region ({fmt_int(ram_size)} B) less what the image places in it: "
              "room for the application's own threads, stacks and buffers"
              + (" (none of the images places anything in SRAML, the K64F's other 64 KiB)"
                 if sraml == {0} else "")
              + ". The fair C peer's COMPACT image is its INTEROP one with "
              "`bench/conf/c-fair-compact.conf`. What each TLS feature costs: "
              "[footprint-by-feature.md](footprint-by-feature.md).\n")
    md.append("| | " + " | ".join(name for name, _ in images) + " |")
    md.append("|---|" + "---:|" * len(images))
    for label, value in (("FLASH used", lambda fp: get(fp, "regions", "FLASH", "used")),
                         ("RAM used", lambda fp: get(fp, "regions", "RAM", "used")),
                         ("RAM left for the application", lambda fp: get(fp, "ram_left"))):
        md.append(f"| {label} | " + " | ".join(
            "—" if value(fp) is None else f"{value(fp):,} B" for _, fp in images) + " |")

    md.append("\n## Details\n")
    for name, key in (("ours", "ours_throughput"),
                      ("ours at the board tick", "ours_throughput_board_tick"),
                      ("C sample", "c_throughput"), ("fair C peer", "c_fair_throughput")):
        t = get(sim, key) or get(fair, key) or {}
        for qos in (0, 1):
            q = t.get(f"qos{qos}") or {}
            if q:
                md.append(f"- {name}, QoS {qos}: {q.get('received')} of {q.get('expected')} received"
                          f" in {q.get('span_s', 0):.2f} s (first to last arrival)"
                          + (f", {q['from_start_s']:.2f} s from the start"
                             if q.get("from_start_s") else "")
                          + (f", {q['duplicates']} duplicates" if q.get("duplicates") else "")
                          + (f", {q['retried_refusals']} `mqtt pub` refusals retried"
                             if q.get("retried_refusals") else "")
                          + (f", {q['shell_input_stalls']} shell input stalls (command resent)"
                             if q.get("shell_input_stalls") else ""))
    for name, t in (("", ot), (" (board-tick run)", tick)):
        for qos in (0, 1):
            q = get(t, "ceiling", f"qos{qos}") or {}
            if q:
                md.append(f"- ceiling{name}, QoS {qos}: {q.get('received')} of "
                          f"{q.get('expected')} received in {q.get('span_s', 0):.2f} s"
                          + (f", {q['from_start_s']:.2f} s from the start"
                             if q.get("from_start_s") else ""))
    if not sim:
        md += [line if line.endswith(CARRIED) else f"{line} {CARRIED}"
               for line in previous.get("details", [])]
    if oc.get("tls"):
        md.append(f"- ours negotiated: `{oc['tls'].strip()}`")
    for key in ("c_fair_tls13", "c_fair_tls12"):
        check = get(fair, key) or {}
        if check and not check.get("error"):
            md.append(f"- fair C peer against `openssl s_server`: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(check.items())))
    for name, cg in (("ours", oc), ("C sample", cc)):
        for p in cg.get("parts", []):
            md.append(f"- callgrind {name}, dump {p['part']}: {fmt_int(p['total'])} Ir; "
                      + ", ".join(f"`{k}` {fmt_int(v)}" for k, v in sorted(p["inclusive"].items())))

    for title, key in (("ROM", "rom"), ("RAM", "ram")):
        md.append(f"\n## frdm_k64f {title}: top contributors (`west build -t {key}_report`)\n")
        md.append(f"Total in the report: ours {fmt_kib(ours_fp.get(key + '_total'))}, "
                  f"C sample {fmt_kib(c_fp.get(key + '_total'))}.\n")
        md.append("| # | ours | size | C sample | size |")
        md.append("|---:|---|---:|---|---:|")
        o_top, c_top = ours_fp.get(f"{key}_top") or [], c_fp.get(f"{key}_top") or []
        for i in range(max(len(o_top), len(c_top))):
            o = o_top[i] if i < len(o_top) else {}
            c = c_top[i] if i < len(c_top) else {}
            md.append(f"| {i + 1} | {o.get('component', '')} | {fmt_kib(o.get('size'))} | "
                      f"{c.get('component', '')} | {fmt_kib(c.get('size'))} |")

    method = (Path(__file__).resolve().parent / "METHOD.md")
    if method.exists():
        md.append("\n" + method.read_text().strip() + "\n")
    (docs / "benchmark.md").write_text("\n".join(md) + "\n")
    chart(rows, docs / "benchmark.png")
    print(f"wrote {docs / 'benchmark.md'} and {docs / 'benchmark.png'}")


def chart(rows: list, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = [r for r in rows if r["ratio"] is not None and r["limit"] is not None]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(plotted) + 1.6))
    labels, values, colors = [], [], []
    for r in plotted:
        met = r["ratio"] >= r["limit"] if r["at_least"] else r["ratio"] <= r["limit"]
        labels.append(f"{r['metric'].split(' (')[0]}\n({r['target']})")
        values.append(r["ratio"])
        colors.append("#2a9d8f" if met else "#e76f51")
    y = list(range(len(plotted)))
    ax.barh(y, values, color=colors)
    for i, r in enumerate(plotted):
        ax.plot([r["limit"], r["limit"]], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(values[i], i, f" {values[i]:.2f}×", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("ratio (log scale); black tick = target; green = met, red = missed")
    ax.set_title("Secure MQTT firmware vs Zephyr mqtt_publisher (bench/run)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
