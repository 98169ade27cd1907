//! Host integration tests (tier 4): `mqtt-core` against a real Mosquitto that each
//! test starts itself on a free loopback port, over plain TCP and over TLS with client
//! certificates made by the project's own `certs/mkcerts`.
//!
//! The harness, test-only code:
//! - [`broker::Broker`]: a Mosquitto process in a temporary directory (configuration, log,
//!   persistence database), with `restart`, `stop` and `kill` for the session tests. Its log
//!   is printed when a test fails while it is alive.
//! - [`transport`]: [`transport::TcpTransport`] and [`transport::TlsTransport`] (rustls with
//!   the ring provider) implementing `embedded_io::{Read, Write}` + `ReadTimeout`, and
//!   [`transport::StdClock`].
//! - [`peer`]: `mosquitto_sub` / `mosquitto_pub` as the other end: an MQTT implementation
//!   independent of the one under test.
//! - [`device`]: runs a `mqtt_core::driver::Client` until a condition holds, recording its
//!   events with owned copies of the messages.
//!
//! Every wait is bounded; nothing here sends anything beyond 127.0.0.1. Each test has its
//! own broker, port and directories, so tests run in parallel.
//!
//! Needs `mosquitto`, `mosquitto-clients` and `openssl` (for `mkcerts`):
//! `apt-get install -y mosquitto mosquitto-clients openssl`. A missing one fails the tests with
//! that command; nothing is skipped. Run with `cargo test -p broker-tests`; the tests marked
//! `#[ignore]` reproduce known `mqtt-core` bugs (`-- --ignored` runs them).

pub mod broker;
pub mod device;
pub mod error;
pub mod peer;
pub mod transport;

pub use broker::{Broker, CertSet};
pub use device::{qos_number, test_config, Device, Inbox, OwnedMessage};
pub use error::HarnessError;
pub use peer::{Observed, Observer};
pub use transport::{StdClock, TcpTransport, TlsTransport};
