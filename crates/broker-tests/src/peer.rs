//! The other end of each test: Mosquitto's own clients, an MQTT implementation independent of
//! the one under test. On a TLS broker they use the observer identity (`test-observer`),
//! which the ACL made by `mkcerts` lets use every topic.

use crate::broker::{find_program, run_with_input, Broker};
use crate::error::HarnessError;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long a `mosquitto_pub` run may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `mosquitto_sub` may take to connect and get its SUBACK.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// `mosquitto_sub -W`: it exits by itself after this many seconds even if never killed.
const SUBSCRIBER_LIFETIME_S: &str = "120";
/// Marks message lines in `mosquitto_sub`'s output, apart from its `-d` debug lines.
const MESSAGE_PREFIX: &str = "MSG ";

fn clients_program(name: &'static str) -> Result<PathBuf, HarnessError> {
    find_program(name, &["/usr/bin", "/usr/local/bin"]).ok_or(HarnessError::ToolMissing {
        program: name,
        install: "apt-get install -y mosquitto-clients",
    })
}

/// A client id nobody else in this process uses.
pub fn unique_client_id(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Host, port and, on a TLS broker, the observer's credentials.
fn connection_args(broker: &Broker) -> Vec<OsString> {
    let port = broker.port().to_string();
    match broker.certs() {
        // The broker certificate names localhost and 127.0.0.1; mosquitto's clients check it.
        Some(certs) => vec![
            "-h".into(),
            "localhost".into(),
            "-p".into(),
            port.into(),
            "--cafile".into(),
            certs.ca().into(),
            "--cert".into(),
            certs.observer_cert().into(),
            "--key".into(),
            certs.observer_key().into(),
        ],
        None => vec!["-h".into(), "127.0.0.1".into(), "-p".into(), port.into()],
    }
}

/// Publishes one message with `mosquitto_pub` and waits until it is done (for QoS 1/2,
/// acknowledged by the broker).
pub fn publish(
    broker: &Broker,
    topic: &str,
    payload: &str,
    qos: u8,
    retain: bool,
) -> Result<(), HarnessError> {
    let mut command = Command::new(clients_program("mosquitto_pub")?);
    command.args(connection_args(broker)).args([
        "-i",
        &unique_client_id("pub"),
        "-q",
        &qos.to_string(),
        "-t",
        topic,
        "-m",
        payload,
    ]);
    if retain {
        command.arg("-r");
    }
    run_with_input(&mut command, None, PUBLISH_TIMEOUT).map(|_| ())
}

/// Publishes each of `payloads` as one message, in order, over one connection
/// (`mosquitto_pub -l`).
pub fn publish_each(
    broker: &Broker,
    topic: &str,
    payloads: &[String],
    qos: u8,
) -> Result<(), HarnessError> {
    let mut command = Command::new(clients_program("mosquitto_pub")?);
    command.args(connection_args(broker)).args([
        "-i",
        &unique_client_id("pub"),
        "-q",
        &qos.to_string(),
        "-t",
        topic,
        "-l",
    ]);
    let mut input = payloads.join("\n");
    input.push('\n');
    run_with_input(&mut command, Some(input.as_bytes()), PUBLISH_TIMEOUT).map(|_| ())
}

/// A message as `mosquitto_sub` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Topic name.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// The QoS it was delivered with (at most the subscription's).
    pub qos: u8,
    /// The retain flag as delivered.
    pub retain: bool,
}

impl Observed {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// Parses `MSG <qos> <retain> <topic> <hex payload>`.
    fn parse(line: &str) -> Option<Observed> {
        let mut fields = line.strip_prefix(MESSAGE_PREFIX)?.splitn(4, ' ');
        let qos = fields.next()?.parse().ok()?;
        let retain = fields.next()? == "1";
        let topic = fields.next()?.to_owned();
        let hex = fields.next().unwrap_or("").trim();
        let payload = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|byte| u8::from_str_radix(byte, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()?;
        Some(Observed {
            topic,
            payload,
            qos,
            retain,
        })
    }
}

/// How an [`Observer`] subscribes.
#[derive(Debug, Clone)]
pub struct ObserverOptions {
    /// Client id (default: a unique one).
    pub client_id: Option<String>,
    /// `clean_session = false` (`mosquitto_sub -c`): the broker queues for it while it is
    /// away, and it reconnects by itself after a broker restart.
    pub persistent: bool,
    /// Subscription QoS.
    pub qos: u8,
}

impl Default for ObserverOptions {
    fn default() -> Self {
        Self {
            client_id: None,
            persistent: false,
            qos: 2,
        }
    }
}

/// A `mosquitto_sub` process subscribed to one filter, whose output is read line by line.
/// Dropping it kills the process.
pub struct Observer {
    child: Child,
    lines: Receiver<String>,
    transcript: Vec<String>,
}

fn forward_lines(stream: impl Read + Send + 'static, tag: &'static str, to: Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if to.send(format!("{tag}{line}")).is_err() {
                break;
            }
        }
    });
}

