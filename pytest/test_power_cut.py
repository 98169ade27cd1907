# SPDX-License-Identifier: Apache-2.0
"""Power cuts during flash writes: the device process is killed with SIGKILL (no shutdown)
inside the writes of `cred commit` and of the persistent outbox, at cut points spread byte by
byte over the whole write sequence, and booted again on the same flash file.

The cut comes from src/native_sim_power_cut.c: the settings storage (NVS) sits behind a flash
device that lets exactly N more bytes reach the flash (`flashcut arm N` or
`--power-cut-after=N`), tears the write or erase that crosses N and kills the process. Each
test first measures how many bytes its operation writes (the hook logs every write while
armed), then spreads its cut points over them; every cut chains on the flash the previous one
left, so NVS's sector changes and garbage collection (copies and erases) come under the cuts
too. The cut is NOR flash's (src/native_sim_power_cut.c): the torn write's next byte is left
partly programmed and a torn erase leaves the sector random, from a seed the test prints
(POWER_CUT_SEED=N replays a run). Each cut is named by what NVS was writing where it landed
(data without its entry, an entry, a garbage collection copy, the gc done marker, a sector
erase), and every one of those is reached.

What must hold after every cut: the device boots; the credential set in use is entirely the
old or entirely the new one (`cred list`), and the device connects with it; no message the
device reported as queued ("pub #N queued as message M") is lost, and none whose record was
deleted after the broker's acknowledgement is sent again (MQTT 3.1.1, 4.3.2: QoS 1 may repeat
a message only while its acknowledgement has not been taken in, here: until its record is
deleted)."""

import base64
import collections
import concurrent.futures
import hashlib
import itertools
import os
import random
import re
import signal
import time
import zlib

from pathlib import Path

from twister_harness.exceptions import TwisterHarnessException, TwisterHarnessTimeoutException

from conftest import CLIENT_ID, DEV_CERTS, DEVICE_TOPICS, Console, Peer, mkcerts, \
    persistent_subscription
from loopback import free_port

CRED_CUTS = 150
AIMED_TRIES = 40  # changes that may pass before the aimed write comes
BROWNOUT_BOOTS = 20  # consecutive boots, each cut during its own flash writes
OUTBOX_CUTS = 110  # each cycle: one cut while records are written, one while they are deleted
LINE = 48  # base64 characters per `cred data` line

# The hook's line for each write or erase: number, length, bytes written before it, bytes
# left before the cut, and the data of a short write (an NVS allocation table entry).
WRITE = re.compile(r"flashcut: (?:write|erase) #(\d+), (\d+) bytes at 0x[0-9a-f]+ "
                   r"\((\d+) written, (\d+) before the cut\)(?: data((?: [0-9a-f]{2})+))?"
                   r"(?: \[([a-z-]+)\])?")
# What the hook's bracketed word says NVS was writing, by the state a cut there leaves.
NVS_STATE = {"data": "data without its entry", "entry": "entry", "close": "sector close",
             "gc-copy-data": "gc copy", "gc-copy-entry": "gc copy", "gc-done": "gc done marker",
             "erase": "sector erase"}
# Random budgets and the flash model's random bits, replayable from the one seed printed.
SEED = int(os.environ.get("POWER_CUT_SEED", random.randrange(1, 2**31)))
# The hook's line as it cuts: the write's number, the bytes of it that reached the flash, its
# length.
CUT = re.compile(r"flashcut: power cut in write or erase #(\d+), after (\d+) of its (\d+) bytes")
ATE = 8  # bytes of an NVS allocation table entry
INDEX = 28  # bytes of the credential index (crates/provisioning/src/store.rs)
NAME_IDS = range(0x8001, 0xC000)  # settings' NVS ids of names (NVS_NAMECNT_ID + 1 on)
SEQ_TOPIC = f"{DEVICE_TOPICS}/seq"
CA_DER = (DEV_CERTS / "ca.crt.der").read_bytes()
OBSERVER_ID = "power-cut-observer"


class Rig:
    """The device on one flash file, booted again and again."""

    def __init__(self, device, tmp_path):
        self.device = device
        self.flash = tmp_path / "flash.bin"
        self.boots = 0

    def boot(self, port: int, *options: str) -> Console:
        self.device.device_config.extra_test_args = " ".join(
            [f"--broker-port={port}", f"--flash={self.flash}", "--reconnect-cap-ms=1000",
             *options])
        self.device.command = []
        try:
            self.device.launch()
        except TwisterHarnessException:
            # A cut early in boot can end the process before the harness connects to it. Its
            # output is still read (the reader starts first), and watch() tells the end by
            # the process; anything else is a real failure.
            if self.device.is_device_running():
                raise
        self.boots += 1
        return Console(self.device)

    def watch(self, console: Console, regex: str, timeout: float,
              must_match: bool = True, seen: "Watch" = None) -> "Watch":
        """Reads the console until a line matches `regex` or the process ends (its power
        cut), keeping the hook's write lines (added to `seen`, if given). The harness may drop
        the last line or two of a process that ended, so the end is told by the process, not
        by a line."""
        seen = seen if seen is not None else Watch()
        seen.match = None
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = console.dut.readline(timeout=0.2)
            except TwisterHarnessTimeoutException:
                line = None
            except TwisterHarnessException:  # the process ended and its output is read
                line = None
            if line is None:
                if not self.device.is_device_running():
                    for rest in self.rest_of_output():
                        seen.take(rest, pattern)
                    status = self.device._process.poll() if self.device._process else None
                    self.device.close()
                    seen.ended = True
                    seen.check_cut(status)
                    return seen
                if time.monotonic() >= deadline:
                    assert not must_match, f"{regex!r} not seen within {timeout} s"
                    return seen
                continue
            if seen.take(line, pattern):
                return seen

    def rest_of_output(self) -> list:
        """The lines of an ended process that the harness has not handed out: its reader
        thread stops when the process ends, possibly before the pipe is empty."""
        dut = self.device
        if dut._reader_thread is not None:
            dut._reader_thread.join(2)
        lines = []
        while not dut._device_read_queue.empty():
            lines.append(dut._device_read_queue.get_nowait())
        if dut._process is not None and dut._process.stdout is not None:
            lines += dut._process.stdout.read().decode(errors="replace").splitlines()
        return lines


