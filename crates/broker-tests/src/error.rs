//! Why the harness could not do what a test asked, grouped by cause.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A harness failure. Its `Debug` is its `Display`, so that a test's `unwrap` prints the
/// whole explanation (a broker log, the fix for a missing tool) rather than a struct dump.
pub enum HarnessError {
    /// A program the tests need is not installed.
    ToolMissing {
        /// The program.
        program: &'static str,
        /// The command that installs it.
        install: &'static str,
    },
    /// A file or process operation failed.
    Io {
        /// What the harness was doing.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// A helper program (mkcerts, mosquitto_pub) exited with failure.
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard output and error.
        output: String,
    },
    /// Mosquitto exited during start or did not listen in time.
    BrokerNotReady {
        /// What went wrong.
        reason: String,
        /// The configuration used.
        config: PathBuf,
        /// The broker log so far.
        log: String,
    },
    /// rustls refused the configuration or the peer.
    Tls(rustls::Error),
    /// A PEM file could not be read.
    Pem {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The MQTT client reported an error (the connection ended).
    Mqtt(mqtt_core::Error),
    /// A bounded wait ran out.
    Timeout {
        /// What was awaited, and what had happened by then.
        what: String,
    },
}

impl HarnessError {
    /// An [`HarnessError::Io`] with context.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        HarnessError::Io {
            what: what.into(),
            source,
        }
    }

    /// The rustls error inside, if this is a TLS failure (directly or via an `io::Error`
    /// that rustls returned).
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        match self {
            HarnessError::Tls(error) => Some(error),
            HarnessError::Io { source, .. } => source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
            _ => None,
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::ToolMissing { program, install } => {
                write!(
                    f,
                    "{program} is not installed; these tests need it: {install}"
                )
            }
            HarnessError::Io { what, source } => write!(f, "{what}: {source}"),
            HarnessError::Command {
                command,
                status,
                output,
            } => {
                write!(f, "`{command}` failed ({status}):\n{output}")
            }
            HarnessError::BrokerNotReady {
                reason,
                config,
                log,
            } => write!(
                f,
                "mosquitto -c {}: {reason}\n----- broker log -----\n{log}----- end of log -----",
                config.display()
            ),
            HarnessError::Tls(error) => write!(f, "TLS: {error}"),
            HarnessError::Pem { path, reason } => write!(f, "{}: {reason}", path.display()),
            HarnessError::Mqtt(error) => write!(f, "MQTT client: {error}"),
            HarnessError::Timeout { what } => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for HarnessError {}

impl From<mqtt_core::Error> for HarnessError {
    fn from(error: mqtt_core::Error) -> Self {
        HarnessError::Mqtt(error)
    }
}

impl From<rustls::Error> for HarnessError {
    fn from(error: rustls::Error) -> Self {
        HarnessError::Tls(error)
    }
}
