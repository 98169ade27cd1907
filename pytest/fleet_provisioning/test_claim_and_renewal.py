# SPDX-License-Identifier: Apache-2.0
"""Certificates over MQTT, end to end: an image whose only identity is the batch's claim
certificate gets its own from certs/signer (AWS IoT's fleet-provisioning topics, against a
real Mosquitto), commits it only after connecting with it, renews it before it expires, and
keeps it across a reboot; a refusal is named and retried.

Runs on an image built with fleet provisioning and a credentials directory holding the CA and
the claim pair, as scripts/test builds it:

    certs/mkcerts device claim-batch-1 --out build/fleet-creds/claim --ca-dir certs/dev-only-insecure
    cp certs/dev-only-insecure/ca.crt.der build/fleet-creds/
    cp certs/dev-only-insecure/ca.crt.der build/fleet-creds/device-ca.crt.der
    cp build/fleet-creds/claim/device.crt.der build/fleet-creds/claim.crt.der
    cp build/fleet-creds/claim/device.key.der build/fleet-creds/claim.key.der
    west build -b native_sim/native/64 -d build/native_sim_fleet . -- \\
        -DAPP_CERTS_DIR=build/fleet-creds \\
        -DEXTRA_CONF_FILE=pytest/fleet_provisioning/test.conf
"""

import base64
import collections
import hashlib
import json
import random
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import (CLIENT_ID, DEV_CERTS, DEVICE_TOPICS, REPO, Broker, Console, Peer,
                      Subscription, mkcerts)
from test_power_cut import SEED, Rig, arm
from test_provisioning import PKCS8_P256_HEAD, cred_list

TEMPLATE = "secure-mqtt-fleet"
CLAIM = "claim-batch-1"
# Issued for 30 s (and, like AWS IoT, valid from a minute before): renewal is due at 80 % of
# those 90 s (test.conf), 12 s after issue.
LIFETIME = "30s"
CREATE_FROM_CSR = "$aws/certificates/create-from-csr/json"
KEY_RECORD = 138  # PKCS#8 of a P-256 key
INDEX_RECORD = 28  # the credential index (crates/provisioning/src/store.rs)
# Aims at one write of a renewal, if a garbage collection takes the cut before it.
AIM_TRIES = 5


