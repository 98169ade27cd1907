# SPDX-License-Identifier: Apache-2.0
"""Reconnect jitter on native_sim comes from a per-launch entropy seed (conftest.py gives each
launch its own `--seed`): two devices, or two runs of one, back off on different schedules,
so a simulated fleet does not reconnect in lockstep; one seed given twice replays the same
schedule. The broker is down throughout, so the device only backs off."""

from conftest import SEED_VARIABLE
from loopback import free_port

DELAYS = 4  # "reconnecting in N ms" lines compared per run


def backoff_delays(device, dead_port: int, tmp_path, run: int) -> list:
    device.device_config.extra_test_args = (
        f"--broker-port={dead_port} --flash={tmp_path / f'flash-{run}.bin'}")
    device.command = []
    device.launch()
    delays = []
    for _ in range(DELAYS):
        lines = device.readlines_until(regex=r"reconnecting in \d+ ms", timeout=30)
        delays.append(int(lines[-1].split("reconnecting in ")[1].split()[0]))
    device.close()
    return delays


def test_each_launch_draws_its_own_reconnect_delays_and_a_seed_replays_them(
        device, tmp_path, monkeypatch):
    dead = free_port()  # nothing listens: every attempt is refused at once
    first = backoff_delays(device, dead, tmp_path, 0)
    second = backoff_delays(device, dead, tmp_path, 1)
    print(f"delays of two launches: {first} and {second}")
    assert first != second, "two launches drew the same reconnect jitter"
    # The fixed seed of the simulator's entropy gave these in every run before.
    assert first[:2] != [426, 497] and second[:2] != [426, 497]

    monkeypatch.setenv(SEED_VARIABLE, "0x5eed1234")
    replay_a = backoff_delays(device, dead, tmp_path, 2)
    replay_b = backoff_delays(device, dead, tmp_path, 3)
    assert replay_a == replay_b, "one seed must replay one schedule"