class Watch:
    """What `Rig.watch` saw: the hook's writes (length, data of a short one, bytes left
    before the cut), and the matching line, None if the process ended first."""

    def __init__(self):
        self.writes = []
        self.kinds = []  # what each write is to NVS (the hook's bracketed word)
        self.match = None
        self.ended = False  # the process ended: its power cut (check_cut makes sure)
        self.cut_line = None  # the hook's "power cut" line
        self.lines = collections.deque(maxlen=12)  # the device's last lines, for a failure
        self.repairs = 0  # sectors the boot erased again after a torn erase (src/shim.rs)

    def take(self, line: str, pattern: re.Pattern) -> bool:
        """Keeps a write line; True if `line` matches."""
        self.lines.append(line.rstrip())
        if "reads neither erased nor written" in line:
            self.repairs += 1
        if m := CUT.search(line):
            self.cut_line = m
        if m := WRITE.search(line):
            data = bytes.fromhex(m.group(5)) if m.group(5) else None
            self.writes.append((int(m.group(2)), data, int(m.group(4))))
            self.kinds.append(m.group(6) or "unknown")
        if self.match is None and (match := pattern.search(line)):
            self.match = match
            return True
        return False

    def check_cut(self, status) -> None:
        """A process that ended counts as a power cut only if the hook cut it: killed by
        SIGKILL, after the hook's line, whose figures match the write it cut. Any other end
        (a panic, an assertion, a fault, an exit) fails with the device's last lines."""
        last = "\n".join(self.lines)
        assert status == -signal.SIGKILL, \
            f"the device ended with status {status}, not the power cut's SIGKILL:\n{last}"
        assert self.cut_line is not None and self.writes, \
            f"the device was killed without the hook's power cut line:\n{last}"
        torn, length = int(self.cut_line.group(2)), int(self.cut_line.group(3))
        length_seen, _, left = self.writes[-1]
        assert length == length_seen and torn == min(length, left), \
            f"the cut's figures ({torn} of {length} bytes) are not the write's " \
            f"({min(length_seen, left)} of {length_seen}):\n{last}"

    @property
    def cut_state(self) -> str:
        """The NVS state the cut left: what the write it landed in was."""
        return NVS_STATE.get(self.kinds[-1], self.kinds[-1])

    @property
    def cut(self) -> tuple:
        """Where the cut landed: (write number, its bytes that reached the flash, its length)."""
        length, _, left = self.writes[-1]
        return len(self.writes), min(length, left), length

    def complete(self) -> list:
        """The writes that reached the flash whole."""
        if self.ended and self.writes:
            length, _, left = self.writes[-1]
            return self.writes if left == length else self.writes[:-1]
        return self.writes


# --- The credential set ----------------------------------------------------------------------

def credential_sets(tmp_path, count: int) -> list:
    """`count` sets of the development CA, each with a device certificate and key of its own
    (same client id), made by certs/mkcerts."""
    def make(i):
        out = tmp_path / f"set-{i}"
        mkcerts("device", CLIENT_ID, "--out", str(out), "--ca-dir", str(DEV_CERTS))
        return {"cert": (out / "device.crt.der").read_bytes(),
                "key": (out / "device.key.der").read_bytes(), "ca": CA_DER}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(make, range(count)))


def connected(console: Console, timeout: float = 30) -> None:
    console.until("mqtt: subscribed", timeout=timeout)


def cred_list(console: Console) -> tuple:
    console.command("cred list")
    return tuple(console.until(f"^{kind}: (.*)$", timeout=10).group(1).strip()
                 for kind in ("ca", "cert", "key"))


def send_upload(console: Console, kind: str, der: bytes) -> None:
    """`cred begin` and the base64 lines: nothing of it reaches the flash before `cred end`."""
    console.command(f"cred begin {kind}")
    console.until(f"upload of {kind} open", timeout=5)
    text = base64.b64encode(der).decode()
    for start in range(0, len(text), LINE):
        console.command(f"cred data {text[start:start + LINE]}")
        console.until(rf"{kind}: \d+ bytes so far", timeout=5)


def arm(console: Console, budget: int, seed: int = 1, at: str = "") -> None:
    """Arms the cut `budget` bytes on; with `at`, counted from the next write of that kind
    (the hook's bracketed word: "gc-copy-data", "gc-done", "erase", ...)."""
    console.command(f"flashcut arm {budget} {seed} {at}".rstrip())
    console.until(f"flashcut: armed, power cut after {budget} more bytes", timeout=5)


