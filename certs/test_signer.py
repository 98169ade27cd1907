"""certs/signer against a real Mosquitto on the ACL that mkcerts writes, with a device played
by paho-mqtt and keys made by `cryptography`: a device with only a claim certificate gets its
own certificate for a key it made, registers and connects with it; every refusal is named;
the claim identity can neither publish to a device's topics nor forge a reply.

Run with the system Python (Debian's python3-paho-mqtt, python3-cryptography):
    /usr/bin/python3 certs/test_signer.py -v
"""

import json
import os
import queue
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
CREATE = "$aws/certificates/create-from-csr/json"
TEMPLATE = "fleet-test"
PROVISION = f"$aws/provisioning-templates/{TEMPLATE}/provision/json"
REPLY_TOPICS = [f"{CREATE}/accepted", f"{CREATE}/rejected",
                f"{PROVISION}/accepted", f"{PROVISION}/rejected"]
TIMEOUT_S = 10
DEVICE_ID = "dev-0042"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True)


class Client:
    """An MQTT client over TLS whose events arrive in queues: tests wait on events."""

    def __init__(self, port, ca, cert, key, client_id):
        if hasattr(mqtt, "CallbackAPIVersion"):
            self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id)
        else:
            self.mqtt = mqtt.Client(client_id=client_id)
        self.mqtt.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key),
                          tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.connacks, self.subacks, self.messages = queue.Queue(), queue.Queue(), queue.Queue()
        self.mqtt.on_connect = lambda _c, _u, _f, rc: self.connacks.put(rc)
        self.mqtt.on_subscribe = lambda _c, _u, _m, granted: self.subacks.put(granted)
        self.mqtt.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.mqtt.connect("127.0.0.1", port, keepalive=30)
        self.mqtt.loop_start()
        rc = self.connacks.get(timeout=TIMEOUT_S)
        if rc != 0:
            raise AssertionError(f"connection refused: {mqtt.connack_string(rc)}")

    def subscribe(self, topics):
        self.mqtt.subscribe([(t, 1) for t in topics])
        granted = self.subacks.get(timeout=TIMEOUT_S)
        assert all(q != 0x80 for q in granted), f"subscription refused: {granted}"

    def publish(self, topic, payload):
        info = self.mqtt.publish(topic, json.dumps(payload), qos=1)
        info.wait_for_publish(TIMEOUT_S)

    def reply(self, topics=None):
        """The next message (on one of `topics`, others skipped): topic and JSON."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                topic, payload = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no message on {topics or 'any topic'} in {TIMEOUT_S} s")
            if topics is None or topic in topics:
                return topic, json.loads(payload)

    def close(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def csr_for(key, common_name):
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM).decode())


def spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


class SignerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp(prefix="signer-test."))
        cls.set = cls.dir / "set"
        run(str(HERE / "mkcerts"), "all", "--out", str(cls.set), "--no-mosquitto-conf")
        run(str(HERE / "mkcerts"), "device", "claim-batch-1", "--out", str(cls.dir / "claim"),
            "--ca-dir", str(cls.set))
        cls.port = free_port()
        run(str(HERE / "broker-up"), "--certs", str(cls.set), "--port", str(cls.port),
            "--run-dir", str(cls.dir / "broker"))
        cls.broker_pid = int((cls.dir / "broker" / "mosquitto.pid").read_text())
        (cls.dir / "allow.txt").write_text(f"# the batch's serials\n{DEVICE_ID}\ndev-0043\n")
        cls.signer = subprocess.Popen(
            [str(HERE / "signer"), "--port", str(cls.port), "--certs", str(cls.set),
             "--template", TEMPLATE, "--allow-list", str(cls.dir / "allow.txt"),
             "--lifetime", "10m"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = cls.signer.stdout.readline()
        if not line.startswith("signer: ready"):
            raise AssertionError(f"the signer did not start: {line}{cls.signer.stdout.read()}")

    @classmethod
    def tearDownClass(cls):
        cls.signer.kill()
        cls.signer.wait()
        os.kill(cls.broker_pid, 15)
        shutil.rmtree(cls.dir, ignore_errors=True)

    def claim_client(self, name):
        client = Client(self.port, self.set / "ca.crt.pem", self.dir / "claim" / "device.crt.pem",
                        self.dir / "claim" / "device.key.pem", name)
        self.addCleanup(client.close)
        client.subscribe(REPLY_TOPICS)
        return client

    def test_a_claimed_device_gets_registers_and_connects_with_its_own_certificate(self):
        device = self.claim_client("claim-batch-1")
        key = ec.generate_private_key(ec.SECP256R1())
        device.publish(CREATE, {"certificateSigningRequest": csr_for(key, DEVICE_ID)})
        topic, accepted = device.reply()
        self.assertEqual(topic, f"{CREATE}/accepted", accepted)
        certificate = x509.load_pem_x509_certificate(accepted["certificatePem"].encode())
        self.assertEqual(spki(certificate.public_key()), spki(key.public_key()))
        self.assertEqual(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                         DEVICE_ID)
        lifetime = certificate.not_valid_after - certificate.not_valid_before
        self.assertEqual(lifetime.total_seconds(), 660)  # ten minutes, and one back
        self.assertEqual(len(accepted["certificateId"]), 64)

        device.publish(PROVISION, {"certificateOwnershipToken": accepted["certificateOwnershipToken"],
                                   "parameters": {"SerialNumber": DEVICE_ID}})
        self.assertEqual(device.reply([f"{PROVISION}/accepted", f"{PROVISION}/rejected"]),
                         (f"{PROVISION}/accepted", {"deviceConfiguration": {}, "thingName": DEVICE_ID}))
        # A token is good for one registration.
        device.publish(PROVISION, {"certificateOwnershipToken": accepted["certificateOwnershipToken"],
                                   "parameters": {"SerialNumber": DEVICE_ID}})
        topic, refusal = device.reply([f"{PROVISION}/accepted", f"{PROVISION}/rejected"])
        self.assertEqual((topic, refusal["errorCode"]), (f"{PROVISION}/rejected", "InvalidToken"))

        # The new identity connects and uses its own topics; the broker takes it by its CN.
        own = self.dir / "own"
        own.mkdir(exist_ok=True)
        (own / "crt.pem").write_text(accepted["certificatePem"])
        (own / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        device_now = Client(self.port, self.set / "ca.crt.pem", own / "crt.pem", own / "key.pem",
                            DEVICE_ID)
        self.addCleanup(device_now.close)
        device_now.subscribe([f"devices/{DEVICE_ID}/echo"])
        device_now.publish(f"devices/{DEVICE_ID}/echo", {"n": 1})
        self.assertEqual(device_now.reply(), (f"devices/{DEVICE_ID}/echo", {"n": 1}))

    def test_every_claimant_hears_every_answer_so_a_device_must_match_the_key(self):
        first, second = self.claim_client("claim-a"), self.claim_client("claim-b")
        key = ec.generate_private_key(ec.SECP256R1())
        first.publish(CREATE, {"certificateSigningRequest": csr_for(key, "dev-0043")})
        _, to_first = first.reply([f"{CREATE}/accepted"])
        _, to_second = second.reply([f"{CREATE}/accepted"])
        self.assertEqual(to_first, to_second)
        other_key = ec.generate_private_key(ec.SECP256R1())
        certificate = x509.load_pem_x509_certificate(to_second["certificatePem"].encode())
        self.assertNotEqual(spki(certificate.public_key()), spki(other_key.public_key()))

    def test_each_refusal_is_named(self):
        device = self.claim_client("claim-refused")
        cases = [
            ({"certificateSigningRequest": csr_for(ec.generate_private_key(ec.SECP256R1()), "dev-9999")},
             403, "NotAllowed", "'dev-9999' is not on the signer's allow-list"),
            ({"certificateSigningRequest": csr_for(ec.generate_private_key(ec.SECP384R1()), DEVICE_ID)},
             400, "InvalidCsr", "the request's key is not ECDSA P-256"),
            ({"certificateSigningRequest": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"},
             400, "InvalidCsr", "not a PEM certificate request"),
            ({"csr": "x"}, 400, "InvalidPayload", "no certificateSigningRequest string"),
        ]
        for request, status, code, message in cases:
            device.publish(CREATE, request)
            topic, refusal = device.reply([f"{CREATE}/accepted", f"{CREATE}/rejected"])
            self.assertEqual(topic, f"{CREATE}/rejected", request)
            self.assertEqual((refusal["statusCode"], refusal["errorCode"]), (status, code))
            self.assertIn(message, refusal["errorMessage"])

        key = ec.generate_private_key(ec.SECP256R1())
        device.publish(CREATE, {"certificateSigningRequest": csr_for(key, DEVICE_ID)})
        _, accepted = device.reply([f"{CREATE}/accepted"])
        device.publish(PROVISION, {"certificateOwnershipToken": accepted["certificateOwnershipToken"],
                                   "parameters": {"SerialNumber": "dev-0043"}})
        topic, refusal = device.reply([f"{PROVISION}/accepted", f"{PROVISION}/rejected"])
        self.assertEqual((topic, refusal["errorCode"]), (f"{PROVISION}/rejected", "InvalidParameters"))
        device.publish(PROVISION, {"certificateOwnershipToken": "made-up",
                                   "parameters": {"SerialNumber": DEVICE_ID}})
        topic, refusal = device.reply([f"{PROVISION}/accepted", f"{PROVISION}/rejected"])
        self.assertEqual((topic, refusal["errorCode"]), (f"{PROVISION}/rejected", "InvalidToken"))

    def publish_as_claim(self, topic):
        """mosquitto_pub with the claim identity, over MQTT 5: the broker names an ACL's
        refusal in the PUBACK (an event, not a silence)."""
        claim = self.dir / "claim"
        return subprocess.run(
            ["mosquitto_pub", "-V", "mqttv5", "-q", "1", "-h", "127.0.0.1", "-p", str(self.port),
             "--cafile", str(self.set / "ca.crt.pem"), "--cert", str(claim / "device.crt.pem"),
             "--key", str(claim / "device.key.pem"), "-i", "claim-forger", "-t", topic, "-m", "{}"],
            capture_output=True, text=True, timeout=TIMEOUT_S)

    def test_the_claim_identity_cannot_use_device_topics_nor_forge_an_answer(self):
        for topic in [f"devices/{DEVICE_ID}/telemetry", f"{CREATE}/accepted", f"{PROVISION}/accepted"]:
            self.assertIn("Not authorized", self.publish_as_claim(topic).stderr, topic)
        # The same client may ask for a certificate: the control that the refusal is the ACL's.
        result = self.publish_as_claim(CREATE)
        self.assertNotIn("Not authorized", result.stderr)
        self.assertEqual(result.returncode, 0, result.stderr)

if __name__ == "__main__":
    unittest.main()
