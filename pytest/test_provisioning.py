# SPDX-License-Identifier: Apache-2.0
"""Run-time provisioning through the shell (`cred`), as an operator on the bench does it:
base64 DER lines, checked, staged, committed as one record in flash, used from the next
connection on and after a reboot. Certificates come from the project's certs/mkcerts."""

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CLIENT_ID, DEV_CERTS, Broker, Console, mkcerts

LINE = 48  # base64 characters per `cred data` line


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(console: Console, kind: str, der: bytes) -> None:
    console.command(f"cred begin {kind}")
    console.until(f"upload of {kind} open", timeout=5)
    text = base64.b64encode(der).decode()
    for start in range(0, len(text), LINE):
        console.command(f"cred data {text[start:start + LINE]}")
        console.until(rf"{kind}: \d+ bytes so far", timeout=5)
    console.command("cred end")


def connected(device) -> None:
    device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=30)


def cred_list(console: Console) -> dict:
    console.command("cred list")
    return {kind: console.until(f"^{kind}: (.*)$", timeout=10).group(1).strip()
            for kind in ("ca", "cert", "key")}


@pytest.fixture()
def fleet_ca(tmp_path) -> Path:
    """A second CA with a broker and a device certificate (same client id) of its own."""
    new = tmp_path / "fleet-ca-2"
    mkcerts("ca", "--out", str(new), "--cn", "Fleet CA 2")
    mkcerts("broker", "--out", str(new), "--ca-dir", str(new))
    mkcerts("device", CLIENT_ID, "--out", str(new), "--ca-dir", str(new))
    return new


def test_new_ca_and_device_certificate_are_used_from_the_next_connection_and_after_reboot(
        tmp_path, broker, broker_port, device, fleet_ca):
    device.launch()
    connected(device)
    console = Console(device)
    upload(console, "ca", (fleet_ca / "ca.crt.der").read_bytes())
    console.until("ca staged", timeout=10)
    upload(console, "cert", (fleet_ca / "device.crt.der").read_bytes())
    console.until("cert staged", timeout=10)
    upload(console, "key", (fleet_ca / "device.key.der").read_bytes())
    console.until("key staged", timeout=10)
    console.command("cred commit")
    console.until(r"stored; used from the next connection on", timeout=10)

    listed = cred_list(console)
    assert listed["ca"].startswith("provisioned, ") and sha256(fleet_ca / "ca.crt.der") in listed["ca"]
    assert sha256(fleet_ca / "device.crt.der") in listed["cert"]
    assert listed["key"].endswith("(public key)")
    assert sha256(fleet_ca / "device.key.der") not in listed["key"]

    # The broker moves to the new CA. Only a device that now trusts that CA and presents a
    # certificate from it gets in (the broker requires one from its own CA).
    broker.stop()
    rotated = Broker(broker_port, tmp_path / "broker-rotated", certs=fleet_ca).start()
    try:
        device.readlines_until(regex=r"credentials: new set in use \(mutual TLS: true\)", timeout=30)
        connected(device)
        assert "New client connected from 127.0.0.1" in rotated.log()

        # Reboot: the stored set is applied at boot, before the first connection.
        device.close()
        device.launch()
        device.readlines_until(regex=r"credentials: ca from the provisioned", timeout=10)
        device.readlines_until(regex=r"credentials: cert from the provisioned", timeout=5)
        connected(device)
    finally:
        rotated.stop()


def add_root(console: Console, der: bytes) -> None:
    console.command("cred add ca")
    console.until("upload of ca open", timeout=5)
    text = base64.b64encode(der).decode()
    for start in range(0, len(text), LINE):
        console.command(f"cred data {text[start:start + LINE]}")
        console.until(r"ca: \d+ bytes so far", timeout=5)
    console.command("cred end")


