# SPDX-License-Identifier: Apache-2.0
"""Broker certificate chains shaped like real deployments, on the image's default TLS profile
(APP_TLS_PROFILE_INTEROP): an RSA-4096 root with an RSA-2048 intermediate (Let's Encrypt RSA,
Amazon's roots, an OpenSSL-made CA), a P-384 root with a P-384 intermediate (ISRG Root X2),
and an RSA chain with a P-256 device certificate. The broker sends the intermediate; the device
trusts only the root. Each over TLS 1.3 (Mosquitto) and TLS 1.2 (a Python TLS terminator that
offers nothing newer, in front of a plain Mosquitto: Mosquitto's tls_version is a minimum).

The image carries the P-256 development set; each test provisions its chain's root and device
certificate through `cred`, as an operator would, instead of one build per certificate set.
Certificates come from certs/mkcerts."""

import base64
import re
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import CLIENT_ID, Broker, Console, mkcerts
from test_provisioning import upload
from test_tls_resumption import Terminator, plain_mosquitto  # noqa: F401 (fixture)

SHAPES = {
    # name: mkcerts all options
    "rsa4096-root-rsa2048-intermediate-and-leaves": [
        "--ca-key-type", "rsa4096", "--intermediate-key-type", "rsa2048", "--key-type", "rsa2048"],
    "p384-root-p384-intermediate-p256-leaves": [
        "--ca-key-type", "p384", "--intermediate-key-type", "p384", "--key-type", "p256"],
    "rsa-chain-p256-device": [
        "--ca-key-type", "rsa4096", "--intermediate-key-type", "rsa2048",
        "--broker-key-type", "rsa2048", "--device-key-type", "p256"],
}
SUITES = {
    ("TLSv1.3", "rsa"): r"TLS_AES_(128_GCM_SHA256|256_GCM_SHA384)",
    ("TLSv1.3", "ecdsa"): r"TLS_AES_(128_GCM_SHA256|256_GCM_SHA384)",
    ("TLSv1.2", "rsa"): r"TLS_ECDHE_RSA_WITH_AES_(128_GCM_SHA256|256_GCM_SHA384)",
    ("TLSv1.2", "ecdsa"): r"TLS_ECDHE_ECDSA_WITH_AES_(128_GCM_SHA256|256_GCM_SHA384)",
}


def make_chain(tmp_path: Path, shape: str) -> Path:
    certs = tmp_path / shape
    mkcerts("all", "--out", str(certs), "--intermediate", "--client-id", CLIENT_ID,
            "--no-mosquitto-conf", *SHAPES[shape])
    return certs


def provision(console: Console, certs: Path) -> None:
    """The chain's root as the only CA, and its device certificate and key; committed."""
    for kind, name in (("ca", "ca.crt.der"), ("cert", "device.crt.der"),
                       ("key", "device.key.der")):
        upload(console, kind, (certs / name).read_bytes())
        console.until(f"{kind} staged", timeout=10)
    console.command("cred commit")
    console.until(r"stored; used from the next connection on", timeout=10)
    console.until(r"credentials: new set in use \(mutual TLS: true\)", timeout=30)


def connects(console: Console, port: int, version: str, suite: str) -> str:
    """Waits for the handshake and CONNACK; returns the heap line after the handshake."""
    line = console.until(rf"tls: connected to localhost \((TLSv1\.[23]), (\w+)\)", timeout=60)
    assert line.group(1) == version, line.group(0)
    assert re.fullmatch(suite, line.group(2)), line.group(0)
    heap = console.until(r"tls: heap \d+ bytes in use, peak \d+ of \d+", timeout=5).group(0)
    console.until("mqtt: connected", timeout=30)
    print(f"{line.group(0)}; {heap}")
    return heap


@pytest.fixture()
def quick_device(device):
    """The device with a short reconnect cap: it waits for its broker, which the test starts
    only once the new credentials are committed."""
    device.device_config.extra_test_args += " --reconnect-cap-ms=2000"
    return device


