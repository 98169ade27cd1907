#!/usr/bin/env python3
"""Captures what a real Mosquitto sends to a client, byte for byte, for the golden tests
(tests/golden_packets.rs). Starts `mosquitto` on a free loopback port (plain TCP, anonymous),
speaks MQTT 3.1.1 over a raw socket and writes each packet the broker sent, as hex, to
mosquitto.txt with what provoked it.

    python3 tests/golden/capture.py > tests/golden/mosquitto.txt
"""
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_packet(sock):
    first = sock.recv(1)
    length, shift, header = 0, 0, bytearray(first)
    while True:
        b = sock.recv(1)
        header += b
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if b[0] & 0x80 == 0:
            break
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return bytes(header) + body


def string(s):
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id, clean=True):
    variable = string(b"MQTT") + bytes([4, 0x02 if clean else 0x00]) + (30).to_bytes(2, "big")
    payload = string(client_id)
    return bytes([0x10, len(variable) + len(payload)]) + variable + payload


def main():
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
            version = version.splitlines()[0] if version else "mosquitto"
            time.sleep(0.5)
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            out = [f"# Captured from {version} on 127.0.0.1 by tests/golden/capture.py"]

            def exchange(name, packet):
                s.sendall(packet)
                reply = read_packet(s)
                out.append(f"{name} {reply.hex()}")
                return reply

            exchange("connack_clean_session", connect_packet(b"golden-1"))
            exchange("suback_qos0_qos1_qos2",
                     bytes([0x82, 2 + 3 * 11]) + (7).to_bytes(2, "big")
                     + string(b"golden/a") + b"\x00" + string(b"golden/b") + b"\x01"
                     + string(b"golden/c") + b"\x02")
            exchange("puback_id_11",
                     bytes([0x32, 2 + 8 + 2 + 2]) + string(b"golden/x") + (11).to_bytes(2, "big") + b"hi")
            exchange("pubrec_id_12",
                     bytes([0x34, 2 + 8 + 2 + 2]) + string(b"golden/x") + (12).to_bytes(2, "big") + b"hi")
            exchange("pubcomp_id_12", bytes([0x62, 2]) + (12).to_bytes(2, "big"))
            # A retained QoS 1 message to a topic we subscribed to comes back to us.
            exchange("publish_qos1_echo",
                     bytes([0x32, 2 + 8 + 2 + 5]) + string(b"golden/b") + (13).to_bytes(2, "big") + b"hello")
            puback = read_packet(s)
            out.append(f"puback_id_13 {puback.hex()}")
            exchange("unsuback_id_14", bytes([0xA2, 2 + 10]) + (14).to_bytes(2, "big") + string(b"golden/a"))
            exchange("pingresp", bytes([0xC0, 0]))
            s.close()
            # A second client with clean session off, twice: session present on the second.
            for name in ("connack_persistent_first", "connack_persistent_session_present"):
                c = socket.create_connection(("127.0.0.1", port), timeout=5)
                c.sendall(connect_packet(b"golden-2", clean=False))
                out.append(f"{name} {read_packet(c).hex()}")
                c.sendall(bytes([0xE0, 0]))
                c.close()
                time.sleep(0.2)
            print("\n".join(out))
        finally:
            broker.kill()
            broker.wait()


if __name__ == "__main__":
    sys.exit(main())
