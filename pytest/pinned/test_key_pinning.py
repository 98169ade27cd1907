# SPDX-License-Identifier: Apache-2.0
"""Key pinning on top of CA trust. Runs on an image built with
CONFIG_APP_TLS_PINNED_KEY_SHA256 set to the development broker's key (sample.yaml:
app.secure_mqtt.pinned_key; scripts/test builds it with `certs/mkcerts pin`)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DEV_CERTS, MKCERTS, Broker, expect_refusal_and_retry, mkcerts


def pin_of(cert: Path) -> str:
    return subprocess.run([str(MKCERTS), "pin", str(cert)], check=True, capture_output=True,
                          text=True, timeout=30).stdout.strip()


@pytest.fixture(autouse=True)
def image_pins_the_development_broker(device):
    """Fails loudly when the image was built with another pin (e.g. stale after the
    development certificates were reissued), instead of testing the wrong thing."""
    config = (Path(device.device_config.build_dir) / "zephyr" / ".config").read_text()
    found = re.search(r'^CONFIG_APP_TLS_PINNED_KEY_SHA256="([0-9a-fA-F]*)"$', config, re.M)
    assert found, "image built without CONFIG_APP_TLS_PINNED_KEY_SHA256"
    assert found.group(1).lower() == pin_of(DEV_CERTS / "broker.crt.pem"), \
        "image pins another key than certs/dev-only-insecure/broker's; rebuild it"


def test_connects_to_the_broker_whose_key_is_pinned(broker, device):
    device.launch()
    device.readlines_until(regex="tls: connected to localhost", timeout=20)
    device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=20)


def test_refuses_a_broker_our_ca_signed_for_our_host_name_but_with_another_key(
        tmp_path, broker_port, device):
    # Everything CA trust checks is right: our CA, "localhost", valid dates. Only the key
    # differs, as with a certificate the CA issued by mistake or to an insider.
    rekeyed = tmp_path / "rekeyed"
    rekeyed.mkdir()
    shutil.copy(DEV_CERTS / "ca.crt.pem", rekeyed)
    mkcerts("broker", "--out", str(rekeyed), "--ca-dir", str(DEV_CERTS))
    assert pin_of(rekeyed / "broker.crt.pem") != pin_of(DEV_CERTS / "broker.crt.pem")
    broker = Broker(broker_port, tmp_path / "broker", certs=rekeyed).start()
    try:
        expect_refusal_and_retry(device, broker_port,
                                 "tls: broker public key does not match the pinned key")
    finally:
        broker.stop()
