# SPDX-License-Identifier: Apache-2.0
"""Faults between the device and its broker: the broker killed and restarted twenty times while
the device publishes (each kill with messages in flight), the broker frozen until the
device's ping timeout, and the MQTT thread held in a connect while the shell's requests wait
for it. The device is driven through its shell (`mqtt pub`, `mqtt status`), as an operator
would."""

import os
import re
import signal
import subprocess
import threading
import time

from conftest import (CLIENT_ID, DEVICE_TOPICS, Broker, PersistentBroker, Peer,
                      persistent_subscription)
from loopback import StalledPort

RESTARTS = 20
SEQ_TOPIC = f"{DEVICE_TOPICS}/seq"
OBSERVER_ID = "fault-observer"
KEEPALIVE_S = 2
PING_TIMEOUT_S = 10  # CONFIG_APP_MQTT_PING_TIMEOUT_MS, default 10000
# The device's outbox has 8 slots (mqtt-core's default); its status and telemetry use some.
OUTBOX_SLOTS = 8
# The shell's request queue (src/control.rs, QUEUE_DEPTH) and how long it waits for the MQTT
# thread's answer before it says "still queued" (ANSWER_TIMEOUT_MS).
REQUEST_QUEUE = 4
ANSWER_WAIT_S = 5


def launch(device, *options: str) -> None:
    device.device_config.extra_test_args += " " + " ".join(options)
    device.launch()


def test_shell_reports_status_and_publishes_through_the_mqtt_thread(peer, device, console):
    messages = peer.subscribe(f"{DEVICE_TOPICS}/shell/#")
    try:
        launch(device)
        console.until("mqtt: subscribed .*granted QoS", timeout=20)
        ticket, outcome, answer = console.pub(f"{DEVICE_TOPICS}/shell/hello", "from-the-shell", 2)
        assert outcome == "queued", answer
        messages.wait_for(f"{DEVICE_TOPICS}/shell/hello from-the-shell", timeout=10)
        assert console.logged.get(ticket) == "queued"

        # A wildcard is no topic name: the session refuses it, and the shell says why.
        _, outcome, answer = console.pub(f"{DEVICE_TOPICS}/shell/#", "x")
        assert outcome == "rejected" and "invalid topic name" in answer, answer
        # A QoS MQTT does not have is refused by the shell and never reaches the broker.
        console.command(f"mqtt pub {DEVICE_TOPICS}/shell/hello qos-three 3")
        console.until(r"pub rejected: qos must be 0 to 2, not '3'", timeout=10)
        _, outcome, answer = console.pub(f"{DEVICE_TOPICS}/shell/hello", "after-the-refusal")
        assert outcome == "queued", answer
        messages.wait_for(f"{DEVICE_TOPICS}/shell/hello after-the-refusal", timeout=10)
        assert f"{DEVICE_TOPICS}/shell/hello qos-three" not in messages.seen

        status = console.status()
        assert status["state"] == "connected"
        assert status["broker"] == f"localhost:{peer.port}"
        assert status["tls"].split(" ")[0] in ("TLSv1.3", "TLSv1.2") and "GCM" in status["tls"]
        assert status["reconnects"] == "0"
        assert status["last error"] == "none"
        assert int(status["published"]) >= 2  # status "online" and the QoS 2 message
    finally:
        messages.close()


