#!/usr/bin/python3
"""Writes the named seeds of fuzz/corpus/: replies as a signer and AWS IoT send them (the
committed development certificate as certificatePem, refusals, registrations) and malformed
neighbours; flows as the firmware reports them (a claim, timeouts, a renewal, refusals);
certificates (DER) as the committed set and openssl write them, with and without a common
name, past 2049, and cut short. Run from crates/fleet-provisioning: fuzz/make_seeds.py"""

import json
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CERT_PEM = (HERE / "../../../certs/dev-only-insecure/device.crt.pem").read_text()
CORPUS = HERE / "corpus"

accepted = {
    "certificateId": "a79b9e373e23dbe6baec4509599022d001c99c7a85fb33dd068848ee83ba4e70",
    "certificatePem": CERT_PEM,
    "certificateOwnershipToken": "eyJ2ZXJzaW9uIjoiMjAxOS0xMS0xMyIsImNpcGhlciI6Ik" * 4,
}
replies = {
    "accepted": accepted,
    "accepted_crlf": dict(accepted, certificatePem=CERT_PEM.replace("\n", "\r\n")),
    "accepted_two_certificates": dict(accepted, certificatePem=CERT_PEM + CERT_PEM),
    "accepted_no_end": dict(accepted, certificatePem=CERT_PEM.replace("-----END CERTIFICATE-----", "")),
    "accepted_token_number": dict(accepted, certificateOwnershipToken=7),
    "rejected": {"statusCode": 400, "errorCode": "InvalidPayload",
                 "errorMessage": "the request is not JSON"},
    "rejected_unicode": {"statusCode": 403, "errorCode": "NotAllowed",
                         "errorMessage": "'d\u00e9v-\u2603' is not on the signer's allow-list " * 4},
    "registered": {"deviceConfiguration": {"Fallback": "false", "FeatureFlags": "x"},
                   "thingName": "dev-0042"},
    "registered_long_name": {"deviceConfiguration": {}, "thingName": "x" * 200},
}
CORPUS.joinpath("replies").mkdir(parents=True, exist_ok=True)
for name, payload in replies.items():
    text = json.dumps(payload)
    # First byte: the certificate buffer (even: 2,048 B; odd: that many bytes).
    CORPUS.joinpath("replies", f"seed_{name}").write_bytes(b"\x00" + text.encode())
    CORPUS.joinpath("replies", f"seed_{name}_slashes_escaped").write_bytes(
        b"\x00" + text.replace("/", "\\/").encode())
CORPUS.joinpath("replies", "seed_accepted_small_buffer").write_bytes(
    b"\xff" + json.dumps(accepted).encode())

POLL, CLAIM, OWN, DOWN, SUBSCRIBED, CSR, KEY_FAILED, CERT, OTHER_KEY, OTHER_CN, \
    REJECTED_CERT, REJECTED_REG, REGISTERED, NEW_SET_OK, NEW_SET_FAILED, COMMITTED = \
    15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14


def steps(*pairs):
    return bytes(b for pair in pairs for b in pair)


claim = [(CLAIM, 0), (POLL, 0), (SUBSCRIBED, 0), (POLL, 0), (CSR, 1), (POLL, 0), (POLL, 0),
         (CERT, 1), (POLL, 0), (REGISTERED, 1), (POLL, 0), (DOWN, 0), (OWN, 1),
         (NEW_SET_OK, 0), (POLL, 0), (COMMITTED, 0), (POLL, 0)]
flows = {
    "claim": claim,
    "claim_someone_elses_first": claim[:7] + [(OTHER_KEY, 1), (POLL, 0)] + claim[7:],
    "claim_no_reply": claim[:7] + [(POLL, 30), (POLL, 60), (POLL, 0)] + claim[2:],
    "claim_rejected_twice": claim[:7] + [(REJECTED_CERT, 1), (POLL, 60), (SUBSCRIBED, 0),
                                         (POLL, 0), (CSR, 0), (REJECTED_CERT, 0), (POLL, 120)],
    "registration_rejected": claim[:9] + [(REJECTED_REG, 1), (POLL, 60)],
    "key_failed_then_down": [(CLAIM, 0), (POLL, 0), (SUBSCRIBED, 0), (POLL, 0),
                             (KEY_FAILED, 0), (DOWN, 0), (CLAIM, 5), (POLL, 60)],
    "renewal_due": [(OWN, 0), (POLL, 200), (POLL, 200), (CSR, 0), (POLL, 0), (CERT, 1),
                    (POLL, 0), (REGISTERED, 0), (POLL, 0), (NEW_SET_FAILED, 0), (OWN, 1),
                    (POLL, 60), (POLL, 0)],
    "wrong_name": claim[:7] + [(OTHER_CN, 0), (POLL, 255), (POLL, 255)],
}
CORPUS.joinpath("flow").mkdir(parents=True, exist_ok=True)
for name, pairs in flows.items():
    CORPUS.joinpath("flow", f"seed_{name}").write_bytes(steps(*pairs))


def self_signed(subject, days):
    return subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "/dev/null", "-utf8", "-subj", subject, "-days", days,
         "-outform", "DER"], check=True, capture_output=True).stdout


DEV_SET = HERE / "../../../certs/dev-only-insecure"
certificates = {name: (DEV_SET / f"{name}.crt.der").read_bytes()
                for name in ["ca", "device", "broker", "observer"]}
certificates.update({
    "common_name_and_organization": self_signed("/O=Example Fleet/CN=dev-0042", "1"),
    "no_common_name": self_signed("/O=Example Fleet/OU=Sensors", "1"),
    "two_common_names": self_signed("/CN=a/CN=b", "1"),
    "generalized_time": self_signed("/CN=dev-long", "20000"),
    "utf8_common_name": self_signed("/CN=Ger\u00e4t-7 \u2603", "1"),
})
certificates["device_cut"] = certificates["device"][:-1]
certificates["device_trailing"] = certificates["device"] + b"\x00"
CORPUS.joinpath("certificate_facts").mkdir(parents=True, exist_ok=True)
for name, der in certificates.items():
    CORPUS.joinpath("certificate_facts", f"seed_{name}").write_bytes(der)
