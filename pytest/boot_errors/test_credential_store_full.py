# SPDX-License-Identifier: Apache-2.0
"""A credential that cannot be registered stops the device at boot with an error that names
it. Runs on an image built with CONFIG_TLS_MAX_CREDENTIALS_NUMBER=1: the CA fits, the device
certificate does not (sample.yaml: app.secure_mqtt.credential_store_full)."""


def test_failed_credential_registration_halts_with_a_clear_error(device):
    device.launch()
    device.readlines_until(
        regex="halted: cannot register the device certificate: the TLS credential store is full", timeout=10)
    lines = device.readlines(print_output=True)
    assert not any("connecting to" in line for line in lines), "no connection without credentials"