def data_crc(device) -> int:
    """Bytes NVS adds to each record's data: its CRC-32 when CONFIG_NVS_DATA_CRC is on."""
    config = Path(device.device_config.build_dir) / "zephyr" / ".config"
    return 4 if "CONFIG_NVS_DATA_CRC=y" in config.read_text().splitlines() else 0


def change(rig: "Rig", console: Console, creds: dict, budget: int,
           at_commit: bool = False, seed: int = 1, at: str = "") -> "Watch":
    """Stages a device certificate and key and commits them, with the power cut armed
    `budget` bytes before the first write of the change (the end of the certificate's
    upload, which writes its record), or before the first write of `cred commit` (the index),
    or into the change's first write of kind `at`. What the hook saw, ended if the cut came."""
    seen = Watch()
    for kind in ("cert", "key"):
        send_upload(console, kind, creds[kind])
        if kind == "cert" and not at_commit:
            arm(console, budget, seed, at)
        console.command("cred end")
        rig.watch(console, f"{kind} staged", timeout=10, seen=seen, must_match=False)
        if seen.ended:
            return seen
        assert seen.match, f"`cred end` of {kind}: no answer"
    if at_commit:
        arm(console, budget, seed, at)
    console.command("cred commit")
    rig.watch(console, "stored; used from the next connection on", timeout=10, seen=seen,
              must_match=False)
    assert seen.ended or seen.match, "`cred commit`: no answer"
    return seen


def provision_ca(console: Console) -> None:
    """Stages the development CA (the image's own) for the next commit: a record that stays
    valid while the device pairs change, so NVS's garbage collection has one to copy."""
    send_upload(console, "ca", CA_DER)
    console.command("cred end")
    console.until("ca staged", timeout=10)


def index_record(creds: dict) -> bytes:
    """The index `cred commit` writes for this device pair over the image's CA or the
    provisioned one (`creds["ca"]`), the slots left out (crates/provisioning/src/store.rs):
    source, slot, length, CRC-32 per kind."""
    entries = [bytes(8)]
    if creds.get("ca"):
        entries = [bytes([1, 0]) + len(creds["ca"]).to_bytes(2, "little")
                   + zlib.crc32(creds["ca"]).to_bytes(4, "little")]
    for kind in ("cert", "key"):
        der = creds[kind]
        entries.append(bytes([1, 0]) + len(der).to_bytes(2, "little")
                       + zlib.crc32(der).to_bytes(4, "little"))
    return b"CRD2" + b"".join(entries)


def is_index(data: bytes, creds: dict) -> bool:
    expected = index_record(creds)
    slotless = lambda record: bytes(b for i, b in enumerate(record) if i not in (5, 13, 21))
    return data is not None and len(data) == len(expected) and slotless(data) == slotless(expected)


def record_start(seen: "Watch", i: int, crc: int) -> int:
    """The write that began the record whose data write `i` is: NVS writes a record's data
    CRC (`crc` bytes) as a write of its own right after the data."""
    if crc and i > 0 and seen.writes[i][0] == crc and seen.kinds[i - 1] == "data":
        return i - 1
    return i


def landing(seen: "Watch", creds: dict, crc: int) -> str:
    """Which write of the change the cut landed in: the certificate's or key's record, the
    index (the commit's data), the index's entry (the commit point), another entry (a
    record's, a name's or a delete), other data (a name), or garbage collection's writes and
    erases (the hook's word for them)."""
    last = len(seen.writes) - 1
    kind = seen.kinds[last]
    if kind == "entry":
        before = last - 1
        if before >= 0 and seen.kinds[before] == "data":
            start = record_start(seen, before, crc)
            if is_index(seen.writes[start][1], creds):
                return "index entry"
        return "entry"
    if kind != "data":
        return kind
    length, data, _ = seen.writes[record_start(seen, last, crc)]
    if is_index(data, creds):
        return "index"
    if length == len(creds["cert"]):
        return "cert record"
    if length == len(creds["key"]):
        return "key record"
    return "other data"


def committed(seen: "Watch", creds: dict, crc: int) -> bool:
    """Whether the commit point was passed: the new index written whole (its data CRC too)
    and its entry (8 bytes) too. With 7 of the entry's 8 bytes written and the last left
    partly programmed, its CRC byte may match by chance, so that cut may go either way
    (None)."""
    writes = seen.complete() if seen.ended else seen.writes
    for i, (_, data, _) in enumerate(writes):
        if is_index(data, creds):
            entry = i + 1 + (1 if crc else 0)
            if entry < len(writes) and writes[entry][0] == ATE \
                    and seen.kinds[entry] == "entry":
                return True
    if seen.ended and landing(seen, creds, crc) == "index entry" and seen.cut[1] == ATE - 1:
        return None
    return False


