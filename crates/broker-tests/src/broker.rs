//! A Mosquitto broker per test: its own loopback port, temporary directory, configuration,
//! log and (optionally) persistence database.
//!
//! TLS brokers get their certificates and configuration from the project's own tooling,
//! `certs/mkcerts all` (CA, broker, device and observer certificates, `mosquitto.conf` with
//! `require_certificate`, `use_identity_as_username` and the `devices/%u/#` ACL), so these
//! tests exercise that tooling as well as the client.

use crate::error::HarnessError;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

/// How long Mosquitto may take to listen after being started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERM may take before SIGKILL follows.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Every broker listens here and nowhere else.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Looks for `name` in `PATH`, then in `extra` directories (`/usr/sbin` is not in every
/// `PATH`).
pub fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The `mosquitto` binary, or a failure naming the package to install: a missing broker must
/// fail these tests, never skip them.
pub fn mosquitto_program() -> Result<PathBuf, HarnessError> {
    find_program("mosquitto", &["/usr/sbin", "/usr/local/sbin"]).ok_or(HarnessError::ToolMissing {
        program: "mosquitto",
        install: "apt-get install -y mosquitto mosquitto-clients",
    })
}

/// The repository's `certs/` directory.
pub fn certs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs")
}

/// A port that is free now, below the kernel's ephemeral range: while a broker is down
/// between `kill` and `start`, no client socket of a parallel test can take its port as a
/// source port. Distinct per call within a process; spread by process id across processes.
pub fn free_port() -> Result<u16, HarnessError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|low| low.parse::<u32>().ok())
        })
        .unwrap_or(32_768);
    let low = 20_000u32;
    let high = ephemeral_low.min(32_768);
    if high <= low + 1_000 {
        // An unusual ephemeral range: let the kernel choose.
        let listener = TcpListener::bind((LOOPBACK, 0))
            .map_err(|e| HarnessError::io("binding a probe socket", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::io("reading the probe socket's port", e))?
            .port();
        return Ok(port);
    }
    let span = high - low;
    // One random start per process; successive calls then walk distinct ports.
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::process::id().wrapping_mul(7_919).wrapping_add(nanos)
    });
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let candidate = low + start.wrapping_add(n.wrapping_mul(7)) % span;
        let Ok(port) = u16::try_from(candidate) else {
            continue;
        };
        if TcpListener::bind((LOOPBACK, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(HarnessError::Timeout {
        what: format!("a free loopback port in {low}..{high}"),
    })
}

/// A certificate set written by `certs/mkcerts`, with the project's file names.
#[derive(Debug, Clone)]
pub struct CertSet {
    dir: PathBuf,
    client_id: String,
}

impl CertSet {
    /// Runs `certs/mkcerts all --out DIR --client-id ID` plus `extra` arguments.
    pub fn generate(dir: &Path, client_id: &str, extra: &[&str]) -> Result<CertSet, HarnessError> {
        let mut command = Command::new(certs_dir().join("mkcerts"));
        command
            .arg("all")
            .arg("--out")
            .arg(dir)
            .arg("--client-id")
            .arg(client_id)
            .args(extra);
        run_to_completion(&mut command, Duration::from_secs(60))?;
        Ok(CertSet {
            dir: dir.to_path_buf(),
            client_id: client_id.to_owned(),
        })
    }

    /// Replaces the broker certificate with one for other subject alternative names
    /// (`mkcerts broker --san LIST --force`), signed by the same CA.
    pub fn reissue_broker(&self, san: &str) -> Result<(), HarnessError> {
        let mut command = Command::new(certs_dir().join("mkcerts"));
        command
            .arg("broker")
            .arg("--out")
            .arg(&self.dir)
            .arg("--san")
            .arg(san)
            .arg("--force");
        run_to_completion(&mut command, Duration::from_secs(60))?;
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The device's client id, which is its certificate's CN.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt.pem")
    }
    /// The device certificate (PEM).
    pub fn device_cert(&self) -> PathBuf {
        self.dir.join("device.crt.pem")
    }
    /// The device key (PEM, PKCS#8).
    pub fn device_key(&self) -> PathBuf {
        self.dir.join("device.key.pem")
    }
    /// The observer certificate (PEM): the identity the generated ACL lets use every topic.
    pub fn observer_cert(&self) -> PathBuf {
        self.dir.join("observer.crt.pem")
    }
    /// The observer key (PEM).
    pub fn observer_key(&self) -> PathBuf {
        self.dir.join("observer.key.pem")
    }
}

/// Runs a helper command with a time limit, failing with its output if it fails.
pub(crate) fn run_to_completion(
    command: &mut Command,
    limit: Duration,
) -> Result<String, HarnessError> {
    run_with_input(command, None, limit)
}

/// Like [`run_to_completion`], writing `input` to the command's standard input first.
pub(crate) fn run_with_input(
    command: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> Result<String, HarnessError> {
    let described = format!("{command:?}");
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::io(format!("starting {described}"), e))?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        // Dropping stdin afterwards closes it: the command sees end of input.
        if let Err(e) = stdin.write_all(bytes) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::io(format!("writing to {described}"), e));
        }
    }
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Timeout {
                    what: format!("{described} to finish"),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(HarnessError::io(format!("waiting for {described}"), e)),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| HarnessError::io(format!("reading the output of {described}"), e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(HarnessError::Command {
            command: described,
            status: output.status.to_string(),
            output: text,
        })
    }
}