def test_offline_publishes_wait_in_the_outbox_and_a_full_outbox_is_reported(
        tmp_path, broker_port, device, console):
    broker = PersistentBroker(broker_port, tmp_path / "broker").start()
    observer = persistent_subscription(Peer(broker_port), OBSERVER_ID, SEQ_TOPIC)
    try:
        wait_for_connections(broker, OBSERVER_ID, 1)
        launch(device, "--reconnect-cap-ms=1000")
        console.until("mqtt: subscribed .*granted QoS", timeout=20)
        wait_for_save(broker)  # the observer's subscription survives the kill
        broker.kill()
        console.until("mqtt: connection lost", timeout=10)
        queued, rejected = [], []
        for seq in range(OUTBOX_SLOTS + 2):
            _, outcome, answer = console.pub(SEQ_TOPIC, str(seq))
            (queued if outcome == "queued" else rejected).append((seq, answer))
        status = console.status()
        assert status["state"] in ("backing off", "connecting", "waiting for network")
        # Why the device is offline: the kill that ended the connection ("connection closed"
        # or "read failed: ...", whichever the socket saw first) or a refused attempt since.
        assert (status["last error"] in ("transport: connection closed", "connection refused")
                or status["last error"].startswith("transport: read failed: ")), status
        assert int(status["outbox"]) == OUTBOX_SLOTS
        # Every slot taken, then each further message refused with its cause, not dropped.
        assert queued and rejected, (queued, rejected)
        assert all("outbox full" in answer for _, answer in rejected), rejected
        assert rejected[0][0] == queued[-1][0] + 1

        broker.start()
        console.until("mqtt: connected", timeout=30)
        missing = observer.wait_for_all({f"{SEQ_TOPIC} {seq}" for seq, _ in queued}, timeout=20)
        assert not missing, sorted(missing)
    finally:
        observer.close()
        broker.stop()
        print(broker.log()[-4000:])


def test_requests_wait_for_a_busy_mqtt_thread_and_a_full_request_queue_is_reported(
        tmp_path, broker_port, device, console):
    """The MQTT thread held in a connect that never completes (the broker's port drops its
    SYNs): each `mqtt pub` waits its 5 s and is answered `still queued`, until the request
    queue is full and the next one is refused at once, by name. Once the port lets the
    connect through to a broker, the MQTT thread takes every queued request, logs each
    answer (`control: pub #N queued`) and delivers the messages."""
    needed = REQUEST_QUEUE * ANSWER_WAIT_S + 5
    assert StalledPort.held_s() > needed, \
        f"{StalledPort.RETRIES_FILE}: the kernel gives up a connect after " \
        f"{StalledPort.held_s()} s, the test needs it held {needed} s"
    stalled = StalledPort(broker_port)
    broker = messages = None
    try:
        launch(device)
        console.until(rf"connecting to localhost:{broker_port}", timeout=20)
        waiting = []
        for n in range(REQUEST_QUEUE):
            started = time.monotonic()
            ticket, outcome, answer = console.pub(SEQ_TOPIC, f"waited-{n}")
            assert outcome == "pending", f"request {n + 1} of {REQUEST_QUEUE}: {answer}"
            assert time.monotonic() - started >= ANSWER_WAIT_S - 0.5, answer
            waiting.append(ticket)
        ticket, outcome, answer = console.pub(SEQ_TOPIC, "one-too-many")
        assert outcome == "rejected" and \
            f"request queue full ({REQUEST_QUEUE} waiting for the MQTT thread)" in answer, answer
        assert not console.logged, f"answered while the MQTT thread was held: {console.logged}"

        # The broker takes the port: the connect's next SYN goes through.
        stalled.release()
        broker = Broker(broker_port, tmp_path / "broker").start()
        messages = Peer(broker_port).subscribe(SEQ_TOPIC)
        for t in waiting:
            console.until(rf"control: pub #{t} queued", timeout=StalledPort.held_s() + 30)
        assert ticket not in console.logged, "the refused request was served anyway"
        missing = messages.wait_for_all({f"{SEQ_TOPIC} waited-{n}"
                                         for n in range(REQUEST_QUEUE)}, timeout=30)
        assert not missing, sorted(missing)
        assert f"{SEQ_TOPIC} one-too-many" not in messages.seen
    finally:
        stalled.release()
        if messages:
            messages.close()
        if broker:
            broker.stop()


