# SPDX-License-Identifier: Apache-2.0
"""The firmware on an emulated Cortex-M4 (mps2/an386 in QEMU) with Zephyr's own Ethernet
driver, IP stack, DHCPv4 client, DNS resolver and SNTP: the network path of the FRDM-K64F,
which native_sim (host sockets) never runs. See rig.py for the network around it."""

import hashlib
import json
import re
import subprocess
import time
import uuid

import rig
from rig import BROKER_NAME, DEVICE_TOPICS, HOST_ADDRESS, SECOND_ADDRESS, TIME_NAME

BOOT_TO_MQTT_S = 90


def boot_and_connect(device) -> str:
    """Boots the device until MQTT is connected; returns the address its lease gave it."""
    device.start()
    address = device.until(r"network: up, address (192\.0\.2\.\d+)", timeout=BOOT_TO_MQTT_S)
    device.until(r"mqtt: connected", timeout=BOOT_TO_MQTT_S)
    return address.group(1)


def queue_numbered(device, prefix: str, count: int, timeout: float = 120) -> set:
    """`mqtt pub` of `count` numbered QoS 1 messages, one command at a time; a message the
    outbox refuses (full while the link is slow) is sent again until it is queued. Returns
    the lines the observer must see."""
    expected = set()
    deadline = time.monotonic() + timeout
    for n in range(count):
        while True:
            assert time.monotonic() < deadline, f"message {n} not queued within {timeout} s"
            device.command(f"mqtt pub {DEVICE_TOPICS}/seq {prefix}-{n} 1")
            # The shell's own answer (at the start of its line), not the MQTT thread's log.
            answer = device.until(r"^pub #(\d+) (queued as message \d+|rejected: .*|still queued)",
                                  timeout=30)
            ticket, outcome = answer.group(1), answer.group(2)
            if outcome == "still queued":
                # The MQTT thread was busy (a blocked write on the slow link); its log line
                # says what became of the request.
                outcome = device.until(rf"control: pub #{ticket} (queued|rejected: .*)",
                                       timeout=60).group(1)
            if outcome.startswith("queued"):
                break
            assert "outbox full" in outcome, answer.group(0)
            time.sleep(0.5)
        expected.add(f"{DEVICE_TOPICS}/seq {prefix}-{n}")
    return expected


def test_boots_to_mqtt_over_dhcp_sntp_dns_and_mutual_tls(dnsmasq, sntp, broker, observer,
                                                         device):
    status = observer.subscribe(f"{DEVICE_TOPICS}/#")
    try:
        device.start()
        device.until(r"secure-mqtt starting: broker broker\.test:8883", timeout=30)
        address = device.until(r"network: up, address (192\.0\.2\.\d+)", timeout=BOOT_TO_MQTT_S)
        device.until(rf"clock: set by SNTP from {TIME_NAME}", timeout=30)
        device.until(rf"tls: connected to {BROKER_NAME} \(TLSv1\.3, ", timeout=30)
        device.until(r"mqtt: connected", timeout=30)
        assert re.search(rf"DHCPACK\(zeth\) {re.escape(address.group(1))}", dnsmasq.log())
        assert re.search(rf"query\[A\] {re.escape(BROKER_NAME)} from {re.escape(address.group(1))}",
                         dnsmasq.log())
        assert sntp.requests >= 1
        assert f"as {rig.CLIENT_ID} " in broker.log() or rig.CLIENT_ID in broker.log()

        status.until(rf"^{DEVICE_TOPICS}/status online$", timeout=20)
        telemetry = status.until(rf"^{DEVICE_TOPICS}/telemetry (\{{.*\}})$", timeout=30)
        document = json.loads(telemetry.group(1))
        assert document["tls"]["version"] == "TLSv1.3"
        assert document["uptime_s"] > 0

        token = uuid.uuid4().hex
        observer.publish(f"{DEVICE_TOPICS}/cmd/ping", token)
        status.until(rf"^{DEVICE_TOPICS}/reply/ping {token}$", timeout=20)
        device.until(r"mqtt: ping \(32 bytes\)", timeout=5)
        # The emulated board has no LEDs (boards/mps2_an386.overlay): refused in words.
        observer.publish(f"{DEVICE_TOPICS}/cmd/led", "on")
        status.until(rf'^{DEVICE_TOPICS}/reply/error .*"no_such_led"', timeout=20)
    finally:
        status.close()