/// What kind of listener a broker has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Plain TCP, anonymous clients allowed.
    Plain,
    /// Plain TCP, anonymous clients refused (and no password file: everyone is refused).
    PlainRefusingAnonymous,
    /// TLS from `mkcerts all`: client certificate required, CN = username, ACL.
    Tls,
}

/// A running (or stopped) Mosquitto owned by one test. Dropping it kills the broker; if the
/// test is failing at that moment, the broker log is printed.
pub struct Broker {
    dir: TempDir,
    port: u16,
    flavour: Flavour,
    config: PathBuf,
    log: PathBuf,
    output: PathBuf,
    mosquitto: PathBuf,
    certs: Option<CertSet>,
    child: Option<Child>,
}

impl Broker {
    /// A plain TCP broker with anonymous access and no persistence, started.
    pub fn plain() -> Result<Broker, HarnessError> {
        Broker::launch(Flavour::Plain, false, None)
    }

    /// A plain TCP broker that refuses anonymous clients (CONNACK return code 5, not
    /// authorized, to a client without credentials), started.
    pub fn plain_refusing_anonymous() -> Result<Broker, HarnessError> {
        Broker::launch(Flavour::PlainRefusingAnonymous, false, None)
    }

    /// A plain TCP broker that keeps sessions, subscriptions and queued messages across
    /// `restart` and even `kill`: it saves its database after every change.
    pub fn plain_persistent() -> Result<Broker, HarnessError> {
        Broker::launch(Flavour::Plain, true, None)
    }

    /// A TLS broker with certificates from `mkcerts all --client-id CLIENT_ID`, started.
    pub fn tls(client_id: &str) -> Result<Broker, HarnessError> {
        Broker::launch(Flavour::Tls, false, Some((client_id, None)))
    }

    /// Like [`Broker::tls`], but the broker certificate names `broker_san` instead of
    /// localhost/127.0.0.1 (`mkcerts broker --san`).
    pub fn tls_with_broker_san(client_id: &str, broker_san: &str) -> Result<Broker, HarnessError> {
        Broker::launch(Flavour::Tls, false, Some((client_id, Some(broker_san))))
    }

