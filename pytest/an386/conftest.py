# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the emulated-board tests (rig.py): one private network for the session, and
per test a DHCP/DNS server, an SNTP server, a broker and the device in QEMU.

  unshare is done by the tests themselves; run as root:
  python3 -m pytest pytest/an386 --an386-image=BUILD/zephyr/zephyr.elf
"""

import shutil
from pathlib import Path

import pytest

import rig


def pytest_addoption(parser):
    parser.addoption("--an386-image", help="zephyr.elf built for mps2/an386 with "
                     "-DEXTRA_CONF_FILE=pytest/an386/test.conf")


@pytest.fixture(scope="session")
def image(pytestconfig) -> Path:
    path = pytestconfig.getoption("--an386-image")
    if not path or not Path(path).is_file():
        pytest.fail("no image: pass --an386-image=BUILD/zephyr/zephyr.elf")
    for tool in ("qemu-system-arm", "dnsmasq", "mosquitto", "mosquitto_sub", "tc"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} is not installed (.ci/run installs the rig's packages)")
    return Path(path)


@pytest.fixture(scope="session")
def network(tmp_path_factory) -> rig.Bridge:
    """The private network namespace with the tap device, and the bridge that carries the
    device's frames to it; lives as long as the session."""
    rig.enter_private_network()
    rig.make_tap()
    return rig.Bridge()


@pytest.fixture()
def certs(network, tmp_path) -> Path:
    return rig.broker_certificates(tmp_path)


@pytest.fixture()
def dnsmasq(network, tmp_path):
    server = rig.Dnsmasq(tmp_path).start()
    yield server
    server.stop()
    print(server.log())


@pytest.fixture()
def sntp(network):
    server = rig.SntpServer()
    yield server
    server.stop()


@pytest.fixture()
def broker(certs, tmp_path):
    b = rig.Broker(certs, tmp_path / "broker").start()
    yield b
    b.stop()
    print(b.log())


@pytest.fixture()
def observer(certs) -> rig.Observer:
    return rig.Observer(certs)


@pytest.fixture()
def device(image, network, tmp_path):
    """The device in QEMU, not started yet (tests start it once the network they want is
    in place). Its console is kept in the test's directory."""
    qemu = rig.Qemu(image, tmp_path / "console.log", network.qemu_nic())
    yield qemu
    qemu.stop()
    network.impair()  # no impairment left for the next test
    rig.set_link(True)
    print("\n".join(qemu.console.seen if qemu.console else []))
