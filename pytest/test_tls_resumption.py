# SPDX-License-Identifier: Apache-2.0
"""TLS session resumption on reconnect (TLS_SESSION_CACHE). The broker side is a TLS
terminator written with Python's ssl module in front of a plain-TCP Mosquitto, because it
can tell whether each handshake resumed a session (`SSLSocket.session_reused`); Mosquitto
does not log that. It presents the development broker certificate and requires a client
certificate from the development CA, as the real broker does."""

import select
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import DEV_CERTS
from loopback import TlsListener, free_port, wait_for_port


class Terminator:
    """TLS on `port`, relayed in clear to Mosquitto on `backend`; records `session_reused`
    and the TLS version of every handshake."""

    def __init__(self, port: int, backend: int, max_version: ssl.TLSVersion, certs=DEV_CERTS):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.maximum_version = max_version
        # With an intermediate CA (mkcerts all --intermediate), the broker sends it and
        # verifies clients against intermediate + root, as the generated mosquitto.conf does.
        chain = certs / "broker.chain.pem"
        bundle = certs / "ca-bundle.pem"
        context.load_cert_chain(chain if chain.exists() else certs / "broker.crt.pem",
                                certs / "broker.key.pem")
        context.load_verify_locations(bundle if bundle.exists() else certs / "ca.crt.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        if max_version == ssl.TLSVersion.TLSv1_2:
            # TLS 1.2 by session ID (the server's cache), the mechanism every TLS 1.2 server
            # has. TLS 1.3 uses OpenSSL's default, stateless tickets, as Mosquitto does.
            context.options |= ssl.OP_NO_TICKET
        self.backend = backend
        self.handshakes = []  # (version, session_reused)
        self.connections = []
        self.stopped = threading.Event()
        self.listener = TlsListener(port, context, self._handshake_completed, 10)

    def _handshake_completed(self, tls: ssl.SSLSocket) -> None:
        self.handshakes.append((tls.version(), tls.session_reused))
        close_requested = threading.Event()
        self.connections.append((tls, close_requested))
        threading.Thread(target=self._relay, args=(tls, close_requested), daemon=True).start()

    def _relay(self, tls: ssl.SSLSocket, close_requested: threading.Event) -> None:
        plain = socket.create_connection(("127.0.0.1", self.backend))
        tls.setblocking(False)
        try:
            while not self.stopped.is_set():
                if close_requested.is_set():
                    # The relay thread owns the SSL object, so the close_notify goes out
                    # from here.
                    tls.settimeout(5)
                    tls.unwrap()
                    break
                ready, _, _ = select.select([tls, plain], [], [], 0.2)
                if tls in ready or tls.pending():
                    try:
                        data = tls.recv(4096)
                    except ssl.SSLWantReadError:
                        data = None
                    if data == b"":
                        break
                    if data:
                        plain.sendall(data)
                if plain in ready:
                    data = plain.recv(4096)
                    if not data:
                        break
                    tls.setblocking(True)
                    tls.sendall(data)
                    tls.setblocking(False)
        except OSError:
            pass
        finally:
            plain.close()
            tls.close()

    def close_connections(self) -> None:
        """Closes every open connection with a TLS close_notify, as a broker does when it
        ends a connection. An OpenSSL server keeps a session in its cache only if it sent
        close_notify before the connection ended (`ssl_clear_bad_session`), so this is the
        close after which a TLS 1.2 session ID can be resumed."""
        for _, close_requested in self.connections:
            close_requested.set()
        self.connections.clear()

    def drop_connections(self) -> None:
        """Ends every open connection at the TCP level, without close_notify, as a lost
        network or a crashed broker does."""
        for tls, _ in self.connections:
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections.clear()

    def stop(self) -> None:
        self.stopped.set()
        self.listener.stop()


@pytest.fixture()
def plain_mosquitto(tmp_path):
    port = free_port()
    conf = tmp_path / "plain.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_port(port, 10)
    yield port
    process.kill()
    process.wait(5)


def test_a_reconnect_resumes_the_tls_1_2_session(broker_port, plain_mosquitto, device):
    """By session ID. An OpenSSL server forgets a session that ended without its
    close_notify, so the broker here closes the connection cleanly."""
    terminator = Terminator(broker_port, plain_mosquitto, ssl.TLSVersion.TLSv1_2)
    try:
        device.launch()
        device.readlines_until(regex=r"tls: connected to localhost \(TLSv1.2, ", timeout=20)
        device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=20)
        terminator.close_connections()
        device.readlines_until(regex="mqtt: connection lost", timeout=20)
        device.readlines_until(regex="mqtt: connected", timeout=30)
        print(f"\nhandshakes (version, resumed): {terminator.handshakes}")
        assert terminator.handshakes[0] == ("TLSv1.2", False)
        assert terminator.handshakes[1] == ("TLSv1.2", True), terminator.handshakes
    finally:
        terminator.stop()


def test_a_reconnect_after_a_lost_connection_resumes_the_tls_1_3_session(
        broker_port, plain_mosquitto, device):
    """By the ticket the server sent after the first handshake (zephyr/patches: Zephyr 4.3
    cached the session before the ticket came). The connection ends without close_notify,
    as on a lost network: a ticket does not depend on how the last connection ended. The
    second reconnect resumes too, with the ticket received on the resumed connection."""
    terminator = Terminator(broker_port, plain_mosquitto, ssl.TLSVersion.TLSv1_3)
    try:
        device.launch()
        device.readlines_until(regex=r"tls: connected to localhost \(TLSv1.3, ", timeout=20)
        device.readlines_until(regex="mqtt: subscribed .*granted QoS", timeout=20)
        for _ in range(2):
            terminator.drop_connections()
            device.readlines_until(regex="mqtt: connection lost", timeout=20)
            device.readlines_until(regex="mqtt: connected", timeout=30)
        print(f"\nhandshakes (version, resumed): {terminator.handshakes}")
        assert terminator.handshakes[:3] == [
            ("TLSv1.3", False), ("TLSv1.3", True), ("TLSv1.3", True)], terminator.handshakes
    finally:
        terminator.stop()


def test_new_credentials_are_not_skipped_by_resuming_the_old_session(
        broker_port, plain_mosquitto, device, console):
    """A committed credential set applies from the next connection on: that handshake must
    be a full one (a resumed one would not present the device certificate again), and the
    one after it resumes again."""
    terminator = Terminator(broker_port, plain_mosquitto, ssl.TLSVersion.TLSv1_3)
    try:
        device.launch()
        console.until("mqtt: subscribed .*granted QoS", timeout=20)
        console.command("cred image cert")
        console.until("cert from the image staged", timeout=10)
        console.command("cred commit")
        console.until(r"stored; used from the next connection on", timeout=10)
        for _ in range(2):
            terminator.drop_connections()
            console.until("mqtt: connection lost", timeout=20)
            console.until("mqtt: connected", timeout=30)
        print(f"\nhandshakes (version, resumed): {terminator.handshakes}")
        assert [resumed for _, resumed in terminator.handshakes[:3]] == [False, False, True], \
            terminator.handshakes
    finally:
        terminator.stop()