def poll_until(read, done, timeout: float, failure: str):
    """Calls `read` every 50 ms until `done` holds for what it returned; returns that value.
    Fails with `failure` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not done(value := read()):
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)
    return value


def wait_for_connections(broker: PersistentBroker, client_id: str, count: int,
                         timeout: float = 15) -> None:
    poll_until(lambda: broker.connections_of(client_id), lambda n: n >= count, timeout,
               f"{client_id} not connected {count} times")


def wait_for_save(broker: PersistentBroker, timeout: float = 10) -> None:
    poll_until(broker.saves, lambda n: n > 0, timeout, "the broker saved nothing")


def test_every_sequence_number_arrives_across_twenty_broker_kills(tmp_path, broker_port,
                                                                  device, console):
    broker = PersistentBroker(broker_port, tmp_path / "broker").start()
    observer = persistent_subscription(Peer(broker_port), OBSERVER_ID, SEQ_TOPIC)
    accepted, to_send, pending = set(), [], {}
    next_seq = 0
    rejections = 0
    in_flight_at_kills = 0

    def send(count: int) -> None:
        nonlocal next_seq, rejections
        batch = [to_send.pop(0) for _ in range(min(count, len(to_send)))]
        while len(batch) < count:
            batch.append(next_seq)
            next_seq += 1
        for seq in batch:
            ticket, outcome, _ = console.pub(SEQ_TOPIC, str(seq))
            if outcome == "queued":
                accepted.add(seq)
            elif outcome == "rejected":
                rejections += 1
                to_send.append(seq)  # retried later, never given up
            else:
                pending[ticket] = seq  # the MQTT thread logs the outcome later

    def settle() -> None:
        """Answers the shell gave as "still queued" are settled by the MQTT thread's log."""
        for ticket, seq in list(pending.items()):
            if ticket in console.logged:
                del pending[ticket]
                (accepted.add if console.logged[ticket] == "queued" else to_send.append)(seq)

    try:
        wait_for_connections(broker, OBSERVER_ID, 1)
        launch(device, "--reconnect-cap-ms=1500")
        console.until("mqtt: subscribed .*granted QoS", timeout=20)
        wait_for_save(broker)  # the observer's subscription survives the first kill
        for restart in range(1, RESTARTS + 1):
            # Mosquitto sends PUBACK before it saves: a message for a connected subscriber is
            # saved only once that subscriber acknowledges it. A SIGKILL in between loses a
            # message the broker already took from the device, which no client can prevent.
            # So the broker is killed only once everything it acknowledged has reached the
            # observer; what the device has in flight then is its own to deliver.
            if pending:
                console.status()  # reads the log up to now, where their outcomes are
                settle()
            missing = observer.wait_for_all({f"{SEQ_TOPIC} {seq}" for seq in accepted},
                                            timeout=30)
            assert not missing, (restart, sorted(missing))
            broker.process.send_signal(signal.SIGSTOP)
            send(3)  # written to the frozen broker's socket: in flight, unacknowledged
            poll_until(console.status, lambda st: int(st["in flight"]) >= 3, 10,
                       "fewer than 3 messages in flight")
            broker.kill()
            # Once the device has seen the connection end, its queues are what the next
            # connection starts from.
            status = poll_until(console.status, lambda st: st["state"] != "connected", 10,
                                "the device did not see the connection end")
            in_flight_at_kills += int(status["in flight"])
            # While the broker is gone: into the outbox until it is full, then refused.
            refused_before = rejections
            for _ in range(OUTBOX_SLOTS + 1):
                send(1)
                if rejections > refused_before:
                    break
            assert rejections > refused_before, "a full outbox took one more message"
            broker.start()
            console.until("mqtt: connected", timeout=30)
            wait_for_connections(broker, OBSERVER_ID, restart + 1)
        # Whatever was refused along the way, once more until the outbox takes it.
        for _ in range(20):
            settle()
            if not to_send and not pending:
                break
            send(0 if not to_send else 1)
            time.sleep(0.5)
        assert not to_send and not pending, (to_send, pending)

        observer.wait_for_all({f"{SEQ_TOPIC} {seq}" for seq in accepted}, timeout=60)
        received = [int(line.split(" ", 1)[1]) for line in observer.seen
                    if line.startswith(f"{SEQ_TOPIC} ")]
        missing = sorted(set(range(next_seq)) - set(received))
        duplicates = len(received) - len(set(received))
        resent = broker.log().count(f"Received PUBLISH from {CLIENT_ID} (d1, ")
        print(f"\n{RESTARTS} broker restarts: {next_seq} sequence numbers published, "
              f"{len(set(received))} received, {len(missing)} missing, {duplicates} duplicates, "
              f"{rejections} refusals retried; {in_flight_at_kills} in flight at the kills, "
              f"{resent} sent again with DUP")
        assert accepted == set(range(next_seq))
        assert not missing, missing
        assert set(received) == set(range(next_seq))
        # The device sent again exactly what was in flight at the kills, each time with DUP.
        # The observer's duplicates are the broker's own redeliveries: it had not saved the
        # observer's PUBACK when it was killed.
        assert resent == in_flight_at_kills, (resent, in_flight_at_kills)
        status = console.status()
        assert int(status["reconnects"]) >= RESTARTS
        assert rejections >= RESTARTS  # one more than the outbox holds, every time
        # The last connection, too, began with a full outbox: "online" waited for room and
        # then reached the broker on that connection.
        log = broker.log()
        last_connection = log.rindex(f" as {CLIENT_ID} ")
        assert re.search(rf"Received PUBLISH from {CLIENT_ID} \(d\d, q1, r1, m\d+, "
                         rf"'{DEVICE_TOPICS}/status', \.\.\. \(6 bytes\)\)",
                         log[last_connection:]), "no 'online' on the last connection"
    finally:
        observer.close()
        broker.stop()