def test_a_power_cut_during_cred_commit_leaves_the_old_or_the_new_set(
        tmp_path, broker, broker_port, device):
    crc = data_crc(device)
    print(f"seed {SEED} (POWER_CUT_SEED={SEED} replays it); NVS data CRC: {crc} bytes")
    budgets = random.Random(SEED)
    # Cuts aimed at what NVS's garbage collection writes, each counted from the first write
    # of its kind in the next change that runs a collection: (kind, bytes into it). An erase
    # cut short leaves a random sector; one of 4096 bytes cuts right after it.
    aimed = [("close", 3), ("gc-copy-data", 0), ("gc-copy-data", budgets.randrange(1, 400)),
             ("gc-copy-entry", 5), ("gc-done", 0), ("gc-done", 7), ("erase", 0),
             ("erase", budgets.randrange(1, 4096)), ("erase", 4096)]

    # A fresh device pair per change: NVS does not write a record identical to the one it
    # holds, so a set staged again would skip its writes and the cuts would miss them. The
    # aimed cuts take turns with three more sets: each change writes the slot that holds the
    # set before the last, so its records are written too. A collection comes about every
    # sixth change, and one with a live record to copy (the CA's) every third collection.
    sets = credential_sets(tmp_path, CRED_CUTS + 6)
    rig = Rig(device, tmp_path)

    # Unharmed changes first: what one writes once every record's name exists (the first
    # change of each slot also writes the names).
    console = rig.boot(broker_port)
    connected(console)
    provision_ca(console)
    for creds in sets[:3]:
        seen = change(rig, console, creds, 10**9)
        assert seen.match and not seen.ended, "the device ended during an unharmed change"
    measured = [length for length, _, _ in seen.writes]
    print(f"a change writes {measured} ({sum(measured)} bytes)")
    assert committed(seen, sets[2], crc), f"no index write seen in {seen.writes}"

    # Cut points: spread over the change's writes up to the two entries that delete the
    # replaced records after the commit point (each record, its data CRC, its entry, the index
    # and its entry; a record whose name was deleted with it also writes the name again, which
    # only adds bytes before the index); then, counted from the commit's first write, five in
    # the index, two in its CRC, and every byte of its entry twice; then the aimed ones. Each
    # cut chains on the flash the previous one left; the boot after a cut checks it and stages
    # the next change. A change that needs a new sector first copies the valid records there
    # (NVS garbage collection): spread cuts can land in the copies too.
    at_commit = [0, 7, 14, 21, 27] + ([INDEX + 1, INDEX + 3] if crc else []) \
        + [INDEX + crc + k for k in range(1, ATE + 1)] * 2
    body = CRED_CUTS - len(at_commit)
    points = [(i / body, None) for i in range(body)] + [(None, k) for k in at_commit]
    unused = iter(sets[3:-3])
    state = {"in_use": sets[2], "listed": cred_list(console), "console": console}
    outcomes = collections.Counter()
    landed = collections.Counter()
    states = collections.Counter()

    def after_cut(seen, creds, what):
        """Boots after the cut and checks the set in use: the old or the new one, as the
        commit point says."""
        where = landing(seen, creds, crc)
        landed[where] += 1
        states[seen.cut_state] += 1
        passed = committed(seen, creds, crc)
        console = rig.boot(broker_port)
        # The set the device connects with: the provisioned one, never the image's.
        origin = rig.watch(console, r"credentials: cert from the (provisioned|image)",
                           timeout=30)
        assert origin.match and origin.match.group(1) == "provisioned", \
            f"cut {what} ({where}): the device fell back to the image's certificate"
        connected(console)
        after = cred_list(console)
        fingerprint = hashlib.sha256(creds["cert"]).hexdigest()
        kept = "new" if fingerprint in after[1] else "old"
        assert kept == "new" or after == state["listed"], \
            f"cut {what} ({where}): neither the old nor the new set: {after}"
        assert passed is None or (kept == "new") == passed, \
            f"cut {what} ({where}): the new set {'not ' if passed else ''}in use " \
            f"{'after' if passed else 'before'} its commit point"
        outcomes[kept] += 1
        if kept == "new":
            state["in_use"], state["listed"] = creds, after
        state["console"] = console

    for number, (fraction, into_commit) in enumerate(points):
        creds = next(unused)
        total = len(creds["cert"]) + len(creds["key"]) + 3 * (ATE + crc) + INDEX + 2 * ATE
        n = round(fraction * total) if into_commit is None else into_commit
        seen = change(rig, state["console"], creds, n, at_commit=into_commit is not None,
                      seed=SEED + number)
        assert seen.ended, f"no power cut at byte {n} of {total}: {seen.writes}"
        after_cut(seen, creds, f"at byte {n}")

    turns = itertools.cycle(sets[-3:])
    for number, (kind, n) in enumerate(aimed, start=len(points)):
        for tries in range(AIMED_TRIES):
            creds = next(turns)
            seen = change(rig, state["console"], creds, n, seed=SEED + number, at=kind)
            if not seen.ended:
                # No collection in this change: it committed whole.
                state["in_use"], state["listed"] = creds, cred_list(state["console"])
                continue
            # A collection with fewer bytes of that kind than the aim lets the cut land in
            # the next write (an erase, an entry): a cut all the same, checked as one, and the
            # aim is tried again.
            after_cut(seen, creds, f"{n} bytes on from a {kind} write, in a {seen.kinds[-1]} one")
            if seen.kinds[-1] == kind:
                break
        assert seen.ended and seen.kinds[-1] == kind, \
            f"no cut {n} bytes into a {kind} write in {AIMED_TRIES} changes"
    device.close()
    print(f"{len(points) + len(aimed)} cuts during a change: {dict(outcomes)}; landed in "
          f"{dict(landed)}; NVS states: {dict(states)}")
    for where in ("cert record", "key record", "index", "index entry", "entry"):
        assert landed[where] > 0, f"no cut landed in the {where}: {dict(landed)}"
    for where in set(NVS_STATE.values()):
        assert states[where] > 0, f"no cut left NVS with a {where}: {dict(states)}"
    assert outcomes["new"] > 0, "no cut after a whole commit: the new set was never taken"


# --- Brown-out and rot ---------------------------------------------------------------------

