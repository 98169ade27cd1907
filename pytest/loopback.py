# SPDX-License-Identifier: Apache-2.0
"""Loopback ports and TLS listeners for the brokers and proxies the tests and the benchmark
start. Plain Python, so that bench/bench.py can use it without pytest or the twister harness."""

import ctypes
import socket
import ssl
import struct
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
    handshake completes goes to `on_connection`; one whose handshake fails is closed. Port 0
    lets the kernel choose a free one, bound at once (no window in which another process
    takes it); `port` is the one listened on."""

    def __init__(self, port: int, context: ssl.SSLContext, on_connection,
                 handshake_timeout: float):
        self.context = context
        self.on_connection = on_connection
        self.handshake_timeout = handshake_timeout
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
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


class StalledPort:
    """A loopback port whose listener never accepts and whose accept queue is already full
    (a backlog of 0, taken by one connection of its own): the kernel drops every further SYN
    without an answer, so a client's connect() hangs, its SYN resent at 1, 3, 7, 15, 31 s
    (Linux), until `release()` closes the port, or until the kernel gives up (`held_s`)."""

    RETRIES_FILE = "/proc/sys/net/ipv4/tcp_syn_retries"

    def __init__(self, port: int):
        self.listener = socket.create_server(("127.0.0.1", port), backlog=0)
        self.port = self.listener.getsockname()[1]
        # Blocking: it returns once its handshake is done and it sits in the accept queue.
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    @classmethod
    def held_s(cls) -> int:
        """How long the kernel resends a dropped SYN before a connect gives up."""
        with open(cls.RETRIES_FILE) as f:
            retries = int(f.read())
        return 2 ** (retries + 1) - 1

    def release(self) -> None:
        self.filler.close()
        self.listener.close()


class ConnectionAttempts:
    """Every TCP connection attempt (a SYN without ACK) to 127.0.0.1 at one of `ports`, as
    (time, source port, destination port), the time stamped by the kernel as the packet
    passed the loopback interface. So an attempt counts when the client made it: also one
    refused while nothing listened, and without the delay of a server that is slow to
    accept. A packet socket, so it needs CAP_NET_RAW: `ConnectionAttempts.open(ports)` is
    None without it."""

    ETH_P_ALL = 0x0003
    PACKET_HOST = 0  # a loopback packet is seen twice: as sent (outgoing) and as received
    SO_ATTACH_FILTER = 26
    SO_TIMESTAMPNS = 35
    MAX_PORTS = 200  # a classic BPF jump reaches 255 instructions ahead

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.attempts = []
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    @classmethod
    def open(cls, ports):
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(cls.ETH_P_ALL))
        except PermissionError:
            return None
        code = cls._syn_filter(list(ports))
        buffer = ctypes.create_string_buffer(code, len(code))
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }: the kernel
        # copies the instructions (8 bytes each), so `buffer` need only outlive this call.
        program = struct.pack("HL", len(code) // 8, ctypes.addressof(buffer))
        sock.setsockopt(socket.SOL_SOCKET, cls.SO_ATTACH_FILTER, program)
        sock.setsockopt(socket.SOL_SOCKET, cls.SO_TIMESTAMPNS, 1)
        sock.bind(("lo", 0))
        sock.settimeout(0.2)
        return cls(sock)

    @classmethod
    def _syn_filter(cls, ports: list) -> bytes:
        """A classic BPF program (what `tcpdump -dd 'tcp dst port (P1 or P2 ...) and
        tcp[13] & 0x12 == 2'` prints), so that the kernel passes on only the SYNs and Python
        sees no bulk traffic."""
        assert 0 < len(ports) <= cls.MAX_PORTS, f"{len(ports)} ports"
        flags = 8 + len(ports)  # the instruction that loads the TCP flags
        drop = flags + 4
        program = [
            (0x28, 0, 0, 12),  # ldh [12]: ethertype
            (0x15, 0, drop - 2, 0x0800),  # IPv4
            (0x30, 0, 0, 23),  # ldb [23]: IP protocol
            (0x15, 0, drop - 4, 6),  # TCP
            (0x28, 0, 0, 20),  # ldh [20]: fragment offset
            (0x45, drop - 6, 0, 0x1FFF),  # not a later fragment
            (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): IP header length
            (0x48, 0, 0, 16),  # ldh [x+16]: destination port
        ]
        for i, port in enumerate(ports):  # one of the ports, else drop
            at = 8 + i
            last = i == len(ports) - 1
            program.append((0x15, flags - at - 1, drop - at - 1 if last else 0, port))
        program += [
            (0x50, 0, 0, 27),  # ldb [x+27]: TCP flags
            (0x54, 0, 0, 0x12),  # SYN | ACK
            (0x15, 0, drop - flags - 3, 0x02),  # SYN alone
            (0x06, 0, 0, 128),  # accept: the headers are enough
            (0x06, 0, 0, 0),  # drop
        ]
        return b"".join(struct.pack("HBBI", *instruction) for instruction in program)

    def _read(self) -> None:
        stamp_size = struct.calcsize("qq")
        while not self.closed:
            try:
                frame, ancillary, _, address = self.sock.recvmsg(128, socket.CMSG_SPACE(stamp_size))
            except (socket.timeout, OSError):
                continue
            if address[2] != self.PACKET_HOST:
                continue
            header = 14 + 4 * (frame[14] & 0x0F)
            source_port, destination_port = struct.unpack_from("!HH", frame, header)
            stamp = time.time()
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == self.SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", data[:stamp_size])
                    stamp = seconds + nanoseconds / 1e9
            self.attempts.append((stamp, source_port, destination_port))

    def since(self, wall_time: float) -> list:
        """(time.time() seconds, source port, destination port) of the attempts made at or
        after `wall_time`."""
        return sorted(a for a in list(self.attempts) if a[0] >= wall_time)

    def close(self) -> None:
        self.closed = True
        self.thread.join(5)
        self.sock.close()
