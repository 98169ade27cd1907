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


def broker_certificate(directory, extensions: str, digest: str = "sha256"):
    """A broker certificate from our CA for our host name, in date, with these X.509
    extensions and signature hash: one property wrong at a time. Returns the directory."""
    directory.mkdir()
    shutil.copy(DEV_CERTS / "ca.crt.pem", directory)
    key, csr, cert = (directory / name for name in ("broker.key.pem", "broker.csr",
                                                    "broker.crt.pem"))
    ext = directory / "ext.cnf"
    ext.write_text(extensions + "\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=30)  # noqa: E731
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(DEV_CERTS / "ca.crt.pem"),
        "-CAkey", str(DEV_CERTS / "ca.key.pem"), "-CAserial", str(directory / "ca.srl"),
        "-CAcreateserial", "-days", "30", f"-{digest}",
        "-extfile", str(ext), "-out", str(cert))
    return directory


def test_refuses_a_broker_certificate_whose_extended_key_usage_is_not_for_a_server(
        tmp_path, broker_port, device):
    # Issued for clients only (extendedKeyUsage clientAuth): mbedTLS refuses it after the
    # verify callback; the log must still say why, naming the field.
    client_only = broker_certificate(tmp_path / "client-only", "extendedKeyUsage = clientAuth")
    broker = Broker(broker_port, tmp_path / "broker", certs=client_only).start()
    try:
        expect_refusal_and_retry(device, broker_port,
                                 r"tls: broker certificate's key usage does not allow a TLS "
                                 r"server \(extendedKeyUsage lacks serverAuth\)")
    finally:
        broker.stop()


def test_refuses_a_broker_certificate_whose_key_usage_lacks_digital_signature(
        tmp_path, broker_port, device):
    # For a server (serverAuth), but its key may not sign, which ECDHE needs of a server.
    no_signing = broker_certificate(tmp_path / "no-signing",
                                    "keyUsage = critical, keyEncipherment\n"
                                    "extendedKeyUsage = serverAuth")
    broker = Broker(broker_port, tmp_path / "broker", certs=no_signing).start()
    try:
        expect_refusal_and_retry(device, broker_port,
                                 r"tls: broker certificate's key usage does not allow a TLS "
                                 r"server \(keyUsage lacks digitalSignature\)")
    finally:
        broker.stop()


def sha1_broker(tmp_path, port: int, tls_version: ssl.TLSVersion) -> TlsListener:
    """A TLS listener on `port` serving a broker certificate that is right in everything but
    the hash our CA signed it with: SHA-1, which this build lacks. Mosquitto's OpenSSL will
    not serve a SHA-1 certificate; a listener at security level 0 will. None of its
    handshakes may complete (the tests check `completed`)."""
    sha1 = broker_certificate(tmp_path / "sha1", "extendedKeyUsage = serverAuth", "sha1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.maximum_version = tls_version
    context.load_cert_chain(sha1 / "broker.crt.pem", sha1 / "broker.key.pem")
    listener = TlsListener(port, context, lambda tls: listener.completed.append(tls), 5)
    listener.completed = []
    return listener


def test_refuses_a_broker_certificate_signed_with_sha1_over_tls_1_2(tmp_path, broker_port,
                                                                   device):
    # TLS 1.2: the server sends the certificate anyway; mbedTLS cannot read it.
    listener = sha1_broker(tmp_path, broker_port, ssl.TLSVersion.TLSv1_2)
    try:
        expect_refusal_and_retry(device, broker_port,
                                 r"tls: broker certificate chain unreadable: signed with a "
                                 r"hash \(e.g. SHA-1\) or a key type this build lacks")
        assert not listener.completed
    finally:
        listener.stop()


def test_names_the_likely_cause_when_a_tls_1_3_broker_has_only_a_sha1_certificate(
        tmp_path, broker_port, device):
    # TLS 1.3: the server has no certificate signed with an algorithm the device offers and
    # gives up before sending one, so the device cannot tell a certificate problem from a
    # handshake broken off: it names the likely causes and keeps the fast schedule.
    listener = sha1_broker(tmp_path, broker_port, ssl.TLSVersion.TLSv1_3)
    try:
        device.device_config.extra_test_args += " --reconnect-cap-ms=2000"
        device.command = []
        device.launch()
        for _ in range(2):
            lines = device.readlines_until(
                regex=f"connect to localhost:{broker_port} failed: tls: handshake failed before "
                      r"the certificate check: no TLS version, cipher suite or signature "
                      r"algorithm in common \(e.g. SHA-1 signed\)", timeout=60)
            assert not any("accepted" in line for line in lines), lines
            device.readlines_until(regex=r"reconnecting in [0-9]+ ms$", timeout=5)
        assert device.is_device_running()
        assert not listener.completed
    finally:
        listener.stop()


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
