# SPDX-License-Identifier: Apache-2.0
"""Provisioning by claim on the emulated Cortex-M4 (mps2/an386 in QEMU, Zephyr's IP stack):
an image whose only identity is the batch's claim certificate gets its own from
certs/signer over the rig's network, and commits it only after connecting with it. The key
is made with the board's entropy and PSA on the M4, the request signed there.

Runs on an an386 image built with fleet provisioning, as scripts/test builds it:

    west build -b mps2/an386 -d build/an386_fleet . -- -DTOOLCHAIN_HAS_PICOLIBC=ON \\
        -DAPP_CERTS_DIR=build/fleet-creds \\
        "-DEXTRA_CONF_FILE=pytest/an386/test.conf;pytest/fleet_provisioning/test.conf"
    python3 -m pytest pytest/an386/fleet --rootdir pytest/an386 \\
        --an386-image=build/an386_fleet/zephyr/zephyr.elf
"""

import re
import subprocess

import pytest

import rig

TEMPLATE = "secure-mqtt-fleet"
BOOT_TO_MQTT_S = 90


@pytest.fixture()
def signer(broker, certs, tmp_path):
    """certs/signer (the development CA, which signed the rig's broker and the claim
    certificate) on the rig's broker, its output read line by line."""
    allow_list = tmp_path / "allow-list"
    allow_list.write_text(f"{rig.CLIENT_ID}\n")
    process = subprocess.Popen(
        [str(rig.REPO / "certs" / "signer"), "--host", rig.HOST_ADDRESS, "--port",
         str(rig.BROKER_PORT), "--template", TEMPLATE, "--allow-list", str(allow_list),
         "--broker-ca", str(certs / "ca.crt.pem")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = rig.Lines(process)
    lines.until(r"signer: ready", timeout=30)
    yield lines
    lines.close()
    print("\n".join(lines.seen))


def test_a_claimed_board_makes_its_key_gets_and_commits_its_own_certificate(
        dnsmasq, sntp, broker, signer, device):
    device.start()
    device.until(r"credentials: cert from the image", timeout=30)
    device.until(r"network: up, address 192\.0\.2\.\d+", timeout=BOOT_TO_MQTT_S)
    device.until(r"fleet: connected with the claim certificate", timeout=BOOT_TO_MQTT_S)
    device.until(r"fleet: new key made and staged; sending its certificate request", timeout=60)
    signer.until(rf"signer: issued \w+ to {rig.CLIENT_ID}", timeout=60)
    device.until(r"fleet: certificate [0-9a-f]+ issued for this device's key", timeout=60)
    device.until(rf"fleet: registered as thing {rig.CLIENT_ID}", timeout=60)
    device.until(r"credentials: cert from the provisioned", timeout=60)
    device.until(r"fleet: new certificate committed", timeout=60)
    device.until(r"mqtt: subscribed .*granted QoS 1$", timeout=60)
    log = broker.log()
    assert re.search(r"New client connected .* u'claim-batch-1'", log)
    assert re.search(rf"New client connected .* u'{rig.CLIENT_ID}'", log)
