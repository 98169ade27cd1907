# SPDX-License-Identifier: Apache-2.0
"""MQTT user name and password (MQTT 3.1.1 §3.1.2.8, §3.1.2.9), the way hosted brokers
authenticate devices: against a real Mosquitto whose TLS listener requires no client
certificate, refuses anonymous clients and checks a password file (mosquitto_passwd).

Runs on an image built with a user name and a credentials directory that holds only the CA and
the password (no client certificate), e.g. as scripts/test builds it:

    mkdir -p build/password-creds
    cp certs/dev-only-insecure/ca.crt.der build/password-creds/
    echo "dev-only-$(openssl rand -hex 12)" > build/password-creds/mqtt-password
    west build -b native_sim/native/64 -d build/native_sim_password . -- \\
        -DCONFIG_APP_MQTT_USERNAME=\\"dev-user\\" -DAPP_CERTS_DIR=build/password-creds

The tests read the user name and the password from that build (its .config and the
APP_CERTS_DIR in its CMakeCache.txt), so any name and password work."""

import re
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DEV_CERTS, DEVICE_TOPICS, REPO, Console, Subscription
from loopback import wait_for_port
from test_provisioning import upload

OBSERVER = "observer"


@dataclass
class ImageCredentials:
    username: str
    password: str
    certs_dir: Path


@pytest.fixture()
def image(device) -> ImageCredentials:
    """The user name and password built into the image under test; fails loudly when the
    image was built without them, or with a client certificate."""
    build = Path(device.device_config.build_dir)
    config = (build / "zephyr" / ".config").read_text()
    username = re.search(r'^CONFIG_APP_MQTT_USERNAME="(.*)"$', config, re.M)
    assert username and username.group(1), "image built without CONFIG_APP_MQTT_USERNAME"
    cache = (build / "CMakeCache.txt").read_text()
    certs_dir = Path(re.search(r"^APP_CERTS_DIR:[A-Z]+=(.*)$", cache, re.M).group(1))
    if not certs_dir.is_absolute():
        certs_dir = REPO / certs_dir
    assert (certs_dir / "mqtt-password").exists(), f"no mqtt-password in {certs_dir}"
    assert not (certs_dir / "device.crt.der").exists(), \
        f"{certs_dir} holds a client certificate: these tests need an image without one"
    password = (certs_dir / "mqtt-password").read_text().rstrip("\r\n")
    # The password is a credential, not a setting: it must not reach the configuration.
    assert password not in config
    return ImageCredentials(username.group(1), password, certs_dir)


class PasswordBroker:
    """Mosquitto with TLS (the development broker certificate) on `port`, authenticating by
    user name and password only: no client certificate required, no anonymous clients. The
    device's user name and an observer are in its password file."""

    def __init__(self, port: int, run_dir: Path, require_certificate: bool = False,
                 certs: Path = DEV_CERTS):
        self.certs = certs
        self.port = port
        self.run_dir = run_dir
        self.require_certificate = require_certificate
        self.observer_password = secrets.token_hex(8)
        self.passwd = run_dir / "passwd"
        self.log_path = run_dir / "mosquitto.log"
        self.process = None

    def set_passwords(self, users: dict) -> None:
        """Writes the password file anew with `users` and the observer."""
        self.passwd.unlink(missing_ok=True)
        self.passwd.touch(mode=0o600)
        for user, password in {**users, OBSERVER: self.observer_password}.items():
            subprocess.run(["mosquitto_passwd", "-b", str(self.passwd), user, password],
                           check=True, capture_output=True, timeout=10)

    def start(self, users: dict) -> "PasswordBroker":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.set_passwords(users)
        conf = self.run_dir / "mosquitto.conf"
        conf.write_text(
            # Started as root, Mosquitto would otherwise switch to the mosquitto user, which
            # cannot read the test's files (as in certs/mkcerts mosquitto-conf).
            f"user root\n"
            f"per_listener_settings false\n"
            f"allow_anonymous false\n"
            f"password_file {self.passwd}\n"
            f"persistence false\n"
            f"log_dest stdout\n"
            f"log_type all\n"
            f"connection_messages true\n"
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {self.certs / 'ca.crt.pem'}\n"
            f"certfile {self.certs / 'broker.crt.pem'}\n"
            f"keyfile {self.certs / 'broker.key.pem'}\n"
            f"require_certificate {'true' if self.require_certificate else 'false'}\n")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(["stdbuf", "-oL", "mosquitto", "-c", str(conf)],
                                        stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 10)
        return self

    def reload(self, users: dict) -> None:
        """New passwords, taken in by Mosquitto on SIGHUP, as an operator fixes a broker."""
        self.set_passwords(users)
        self.process.send_signal(signal.SIGHUP)

    def subscribe(self, topic_filter: str) -> Subscription:
        certificate = ["--cert", str(DEV_CERTS / "observer.crt.pem"),
                       "--key", str(DEV_CERTS / "observer.key.pem")]
        return Subscription(["mosquitto_sub", "-h", "localhost", "-p", str(self.port),
                             "--cafile", str(self.certs / "ca.crt.pem"),
                             *(certificate if self.require_certificate else []),
                             "-u", OBSERVER, "-P", self.observer_password,
                             "-t", topic_filter, "-v", "-q", "1"])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture()
