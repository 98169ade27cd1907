# SPDX-License-Identifier: Apache-2.0
"""The device refuses brokers it must not trust, says why in its log, and keeps retrying with
backoff. Certificates come from the project's own tooling (certs/mkcerts)."""

import shutil
import ssl
import subprocess

from conftest import DEV_CERTS, Broker, expect_refusal_and_retry, mkcerts
from loopback import TlsListener


def test_refuses_broker_certificate_from_another_ca(tmp_path, broker_port, device):
    other = tmp_path / "other-ca"
    mkcerts("ca", "--out", str(other), "--cn", "Impostor CA")
    mkcerts("broker", "--out", str(other), "--ca-dir", str(other))
    broker = Broker(broker_port, tmp_path / "broker", certs=other).start()
    try:
        expect_refusal_and_retry(device, broker_port, "tls: broker certificate not signed by our CA")
    finally:
        broker.stop()


def test_refuses_broker_certificate_for_another_host_name(tmp_path, broker_port, device):
    wrong_name = tmp_path / "wrong-name"
    wrong_name.mkdir()
    shutil.copy(DEV_CERTS / "ca.crt.pem", wrong_name)
    mkcerts("broker", "--out", str(wrong_name), "--ca-dir", str(DEV_CERTS),
            "--san", "DNS:broker.example.com")
    broker = Broker(broker_port, tmp_path / "broker", certs=wrong_name).start()
    try:
        expect_refusal_and_retry(device, broker_port,
                                 "tls: broker certificate is for another host name")
    finally:
        broker.stop()


def test_refuses_an_expired_broker_certificate_from_our_ca(tmp_path, broker_port, device):
    # Our CA, our host name, but valid only during 2019: only the date is wrong.
    expired = tmp_path / "expired"
    expired.mkdir()
    shutil.copy(DEV_CERTS / "ca.crt.pem", expired)
    mkcerts("broker", "--out", str(expired), "--ca-dir", str(DEV_CERTS),
            "--not-before", "20190101000000Z", "--not-after", "20200101000000Z")
    broker = Broker(broker_port, tmp_path / "broker", certs=expired).start()
    try:
        expect_refusal_and_retry(device, broker_port, "tls: broker certificate expired")
    finally:
        broker.stop()


def test_refuses_a_broker_certificate_that_is_not_valid_yet(tmp_path, broker_port, device):
    future = tmp_path / "future"
    future.mkdir()
    shutil.copy(DEV_CERTS / "ca.crt.pem", future)
    mkcerts("broker", "--out", str(future), "--ca-dir", str(DEV_CERTS),
            "--not-before", "20400101000000Z", "--not-after", "20410101000000Z")
    broker = Broker(broker_port, tmp_path / "broker", certs=future).start()
    try:
        expect_refusal_and_retry(device, broker_port,
                                 r"tls: broker certificate not valid yet \(or the wall clock is behind\)")
    finally:
        broker.stop()


def test_refuses_a_broker_certificate_whose_key_usage_is_not_for_a_server(tmp_path, broker_port,
                                                                          device):
    # Our CA, our host name, in date, but issued for clients only (extendedKeyUsage
    # clientAuth): mbedTLS refuses it after the verify callback; the log must still say why.
    client_only = tmp_path / "client-only"
    client_only.mkdir()
    shutil.copy(DEV_CERTS / "ca.crt.pem", client_only)
    key, csr, cert = (client_only / name for name in ("broker.key.pem", "broker.csr",
                                                      "broker.crt.pem"))
    ext = client_only / "ext.cnf"
    ext.write_text("extendedKeyUsage = clientAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=30)  # noqa: E731
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(DEV_CERTS / "ca.crt.pem"),
        "-CAkey", str(DEV_CERTS / "ca.key.pem"), "-CAserial", str(client_only / "ca.srl"),
        "-CAcreateserial", "-days", "30",
        "-extfile", str(ext), "-out", str(cert))
    broker = Broker(broker_port, tmp_path / "broker", certs=client_only).start()
    try:
        expect_refusal_and_retry(device, broker_port,
                                 "tls: broker certificate's key usage does not allow a TLS server")
    finally:
        broker.stop()


class ImpostorProxy:
    """A man in the middle: terminates TLS with its own certificate (CA of its own) on the
    device's side and would relay to the real broker. The device must never get past the
    handshake, so nothing is ever relayed."""

    def __init__(self, certs):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs / "broker.crt.pem", certs / "broker.key.pem")
        self.handshakes_completed = 0
        # A port the kernel chooses: free by construction, so the test never has to skip.
        self.listener = TlsListener(0, context, self._handshake_completed, 5)
        self.port = self.listener.port

    def _handshake_completed(self, tls: ssl.SSLSocket) -> None:
        self.handshakes_completed += 1
        tls.close()

    def stop(self) -> None:
        self.listener.stop()


def test_refuses_a_man_in_the_middle(tmp_path, broker, device):
    impostor = tmp_path / "impostor"
    mkcerts("ca", "--out", str(impostor), "--cn", "DEV-ONLY INSECURE MQTT CA")  # same name, other key
    mkcerts("broker", "--out", str(impostor), "--ca-dir", str(impostor))
    # The device is pointed at the proxy's port; the real broker runs behind it.
    proxy = ImpostorProxy(impostor)
    try:
        args = device.device_config.extra_test_args
        assert f"--broker-port={broker.port}" in args, args
        device.device_config.extra_test_args = args.replace(f"--broker-port={broker.port}",
                                                            f"--broker-port={proxy.port}")
        device.command = []
        expect_refusal_and_retry(device, proxy.port, "tls: broker certificate not signed by our CA")
        assert proxy.handshakes_completed == 0
    finally:
        proxy.stop()