    fn launch(
        flavour: Flavour,
        persistence: bool,
        tls: Option<(&str, Option<&str>)>,
    ) -> Result<Broker, HarnessError> {
        let mosquitto = mosquitto_program()?;
        let dir = tempfile::Builder::new()
            .prefix("broker-tests-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating the broker's temporary directory", e))?;
        let port = free_port()?;
        let root = dir.path().to_path_buf();
        let log = root.join("mosquitto.log");
        let config = root.join("mosquitto.conf");
        let mut text = String::new();
        let certs = match (flavour, tls) {
            (Flavour::Tls, Some((client_id, broker_san))) => {
                let certs_dir = root.join("certs");
                let port_arg = port.to_string();
                let certs = CertSet::generate(&certs_dir, client_id, &["--port", &port_arg])?;
                if let Some(san) = broker_san {
                    certs.reissue_broker(san)?;
                }
                let generated = certs_dir.join("mosquitto.conf");
                text = fs::read_to_string(&generated)
                    .map_err(|e| HarnessError::io(format!("reading {}", generated.display()), e))?;
                text.push_str("\n# Added by broker-tests.\n");
                Some(certs)
            }
            _ => {
                let anonymous = flavour == Flavour::Plain;
                text.push_str(&format!(
                    "# Written by broker-tests: plain TCP for the MQTT-level tests.\n\
                     # Mosquitto started as root otherwise switches to the mosquitto user.\n\
                     user root\n\
                     listener {port} {LOOPBACK}\n\
                     allow_anonymous {anonymous}\n\
                     log_type all\n\
                     connection_messages true\n"
                ));
                None
            }
        };
        text.push_str(&format!("log_dest file {}\n", log.display()));
        if persistence {
            // Saving after every change makes the database survive SIGKILL, so a test can
            // kill the broker at any moment and still find the subscribers' sessions.
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\nautosave_on_changes true\n",
                root.display()
            ));
        }
        fs::write(&config, text)
            .map_err(|e| HarnessError::io(format!("writing {}", config.display()), e))?;
        let mut broker = Broker {
            output: root.join("mosquitto.out"),
            dir,
            port,
            flavour,
            config,
            log,
            mosquitto,
            certs,
            child: None,
        };
        broker.start()?;
        Ok(broker)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(LOOPBACK, self.port))
    }

    /// Plain or TLS.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The certificate set of a TLS broker.
    pub fn certs(&self) -> Option<&CertSet> {
        self.certs.as_ref()
    }

    /// The broker's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the broker process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Starts the broker (same port, configuration and database as before) and waits until
    /// its port accepts connections.
    pub fn start(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.output)
            .map_err(|e| HarnessError::io(format!("opening {}", self.output.display()), e))?;
        let stderr = output
            .try_clone()
            .map_err(|e| HarnessError::io("duplicating the broker output file", e))?;
        let child = Command::new(&self.mosquitto)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(stderr)
            .spawn()
            .map_err(|e| HarnessError::io(format!("starting {}", self.mosquitto.display()), e))?;
        self.child = Some(child);
        self.wait_until_listening()
    }

    fn wait_until_listening(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                match child.try_wait() {
                    Ok(None) => {}
                    Ok(Some(status)) => {
                        self.child = None;
                        return Err(self.not_ready(format!("exited during start ({status})")));
                    }
                    Err(e) => return Err(HarnessError::io("checking on mosquitto", e)),
                }
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.not_ready(format!(
                    "port {} not listening after {READY_TIMEOUT:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn not_ready(&self, reason: String) -> HarnessError {
        HarnessError::BrokerNotReady {
            reason,
            config: self.config.clone(),
            log: self.log(),
        }
    }

    /// Stops the broker gracefully (SIGTERM: it closes connections and saves its database),
    /// SIGKILL if it takes longer than 5 s.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        if let Err(error) = self.signal("-TERM") {
            self.kill();
            return Err(error);
        }
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(());
                }
            }
        }
    }

    /// Freezes the broker with SIGSTOP: it reads, acknowledges and forwards nothing, while
    /// what clients send waits in its socket buffers. [`Broker::kill`] ends it from there
    /// without it ever having seen those bytes.
    pub fn freeze(&mut self) -> Result<(), HarnessError> {
        self.signal("-STOP")
    }

    fn signal(&mut self, signal: &str) -> Result<(), HarnessError> {
        let Some(child) = self.child.as_ref() else {
            return Ok(());
        };
        let kill = find_program("kill", &["/bin", "/usr/bin"]).unwrap_or_else(|| "kill".into());
        let mut command = Command::new(kill);
        command.arg(signal).arg(child.id().to_string());
        run_to_completion(&mut command, STOP_TIMEOUT).map(|_| ())
    }

    /// Kills the broker with SIGKILL: no goodbye to the clients, nothing saved beyond what it
    /// had already written.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// [`Broker::stop`], then [`Broker::start`] on the same port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop()?;
        self.start()
    }

    /// Waits until a line of the broker log satisfies `wanted`, and returns that line: what
    /// the broker has done, where a sleep would only hope that it has. Fails after `timeout`
    /// with `what` and the log.
    pub fn wait_for_log_line(
        &self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<String, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|line| wanted(line)) {
                return Ok(line.to_owned());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{what} in the broker log within {timeout:?}; the log:\n{log}"),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker log (all starts) and anything it wrote to stdout/stderr.
    pub fn log(&self) -> String {
        let mut text = fs::read_to_string(&self.log).unwrap_or_default();
        if let Ok(output) = fs::read_to_string(&self.output) {
            if !output.trim().is_empty() {
                text.push_str("----- mosquitto stdout/stderr -----\n");
                text.push_str(&output);
            }
        }
        text
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- mosquitto log ({}, port {}) -----\n{}----- end of mosquitto log -----",
                self.config.display(),
                self.port,
                self.log()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_mosquitto_fails_with_the_install_command() {
        assert_eq!(
            find_program("no-such-program-broker-tests", &["/nonexistent"]),
            None
        );
        let missing = HarnessError::ToolMissing {
            program: "mosquitto",
            install: "apt-get install -y mosquitto mosquitto-clients",
        };
        assert!(
            missing.to_string().contains("apt-get install -y mosquitto"),
            "{missing}"
        );
    }

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: std::collections::BTreeSet<u16> =
            (0..50).map(|_| free_port().unwrap()).collect();
        assert_eq!(ports.len(), 50);
        assert!(
            ports.iter().all(|p| (20_000..32_768).contains(p)),
            "{ports:?}"
        );
    }
}