def test_power_cuts_in_boot_after_boot_end_in_a_working_device(tmp_path, broker, broker_port,
                                                               device):
    """Brown-out: the supply drops again and again while the device boots, each time within
    its own boot's flash writes (NVS's mount and its repairs of the previous cut included:
    a restarted garbage collection, a sector erased again), at a random small byte count. A
    boot with nothing to cut within its budget is said and counted as such, not as a cut.
    The boot after the last cut must connect with the provisioned set, old or new, and
    deliver the messages queued before the cuts began (nothing lost)."""
    rng = random.Random(SEED)
    print(f"seed {SEED} (POWER_CUT_SEED={SEED} replays it)")

    sets = itertools.cycle(credential_sets(tmp_path, 3))
    observer = Observer(broker_port)
    rig = Rig(device, tmp_path)
    dead = free_port()  # offline: nothing listens there
    queued = []  # payloads the device reported queued before a run's cuts: all must arrive
    states = collections.Counter()
    repairs = 0  # torn sectors erased again by a boot
    runs = []  # consecutive cut boots, per run
    uncut = []  # (boot, its budget, bytes it wrote)

    def check_working(console, sets_ok):
        """The device connects with the provisioned set, one of `sets_ok`: its `cred list`."""
        origin = rig.watch(console, r"credentials: cert from the (provisioned|image)",
                           timeout=30)
        assert origin.match and origin.match.group(1) == "provisioned", \
            f"after {rig.boots} boots: the device fell back to the image's certificate"
        connected(console)
        after = cred_list(console)
        assert any(hashlib.sha256(c["cert"]).hexdigest() in after[1] for c in sets_ok), \
            f"neither the old nor the new set: {after}"
        return next(c for c in sets_ok if hashlib.sha256(c["cert"]).hexdigest() in after[1])

    # A first set provisioned whole, with a CA record for the garbage collections to copy.
    console = rig.boot(broker_port)
    connected(console)
    provision_ca(console)
    in_use = next(sets)
    assert change(rig, console, in_use, 10**9).match
    while True:
        assert len(runs) < 5, f"no run of {BROWNOUT_BOOTS} cut boots in {runs}; not cut: {uncut}"
        # Offline, so that they stay in the outbox's flash records through the cuts.
        device.close()
        console = rig.boot(dead)
        device.readlines_until(regex=r"reconnecting in \d+ ms", timeout=15)
        for _ in range(2):
            payload = f"b{len(queued)}"
            console.command(f"mqtt pub {SEQ_TOPIC} {payload} 1")
            answer = rig.watch(console, PUB_ANSWER, timeout=10)
            assert answer.match and answer.match.group(2).startswith("queued"), \
                f"{payload} not queued offline: {list(answer.lines)}"
            queued.append(payload)
        # A cut in the middle of a garbage collection during a change: the next boot has to
        # finish it (erase the half-filled sector, copy again, mark, erase).
        for tries in range(AIMED_TRIES):
            creds = next(sets)
            seen = change(rig, console, creds, rng.randrange(0, 400),
                          seed=rng.randrange(1, 2**31), at="gc-copy-data")
            if seen.ended:
                break
            in_use = creds
        assert seen.ended, f"no garbage collection copy in {AIMED_TRIES} changes"
        runs.append(0)
        marked = False  # the last cut came after the gc done marker
        while runs[-1] < BROWNOUT_BOOTS:
            # Within what the boot has to write: the erase of the collected sector (4 KiB)
            # once the marker is there; else the restarted collection's erase, copies,
            # marker and erase (about 9 KiB), every other time into its copies and marker.
            if marked:
                budget = rng.randrange(0, 4096)
            elif rng.random() < 0.5:
                budget = 4096 + rng.randrange(0, 480)
            else:
                budget = rng.randrange(0, 8192)
            seed = rng.randrange(1, 2**31)
            console = rig.boot(broker_port, f"--power-cut-after={budget}",
                               f"--flash-seed={seed}")
            boot = rig.watch(console, "mqtt: subscribed", timeout=30, must_match=False)
            repairs += boot.repairs
            if boot.ended:
                runs[-1] += 1
                states[boot.cut_state] += 1
                # Once written whole, the marker stays until the boot that erases after it.
                marked = marked or "gc-done" in boot.kinds[:-1]
                continue
            assert boot.match, "a boot neither cut nor connected"
            wrote = sum(length for length, _, _ in boot.writes)
            uncut.append((rig.boots, budget, wrote))
            print(f"boot {rig.boots}: not cut: it wrote {wrote} bytes "
                  f"({'nothing' if not boot.writes else ', '.join(boot.kinds)}), within its "
                  f"budget of {budget}: not counted as a cut boot")
            device.close()
            break
        # A boot without a cut ends the run: a working device, with the old or the new set,
        # that delivers what was queued.
        console = rig.boot(broker_port)
        in_use = check_working(console, [in_use, creds])
        deadline = time.monotonic() + 30
        while missing := [p for p in queued if observer.count[p] == 0]:
            assert time.monotonic() < deadline, f"queued before the cuts, never arrived: {missing}"
            observer.arrivals()
        if runs[-1] >= BROWNOUT_BOOTS:
            break
    device.close()
    print(f"brown-out: runs of consecutive cut boots {runs}; the cuts left NVS with "
          f"{dict(states)}; torn sectors erased again: {repairs}; messages queued before the "
          f"cuts, all delivered: {len(queued)}; boots not cut (boot, "
          f"budget, bytes written): {uncut}; the device then connected with the "
          f"{'new' if in_use is creds else 'old'} set")