def password_broker(tmp_path, broker_port):
    broker = PasswordBroker(broker_port, tmp_path / "broker")
    yield broker
    broker.stop()
    print(broker.log()[-4000:])


class ConsoleRecord:
    """Everything the device printed during this test: the harness appends every console
    line to handler.log in the build directory; this remembers where the test began."""

    def __init__(self, device):
        self.path = Path(device.device_config.build_dir) / "handler.log"
        self.start = self.path.stat().st_size if self.path.exists() else 0

    def text(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.start)
            return f.read().decode(errors="replace")


def assert_password_never_printed(record: ConsoleRecord, image: ImageCredentials) -> None:
    text = record.text()
    assert "mqtt: user name " in text, "the record holds no console output of this run"
    assert image.password not in text, "the MQTT password appeared on the console"


def test_connects_with_a_user_name_and_password_and_no_client_certificate(
        password_broker, image, device, console):
    broker = password_broker.start({image.username: image.password})
    record = ConsoleRecord(device)
    status = broker.subscribe(f"{DEVICE_TOPICS}/status")
    try:
        device.launch()
        console.until(rf"mqtt: user name {re.escape(image.username)} \(with a password\)",
                      timeout=10)
        console.until(r"credentials installed \(mutual TLS: false\)", timeout=10)
        console.until("mqtt: connected", timeout=30)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=15)
        shown = console.status()
        assert shown["state"] == "connected", shown
    finally:
        status.close()
    # Mosquitto names the user it authenticated: the image's, not an anonymous client.
    assert re.search(rf" as dev-device-1 \(.*u'{re.escape(image.username)}'\)", broker.log()), \
        broker.log()
    device.close()
    assert_password_never_printed(record, image)


def test_a_wrong_password_is_refused_with_connack_5_and_retried_until_the_broker_knows_it(
        password_broker, image, device, console):
    broker = password_broker.start({image.username: "not-" + image.password})
    record = ConsoleRecord(device)
    status = broker.subscribe(f"{DEVICE_TOPICS}/status")
    try:
        device.device_config.extra_test_args += " --reconnect-cap-ms=2000"
        device.launch()
        for _ in range(2):
            console.until(re.escape(
                "broker refused the connection: not authorized (CONNACK 5); fix: give this "
                "client id, certificate or user name access at the broker"), timeout=30)
            delay = console.until(
                r"reconnecting in (\d+) ms \(refused: retried rarely, or at once after cred "
                r"commit\)", timeout=5)
            assert 1000 <= int(delay.group(1)) <= 2000, delay.group(0)
        assert device.is_device_running(), "the firmware must survive a refused password"
        shown = console.status()
        assert shown["last error"] == \
            "protocol: connection refused by the broker: not authorized (CONNACK 5)", shown

        broker.reload({image.username: image.password})
        console.until("mqtt: connected", timeout=30)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=15)
    finally:
        status.close()
    device.close()
    assert_password_never_printed(record, image)


def test_connects_with_a_client_certificate_and_a_password(tmp_path, broker_port, image, device):
    """A broker that requires both: the image has no client certificate, so the device is
    refused until the development device certificate and key are provisioned (cred); then
    it presents the certificate in TLS and the user name and password in CONNECT."""
    broker = PasswordBroker(broker_port, tmp_path / "broker", require_certificate=True)
    broker.start({image.username: image.password})
    record = ConsoleRecord(device)
    status = broker.subscribe(f"{DEVICE_TOPICS}/status")
    console = Console(device)
    try:
        device.device_config.extra_test_args += " --reconnect-cap-ms=2000"
        device.launch()
        console.until("this device has no client certificate, which the broker may require",
                      timeout=30)
        upload(console, "cert", (DEV_CERTS / "device.crt.der").read_bytes())
        console.until("cert staged", timeout=10)
        upload(console, "key", (DEV_CERTS / "device.key.der").read_bytes())
        console.until("key staged", timeout=10)
        console.command("cred commit")
        console.until(r"stored; used from the next connection on", timeout=10)
        console.until(r"credentials: new set in use \(mutual TLS: true\)", timeout=15)
        console.until("mqtt: connected", timeout=30)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=15)
    finally:
        status.close()
        broker.stop()
        print(broker.log()[-4000:])
    assert re.search(rf" as dev-device-1 \(.*u'{re.escape(image.username)}'\)", broker.log())
    device.close()
    assert_password_never_printed(record, image)


def test_a_broker_from_the_second_trust_anchor_is_trusted_too(image, tmp_path, broker_port,
                                                             device, console):
    """The image trusts ca.crt.der and ca-2.crt.der (a fleet whose broker moves between two
    roots): a broker whose certificate only the second root signed is accepted."""
    second = image.certs_dir / "second-ca"
    assert (image.certs_dir / "ca-2.crt.der").exists() and (second / "broker.crt.pem").exists(), \
        f"{image.certs_dir} has no second trust anchor (scripts/test makes ca-2.crt.der)"
    broker = PasswordBroker(broker_port, tmp_path / "second-broker", certs=second)
    broker.start({image.username: image.password})
    status = broker.subscribe(f"{DEVICE_TOPICS}/status")
    try:
        device.launch()
        console.until("mqtt: connected", timeout=30)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=15)
    finally:
        status.close()
        broker.stop()