def test_no_connection_to_the_broker_before_the_clock_is_set(dnsmasq, broker, device):
    """Without a time server the device does not connect (it could not check a certificate's
    dates) and says why; once SNTP answers, it connects."""
    device.start()
    device.until(r"network: up, address 192\.0\.2\.\d+", timeout=BOOT_TO_MQTT_S)
    device.until(r"connect failed: wall clock not set \(SNTP failed\)", timeout=60)
    assert "New connection from" not in broker.log(), "connected before the clock was set"
    sntp = rig.SntpServer()
    try:
        device.until(rf"clock: set by SNTP from {TIME_NAME}", timeout=120)
        device.until(r"mqtt: connected", timeout=60)
    finally:
        sntp.stop()


def test_certificate_dates_are_checked_against_the_time_sntp_gives(dnsmasq, broker, device):
    # A clock far past the broker certificate's notAfter (825 days from its making): the
    # device must take SNTP's word for the date and refuse the certificate as expired.
    server = rig.SntpServer(offset_s=5 * 365 * 86400)
    try:
        device.start()
        device.until(rf"clock: set by SNTP from {TIME_NAME}", timeout=BOOT_TO_MQTT_S)
        device.until(rf"connect to {BROKER_NAME}:8883 failed: tls: broker certificate expired",
                     timeout=30)
        device.until(r"reconnecting in \d+ ms", timeout=5)
        assert server.requests >= 1
    finally:
        server.stop()
    assert device.running()


def wait_until_subscribed(observer, stream) -> None:
    """Until `stream` (subscribed to the numbered stream) receives a marker the observer
    publishes there: its subscription is in place at the broker."""
    marker = f"marker-{uuid.uuid4().hex}"
    for _ in range(20):
        # Published before the subscription is in place, a marker reaches no one: again.
        observer.publish(f"{DEVICE_TOPICS}/seq", marker)
        try:
            stream.until(rf"^{DEVICE_TOPICS}/seq {marker}$", timeout=1)
            return
        except AssertionError:
            continue
    raise AssertionError("the observer's subscription never received its marker")


def leave_a_persistent_session(observer, session: str) -> None:
    """Subscribes observer session `session` to the numbered stream and leaves: the broker
    keeps what arrives while the observer is away."""
    first = observer.subscribe(f"{DEVICE_TOPICS}/seq", session=session)
    wait_until_subscribed(observer, first)
    first.close()


def missing_when_back(observer, session: str, expected: set) -> set:
    """What of `expected` the broker does not hand over when `session` comes back."""
    again = observer.subscribe(f"{DEVICE_TOPICS}/seq", session=session)
    try:
        return again.collect(expected, timeout=30)
    finally:
        again.close()


def closed_at_once_and_recovered(device, observer, session: str, prefix: str, down: str,
                                 closed: str, up: str, cause: str) -> None:
    """`down` (a shell command) must close the open connection within 2 s (the keepalive
    would take 5 s + 3 s here), the device must then wait for the network rather than spin
    on connects, and after `up` reconnect and deliver every message queued meanwhile."""
    boot_and_connect(device)
    leave_a_persistent_session(observer, session)
    device.command(down)
    device.until(closed, timeout=2)
    expected = queue_numbered(device, prefix, 3)
    device.until(r"network not up yet .*; still waiting", timeout=30)
    assert not device.seen(r"timeout: no answer to PINGREQ"), f"closed by the keepalive, not {cause}"
    device.command(up)
    device.until(r"network: up, address 192\.0\.2\.\d+", timeout=60)
    device.until(r"mqtt: connected", timeout=60)
    missing = missing_when_back(observer, session, expected)
    assert not missing, f"lost across {down}: {sorted(missing)}"


