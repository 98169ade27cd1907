# SPDX-License-Identifier: Apache-2.0
"""`cred list` names each credential by a SHA-256 fingerprint: of a certificate's DER, and of a
key's public half (its SubjectPublicKeyInfo DER, so that the key itself never reaches the
console). Each printed fingerprint is compared with the one OpenSSL computes from the PEM
files, a path independent of the device's mbedTLS:

    openssl x509 -in CERT.pem -outform DER | sha256sum
    openssl pkey -in KEY.pem -pubout -outform DER | sha256sum

for the image's development set and for provisioned sets with other key types."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import CLIENT_ID, DEV_CERTS, Console, mkcerts
from test_interop_chains import provision

LINE = re.compile(r"^(ca|ca \d|cert|key): (image|provisioned), \d+ bytes, sha256 ([0-9a-f]{64})"
                  r"( \(public key\))?$")


def openssl_sha256(*command: str) -> str:
    """`OPENSSL COMMAND | sha256sum`, as an operator would type it; the digest in hex."""
    pipeline = f"set -o pipefail; {shlex.join(command)} | sha256sum"
    out = subprocess.run(["bash", "-c", pipeline], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    return out.split()[0]


def certificate_sha256(pem: Path) -> str:
    return openssl_sha256("openssl", "x509", "-in", str(pem), "-outform", "DER")


def public_key_sha256(pem: Path) -> str:
    return openssl_sha256("openssl", "pkey", "-in", str(pem), "-pubout", "-outform", "DER")


def listed(console: Console) -> dict:
    """`cred list` as {"ca": (origin, sha256, suffix), ...}, one entry per line it prints."""
    console.command("cred list")
    lines = {}
    for kind in ("ca", "cert", "key"):
        line = console.until(f"^{kind}: .*$", timeout=10).group(0).strip()
        match = LINE.match(line)
        assert match, f"not a fingerprint line: {line!r}"
        lines[kind] = (match.group(2), match.group(3), match.group(4) or "")
    return lines


def expect_fingerprints(lines: dict, certs: Path, origin: str) -> None:
    """All three compared at once, so that a failure shows each that differs."""
    assert lines == {
        "ca": (origin, certificate_sha256(certs / "ca.crt.pem"), ""),
        "cert": (origin, certificate_sha256(certs / "device.crt.pem"), ""),
        "key": (origin, public_key_sha256(certs / "device.key.pem"), " (public key)"),
    }


def test_cred_list_prints_the_sha256_of_the_image_credentials(device):
    # No broker: `cred` is served while the device waits to reconnect.
    device.device_config.extra_test_args += " --reconnect-cap-ms=2000"
    device.launch()
    console = Console(device)
    console.until("credentials installed", timeout=10)
    expect_fingerprints(listed(console), DEV_CERTS, "image")


@pytest.mark.parametrize("key_type", ["rsa2048", "p384"])
def test_cred_list_prints_the_sha256_of_provisioned_credentials(tmp_path, key_type, device):
    certs = tmp_path / key_type
    mkcerts("all", "--out", str(certs), "--client-id", CLIENT_ID, "--no-mosquitto-conf",
            "--key-type", key_type)
    device.device_config.extra_test_args += " --reconnect-cap-ms=2000"
    device.launch()
    console = Console(device)
    console.until("credentials installed", timeout=10)
    provision(console, certs)
    expect_fingerprints(listed(console), certs, "provisioned")