def test_a_rotted_credential_record_is_reported_and_not_used(tmp_path, broker, broker_port,
                                                             device):
    """A committed certificate record whose data rots in flash (bits flipped while the
    device was off; its NVS entry intact) is found out at boot, said in words, and not used:
    the device connects with the image's set instead."""
    out = tmp_path / "set"
    mkcerts("device", CLIENT_ID, "--out", str(out), "--ca-dir", str(DEV_CERTS))
    creds = {"cert": (out / "device.crt.der").read_bytes(),
             "key": (out / "device.key.der").read_bytes()}
    fingerprint = hashlib.sha256(creds["cert"]).hexdigest()
    rig = Rig(device, tmp_path)
    console = rig.boot(broker_port)
    connected(console)
    seen = change(rig, console, creds, 10**9)
    assert seen.match, "the set was not committed"
    device.close()
    console = rig.boot(broker_port)
    connected(console)
    assert fingerprint in cred_list(console)[1], "the committed set is not in use"
    device.close()

    # Rot: two bits of one byte in the middle of the certificate (its signature), as charge
    # leaks out of NOR cells over years. Nothing else in the file changes.
    flash = bytearray(rig.flash.read_bytes())
    at = flash.find(creds["cert"])
    assert at >= 0 and flash.find(creds["cert"], at + 1) < 0, "the certificate not found once"
    flash[at + len(creds["cert"]) - 20] ^= 0x11
    rig.flash.write_bytes(bytes(flash))

    console = rig.boot(broker_port)
    report = rig.watch(console, r"credentials: stored set unreadable \((.*)\); using the image's",
                       timeout=30, must_match=False)
    assert report.match, "the rotted record was not reported:\n" + "\n".join(report.lines)
    print(f"reported: {report.match.group(0)}")
    assert re.search(r"cert(ificate)? record", report.match.group(1)) \
        and re.search(r"[a-z]{4,} [a-z]{4,}", report.match.group(1)), \
        f"the report does not name the certificate record in words: {report.match.group(1)}"
    origin = rig.watch(console, r"credentials: cert from the (provisioned|image)", timeout=30)
    assert origin.match and origin.match.group(1) == "image", \
        "the rotted certificate was registered"
    connected(console)
    assert fingerprint not in cred_list(console)[1], "the rotted set is listed as in use"
    device.close()


# --- The persistent outbox -------------------------------------------------------------------

PUB_ANSWER = r"^pub #(\d+) (queued as message \d+|rejected: .*|still queued.*)"
VALUE_OFFSET = 0x4000  # settings' NVS id of a record's value: its name's id + this


class Observer:
    """A persistent QoS 1 session on the sequence topic: every arrival, counted by payload.

    The end of a boot's arrivals is an event, not a quiet spell: once the device is dead or
    has reported its outbox empty, the test publishes a marker to the same topic; the broker
    delivers to this session in the order it took the messages in, and it takes a device's
    QoS 1 message in before it sends the PUBACK that lets the device delete the record. So
    everything the device had delivered arrives before the marker."""

    def __init__(self, broker_port: int):
        self.peer = Peer(broker_port)
        self.sub = persistent_subscription(self.peer, OBSERVER_ID, SEQ_TOPIC)
        self.count = collections.Counter()
        self.markers = 0

    def arrivals(self, timeout: float = 30) -> list:
        """What arrived since the last call, up to a marker published now."""
        self.markers += 1
        marker = f"marker-{self.markers}"
        self.peer.publish(SEQ_TOPIC, marker, qos=1)
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.sub.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # queue.Empty
                raise AssertionError(f"the observer's marker {marker} did not come back within "
                                     f"{timeout} s; arrived meanwhile: {got}")
            payload = line.split(" ", 1)[1]
            if payload == marker:
                return got
            assert not payload.startswith("marker-"), f"an old marker came again: {payload}"
            got.append(payload)
            self.count[payload] += 1


def outbox_records(writes: list) -> tuple:
    """The settings records that `writes` (those that reached the flash whole, in order)
    saved and deleted, by the NVS id of their name: (saved, deleted). Settings writes a record
    as its value (id = name id + 0x4000), then its name; it deletes the name, then the value.
    NVS's garbage collection copies old entries between the ATE that closes a sector and the
    one that ends the collection (both id 0xffff), then erases the collected sector: those
    copies are left out, so a record is the one its operation wrote."""
    saved, deleted = [], []
    in_gc = False
    value_id = None  # the id of the last value written outside garbage collection
    for length, data, _ in writes:
        if data is None or length != ATE:
            if data is None and length >= 1024:  # a sector erase ends a collection
                in_gc = False
            continue
        ate_id = int.from_bytes(data[0:2], "little")
        ate_len = int.from_bytes(data[4:6], "little")
        if ate_id == 0xFFFF:
            in_gc = not in_gc
            continue
        if in_gc:
            continue
        if ate_id in NAME_IDS:
            if ate_len == 0:
                deleted.append(ate_id)
            elif value_id == ate_id + VALUE_OFFSET:
                saved.append(ate_id)
        elif ate_id - VALUE_OFFSET in NAME_IDS and ate_len > 0:
            value_id = ate_id
    return saved, deleted