def test_link_down_and_up_loses_nothing_queued_meanwhile(dnsmasq, sntp, broker, observer,
                                                         device):
    boot_and_connect(device)
    leave_a_persistent_session(observer, "observer-link")

    rig.set_link(False)
    # The emulated LAN9118 reports no carrier change to the driver, so the device finds the
    # dead link by its MQTT keepalive (5 s + 3 s here) rather than by a link event.
    device.until(r"mqtt: connection lost: timeout: no answer to PINGREQ|connect to .* failed", timeout=30)
    expected = queue_numbered(device, "link", 5)
    time.sleep(3)
    rig.set_link(True)
    device.until(r"mqtt: connected", timeout=60)
    missing = missing_when_back(observer, "observer-link", expected)
    assert not missing, f"lost across the link flap: {sorted(missing)}"


def test_interface_down_closes_at_once_waits_for_the_network_and_loses_nothing(
        dnsmasq, sntp, broker, observer, device):
    # The interface going down (what a carrier loss does; the LAN9118 model reports none, so
    # the shell takes it down) aborts the stack's TCP connections: the device must see that at
    # once.
    closed_at_once_and_recovered(device, observer, "observer-iface", "iface", "net iface down 1",
                                 r"mqtt: connection lost", "net iface up 1", "at once")


def test_lease_given_up_closes_the_open_connection_and_a_new_lease_reconnects(
        dnsmasq, sntp, broker, observer, device):
    # DHCPv4 stopping gives the address up with the link still up. Zephyr keeps an address a
    # TCP connection uses until that connection closes, so neither the stack nor the
    # connection manager ends it: the device must, on the lease event.
    closed_at_once_and_recovered(device, observer, "observer-lease-stop", "lease-stop",
                                 "net dhcpv4 client stop 1",
                                 r"network down .*: closing the MQTT connection",
                                 "net dhcpv4 client start 1", "by the event")


def test_a_lost_lease_is_reported_by_the_connection_manager_and_waited_out(
        network, tmp_path, sntp, broker, observer, device):
    # dnsmasq's shortest lease (2 min): with the link down past it, Zephyr's DHCPv4 client
    # drops the address and the connection manager reports L4 disconnected. The device must
    # wait for the network (not spin on connects), and reconnect once a new lease comes.
    dhcp = rig.Dnsmasq(tmp_path / "short-lease", lease="2m")
    dhcp.work.mkdir()
    dhcp.start()
    try:
        boot_and_connect(device)
        leave_a_persistent_session(observer, "observer-lease")
        rig.set_link(False)
        device.until(r"connection lost", timeout=30)
        expected = queue_numbered(device, "lease", 3)
        device.until(r"network not up yet .*; still waiting", timeout=240)
        rig.set_link(True)
        device.until(r"network: up, address 192\.0\.2\.\d+", timeout=120)
        device.until(r"mqtt: connected", timeout=60)
        missing = missing_when_back(observer, "observer-lease", expected)
        assert not missing, f"lost across the lost lease: {sorted(missing)}"
    finally:
        dhcp.stop()


def test_every_message_arrives_through_loss_delay_and_reordering(network, dnsmasq, sntp,
                                                                 broker, observer, device):
    boot_and_connect(device)
    stream = observer.subscribe(f"{DEVICE_TOPICS}/seq")
    try:
        wait_until_subscribed(observer, stream)
        # 10 % of the frames lost each way, 300 ms +- 100 ms each way: frames sent less than
        # 200 ms apart overtake each other.
        network.impair(loss=0.10, delay_ms=300, jitter_ms=100)
        dropped_before, reordered_before = network.dropped, network.reordered
        expected = queue_numbered(device, "impaired", 30, timeout=300)
        missing = stream.collect(expected, timeout=240)
        assert not missing, f"lost on the impaired link: {sorted(missing)}"
        assert network.dropped - dropped_before > 0, "the bridge dropped nothing"
        assert network.reordered - reordered_before > 0, "the bridge reordered nothing"
    finally:
        network.impair()
        stream.close()
    assert device.running()
    assert not any("halted" in line for line in device.console.seen)
    # Retransmissions run paths a clean link never does (TCP's work queue sends from its
    # own stack): the stacks sized from a clean run must hold them too.
    assert_sized_stacks_keep_a_tenth_free(device)
    # Out-of-order and duplicated segments wait in the pools: none may run dry.
    assert_no_network_pool_ran_dry(device)