def test_a_bundle_of_two_roots_trusts_a_broker_of_either(tmp_path, broker, broker_port, device):
    # A new root X first, the image's CA second: the broker now signed by the image's CA is
    # still trusted through the bundle's second root, and the broker moved to X through its
    # first. Clients are still checked against the image's CA by both brokers.
    root_x = tmp_path / "root-x"
    mkcerts("ca", "--out", str(root_x), "--cn", "Fleet Root X")
    mkcerts("broker", "--out", str(root_x), "--ca-dir", str(root_x))
    moved = tmp_path / "broker-of-x"
    shutil.copytree(DEV_CERTS, moved)
    for name in ("broker.crt.pem", "broker.key.pem"):
        shutil.copy(root_x / name, moved / name)

    device.launch()
    connected(device)
    console = Console(device)
    upload(console, "ca", (root_x / "ca.crt.der").read_bytes())
    console.until("ca staged", timeout=10)
    add_root(console, (DEV_CERTS / "ca.crt.der").read_bytes())
    console.until("ca staged", timeout=10)
    console.command("cred commit")
    console.until(r"stored; used from the next connection on", timeout=10)
    console.command("cred list")
    first = console.until(r"^ca: provisioned, \d+ bytes, sha256 ([0-9a-f]{64})", timeout=10)
    second = console.until(r"^ca 2: provisioned, \d+ bytes, sha256 ([0-9a-f]{64})", timeout=10)
    assert first.group(1) == sha256(root_x / "ca.crt.der")
    assert second.group(1) == sha256(DEV_CERTS / "ca.crt.der")

    # The next connection uses the bundle: the image's CA is now its second root.
    broker.stop()
    again = Broker(broker_port, tmp_path / "broker-again").start()
    try:
        device.readlines_until(regex=r"credentials: ca from the provisioned \(\d+ bytes, 2 root",
                               timeout=30)
        connected(device)
    finally:
        again.stop()
    # The broker moves to root X: trusted through the bundle's first root.
    rotated = Broker(broker_port, tmp_path / "broker-rotated", certs=moved).start()
    try:
        device.readlines_until(regex=r"tls: connected to localhost", timeout=60)
        connected(device)
        assert "New client connected from 127.0.0.1" in rotated.log()
    finally:
        rotated.stop()


def test_malformed_input_is_refused_with_a_reason_and_changes_nothing(broker, device):
    device.launch()
    connected(device)
    console = Console(device)
    before = cred_list(console)
    assert before["ca"].startswith("image, ") and sha256(DEV_CERTS / "ca.crt.der") in before["ca"]

    console.command("cred begin ca")
    console.command("cred data not.base64")
    console.until("cred: not base64: a character outside the alphabet; upload dropped", timeout=5)

    upload(console, "ca", b"an X.509 certificate this is not")
    console.until(r"cred: not an X.509 certificate \(DER\)", timeout=10)

    upload(console, "cert", (DEV_CERTS / "observer.crt.der").read_bytes())
    console.until("cert staged", timeout=10)  # a certificate, but not for the device's key
    console.command("cred commit")
    console.until("cred: the device key does not match the device certificate", timeout=10)
    console.command("cred abort")
    console.until("upload and staged changes dropped; stored set unchanged", timeout=5)

    console.command("cred begin ca")
    for _ in range(56):  # 36 bytes a line: 2016 bytes fit, the 57th line does not
        console.command("cred data " + "QUJD" * 12)
        console.until(r"ca: \d+ bytes so far", timeout=5)
    console.command("cred data " + "QUJD" * 12)
    console.until(r"cred: too large for this credential; upload dropped \(limit 2048 bytes\)",
                  timeout=10)

    console.command("cred commit")
    console.until("cred: nothing staged", timeout=5)
    assert cred_list(console) == before

    # Nothing reached flash: after a reboot the image's credentials are used, and work.
    device.close()
    device.launch()
    device.readlines_until(regex=r"credentials: ca from the image", timeout=10)
    connected(device)


def test_a_device_without_a_client_certificate_is_refused_and_keeps_retrying(
        tmp_path, broker, broker_port, device):
    device.launch()
    connected(device)
    console = Console(device)
    console.command("cred delete cert")
    console.until("cert deletion staged", timeout=5)
    console.command("cred delete key")
    console.until("key deletion staged", timeout=5)
    console.command("cred commit")
    console.until("used from the next connection on", timeout=10)
    listed = cred_list(console)
    assert listed["cert"] == "none (deleted)" and listed["key"] == "none (deleted)"

    broker.stop()  # the next connection is the first without a client certificate
    again = Broker(broker_port, tmp_path / "broker-again").start()
    try:
        device.readlines_until(regex=r"credentials: new set in use \(mutual TLS: false\)", timeout=30)
        for _ in range(2):
            device.readlines_until(
                regex="this device has no client certificate, which the broker may require",
                timeout=60)
            device.readlines_until(regex="reconnecting in [0-9]+ ms", timeout=10)
        assert device.is_device_running()
        assert "New client connected" not in again.log()
    finally:
        again.stop()


