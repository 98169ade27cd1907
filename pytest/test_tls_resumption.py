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

from conftest import DEV_CERTS, free_port, wait_for_port


class Terminator:
    """TLS on `port`, relayed in clear to Mosquitto on `backend`; records `session_reused`
    and the TLS version of every handshake."""

    def __init__(self, port: int, backend: int, max_version: ssl.TLSVersion):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.maximum_version = max_version
        self.context.load_cert_chain(DEV_CERTS / "broker.crt.pem", DEV_CERTS / "broker.key.pem")
        self.context.load_verify_locations(DEV_CERTS / "ca.crt.pem")
        self.context.verify_mode = ssl.CERT_REQUIRED
        # Session IDs in the server's cache, not tickets: the firmware's mbedTLS is built
        # without ticket support, as most of the field's brokers' clients are.
        self.context.options |= ssl.OP_NO_TICKET
        self.backend = backend
        self.handshakes = []  # (version, session_reused)
        self.connections = []
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.2)
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # stop() closed the listener
            try:
                conn.settimeout(10)
                tls = self.context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                continue
            self.handshakes.append((tls.version(), tls.session_reused))
            self.connections.append(tls)
            threading.Thread(target=self._relay, args=(tls,), daemon=True).start()

    def _relay(self, tls: ssl.SSLSocket) -> None:
        plain = socket.create_connection(("127.0.0.1", self.backend))
        tls.setblocking(False)
        try:
            while not self.stopped.is_set():
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

    def drop_connections(self) -> None:
        for tls in self.connections:
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections.clear()

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


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


@pytest.mark.xfail(strict=True, reason=(
    "open: the firmware does not offer its cached TLS 1.2 session on reconnect, although "
    "this terminator resumes for a Python client (checked by hand); cause not found yet"))
def test_a_reconnect_resumes_the_tls_1_2_session(broker_port, plain_mosquitto, device):
    terminator = Terminator(broker_port, plain_mosquitto, ssl.TLSVersion.TLSv1_2)
    try:
        device.launch()
        device.readlines_until(regex=r"tls: connected to localhost \(TLSv1.2, ", timeout=20)
        device.readlines_until(regex="mqtt: subscribed .*Granted", timeout=20)
        terminator.drop_connections()
        device.readlines_until(regex="mqtt: connection lost", timeout=20)
        device.readlines_until(regex="mqtt: connected", timeout=30)
        print(f"\nhandshakes (version, resumed): {terminator.handshakes}")
        assert terminator.handshakes[0] == ("TLSv1.2", False)
        assert terminator.handshakes[1] == ("TLSv1.2", True), terminator.handshakes
    finally:
        terminator.stop()


def test_with_tls_1_3_every_reconnect_is_a_full_handshake(broker_port, plain_mosquitto, device):
    """Documents a limit of Zephyr 4.3, not a goal: its socket layer stores the client
    session when the handshake ends, before a TLS 1.3 server sends its session ticket, so
    there is nothing to resume. If this starts failing, resumption works: update README."""
    terminator = Terminator(broker_port, plain_mosquitto, ssl.TLSVersion.TLSv1_3)
    try:
        device.launch()
        device.readlines_until(regex=r"tls: connected to localhost \(TLSv1.3, ", timeout=20)
        device.readlines_until(regex="mqtt: subscribed .*Granted", timeout=20)
        terminator.drop_connections()
        device.readlines_until(regex="mqtt: connection lost", timeout=20)
        device.readlines_until(regex="mqtt: connected", timeout=30)
        print(f"\nhandshakes (version, resumed): {terminator.handshakes}")
        assert terminator.handshakes[:2] == [("TLSv1.3", False), ("TLSv1.3", False)]
    finally:
        terminator.stop()
