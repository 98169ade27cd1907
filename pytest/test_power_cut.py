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
too.

What must hold after every cut: the device boots; the credential set in use is entirely the
old or entirely the new one (`cred list`), and the device connects with it; no message the
device reported as queued ("pub #N queued as message M") is lost, and none whose record was
deleted after the broker's acknowledgement is sent again (MQTT 3.1.1, 4.3.2: QoS 1 may repeat
a message only while its acknowledgement has not been taken in, here: until its record is
deleted)."""

import base64
import collections
import re
import time

from twister_harness.exceptions import TwisterHarnessException, TwisterHarnessTimeoutException

from conftest import CLIENT_ID, DEV_CERTS, DEVICE_TOPICS, Console, Peer, mkcerts, \
    persistent_subscription
from loopback import free_port

CRED_CUTS = 150
OUTBOX_CUTS = 110  # each cycle: one cut while records are written, one while they are deleted
LINE = 48  # base64 characters per `cred data` line

# The hook's line for each write or erase: number, length, bytes written before it, bytes
# left before the cut, and the data of a short write (an NVS allocation table entry).
WRITE = re.compile(r"flashcut: (?:write|erase) #(\d+), (\d+) bytes at 0x[0-9a-f]+ "
                   r"\((\d+) written, (\d+) before the cut\)(?: data((?: [0-9a-f]{2})+))?")
ATE = 8  # bytes of an NVS allocation table entry
NAME_IDS = range(0x8001, 0xC000)  # settings' NVS ids of names (NVS_NAMECNT_ID + 1 on)
SEQ_TOPIC = f"{DEVICE_TOPICS}/seq"
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
              must_match: bool = True) -> "Watch":
        """Reads the console until a line matches `regex` or the process ends (its power
        cut), keeping the hook's write lines. The harness may drop the last line or two of a
        process that ended, so the end is told by the process, not by a line."""
        seen = Watch()
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
                    self.device.close()
                    seen.ended = True
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
        self.match = None
        self.ended = False  # the process ended: its power cut

    def take(self, line: str, pattern: re.Pattern) -> bool:
        """Keeps a write line; True if `line` matches."""
        if m := WRITE.search(line):
            data = bytes.fromhex(m.group(5)) if m.group(5) else None
            self.writes.append((int(m.group(2)), data, int(m.group(4))))
        if self.match is None and (match := pattern.search(line)):
            self.match = match
            return True
        return False

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

def connected(console: Console, timeout: float = 30) -> None:
    console.until("mqtt: subscribed", timeout=timeout)


def cred_list(console: Console) -> tuple:
    console.command("cred list")
    return tuple(console.until(f"^{kind}: (.*)$", timeout=10).group(1).strip()
                 for kind in ("ca", "cert", "key"))


def stage(console: Console, creds: dict) -> None:
    for kind in ("cert", "key"):
        console.command(f"cred begin {kind}")
        console.until(f"upload of {kind} open", timeout=5)
        text = base64.b64encode(creds[kind]).decode()
        for start in range(0, len(text), LINE):
            console.command(f"cred data {text[start:start + LINE]}")
            console.until(rf"{kind}: \d+ bytes so far", timeout=5)
        console.command("cred end")
        console.until(f"{kind} staged", timeout=10)


def arm(console: Console, budget: int) -> None:
    console.command(f"flashcut arm {budget}")
    console.until(f"flashcut: armed, power cut after {budget} more bytes", timeout=5)


def test_a_power_cut_during_cred_commit_leaves_the_old_or_the_new_set(
        tmp_path, broker, broker_port, device):
    sets = {}
    for name in ("A", "B"):
        out = tmp_path / f"set-{name}"
        mkcerts("device", CLIENT_ID, "--out", str(out), "--ca-dir", str(DEV_CERTS))
        sets[name] = {kind: (out / f"device.{kind}.der").read_bytes() for kind in ("crt", "key")}
        sets[name]["cert"] = sets[name].pop("crt")
    rig = Rig(device, tmp_path)

    # Unharmed commits first: what each set lists as, and what one commit writes.
    listed = {}
    measured = []
    for name in ("A", "B"):
        console = rig.boot(broker_port)
        connected(console)
        stage(console, sets[name])
        arm(console, 10**9)
        console.command("cred commit")
        seen = rig.watch(console, r"stored \(\d+ bytes\)", timeout=10)
        assert seen.match, "the device ended during an unharmed commit"
        measured.append([n for n, _, _ in seen.writes])
        listed[name] = cred_list(console)
        device.close()
    assert listed["A"] != listed["B"]
    # A commit that replaces a stored set writes the record, then NVS's 8-byte allocation
    # table entry that makes it valid (its commit point); the first commit also writes the
    # key's name. The two sets' records differ in length (DER sizes vary).
    print(f"commit of A (a new key) writes {measured[0]}, of B over A {measured[1]}")
    assert measured[1][-1] == ATE
    record = {name: max(writes) for name, writes in zip(("A", "B"), measured)}
    # Cut points: spread over the record, then every byte of the entry.
    # The entry's bytes come twice (a commit that starts a new sector pushes them back by the
    # copied record): the whole entry must once leave the new set in use.
    body = CRED_CUTS - 2 * ATE
    points = [(i / (body - 1), 0) for i in range(body)] + \
        [(1.0, k) for k in range(1, ATE + 1)] * 2

    # Each cut chains on the flash the previous one left; the boot after a cut checks it and
    # stages the next commit. A commit that needs a new sector first copies the other
    # record there (NVS garbage collection): those cuts land in the copy.
    in_use = "B"
    outcomes = collections.Counter()
    landed = []
    console = rig.boot(broker_port)
    connected(console)
    assert cred_list(console) == listed[in_use]
    for fraction, into_entry in points:
        target = "A" if in_use == "B" else "B"
        total = record[target] + ATE
        n = round(fraction * record[target]) + into_entry
        stage(console, sets[target])
        arm(console, n)
        console.command("cred commit")
        seen = rig.watch(console, "a line that never comes", timeout=10, must_match=False)
        assert seen.ended, f"no power cut at byte {n} of {total}"
        landed.append((n, *seen.cut))

        console = rig.boot(broker_port)
        connected(console)  # with whichever set survived
        after = cred_list(console)
        assert after in (listed[in_use], listed[target]), \
            f"cut at byte {n} of {total}: neither the old nor the new set: {after}"
        kept = "new" if after == listed[target] else "old"
        # With 7 of the entry's 8 bytes written, its unwritten CRC byte (0xff) matches 1 time
        # in 256: the record is whole then, and valid.
        assert kept == "old" or n >= total - 1, \
            f"cut at byte {n} of {total}: the new set in use before its commit point"
        outcomes[kept] += 1
        in_use = target if kept == "new" else in_use
    device.close()
    print(f"{len(points)} cuts during cred commit: {dict(outcomes)}; "
          f"(budget, write #, bytes of it written, its length): {landed}")
    assert outcomes["new"] > 0, "no cut after a whole commit: the new set was never taken"


# --- The persistent outbox -------------------------------------------------------------------

PUB_ANSWER = r"^pub #\d+ (queued as message \d+|rejected: .*|still queued.*)"


class Observer:
    """A persistent QoS 1 session on the sequence topic: every arrival, in order."""

    def __init__(self, broker_port: int):
        self.sub = persistent_subscription(Peer(broker_port), OBSERVER_ID, SEQ_TOPIC)
        self.count = collections.Counter()

    def arrivals(self, settle: float = 0.5) -> list:
        """What arrived since the last call, after `settle` seconds without news."""
        got = []
        while True:
            try:
                line = self.sub.lines.get(timeout=settle)
            except Exception:  # queue.Empty
                return got
            payload = line.split(" ", 1)[1]
            got.append(payload)
            self.count[payload] += 1


def name_deletes(seen: Watch) -> int:
    """Settings records deleted by the writes that reached the flash whole: NVS entries
    (8 bytes) of a name id with length 0 (settings deletes the name first, then the value)."""
    deleted = 0
    for length, data, _ in seen.complete():
        if length == 8 and data is not None:
            ate_id = int.from_bytes(data[0:2], "little")
            ate_len = int.from_bytes(data[4:6], "little")
            deleted += ate_id in NAME_IDS and ate_len == 0
    return deleted


def test_a_power_cut_while_outbox_records_are_written_or_deleted_loses_no_queued_message(
        tmp_path, broker, broker_port, device):
    observer = Observer(broker_port)
    deadline = time.monotonic() + 10
    while f" as {OBSERVER_ID} " not in broker.log():
        assert time.monotonic() < deadline, "the observer did not connect"
        time.sleep(0.1)
    dead = free_port()  # offline: nothing listens there
    rig = Rig(device, tmp_path)
    queued = []  # payloads the device reported as queued
    forbidden = set()  # acknowledged and deleted: never to be sent again
    seq = 0

    def offline_publish(count: int, budget: int):
        """Boots offline, arms the cut, queues `count` messages; the cut's match or None."""
        nonlocal seq
        console = rig.boot(dead)
        boot = device.readlines_until(regex=r"reconnecting in \d+ ms", timeout=15)
        restored = next((int(m.group(1)) for line in boot
                         if (m := re.search(r"outbox: (\d+) message\(s\) from before", line))), 0)
        arm(console, budget)
        writes = []
        for _ in range(count):
            seq += 1
            console.command(f"mqtt pub {SEQ_TOPIC} m{seq} 1")
            seen = rig.watch(console, PUB_ANSWER, timeout=10)
            writes += seen.writes
            if seen.ended:
                return restored, writes, seen
            if seen.match.group(1).startswith("queued as message"):
                queued.append(f"m{seq}")
        return restored, writes, None

    def online(budget):
        """Boots online (cut after `budget` bytes, if given); what the boot's writes deleted
        and what arrived, in order."""
        options = [f"--power-cut-after={budget}"] if budget is not None else []
        console = rig.boot(broker_port, *options)
        # Sent, acknowledged and deleted within a second or two of the boot, unless cut.
        seen = Watch()
        if budget is not None and budget < 10**9:
            seen = rig.watch(console, "a line that never comes", timeout=6, must_match=False)
        arrived = observer.arrivals(settle=1.0)
        if not seen.ended:
            console.command("flashcut count")
            more = rig.watch(console, r"flashcut: \d+ bytes in", timeout=5)
            seen.writes += more.writes
            seen.ended = more.ended
            if more.ended:  # a slow boot: the cut came late
                arrived += observer.arrivals(settle=1.0)
            else:
                device.close()
        cut = seen if seen.ended else None
        return seen, cut, arrived

    # Measure: what queueing 4 messages offline writes, and what sending and deleting them does.
    _, save_writes, _ = offline_publish(4, 10**9)
    device.close()
    assert len(queued) == 4
    per_save = sum(n for n, _, _ in save_writes) / 4
    deleting, _, arrived = online(10**9)
    assert sorted(arrived) == sorted(queued), arrived
    forbidden |= set(arrived)
    per_delete = sum(n for n, _, _ in deleting.writes) / 4
    print(f"queueing 4 messages writes {[n for n, _, _ in save_writes]}; "
          f"sending them, {[n for n, _, _ in deleting.writes]}")
    assert per_save > 0 and per_delete > 0

    # Cut points as fractions of each phase's bytes, a low-discrepancy sequence: any run of
    # cycles covers 0..1 evenly. A phase that writes less than its budget has no cut; the
    # cycles go on until enough cuts have landed.
    cuts = collections.Counter()
    landed = []
    duplicates = 0
    for i in range(OUTBOX_CUTS * 2):
        if sum(cuts.values()) >= OUTBOX_CUTS:
            break
        save_fraction, delete_fraction = (i * 0.618034) % 1, (0.5 + i * 0.381966) % 1
        # Records written: 1 to 4 new messages (fewer while old ones wait), cut somewhere in
        # their writes.
        pending = len([p for p in queued if observer.count[p] == 0])
        count = max(1, 4 - pending)
        budget = round(save_fraction * per_save * count)
        before = len(queued)
        restored, writes, cut = offline_publish(count, budget)
        if cut is not None:
            cuts["while writing"] += 1
            landed.append(("write", budget, *cut.cut))
        else:
            device.close()
        # Records deleted: sent, acknowledged, deleted; cut somewhere in the deletes.
        pending = len([p for p in queued if observer.count[p] == 0])
        expected = max(restored + len(queued) - before, pending, 1)
        budget = round(delete_fraction * per_delete * expected)
        seen, cut, arrived = online(budget)
        again = [p for p in arrived if p in forbidden]
        assert not again, f"acknowledged and deleted, yet sent again after a cut: {again}"
        duplicates += len([p for p in arrived if observer.count[p] > 1])
        deleted = name_deletes(seen)
        assert deleted <= len(arrived), (deleted, arrived)
        forbidden |= set(arrived[:deleted])
        if cut is not None:
            cuts["while deleting"] += 1
            landed.append(("delete", budget, *cut.cut))
        else:
            forbidden |= set(arrived)  # no cut: every record of this boot was deleted

    # A last boot without a cut sends whatever is left.
    _, _, arrived = online(None)
    again = [p for p in arrived if p in forbidden]
    assert not again, f"acknowledged and deleted, yet sent again after a cut: {again}"
    lost = [p for p in queued if observer.count[p] == 0]
    observer.sub.close()
    print(f"{sum(cuts.values())} cuts in the outbox's writes {dict(cuts)}; {len(queued)} "
          f"messages queued, {len(forbidden)} checked not to come again once deleted, "
          f"{duplicates} sent twice (acknowledged, record not yet deleted at "
          f"the cut), boots {rig.boots}; cuts (phase, budget, write #, bytes of it written, "
          f"its length): {landed}")
    assert not lost, f"queued, then lost: {lost}"
    assert sum(cuts.values()) >= OUTBOX_CUTS