def test_frozen_broker_is_detected_by_the_ping_timeout_and_left_after_it_thaws(
        broker, device, console):
    launch(device, f"--keepalive-s={KEEPALIVE_S}")
    console.until("mqtt: subscribed .*granted QoS", timeout=20)
    # At least one keepalive round answered before the freeze: the broker has logged its
    # PINGRESP to the device (the first PINGREQ is due one keepalive after the SUBSCRIBE).
    poll_until(lambda: f"Sending PINGRESP to {CLIENT_ID}" in broker.log(), bool,
               3 * KEEPALIVE_S, f"no PINGREQ answered within {3 * KEEPALIVE_S} s")
    broker.process.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        console.until("mqtt: connection lost: timeout: no answer to PINGREQ",
                      timeout=PING_TIMEOUT_S + 3 * KEEPALIVE_S)
        detected = time.monotonic() - frozen
        print(f"\nping timeout {detected:.1f} s after SIGSTOP "
              f"(keepalive {KEEPALIVE_S} s, PINGRESP timeout {PING_TIMEOUT_S} s)")
        # PINGREQ goes out at most one keepalive after the freeze, the timeout fires
        # PING_TIMEOUT_S after it: never before PING_TIMEOUT_S (minus a PINGREQ already out).
        assert PING_TIMEOUT_S - KEEPALIVE_S <= detected <= PING_TIMEOUT_S + KEEPALIVE_S + 1.5
    finally:
        broker.process.send_signal(signal.SIGCONT)
    console.until("mqtt: connected", timeout=60)
    status = console.status()
    assert status["state"] == "connected"
    assert status["reconnects"] == "1"
    assert status["last error"] == "timeout: no answer to PINGREQ in time"