def test_a_power_cut_while_outbox_records_are_written_or_deleted_loses_no_queued_message(
        tmp_path, broker, broker_port, device):
    """Every message the device reported queued (at once, or in its log after a "still
    queued" answer), and every one whose record reached the flash whole before a cut ended
    its publish, arrives; none arrives again once the flash shows its record deleted. Records
    are told apart by the NVS id of their name, read from the hook's write lines: the
    publish that wrote it names its message, the delete that removed it names the same."""
    observer = Observer(broker_port)
    deadline = time.monotonic() + 10
    while f" as {OBSERVER_ID} " not in broker.log():
        assert time.monotonic() < deadline, "the observer did not connect"
        time.sleep(0.1)
    dead = free_port()  # offline: nothing listens there
    rig = Rig(device, tmp_path)
    queued = []  # payloads the device reported queued: it must deliver them
    journaled = []  # no answer (the cut came first), but the record reached the flash whole
    record_of = {}  # NVS name id -> the payload whose record it names
    deleted_at = {}  # payload -> its arrivals when its record was deleted: never more after
    published = set()  # every payload given to `mqtt pub`
    tally = collections.Counter()
    seq = 0

    def pub_outcome(console: Console, payload: str) -> tuple:
        """Publishes `payload` offline: ("queued" | "rejected" | None if cut, its Watch).
        A "still queued" answer is followed to the MQTT thread's log line (or the cut)."""
        published.add(payload)
        console.command(f"mqtt pub {SEQ_TOPIC} {payload} 1")
        seen = rig.watch(console, PUB_ANSWER, timeout=10)
        if seen.ended:
            return None, seen
        answer = seen.match.group(2)
        if not answer.startswith("still queued"):
            return answer.split()[0], seen
        tally["still queued"] += 1
        logged = rf"control: pub #{seen.match.group(1)} (queued|rejected)"
        # The log line may come before the shell's answer: among the lines already read.
        earlier = [m for line in seen.lines if (m := re.search(logged, line))]
        if earlier:
            return earlier[0].group(1), seen
        rig.watch(console, logged, timeout=10, seen=seen)
        return (None if seen.ended else seen.match.group(1)), seen

    def offline_publish(count: int, budget: int):
        """Boots offline, arms the cut, publishes `count` messages: (messages restored at
        boot, the writes of the publishes, the cut's Watch or None)."""
        nonlocal seq
        console = rig.boot(dead)
        boot = device.readlines_until(regex=r"reconnecting in \d+ ms", timeout=15)
        restored = next((int(m.group(1)) for line in boot
                         if (m := re.search(r"outbox: (\d+) message\(s\) from before", line))), 0)
        arm(console, budget)
        writes = []
        for _ in range(count):
            seq += 1
            payload = f"m{seq}"
            outcome, seen = pub_outcome(console, payload)
            writes += seen.writes
            saved, _ = outbox_records(seen.complete())
            assert len(saved) <= 1, f"{payload}: one publish saved {len(saved)} records"
            if outcome == "queued":
                assert saved, f"{payload} reported queued, its record not seen written: " \
                              f"{seen.writes}"
                queued.append(payload)
            elif outcome is None and saved:
                journaled.append(payload)
            if saved:
                record_of[saved[0]] = payload
            if seen.ended:
                tally["unanswered at the cut"] += outcome is None
                return restored, writes, seen
        return restored, writes, None

    def online(budget):
        """Boots online (cut after `budget` bytes, if given) until the device reports its
        outbox empty or dies: the boot's Watch, and what arrived (up to the marker)."""
        options = [f"--power-cut-after={budget}"] if budget is not None else []
        console = rig.boot(broker_port, *options)
        seen = Watch()
        rig.watch(console, "mqtt: subscribed", timeout=30, seen=seen)
        deadline = time.monotonic() + 30
        while not seen.ended:
            if not command(console, "mqtt status", seen):
                break
            rig.watch(console, r"^outbox: (\d+)\s*$", timeout=10, seen=seen)
            if seen.ended or int(seen.match.group(1)) == 0:
                break
            assert time.monotonic() < deadline, "the outbox did not empty within 30 s"
            rig.watch(console, "a line that never comes", timeout=0.2, must_match=False,
                      seen=seen)
        if not seen.ended and command(console, "flashcut count", seen):
            rig.watch(console, r"flashcut: \d+ bytes in", timeout=5, seen=seen)
        if not seen.ended:
            device.close()
        arrived = observer.arrivals()
        strange = [payload for payload in arrived if payload not in published]
        assert not strange, f"arrived, yet never published (a record restored wrong?): {strange}"
        return seen, arrived

    def command(console: Console, line: str, seen: Watch) -> bool:
        """Sends a shell command; False if the process had ended (its cut, read into
        `seen`)."""
        try:
            console.command(line)
            return True
        except (TwisterHarnessException, OSError):  # OSError: a broken pipe
            # The process is ending (its exit closed the pipe before it can be reaped).
            rig.watch(console, "a line that never comes", timeout=5, must_match=False,
                      seen=seen)
            assert seen.ended, "the device stopped taking commands, yet runs"
            return False

    def check_deletes(seen: Watch) -> list:
        """The payloads whose records this boot deleted; checks what arrived against them."""
        for payload, count in deleted_at.items():
            assert observer.count[payload] == count, \
                f"{payload}: sent again after its record was deleted (arrivals: " \
                f"{count} then {observer.count[payload]})"
        _, deleted = outbox_records(seen.complete())
        tally["records deleted"] += len(deleted)
        unknown = [name_id for name_id in deleted if name_id not in record_of]
        assert not unknown, f"records deleted that no publish was seen writing: {unknown}"
        payloads = [record_of.pop(name_id) for name_id in deleted]
        for payload in payloads:
            # Deleted after the PUBACK, which the broker sends after taking the message in.
            assert observer.count[payload] > 0, \
                f"{payload}: its record was deleted, yet it never reached the observer"
            deleted_at[payload] = observer.count[payload]
        return payloads

    # Measure: what queueing 4 messages offline writes, and what sending and deleting them does.
    _, save_writes, _ = offline_publish(4, 10**9)
    device.close()
    assert len(queued) == 4, queued
    per_save = sum(n for n, _, _ in save_writes) / 4
    deleting, arrived = online(10**9)
    assert sorted(arrived) == sorted(queued), arrived
    # The deletes are read from the hook's lines: a drift in their format must fail here,
    # not shrink the check to nothing.
    assert sorted(check_deletes(deleting)) == sorted(queued), \
        f"the 4 records deleted are not the 4 messages sent: {deleting.writes}"
    per_delete = sum(n for n, _, _ in deleting.writes) / 4
    print(f"queueing 4 messages writes {[n for n, _, _ in save_writes]}; "
          f"sending them, {[n for n, _, _ in deleting.writes]}")
    assert per_save > 0 and per_delete > 0

    # Cut points as fractions of each phase's bytes, a low-discrepancy sequence: any run of
    # cycles covers 0..1 evenly. A phase that writes less than its budget has no cut; the
    # cycles go on until enough cuts have landed.
    cuts = collections.Counter()
    landed = []
    for i in range(OUTBOX_CUTS * 2):
        if sum(cuts.values()) >= OUTBOX_CUTS:
            break
        save_fraction, delete_fraction = (i * 0.618034) % 1, (0.5 + i * 0.381966) % 1
        # Records written: 1 to 4 new messages (fewer while old ones wait), cut somewhere in
        # their writes.
        pending = len([p for p in queued + journaled if observer.count[p] == 0])
        count = max(1, 4 - pending)
        budget = round(save_fraction * per_save * count)
        before = len(queued) + len(journaled)
        restored, writes, cut = offline_publish(count, budget)
        if cut is not None:
            cuts["while writing"] += 1
            landed.append(("write", budget, *cut.cut))
        else:
            device.close()
        # Records deleted: sent, acknowledged, deleted; cut somewhere in the deletes.
        pending = len([p for p in queued + journaled if observer.count[p] == 0])
        expected = max(restored + len(queued) + len(journaled) - before, pending, 1)
        budget = round(delete_fraction * per_delete * expected)
        seen, arrived = online(budget)
        check_deletes(seen)
        if seen.ended:
            cuts["while deleting"] += 1
            landed.append(("delete", budget, *seen.cut))

    # A last boot without a cut sends whatever is left; the observer reads up to a marker
    # sent once the device reported its outbox empty.
    online(None)
    check_deletes(Watch())
    lost = [p for p in queued if observer.count[p] == 0]
    lost_journaled = [p for p in journaled if observer.count[p] == 0]
    duplicates = sum(n - 1 for n in observer.count.values() if n > 1)
    observer.sub.close()
    print(f"{sum(cuts.values())} cuts in the outbox's writes {dict(cuts)}; {len(queued)} "
          f"messages reported queued, {len(journaled)} more journaled whole before a cut "
          f"ended their publish; {dict(tally)}; {len(deleted_at)} matched to their deleted "
          f"records and checked not to come again; {duplicates} sent twice (acknowledged, "
          f"record not yet deleted at the cut), boots {rig.boots}; cuts (phase, budget, "
          f"write #, bytes of it written, its length): {landed}")
    assert not lost, f"reported queued, then lost: {lost}"
    assert not lost_journaled, f"journaled whole, then lost: {lost_journaled}"
    assert tally["records deleted"] > 4, "no record deletion seen under the cuts"
    assert sum(cuts.values()) >= OUTBOX_CUTS