def test_device_follows_the_broker_name_to_a_new_address(dnsmasq, sntp, broker, certs,
                                                         tmp_path, device):
    boot_and_connect(device)
    second = rig.Broker(certs, tmp_path / "second", bind=SECOND_ADDRESS).start()
    try:
        watcher = rig.Observer(certs, SECOND_ADDRESS).subscribe(f"{DEVICE_TOPICS}/status")
        try:
            dnsmasq.set_names({BROKER_NAME: SECOND_ADDRESS, TIME_NAME: HOST_ADDRESS})
            time.sleep(0.5)
            broker.stop()
            device.until(r"connection lost|connect to .* failed", timeout=30)
            device.until(r"mqtt: connected", timeout=60)
            watcher.until(rf"^{DEVICE_TOPICS}/status online$", timeout=20)
            assert re.search(rf"{re.escape(BROKER_NAME)} is {re.escape(SECOND_ADDRESS)}",
                             dnsmasq.log())
        finally:
            watcher.close()
    finally:
        second.stop()


def test_every_address_of_the_broker_name_is_tried(dnsmasq, sntp, broker, certs, tmp_path,
                                                  device):
    # Two addresses for one name, as a DNS name in front of a cluster has: the node the
    # device is on dies, and it reaches the node on the other address without a DNS change.
    dnsmasq.set_names({BROKER_NAME: [HOST_ADDRESS, SECOND_ADDRESS], TIME_NAME: HOST_ADDRESS})
    second = rig.Broker(certs, tmp_path / "second", bind=SECOND_ADDRESS).start()
    connected_as = f" as {rig.CLIENT_ID} "
    try:
        boot_and_connect(device)
        dead, alive = (broker, second) if connected_as in broker.log() else (second, broker)
        assert connected_as in dead.log()
        dead.stop()
        device.until(r"connection lost", timeout=30)
        device.until(r"mqtt: connected", timeout=60)
        assert connected_as in alive.log()
    finally:
        second.stop()


def test_failed_lookups_are_reported_and_retried_until_the_name_exists(dnsmasq, sntp, broker,
                                                                       device):
    dnsmasq.set_names({TIME_NAME: HOST_ADDRESS})  # no broker.test: NXDOMAIN
    device.start()
    for _ in range(2):
        device.until(rf"connect to {BROKER_NAME}:8883 failed: broker host name not resolved",
                     timeout=BOOT_TO_MQTT_S)
        device.until(r"reconnecting in \d+ ms", timeout=5)
    dnsmasq.set_names({BROKER_NAME: HOST_ADDRESS, TIME_NAME: HOST_ADDRESS})
    device.until(r"mqtt: connected", timeout=60)


def test_without_a_dhcp_server_the_device_waits_and_says_so_then_gets_a_lease(
        network, tmp_path, sntp, broker, device):
    dns_only = rig.Dnsmasq(tmp_path / "dns-only")
    dns_only.work.mkdir()
    dns_only.start(dhcp=False)
    try:
        device.start()
        device.until(r"network not up yet .*; still waiting", timeout=60)
        device.until(r"network not up yet .*; still waiting", timeout=30)
        assert device.running()
    finally:
        dns_only.stop()
    with_dhcp = rig.Dnsmasq(tmp_path / "dns-only").start()
    try:
        # Zephyr's DHCPv4 client keeps sending DISCOVER with a growing interval (up to 64 s).
        device.until(r"mqtt: connected", timeout=150)
    finally:
        with_dhcp.stop()