impl Observer {
    /// Subscribes to `filter` with QoS 2 and a clean session; returns once the broker sent
    /// SUBACK, so that anything published afterwards is seen.
    pub fn subscribe(broker: &Broker, filter: &str) -> Result<Observer, HarnessError> {
        Observer::subscribe_with(broker, filter, ObserverOptions::default())
    }

    /// Subscribes with `options`; returns once the broker sent SUBACK.
    pub fn subscribe_with(
        broker: &Broker,
        filter: &str,
        options: ObserverOptions,
    ) -> Result<Observer, HarnessError> {
        let stdbuf = find_program("stdbuf", &["/usr/bin"]).ok_or(HarnessError::ToolMissing {
            program: "stdbuf",
            install: "apt-get install -y coreutils",
        })?;
        let client_id = options
            .client_id
            .unwrap_or_else(|| unique_client_id("observer"));
        let mut command = Command::new(stdbuf);
        // mosquitto_sub flushes after each message but not after its debug lines; line
        // buffering makes the SUBACK line visible at once.
        command
            .arg("-oL")
            .arg(clients_program("mosquitto_sub")?)
            .args(connection_args(broker))
            .args([
                "-i",
                &client_id,
                "-q",
                &options.qos.to_string(),
                "-t",
                filter,
            ])
            .args([
                "-d",
                "-F",
                &format!("{MESSAGE_PREFIX}%q %r %t %x"),
                "-W",
                SUBSCRIBER_LIFETIME_S,
            ]);
        if options.persistent {
            command.arg("-c");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::io("starting mosquitto_sub", e))?;
        let (sender, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            forward_lines(stdout, "", sender.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            forward_lines(stderr, "stderr: ", sender);
        }
        let mut observer = Observer {
            child,
            lines,
            transcript: Vec::new(),
        };
        observer.wait_for_suback(SUBSCRIBE_TIMEOUT)?;
        Ok(observer)
    }

    /// Waits for the next SUBACK line (also after `mosquitto_sub` reconnected by itself).
    pub fn wait_for_suback(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.next_line(deadline) {
            if line.contains("received SUBACK") {
                return Ok(());
            }
        }
        Err(HarnessError::Timeout {
            what: format!("mosquitto_sub's SUBACK; its output:\n{}", self.transcript()),
        })
    }

    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                self.transcript.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next message, or `None` if none arrived within `timeout`.
    pub fn next_message(&mut self, timeout: Duration) -> Option<Observed> {
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.next_line(deadline) {
            if let Some(message) = Observed::parse(&line) {
                return Some(message);
            }
        }
        None
    }

    /// Exactly `count` messages (waiting at most `timeout` for all of them).
    pub fn collect(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Observed>, HarnessError> {
        let mut seen = 0;
        self.collect_until(timeout, |_| {
            seen += 1;
            seen >= count
        })
    }

    /// Messages up to and including the first for which `last` holds.
    pub fn collect_until(
        &mut self,
        timeout: Duration,
        mut last: impl FnMut(&Observed) -> bool,
    ) -> Result<Vec<Observed>, HarnessError> {
        let deadline = Instant::now() + timeout;
        let mut messages = Vec::new();
        while let Some(message) =
            self.next_message(deadline.saturating_duration_since(Instant::now()))
        {
            let done = last(&message);
            messages.push(message);
            if done {
                return Ok(messages);
            }
        }
        Err(HarnessError::Timeout {
            what: format!(
                "messages at mosquitto_sub: got {} ({:?}); its output:\n{}",
                messages.len(),
                messages.iter().map(Observed::text).collect::<Vec<_>>(),
                self.transcript()
            ),
        })
    }

    /// Every message that arrives within `duration` (for checking that nothing does).
    pub fn messages_within(&mut self, duration: Duration) -> Vec<Observed> {
        let deadline = Instant::now() + duration;
        let mut messages = Vec::new();
        while let Some(message) =
            self.next_message(deadline.saturating_duration_since(Instant::now()))
        {
            messages.push(message);
        }
        messages
    }

    /// Everything `mosquitto_sub` printed so far.
    pub fn transcript(&self) -> String {
        self.transcript.join("\n")
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- mosquitto_sub output -----\n{}\n----- end -----",
                self.transcript()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mosquitto_sub_message_lines() {
        let line = "MSG 2 1 devices/d/status 6f6e6c696e65";
        let parsed = Observed::parse(line).unwrap();
        assert_eq!(
            parsed,
            Observed {
                topic: "devices/d/status".into(),
                payload: b"online".to_vec(),
                qos: 2,
                retain: true
            }
        );
        assert_eq!(Observed::parse("MSG 0 0 t ").unwrap().payload, b"");
        assert_eq!(Observed::parse("Client x received SUBACK"), None);
        assert_eq!(Observed::parse("MSG 1 0 t 6"), None, "odd hex length");
    }
}