def flash_bytes_written(console: Console) -> int:
    """What the flash hook has let through so far (`flashcut count`)."""
    console.command("flashcut count")
    return int(console.until(r"flashcut: (\d+) bytes in \d+ writes", timeout=5).group(1))


def test_messages_queued_while_connected_are_not_written_to_flash(broker, peer, device):
    """README: a QoS 1 message queued while connected is acknowledged within a round trip and
    spares the flash; only one queued offline gets a record."""
    stream = peer.subscribe(f"{SEQ_TOPIC}")
    try:
        device.launch()
        console = Console(device)
        connected(console)
        # The stream is subscribed once a marker published after it arrives.
        marker = f"marker-{os.urandom(8).hex()}"
        for _ in range(10):
            peer.publish(SEQ_TOPIC, marker)
            if not stream.wait_for_all({f"{SEQ_TOPIC} {marker}"}, timeout=1):
                break
        else:
            raise AssertionError("the observer's subscription never received its marker")
        before = flash_bytes_written(console)
        expected = set()
        for n in range(10):
            _, outcome, answer = console.pub(SEQ_TOPIC, f"c{n}")
            assert outcome == "queued", answer
            expected.add(f"{SEQ_TOPIC} c{n}")
        assert not stream.wait_for_all(expected, timeout=30)
        assert flash_bytes_written(console) == before, "messages queued while connected were written"
    finally:
        stream.close()