class PingFlood:
    """A peer that publishes `cmd/ping` at QoS 1 at a steady rate (mosquitto_pub -l), so
    that the device receives, answers and acknowledges all the time. The pings start once
    the broker has logged the peer's connection: lines written before that would wait in
    mosquitto_pub's stdin and reach the device as one burst, not at the rate."""

    CLIENT_ID = "ping-flood"

    def __init__(self, peer: Peer, broker, rate: float):
        self.process = subprocess.Popen(
            ["mosquitto_pub", *peer.tls_args(), "-i", self.CLIENT_ID,
             "-t", f"{DEVICE_TOPICS}/cmd/ping", "-q", "1", "-l"], stdin=subprocess.PIPE,
            text=True)
        self.rate = rate
        self.sent = 0
        self.stopped = threading.Event()
        poll_until(lambda: f" as {self.CLIENT_ID} " in broker.log(), bool, 10,
                   "the ping flood did not connect")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.process.stdin.write(f"p{self.sent}\n")
            self.process.stdin.flush()
            self.sent += 1
            time.sleep(1 / self.rate)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.process.stdin.close()
        self.process.wait(10)


def test_soak_publishing_keeps_heap_and_outbox_flat(broker, peer, device, console):
    """For SOAK_SECONDS (60 by default; the closing measurement ran 600) a peer sends 100
    pings a second (each answered with a QoS 1 reply) while the shell publishes numbered QoS 1
    messages as fast as it can, sampling `mqtt status` every 10 s: the system heap and
    mbedTLS's heap in use must not grow, every numbered message must arrive, and every ping
    must be answered with its own payload."""
    duration = float(os.environ.get("SOAK_SECONDS", "60"))
    observer = peer.subscribe(SEQ_TOPIC)
    replies = peer.subscribe(f"{DEVICE_TOPICS}/reply/ping")
    flood = None
    try:
        device.launch()
        console.until("mqtt: subscribed .*granted QoS", timeout=20)
        flood = PingFlood(peer, broker, rate=100)
        samples, sent, refused = [], 0, 0
        started = next_sample = time.monotonic()
        while time.monotonic() - started < duration:
            _, outcome, _ = console.pub(SEQ_TOPIC, str(sent), 1)
            if outcome == "queued":
                sent += 1
            else:
                refused += 1  # outbox full for a moment: the same number again
                time.sleep(0.05)
            if time.monotonic() >= next_sample:
                status = console.status()
                tls_used = re.match(r"(\d+) used", status["tls heap"])
                samples.append((int(status["heap free"]), int(tls_used.group(1)) if tls_used else None,
                                int(status["outbox"])))
                next_sample += 10
        flood.stop()
        tls_peak = re.search(r"peak (\d+) of (\d+)", console.status()["tls heap"])
        missing = observer.wait_for_all({f"{SEQ_TOPIC} {seq}" for seq in range(sent)}, timeout=30)
        heap = [s[0] for s in samples]
        tls = [s[1] for s in samples if s[1] is not None]
        outbox = [s[2] for s in samples]
        # Each ping's payload is unique (p0, p1, ...): its reply must carry it back.
        unanswered = replies.wait_for_all(
            {f"{DEVICE_TOPICS}/reply/ping p{n}" for n in range(flood.sent)}, timeout=30)
        answered = flood.sent - len(unanswered)
        print(f"\nsoak {duration:.0f} s: {sent} numbered messages ({sent / duration:.1f}/s), "
              f"{refused} outbox-full retries, {len(missing)} missing; {flood.sent} pings "
              f"({flood.sent / duration:.0f}/s), {answered} answered; heap free "
              f"{min(heap)}..{max(heap)}, tls heap used "
              f"{min(tls) if tls else '-'}..{max(tls) if tls else '-'}"
              f"{f', peak {tls_peak.group(1)} of {tls_peak.group(2)}' if tls_peak else ''}, "
              f"outbox {min(outbox)}..{max(outbox)} over {len(samples)} samples")
        assert not missing, sorted(missing)[:10]
        assert flood.sent > 0 and not unanswered, \
            f"{len(unanswered)} of {flood.sent} pings unanswered, e.g. {sorted(unanswered)[:10]}"
        assert len(samples) >= 3
        # Flat: after the first sample (connection set up), nothing more is taken for good.
        assert min(heap[1:]) >= heap[1], heap
        if tls:
            assert max(tls[1:]) <= tls[1], tls
    finally:
        if flood and not flood.stopped.is_set():
            flood.stop()
        observer.close()
        replies.close()