class Signer:
    """certs/signer on the test's broker (run by its own interpreter, the system Python with
    Debian's paho-mqtt), its output read line by line."""

    def __init__(self, port: int, allowed: list, run_dir: Path, *options: str):
        run_dir.mkdir(parents=True, exist_ok=True)
        allow_list = run_dir / "allow-list"
        allow_list.write_text("".join(f"{name}\n" for name in allowed))
        self.process = subprocess.Popen(
            [str(REPO / "certs" / "signer"), "--port", str(port),
             "--template", TEMPLATE, "--allow-list", str(allow_list), "--lifetime", LIFETIME,
             *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.seen = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        self.until(r"signer: ready", timeout=20)

    def _pump(self) -> None:
        for line in self.process.stdout:
            with self.seen:
                self.lines.append(line.rstrip())
                self.seen.notify_all()

    def until(self, regex: str, timeout: float, start: int = 0) -> int:
        """The index of the first line from `start` on that matches."""
        pattern = re.compile(regex)
        with self.seen:
            found = self.seen.wait_for(
                lambda: next((i for i in range(start, len(self.lines))
                              if pattern.search(self.lines[i])), None) is not None,
                timeout=timeout)
            assert found, f"signer never said {regex!r}; it said:\n" + "\n".join(self.lines)
            return next(i for i in range(start, len(self.lines)) if pattern.search(self.lines[i]))

    def count(self, regex: str) -> int:
        with self.seen:
            return sum(1 for line in self.lines if re.search(regex, line))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(5)


@pytest.fixture()
def signer(broker, tmp_path):
    s = Signer(broker.port, [CLIENT_ID], tmp_path / "signer")
    yield s
    s.stop()
    print("\n".join(s.lines))


def connections_as(broker, username: str) -> int:
    """Connections the broker accepted with this certificate CN as user name."""
    return len(re.findall(rf"New client connected .* u'{re.escape(username)}'", broker.log()))


def spki_of(pem: str, kind: str) -> bytes:
    """The SubjectPublicKeyInfo (DER) of a certificate (`x509`) or a request (`req`)."""
    public = subprocess.run(["openssl", kind, "-noout", "-pubkey"], input=pem.encode(),
                            capture_output=True, check=True).stdout
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=public,
                          capture_output=True, check=True).stdout


def key_records(flash: bytes) -> list:
    """Every P-256 PKCS#8 key record in the flash, current or left over from a replaced one."""
    keys, at = [], flash.find(PKCS8_P256_HEAD)
    while at >= 0:
        keys.append(flash[at:at + KEY_RECORD])
        at = flash.find(PKCS8_P256_HEAD, at + 1)
    return keys


def everything(port: int) -> Subscription:
    """Every message on the broker, the provisioning API's included, once it is subscribed."""
    sub = Subscription(["mosquitto_sub", *Peer(port).tls_args(), "-t", "#", "-t", "$aws/#",
                        "-v", "-q", "1"])
    marker = f"test/ready {uuid.uuid4().hex}"
    deadline = time.monotonic() + 10
    while marker not in sub.seen:
        assert time.monotonic() < deadline, "the observer never subscribed"
        Peer(port).publish(*marker.split(" "))
        sub.wait_for_all({marker}, timeout=1)
    return sub


def publish_numbered(console: Console, numbers) -> set:
    """`mqtt pub` of numbered QoS 1 messages; the lines the observer must receive."""
    expected = set()
    for n in numbers:
        _, outcome, answer = console.pub(f"{DEVICE_TOPICS}/seq", f"n{n}")
        assert outcome != "rejected", answer
        expected.add(f"{DEVICE_TOPICS}/seq n{n}")
    return expected


def test_a_claimed_device_gets_commits_renews_and_keeps_its_own_certificate(
        broker, signer, device, tmp_path):
    observer = everything(broker.port)
    device.launch()
    device.readlines_until(regex="fleet: connected with the claim certificate", timeout=30)
    device.readlines_until(regex="fleet: new key made and staged; sending its certificate request",
                           timeout=30)
    signer.until(rf"signer: issued \w+ to {CLIENT_ID}", timeout=30)
    device.readlines_until(regex="fleet: certificate [0-9a-f]+ issued for this device's key",
                           timeout=30)
    device.readlines_until(regex=f"fleet: registered as thing {CLIENT_ID}", timeout=30)
    device.readlines_until(regex="fleet: connecting with the new certificate before committing",
                           timeout=30)
    device.readlines_until(regex=r"credentials: cert from the provisioned", timeout=30)
    device.readlines_until(regex="fleet: new certificate committed", timeout=30)
    # Its own identity now: the broker knows it by its client id, and its commands flow.
    device.readlines_until(regex="mqtt: subscribed .*granted QoS 1", timeout=30)
    assert connections_as(broker, CLAIM) >= 1
    assert connections_as(broker, CLIENT_ID) >= 1
    console = Console(device)
    first = cred_list(console)["cert"]
    assert first.startswith("provisioned, ")

    # Renewal: due 12 s after issue; a new key, a new certificate, tried, then committed.
    # Messages published before, during and after it all arrive.
    expected = publish_numbered(console, range(0, 10))
    console.until("fleet: new key made and staged", timeout=60)
    expected |= publish_numbered(console, range(10, 20))
    console.until("fleet: new certificate committed", timeout=30)
    expected |= publish_numbered(console, range(20, 25))
    assert signer.count(rf"signer: issued \w+ to {CLIENT_ID}") >= 2
    renewed = cred_list(console)
    assert renewed["cert"].startswith("provisioned, ") and renewed["cert"] != first
    missing = observer.wait_for_all(expected, timeout=30)
    assert not missing, f"published around the renewal, never arrived: {sorted(missing)}"

    # Every certificate issued certifies a key the device asked for, and the key in use is
    # the last one's; the private keys stay in the device's flash: not in its output nor on
    # any topic.
    lines = list(observer.seen)
    requests = [json.loads(line.split(" ", 1)[1])["certificateSigningRequest"]
                for line in lines if line.startswith(CREATE_FROM_CSR + " ")]
    issued = [json.loads(line.split(" ", 1)[1])["certificatePem"]
              for line in lines if line.startswith(CREATE_FROM_CSR + "/accepted ")]
    assert len(requests) >= 2 and len(issued) >= 2
    asked = {spki_of(pem, "req") for pem in requests}
    assert all(spki_of(pem, "x509") in asked for pem in issued)
    assert hashlib.sha256(spki_of(issued[-1], "x509")).hexdigest() in renewed["key"]
    keys = key_records((tmp_path / "flash.bin").read_bytes())
    assert keys, "no P-256 key record in the device's flash"
    output = (Path(device.device_config.build_dir) / "handler.log").read_text(errors="replace")
    seen = (output + "\n".join(lines)).lower()
    for key in keys:
        scalar = key[len(PKCS8_P256_HEAD):len(PKCS8_P256_HEAD) + 32]
        for text in (scalar.hex(), base64.b64encode(scalar).decode(),
                     base64.b64encode(key).decode()[:40]):
            assert text.lower() not in seen, "a private key of the device appeared outside it"
    observer.close()

    # After a reboot the device starts with its own certificate, not the claim one.
    claim_connections = connections_as(broker, CLAIM)
    device.close()
    device.launch()
    device.readlines_until(regex=r"credentials: cert from the provisioned", timeout=10)
    device.readlines_until(regex="mqtt: subscribed .*granted QoS 1", timeout=30)
    assert connections_as(broker, CLAIM) == claim_connections


# A signer that answers a renewal wrongly, and what the device must say of it: a certificate
# for another key is someone else's (ignored), so the request goes unanswered.
FAULTS = {
    "other-key": r"the certificate request got no reply in time",
    "other-cn": r"the issued certificate's common name is not the client id",
    "expired": r"the issued certificate expired \d+ s ago",
    "silent": r"the certificate request got no reply in time",
    "other-ca": r"the issued certificate does not verify against the device CA",
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_renewal_answered_wrongly_keeps_the_certificate_in_use_and_is_tried_again(
        broker, tmp_path, device, fault):
    good = Signer(broker.port, [CLIENT_ID], tmp_path / "good")
    try:
        device.launch()
        device.readlines_until(regex="fleet: new certificate committed", timeout=30)
        device.readlines_until(regex="mqtt: subscribed .*granted QoS 1$", timeout=30)
    finally:
        good.stop()
    console = Console(device)
    in_use = cred_list(console)["cert"]
    if fault == "other-ca":
        other = tmp_path / "other-ca"
        mkcerts("ca", "--out", str(other), "--cn", "Not The Device CA")
        options = ["--certs", str(other), "--client-cert", str(DEV_CERTS / "observer.crt.pem"),
                   "--client-key", str(DEV_CERTS / "observer.key.pem"),
                   "--broker-ca", str(DEV_CERTS / "ca.crt.pem")]
    else:
        options = ["--fault", fault]
    wrong = Signer(broker.port, [CLIENT_ID], tmp_path / "wrong", *options)
    try:
        console.until(rf"fleet: {FAULTS[fault]}; trying again later \(failure 1 in a row\)",
                      timeout=60)
        assert wrong.count(rf"signer: issued \w+ to {CLIENT_ID}|signer: fault: no answer") >= 1
        # Rolled back: the certificate in use and nothing staged; it keeps publishing.
        listed = cred_list(console)
        assert listed["cert"] == in_use
        state = console.until(r"^(in use|staged changes not committed|stored; .*)$", timeout=10)
        assert state.group(1) == "in use", f"after the fault: {state.group(1)}"
        _, outcome, answer = console.pub(f"{DEVICE_TOPICS}/seq", "after-the-fault")
        assert outcome != "rejected", answer
    finally:
        wrong.stop()
    # Tried again on schedule: with a signer that answers right, the renewal commits.
    good = Signer(broker.port, [CLIENT_ID], tmp_path / "good-again")
    try:
        console.until("fleet: new certificate committed", timeout=60)
        assert cred_list(console)["cert"] != in_use
    finally:
        good.stop()


def test_a_revoked_device_is_refused_by_the_broker_and_says_so(broker, signer, device,
                                                              tmp_path):
    """The end of a device's life: its certificate revoked (certs/mkcerts revoke, the CA's
    revocation list given to the broker), the broker refuses it and its log says so."""
    observer = everything(broker.port)
    device.launch()
    device.readlines_until(regex="fleet: new certificate committed", timeout=30)
    device.readlines_until(regex="mqtt: subscribed .*granted QoS 1$", timeout=30)
    while not (line := observer.next_line(timeout=10)).startswith(CREATE_FROM_CSR + "/accepted "):
        pass
    observer.close()
    own = tmp_path / "own.crt.pem"
    own.write_text(json.loads(line.split(" ", 1)[1])["certificatePem"])
    ca = tmp_path / "ca"
    ca.mkdir()
    for name in ("ca.crt.pem", "ca.key.pem"):
        (ca / name).write_bytes((DEV_CERTS / name).read_bytes())
    subprocess.run([str(REPO / "certs" / "mkcerts"), "revoke", str(own), "--ca-dir", str(ca)],
                   check=True, capture_output=True)
    broker.stop()
    revoking = Broker(broker.port, tmp_path / "revoking",
                      conf_lines=(f"crlfile {ca / 'crl.pem'}",)).start()
    try:
        device.readlines_until(
            regex=r"broker closed the connection before CONNACK; it may refuse this device's "
                  r"certificate \(revoked, expired, or from a CA it does not trust\)", timeout=30)
        assert "certificate verify failed" in revoking.log()
        # Refused, not given up: it tries again, on the slow schedule of refusals.
        device.readlines_until(regex=r"reconnecting in \d+ ms", timeout=10)
    finally:
        revoking.stop()
        print(revoking.log())


def test_a_refused_request_is_named_and_tried_again(broker, tmp_path, device):
    # The signer allows another client id only: this device's request is refused.
    s = Signer(broker.port, ["someone-else"], tmp_path / "signer")
    try:
        device.launch()
        device.readlines_until(
            regex=r"fleet: the certificate request was refused with status 403 \(NotAllowed\): .*not on the signer's allow-list.*"
                  r"trying again later \(failure 1 in a row\)", timeout=30)
        device.readlines_until(regex=r"refused .*trying again later \(failure 2 in a row\)",
                               timeout=30)
        assert s.count(r"signer: refused on .*create-from-csr") >= 2
    finally:
        s.stop()
        print("\n".join(s.lines))


def test_a_certificate_from_another_ca_than_the_device_ca_is_refused_and_tried_again(
        broker, tmp_path, device):
    """A signer whose CA is not the device CA the image was built with (device-ca.crt.der):
    its certificate, for the device's own key and name, is refused before it is staged."""
    other = tmp_path / "other-ca"
    mkcerts("ca", "--out", str(other), "--cn", "Not The Device CA")
    s = Signer(broker.port, [CLIENT_ID], tmp_path / "signer", "--certs", str(other),
               "--client-cert", str(DEV_CERTS / "observer.crt.pem"),
               "--client-key", str(DEV_CERTS / "observer.key.pem"),
               "--broker-ca", str(DEV_CERTS / "ca.crt.pem"))
    try:
        device.launch()
        device.readlines_until(
            regex=r"fleet: the issued certificate does not verify against the device CA; "
                  r"trying again later \(failure 1 in a row\)", timeout=30)
        device.readlines_until(regex=r"does not verify against the device CA; trying again "
                                     r"later \(failure 2 in a row\)", timeout=30)
        assert s.count(rf"signer: issued \w+ to {CLIENT_ID}") >= 2
        assert s.count("signer: registered") == 0
    finally:
        s.stop()
        print("\n".join(s.lines))


def renewal_anchors(lengths: list) -> list:
    """For each write of a counted renewal, the write its cut is counted from, as the hook
    takes it (`len=N`, `len>=N`: the next write of that length), and that write's place.
    NVS writes each record's data, its CRC and its entry; settings writes a value, then its
    name, and sometimes first a name id counter (2 bytes), so a renewal's writes differ from
    one to the next. Every write is counted from a record of its own stretch: the first
    counter's from the next 2-byte write; up to the certificate, from the key (PKCS#8, 138
    bytes); up to the index, from the certificate (the only write over 200 bytes, whose
    length varies by a byte or two); the rest, from the index (28)."""
    key = lengths.index(KEY_RECORD)
    certificate = next(i for i in range(key + 1, len(lengths)) if lengths[i] > 200)
    index = lengths.index(INDEX_RECORD, certificate)
    stretches = [(0, ("len=2", 0)), (key, (f"len={KEY_RECORD}", key)),
                 (certificate, ("len>=200", certificate)),
                 (index, (f"len={INDEX_RECORD}", index))]
    return [next(anchor for start, anchor in reversed(stretches) if start <= t)
            for t in range(len(lengths))]


def same_writes(got: list, counted: list) -> bool:
    """Whether writes are those counted, by their lengths (a certificate's, over 200 bytes,
    varies by a byte or two from one issue to the next)."""
    return len(got) == len(counted) and all(
        a == b or (a > 200 and b > 200) for a, b in zip(got, counted))


def what_write(lengths: list, t: int) -> str:
    """What write `t` of a renewal is, in words."""
    key = lengths.index(KEY_RECORD)
    certificate = next(i for i in range(key + 1, len(lengths)) if lengths[i] > 200)
    index = lengths.index(INDEX_RECORD, certificate)
    if t >= index + 3:
        return f"deletion {t - index - 2} of the old records"
    record = t - t % 3
    name = {key: "key", key + 3: "key's name", certificate: "certificate",
            certificate + 3: "certificate's name", index: "index"}.get(record, "name id counter")
    return f"{name}, {('data', 'its CRC', 'entry')[t - record]}"


@pytest.fixture()
def quick_signer(broker, tmp_path):
    """A signer whose certificates are due for renewal 4 s after issue (20 s, valid from a
    minute before: 80 % of 80 s), so that the renewals the cuts land in come quickly."""
    s = Signer(broker.port, [CLIENT_ID], tmp_path / "signer", "--lifetime", "20s")
    yield s
    s.stop()


def test_a_power_cut_in_any_write_of_a_renewal_leaves_a_set_that_connects(
        broker, quick_signer, device, tmp_path):
    """A power cut (the flash's own, as in test_power_cut.py: the write torn, the process
    killed) in every write of a renewal: the new key's, the new certificate's, their names',
    the index's that commits them, and the first two of the old records' deletions. The boot after each must
    connect with a certificate the signer issued to this device (the new one once the index
    is whole, else the old one), never the claim one, and the next renewal must commit."""
    rng = random.Random(SEED)
    print(f"seed {SEED} (POWER_CUT_SEED={SEED} replays it)")
    rig = Rig(device, tmp_path)
    console = rig.boot(broker.port)
    assert rig.watch(console, "fleet: new certificate committed", timeout=60).match

    # One renewal counted, not cut: the writes to aim at.
    arm(console, 10**9, rng.randrange(1, 2**31))
    counted = rig.watch(console, "fleet: new certificate committed", timeout=60)
    assert counted.match and not counted.ended
    lengths = [length for length, _, _ in counted.writes]
    anchors = renewal_anchors(lengths)
    print(f"a renewal writes {sum(lengths)} bytes in {len(lengths)} writes: "
          f"{list(zip(lengths, counted.kinds))}")
    key = lengths.index(KEY_RECORD)
    certificate = next(i for i in range(key + 1, len(lengths)) if lengths[i] > 200)
    # The certificate's writes (its name id counter's first, if any) come after its issue.
    issued_by = certificate - 3 if lengths[certificate - 3] == 2 else certificate
    # The index's entry is the commit: a cut up to it leaves the old set, after it the new.
    commit = lengths.index(INDEX_RECORD, certificate) + 2
    # Every write up to the index's entry, and the first two deletions: how many old records
    # a renewal deletes varies (the later ones are not always there to aim at).
    targets = range(min(len(lengths), commit + 3))
    hit = set()
    for t in [t for t in targets for _ in range(AIM_TRIES)]:
        if t in hit:
            continue
        anchor, at = anchors[t]
        arm(console, sum(lengths[at:t]) + rng.randrange(lengths[t]), rng.randrange(1, 2**31),
            anchor)
        # The write aimed at may come in a later renewal (a name id counter is not written
        # by every one).
        seen = None
        for _ in range(3):
            seen = rig.watch(console, "fleet: new certificate committed", timeout=60,
                             must_match=False, seen=seen)
            if seen.ended:
                break
        assert seen.ended, f"the cut aimed at write {t} ({what_write(lengths, t)}) did not come"
        # NVS's garbage collection (an erase, copies) can come between and take the cut:
        # the boot after it is checked all the same, and the aim is tried again.
        got = [length for length, _, _ in seen.writes]
        cut = len(got) - 1
        starts = [i for i, length in enumerate(got)
                  if (length >= 200 if anchor == "len>=200" else
                      length == int(anchor.split("=")[1]))]
        start = starts[0] if starts else -1
        landed = start >= 0 and cut - start == t - at and \
            same_writes(got[start:cut + 1], lengths[at:t + 1])
        if landed:
            hit.add(t)
        # Issued by the cut (the boot after it may start the next renewal at once).
        at_cut = re.findall(r"signer: issued (\w+) to", "\n".join(quick_signer.lines))
        console = rig.boot(broker.port)
        origin = rig.watch(console, r"credentials: cert from the (provisioned|image)", timeout=30)
        assert origin.match and origin.match.group(1) == "provisioned", \
            f"a cut in write {t} ({what_write(lengths, t)}) sent the device back to the claim " \
            f"certificate"
        assert rig.watch(console, "mqtt: subscribed .*granted QoS 1$", timeout=30).match
        in_use = cred_list(console)["cert"]
        # The renewal cut had its certificate issued once its writes reached it: the one in
        # use is then the one before, unless the index was whole.
        expected = at_cut[-1] if t > commit or t < issued_by else at_cut[-2]
        if landed:
            assert f"sha256 {expected}" in in_use, \
                f"after a cut in write {t} ({what_write(lengths, t)}): {in_use}; issued " \
                f"{at_cut}, expected {expected}"
        else:
            assert any(f"sha256 {c}" in in_use for c in at_cut[-2:]), \
                f"after a cut aimed at write {t}: {in_use}; issued {at_cut}"
        print(f"cut in write {t} ({what_write(lengths, t)}): " + (
            f"the boot after it connected with the "
            f"{'new' if t > commit else 'old'} certificate"
            if landed else f"landed elsewhere ({seen.kinds[-1]}); the boot after it connected "
                           f"with a certificate issued to it"))
        # The renewal cut short is done again, whole.
        assert rig.watch(console, "fleet: new certificate committed", timeout=60).match
    assert hit == set(targets), f"cuts never landed in writes {sorted(set(targets) - hit)}"