def read_pem(console: Console, label: str) -> str:
    """A PEM block the shell prints, from its BEGIN line to its END line."""
    console.until(f"-----BEGIN {label}-----", timeout=30)
    body = []
    while not (line := console.until(r"^([A-Za-z0-9+/=]+|-----END [A-Z ]+-----)\s*$",
                                     timeout=5).group(1)).startswith("-----END"):
        body.append(line)
    assert line == f"-----END {label}-----"
    return "\n".join([f"-----BEGIN {label}-----", *body, line, ""])


def openssl(*args, stdin: bytes = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True)
    return done.stdout


# PKCS#8 of a P-256 key up to its private scalar (RFC 5208 and RFC 5915; `cred keygen`'s
# record, 138 bytes): the scalar follows it.
PKCS8_P256_HEAD = bytes.fromhex(
    "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420")


def test_a_key_made_on_the_device_gets_a_certificate_from_its_request_and_connects_with_it(
        tmp_path, broker, device):
    device.launch()
    connected(device)
    console = Console(device)
    console.command("cred keygen")
    fingerprint = console.until(r"key made on the device \(ECDSA P-256, public key sha256 "
                                r"([0-9a-f]{64})\) and staged", timeout=30).group(1)
    console.command("cred csr")
    request = tmp_path / "device.csr"
    request.write_text(read_pem(console, "CERTIFICATE REQUEST"))

    # openssl checks the request's signature with the key it carries (3.0 exits 0 either way:
    # its words decide), and reads its subject.
    verified = subprocess.run(["openssl", "req", "-in", str(request), "-verify", "-noout"],
                              capture_output=True, text=True)
    assert verified.returncode == 0 and "verify OK" in verified.stdout + verified.stderr
    subject = openssl("req", "-in", str(request), "-noout", "-subject", "-nameopt", "RFC2253")
    assert subject.decode().strip() == f"subject=CN={CLIENT_ID}"
    spki = openssl("pkey", "-pubin", "-outform", "DER",
                   stdin=openssl("req", "-in", str(request), "-noout", "-pubkey"))
    assert hashlib.sha256(spki).hexdigest() == fingerprint

    # The private key is in the device's flash, nowhere else: the record there is the key of
    # the request's public key.
    flash = (tmp_path / "flash.bin").read_bytes()
    at = flash.find(PKCS8_P256_HEAD)
    assert at >= 0, "no P-256 PKCS#8 key record in the device's flash"
    key = flash[at:at + 138]
    assert openssl("pkey", "-inform", "DER", "-pubout", "-outform", "DER", stdin=key) == spki

    # The CA signs the request; the certificate goes back by upload, as a CA's reply would.
    certificate = tmp_path / "device.crt.der"
    subprocess.run(["openssl", "x509", "-req", "-in", str(request),
                    "-CA", str(DEV_CERTS / "ca.crt.pem"), "-CAkey", str(DEV_CERTS / "ca.key.pem"),
                    "-set_serial", "0x" + os.urandom(8).hex(), "-days", "2",
                    "-outform", "DER", "-out", str(certificate)], check=True,
                   capture_output=True)
    upload(console, "cert", certificate.read_bytes())
    console.until("cert staged", timeout=10)
    console.command("cred commit")
    console.until(r"stored; used from the next connection on", timeout=10)
    listed = cred_list(console)
    assert listed["key"] == f"provisioned, 138 bytes, sha256 {fingerprint} (public key)"
    assert sha256(certificate) in listed["cert"]

    # From the next boot on the device is known by its own key: the broker requires a client
    # certificate from the CA, and the image's key is not this one.
    device.close()
    device.launch()
    device.readlines_until(regex=r"credentials: cert from the provisioned", timeout=10)
    device.readlines_until(regex=r"credentials: key from the provisioned \(138 bytes\)",
                           timeout=5)
    connected(device)