def test_messages_queued_offline_survive_the_device_being_killed(tmp_path, broker_port, device,
                                                                  console):
    """CONFIG_APP_PERSISTENT_OUTBOX: QoS 1 messages queued while the broker is away are kept
    in flash; the device is killed (no chance to save anything then), started again on the
    same flash, and the messages arrive after it connects."""
    broker = PersistentBroker(broker_port, tmp_path / "broker").start()
    observer = persistent_subscription(Peer(broker_port), OBSERVER_ID, SEQ_TOPIC)
    try:
        wait_for_connections(broker, OBSERVER_ID, 1)
        device.launch()
        console.until("mqtt: subscribed .*granted QoS", timeout=20)
        wait_for_save(broker)
        broker.kill()
        console.until("mqtt: connection lost", timeout=10)
        queued = []
        for seq in range(5):
            _, outcome, answer = console.pub(SEQ_TOPIC, f"kept-{seq}")
            assert outcome == "queued", answer
            queued.append(f"{SEQ_TOPIC} kept-{seq}")
        device.close()  # SIGKILL: the RAM outbox is gone

        broker.start()
        wait_for_connections(broker, OBSERVER_ID, 2)
        device.launch()
        console.until(r"outbox: 5 message\(s\) from before the reboot queued again", timeout=10)
        console.until("mqtt: connected", timeout=30)
        for line in queued:
            observer.wait_for(line, timeout=20)
        # Acknowledged, so deleted from flash: another restart sends nothing again. The MQTT
        # thread deletes a record as it handles the PUBACK, before it updates `mqtt status`;
        # nothing in flight and nothing queued there, once all five arrived, means all five
        # acknowledged and deleted.
        console.until("mqtt: subscribed .*granted QoS", timeout=20)
        poll_until(console.status,
                   lambda st: st["in flight"] == "0" and st["outbox"] == "0", 10,
                   "the messages from before the reboot were not all acknowledged")
        device.close()
        device.launch()
        boot = device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=30)
        assert any("credentials installed" in line for line in boot), boot  # the whole boot
        assert not any("queued again" in line for line in boot), \
            "acknowledged messages were sent again"
    finally:
        observer.close()
        broker.stop()


def test_bench_publishes_every_numbered_message_from_the_mqtt_thread(peer, device, console):
    """`mqtt bench`: the MQTT thread publishes numbered messages as fast as its outbox takes
    them (bench/run measures throughput with it). Every number must arrive once per QoS, and
    a bad plan is refused with its reason."""
    count = 300
    messages = peer.subscribe(f"{DEVICE_TOPICS}/bench/#")
    try:
        launch(device)
        console.until("mqtt: subscribed .*granted QoS", timeout=20)
        for qos in (1, 0):
            console.command(f"mqtt bench {count} {qos} 32")
            console.until(rf"bench queued: {count} messages, QoS {qos}, 32 bytes", timeout=10)
            done = console.until(rf"bench: done: {count} messages at QoS {qos} of 32 bytes "
                                 rf"sent and settled in (\d+) ms", timeout=60)
            expected = {f"{DEVICE_TOPICS}/bench/q{qos} {str(n).ljust(32, '.')}"
                        for n in range(count)}
            missing = messages.wait_for_all(expected, timeout=30)
            assert not missing, f"QoS {qos}: {len(missing)} of {count} missing"
            print(f"\nbench QoS {qos}: {count} messages in {done.group(1)} ms")

        console.command("mqtt bench 0 1")
        console.until(r"bench rejected: count must be 1 to 1000000, not '0'", timeout=10)
        console.command("mqtt bench 5 1 10")
        console.until(r"bench rejected: size must be 11 to 192, not '10'", timeout=10)
    finally:
        messages.close()
