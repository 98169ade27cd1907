# SPDX-License-Identifier: Apache-2.0
"""Loopback ports and TLS listeners for the brokers and proxies the tests and the benchmark
start. Plain Python, so that bench/bench.py can use it without pytest or the twister harness."""

import socket
import ssl
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class TlsListener:
    """TLS server handshakes on a loopback port, on a thread of its own: each connection whose
    handshake completes goes to `on_connection`; one whose handshake fails is closed."""

    def __init__(self, port: int, context: ssl.SSLContext, on_connection,
                 handshake_timeout: float):
        self.context = context
        self.on_connection = on_connection
        self.handshake_timeout = handshake_timeout
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # stop() closed the listener
            conn.settimeout(self.handshake_timeout)
            try:
                tls = self.context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                conn.close()
                continue
            self.on_connection(tls)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()
