//! `embedded_io::{Read, Write}` + `mqtt_core::driver::ReadTimeout` on `std::net::TcpStream`
//! and on rustls, and a `std::time::Instant` clock: the host side of the seam the firmware
//! fills with Zephyr sockets (coreMQTT's transport contract: write all, read with a timeout).

use crate::broker::LOOPBACK;
use crate::error::HarnessError;
use mqtt_core::driver::{Clock, ReadTimeout};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Connecting and the TLS handshake may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A write may block this long (the broker stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Milliseconds since the clock was made, as the core's [`mqtt_core::Instant`].
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    start: std::time::Instant,
}

impl StdClock {
    /// A clock starting at zero now.
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
        }
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> mqtt_core::Instant {
        mqtt_core::Instant(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(LOOPBACK, port))
}

/// A read timeout for `set_read_timeout`, which refuses zero.
fn read_timeout(timeout_ms: u32) -> Duration {
    Duration::from_millis(u64::from(timeout_ms.max(1)))
}

/// A std I/O error as the driver's contract wants it: a read that timed out (`WouldBlock` on
/// Linux, `TimedOut` elsewhere) has the kind `TimedOut`.
#[derive(Debug)]
pub struct IoError(pub io::Error);

impl embedded_io::Error for IoError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self.0.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                embedded_io::ErrorKind::TimedOut
            }
            other => other.into(),
        }
    }
}

/// One blocking read under the contract: a TLS peer that closes TCP without close_notify
/// (Mosquitto after DISCONNECT, or killed) ends the stream like a plain FIN.
fn read_stream(result: io::Result<usize>) -> Result<usize, IoError> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other.map_err(IoError),
    }
}

/// Implements the driver's transport traits on a type with an `io::Read + io::Write` field
/// and a way to set the read timeout of the socket under it.
macro_rules! impl_transport {
    ($type:ty, $stream:ident, $($socket:ident).+) => {
        impl embedded_io::ErrorType for $type {
            type Error = IoError;
        }

        impl embedded_io::Read for $type {
            fn read(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
                read_stream(self.$stream.read(buf))
            }
        }

        impl embedded_io::Write for $type {
            fn write(&mut self, buf: &[u8]) -> Result<usize, IoError> {
                self.$stream.write(buf).map_err(IoError)
            }

            fn flush(&mut self) -> Result<(), IoError> {
                // rustls' StreamOwned::write ignores errors of writing records out; flush
                // reports them.
                self.$stream.flush().map_err(IoError)
            }
        }

        impl ReadTimeout for $type {
            fn set_read_timeout(&mut self, timeout_ms: u32) -> Result<(), IoError> {
                let socket: &TcpStream = &self.$($socket).+;
                socket
                    .set_read_timeout(Some(read_timeout(timeout_ms)))
                    .map_err(IoError)
            }
        }
    };
}

/// Plain TCP to a loopback port.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
}

impl TcpTransport {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> Result<TcpTransport, HarnessError> {
        let stream = TcpStream::connect_timeout(&loopback(port), CONNECT_TIMEOUT)
            .map_err(|e| HarnessError::io(format!("connecting to 127.0.0.1:{port}"), e))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
            .map_err(|e| HarnessError::io("configuring the TCP socket", e))?;
        Ok(TcpTransport { stream })
    }
}

impl_transport!(TcpTransport, stream, stream);

fn read_pem_error(path: &Path, error: rustls::pki_types::pem::Error) -> HarnessError {
    HarnessError::Pem {
        path: path.to_path_buf(),
        reason: format!("{error:?}"),
    }
}

/// A rustls client configuration (ring provider, TLS 1.2 and 1.3) trusting only the CA in
/// `ca_pem`, presenting `cert_pem` + `key_pem` as the client certificate.
pub fn client_config(
    ca_pem: &Path,
    cert_pem: &Path,
    key_pem: &Path,
) -> Result<Arc<ClientConfig>, HarnessError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).map_err(|e| read_pem_error(ca_pem, e))? {
        roots.add(cert.map_err(|e| read_pem_error(ca_pem, e))?)?;
    }
    let chain = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| read_pem_error(cert_pem, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_pem_error(cert_pem, e))?;
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| read_pem_error(key_pem, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// TLS over TCP to a loopback port with rustls.
pub struct TlsTransport {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("peer", &self.stream.sock.peer_addr().ok())
            .finish()
    }
}

impl TlsTransport {
    /// Connects to `127.0.0.1:port`, verifying the broker certificate against `server_name`
    /// (the host name the firmware sets with `TLS_HOSTNAME`), and completes the handshake.
    ///
    /// With TLS 1.3 the broker checks the client certificate after the client considers the
    /// handshake done: a refused client certificate shows up at the first read, not here.
    pub fn connect(
        port: u16,
        server_name: &str,
        config: Arc<ClientConfig>,
    ) -> Result<TlsTransport, HarnessError> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|e| {
            HarnessError::io(
                "parsing the server name",
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        })?;
        let mut conn = ClientConnection::new(config, name)?;
        let mut sock = TcpStream::connect_timeout(&loopback(port), CONNECT_TIMEOUT)
            .map_err(|e| HarnessError::io(format!("connecting to 127.0.0.1:{port}"), e))?;
        sock.set_nodelay(true)
            .and_then(|()| sock.set_write_timeout(Some(WRITE_TIMEOUT)))
            .and_then(|()| sock.set_read_timeout(Some(CONNECT_TIMEOUT)))
            .map_err(|e| HarnessError::io("configuring the TCP socket", e))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(|e| match into_rustls_error(e) {
                    Ok(tls) => HarnessError::Tls(tls),
                    Err(io) => HarnessError::io("TLS handshake", io),
                })?;
        }
        Ok(TlsTransport {
            stream: StreamOwned::new(conn, sock),
        })
    }
}

/// The rustls error inside an `io::Error` from `complete_io`, or the `io::Error` itself.
fn into_rustls_error(error: io::Error) -> Result<rustls::Error, io::Error> {
    let is_tls = error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>());
    if !is_tls {
        return Err(error);
    }
    match error
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(tls)) => Ok(*tls),
        Some(Err(other)) => Err(io::Error::other(other)),
        None => Err(io::Error::other("TLS error without detail")),
    }
}

// rustls keeps a partly received record across a timed-out read.
impl_transport!(TlsTransport, stream, stream.sock);