# The threads whose stacks prj.conf sizes from measured peaks plus 25 %, and the two that
# send through the Ethernet driver on Zephyr's default sizes (rx_q[0], tcp_work), as the
# thread analyzer names them.
SIZED_STACKS = ("main", "shell_uart", "rx_q[0]", "net_socket_service", "tcp_work", "net_mgmt")


def test_every_sized_stack_keeps_a_tenth_of_its_size_free(dnsmasq, sntp, broker, observer,
                                                          device):
    # An overflow stops the device (MPU guard); a stack this close to its end is the next one.
    boot_and_connect(device)
    leave_a_persistent_session(observer, "observer-stacks")
    queued = queue_numbered(device, "stack", 20)
    assert not missing_when_back(observer, "observer-stacks", queued)
    # Key generation and the request's signature run on the MQTT thread too.
    key_made_on_the_board_signs_a_request_openssl_verifies(device)
    assert_sized_stacks_keep_a_tenth_free(device)
    assert_no_network_pool_ran_dry(device)


def openssl(*args, stdin: bytes = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True,
                          check=True).stdout


def key_made_on_the_board_signs_a_request_openssl_verifies(device) -> None:
    """`cred keygen` with the emulated board's entropy, `cred csr` signed with that key: the
    request verifies, its CN is the client id and its key is the one `cred keygen` named;
    then `cred abort` leaves the device's set as it was."""
    device.command("cred keygen")
    fingerprint = device.until(r"key made on the device \(ECDSA P-256, public key sha256 "
                               r"([0-9a-f]{64})\) and staged", timeout=60).group(1)
    device.command("cred csr")
    device.until(r"-----BEGIN CERTIFICATE REQUEST-----", timeout=60)
    body = []
    while not (line := device.until(r"^([A-Za-z0-9+/=]+|-----END CERTIFICATE REQUEST-----)$",
                                    timeout=10).group(1)).startswith("-----END"):
        body.append(line)
    request = "\n".join(["-----BEGIN CERTIFICATE REQUEST-----", *body, line, ""]).encode()
    verified = subprocess.run(["openssl", "req", "-verify", "-noout"], input=request,
                              capture_output=True, text=False)
    # openssl 3.0 exits 0 even when the signature does not verify: its words decide.
    assert verified.returncode == 0 and b"verify OK" in verified.stdout + verified.stderr
    subject = openssl("req", "-noout", "-subject", "-nameopt", "RFC2253", stdin=request)
    assert subject.decode().strip() == f"subject=CN={rig.CLIENT_ID}"
    spki = openssl("pkey", "-pubin", "-outform", "DER",
                   stdin=openssl("req", "-noout", "-pubkey", stdin=request))
    assert hashlib.sha256(spki).hexdigest() == fingerprint
    device.command("cred abort")
    device.until(r"upload and staged changes dropped; stored set unchanged", timeout=10)


def assert_sized_stacks_keep_a_tenth_free(device) -> None:
    rig.memory(device)
    # The second reading holds the first one's own printing, which runs on the shell thread.
    stacks = rig.memory(device)["stacks"]
    print("stacks used/size:", {thread: stacks[thread] for thread in SIZED_STACKS})
    for thread in SIZED_STACKS:
        used, size = stacks[thread]
        assert used <= 0.9 * size, f"{thread}: {used} of {size} bytes of stack used"


def assert_no_network_pool_ran_dry(device) -> None:
    """prj.conf sizes the packet and buffer pools from peaks bench/an386.py measured; a pool
    all in use at once has had an allocation fail or wait."""
    pools = rig.memory(device)["pools"]
    print("network pools peak/count:", pools)
    for pool, (peak, count) in pools.items():
        assert peak < count, f"{pool}: all {count} in use at once"
    failures = [line for line in device.console.seen if rig.ALLOC_FAILURE.search(line)]
    assert not failures, f"allocation failures: {failures[:5]}"