@pytest.mark.parametrize("shape", list(SHAPES))
def test_chain_over_tls_1_3_from_mosquitto(tmp_path, shape, broker_port, quick_device):
    certs = make_chain(tmp_path, shape)
    quick_device.launch()
    console = Console(quick_device)
    console.until(f"connect to localhost:{broker_port} failed", timeout=30)
    provision(console, certs)
    broker = Broker(broker_port, tmp_path / "broker", certs=certs).start()
    try:
        key = "rsa" if shape.startswith("rsa") else "ecdsa"
        connects(console, broker_port, "TLSv1.3", SUITES[("TLSv1.3", key)])
        assert f"as {CLIENT_ID}" in broker.log()
        # A broker restart: the next handshake is a full one while the old session's ticket
        # is still cached, the mbedTLS heap's worst case (prj.conf, APP_TLS_PROFILE).
        broker.stop()
        broker = Broker(broker_port, tmp_path / "broker-restarted", certs=certs).start()
        connects(console, broker_port, "TLSv1.3", SUITES[("TLSv1.3", key)])
    finally:
        broker.stop()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_chain_over_tls_1_2_only(tmp_path, shape, broker_port, plain_mosquitto,  # noqa: F811
                                 quick_device):
    certs = make_chain(tmp_path, shape)
    quick_device.launch()
    console = Console(quick_device)
    console.until(f"connect to localhost:{broker_port} failed", timeout=30)
    provision(console, certs)
    terminator = Terminator(broker_port, plain_mosquitto, ssl.TLSVersion.TLSv1_2, certs=certs)
    try:
        key = "rsa" if shape.startswith("rsa") else "ecdsa"
        connects(console, broker_port, "TLSv1.2", SUITES[("TLSv1.2", key)])
        assert terminator.handshakes and terminator.handshakes[-1][0] == "TLSv1.2"
    finally:
        terminator.stop()


def test_cred_names_the_key_of_a_certificate_this_build_cannot_use(tmp_path, broker, device):
    """RSA below 2048 bits and curves other than P-256/P-384 are refused by name, not as
    "not a certificate"; an RSA-4096 device key is over what `cred` keeps."""
    odd = {}
    for name, newkey in (("rsa1024", ["-newkey", "rsa:1024"]),
                         ("p521", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"])):
        out = tmp_path / f"{name}.crt.der"
        subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=odd",
                        "-keyout", str(tmp_path / f"{name}.key.pem"), "-outform", "DER",
                        "-out", str(out), *newkey], check=True, capture_output=True)
        odd[name] = out.read_bytes()
    rsa4096 = tmp_path / "rsa4096"
    mkcerts("all", "--out", str(rsa4096), "--key-type", "rsa4096", "--no-mosquitto-conf")
    device.launch()
    console = Console(device)
    console.until("mqtt: connected", timeout=30)
    accepted = r"this build \(APP_TLS_PROFILE_INTEROP\) takes RSA 2048-4096, ECDSA P-256 and P-384"
    upload(console, "ca", odd["rsa1024"])
    console.until(rf"cred: its key is RSA-1024; {accepted}", timeout=10)
    upload(console, "ca", odd["p521"])
    console.until(rf"cred: its key is ECDSA P-521; {accepted}", timeout=10)
    upload(console, "ca", (rsa4096 / "ca.crt.der").read_bytes())
    console.until("ca staged", timeout=10)
    console.command("cred begin key")
    text = base64.b64encode((rsa4096 / "device.key.der").read_bytes()).decode()
    for start in range(0, len(text), 48):
        console.command(f"cred data {text[start:start + 48]}")
        answer = console.until(r"key: \d+ bytes so far|cred: too large.*", timeout=5).group(0)
        if answer.startswith("cred:"):
            break
    assert answer == "cred: too large for this credential; upload dropped (limit 1280 bytes)"
