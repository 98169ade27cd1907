# SPDX-License-Identifier: Apache-2.0
"""The device against MQTT brokers other than Mosquitto, over TLS on loopback with the
development broker certificate: amqtt (Python, asyncio; PyPI) and Aedes (Node.js; npm). Each
must accept the device's CONNECT (will, keepalive, clean session), its subscription and its
QoS 1 publishes: the retained status reaches a subscriber, a command gets its reply, and the
will is published when the device vanishes.

The brokers are installed on first use, pinned, into OTHER_BROKERS_DIR (default
build/other-brokers): amqtt into a virtual environment of its own (pip), Aedes with npm. CI
needs network access to PyPI and the npm registry for that, or the directory prepared."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEV_CERTS, DEVICE_TOPICS, REPO, Peer
from loopback import wait_for_port

OTHER_BROKERS_DIR = Path(os.environ.get("OTHER_BROKERS_DIR", REPO / "build" / "other-brokers"))
AMQTT_VERSION = "0.12.1"
AEDES_VERSION = "1.2.0"

AEDES_SCRIPT = """\
// Aedes on a TLS server that, like the project's Mosquitto, requires a client certificate
// from the development CA. Written by pytest/test_other_brokers.py.
import { readFileSync } from 'node:fs'
import tls from 'node:tls'
import { Aedes } from 'aedes'

const [port, certs] = process.argv.slice(2)
const broker = await Aedes.createBroker()
broker.on('client', (client) => console.log(`client connected: ${client.id}`))
broker.on('clientDisconnect', (client) => console.log(`client disconnected: ${client.id}`))
broker.on('clientError', (client, err) => console.log(`client error: ${client.id}: ${err.message}`))
const server = tls.createServer({
  key: readFileSync(`${certs}/broker.key.pem`),
  cert: readFileSync(`${certs}/broker.crt.pem`),
  ca: readFileSync(`${certs}/ca.crt.pem`),
  requestCert: true,
  rejectUnauthorized: true,
}, broker.handle)
server.listen(Number(port), '127.0.0.1', () => console.log(`aedes listening on ${port}`))
"""


def run_install(command: list, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"installing {what} failed ({' '.join(command)}):\n{result.stdout}\n"
                    f"{result.stderr}")


def amqtt_command(config: Path) -> list:
    venv = OTHER_BROKERS_DIR / "amqtt-venv"
    amqtt = venv / "bin" / "amqtt"
    if not amqtt.exists():
        run_install([sys.executable, "-m", "venv", "--clear", str(venv)], "a venv for amqtt")
        run_install([str(venv / "bin" / "pip"), "install", "-q", f"amqtt=={AMQTT_VERSION}"],
                    f"amqtt {AMQTT_VERSION} (PyPI)")
    return [str(amqtt), "-c", str(config)]


def aedes_command(port: int) -> list:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Aedes needs Node.js and npm: apt-get install nodejs npm")
    home = OTHER_BROKERS_DIR / "aedes"
    if not (home / "node_modules" / "aedes" / "package.json").exists():
        home.mkdir(parents=True, exist_ok=True)
        run_install(["npm", "install", "--prefix", str(home), "--no-audit", "--no-fund",
                     "--silent", f"aedes@{AEDES_VERSION}"], f"aedes {AEDES_VERSION} (npm)")
    script = home / "broker.mjs"  # beside node_modules, where `import 'aedes'` resolves
    script.write_text(AEDES_SCRIPT)
    return ["node", str(script), str(port), str(DEV_CERTS)]


def broker_command(name: str, port: int, run_dir: Path) -> list:
    if name == "aedes":
        return aedes_command(port)
    config = run_dir / "amqtt.yaml"
    config.write_text(
        "listeners:\n"
        "  default:\n"
        "    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "    ssl: true\n"
        f"    certfile: {DEV_CERTS / 'broker.crt.pem'}\n"
        f"    keyfile: {DEV_CERTS / 'broker.key.pem'}\n"
        f"    cafile: {DEV_CERTS / 'ca.crt.pem'}\n"
        "plugins:\n"
        "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
        "    allow_anonymous: true\n")
    return amqtt_command(config)


@pytest.fixture(params=["amqtt", "aedes"])
def other_broker(request, tmp_path, broker_port):
    run_dir = tmp_path / request.param
    run_dir.mkdir()
    log_path = run_dir / "broker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(broker_command(request.param, broker_port, run_dir),
                                   stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
                                   start_new_session=True)
    try:
        wait_for_port(broker_port, 30)
        yield request.param
    finally:
        process.kill()
        process.wait(5)
        print(f"--- {request.param} log ---\n{log_path.read_text(errors='replace')[-4000:]}")


def test_device_connects_publishes_and_answers_through_another_broker(other_broker,
                                                                     broker_port, device):
    peer = Peer(broker_port)
    status = peer.subscribe(f"{DEVICE_TOPICS}/status")
    replies = peer.subscribe(f"{DEVICE_TOPICS}/reply/#")
    try:
        device.launch()
        device.readlines_until(regex=r"tls: connected to localhost \(TLSv1\.[23], ", timeout=20)
        device.readlines_until(regex="mqtt: connected", timeout=20)
        device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=20)
        status.wait_for(f"{DEVICE_TOPICS}/status online", timeout=15)

        peer.publish(f"{DEVICE_TOPICS}/cmd/ping", f"hello-{other_broker}")
        device.readlines_until(regex="mqtt: ping", timeout=15)
        replies.wait_for(f"{DEVICE_TOPICS}/reply/ping hello-{other_broker}", timeout=15)

        # The device vanishes without DISCONNECT: the broker publishes its will.
        device.close()
        status.wait_for(f"{DEVICE_TOPICS}/status offline", timeout=15)
    finally:
        status.close()
        replies.close()
