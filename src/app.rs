//! The device's one thread: credentials, network, then connect → run → back off → reconnect,
//! forever. The MQTT protocol itself is `mqtt_core`; this module only feeds it a TLS socket,
//! the clock and the application's requests.
//!
//! Log lines at `info` are one per state change and stable: the end-to-end tests match them.

use crate::credentials;
use crate::net::{self, NetError, TlsSocket};
use crate::settings::Settings;
use core::fmt::Write as _;
use heapless::String;
use log::{error, info, warn};
use mqtt_core::backoff::{Backoff, BackoffConfig};
use mqtt_core::driver::{Client, Clock};
use mqtt_core::session::ConnectionState;
use mqtt_core::{ConnectOptions, Error, Event, Instant, LastWill, QoS, Session, SessionConfig, TransportError};

/// Uptime as the MQTT core's clock.
struct Uptime;

impl Clock for Uptime {
    fn now(&self) -> Instant {
        Instant(u64::try_from(zephyr::sys::uptime_get()).unwrap_or(0))
    }
}

fn sleep_ms(ms: u32) {
    zephyr::time::sleep(zephyr::time::Duration::millis(u64::from(ms)));
}

/// Longest topic the device builds: prefix + client id + suffix.
const TOPIC_CAPACITY: usize = 128;

/// The device's topics under `<prefix>/<client id>/`.
struct Topics {
    status: String<TOPIC_CAPACITY>,
    commands: String<TOPIC_CAPACITY>,
}

impl Topics {
    fn new(settings: &Settings) -> Result<Self, core::fmt::Error> {
        let base = |suffix: &str| -> Result<String<TOPIC_CAPACITY>, core::fmt::Error> {
            let mut topic = String::new();
            write!(topic, "{}/{}/{}", settings.topic_prefix, settings.client_id, suffix)?;
            Ok(topic)
        };
        Ok(Self { status: base("status")?, commands: base("cmd/#")? })
    }
}

/// A NUL-terminated copy of the broker's host name for the socket API.
fn host_name_c(host: &str) -> Option<String<256>> {
    let mut name = String::new();
    name.push_str(host).ok()?;
    name.push('\0').ok()?;
    Some(name)
}

/// Never returns: the device runs until power goes away.
pub fn run() -> ! {
    let settings = Settings::current();
    info!(
        "secure-mqtt starting: broker {}:{}, client id {}",
        settings.broker_host, settings.broker_port, settings.client_id
    );

    match credentials::install_builtin(settings.sec_tag) {
        Ok(installed) => info!("credentials installed (mutual TLS: {})", installed.mutual_tls),
        Err((kind, cause)) => halt(format_args!("cannot register {kind:?} credential: {cause:?}")),
    }
    let Ok(topics) = Topics::new(&settings) else {
        halt(format_args!("topic prefix and client id are longer than {TOPIC_CAPACITY} bytes"));
    };
    let Some(host_name) = host_name_c(settings.broker_host) else {
        halt(format_args!("broker host name is longer than 255 bytes"));
    };
    let Ok(host_name) = core::ffi::CStr::from_bytes_with_nul(host_name.as_bytes()) else {
        halt(format_args!("broker host name contains a NUL byte"));
    };

    let will = LastWill { topic: &topics.status, payload: b"offline", qos: QoS::AtLeastOnce, retain: true };
    let mut config = SessionConfig::new(ConnectOptions {
        client_id: settings.client_id,
        username: None,
        password: None,
        clean_session: settings.clean_session,
        keep_alive_s: settings.keep_alive_s,
        last_will: Some(will),
    });
    config.inflight_window = settings.inflight_window;
    config.ping_timeout_ms = settings.ping_timeout_ms;
    let session: Session<'_> = match Session::new(config) {
        Ok(session) => session,
        Err(cause) => halt(format_args!("invalid MQTT settings: {cause:?}")),
    };
    let mut client: Client<'_, TlsSocket, Uptime> = Client::new(session, Uptime);
    if let Err(cause) = client.session().subscribe(&[(&topics.commands, QoS::AtLeastOnce)]) {
        halt(format_args!("cannot subscribe to {}: {cause}", topics.commands));
    }

    let backoff_config = BackoffConfig {
        base_ms: settings.reconnect_base_ms,
        cap_ms: settings.reconnect_cap_ms,
        ..BackoffConfig::default()
    };
    let mut backoff = Backoff::new(backoff_config, net::random_u64());
    let sec_tags = [settings.sec_tag];

    loop {
        while let Err(cause) = net::wait_for_network(settings.network_wait_ms) {
            warn!("network not up yet ({cause:?}); still waiting");
        }
        let cause = match connect(&settings, host_name, &sec_tags) {
            Ok(socket) => {
                let started = client.clock().now();
                let cause = run_connection(&mut client, socket, &topics);
                let lasted = client.clock().now().ms_since(started);
                backoff.connection_ended(lasted);
                cause
            }
            Err(cause) => {
                warn!("connect to {}:{} failed: {cause}", settings.broker_host, settings.broker_port);
                if cause.is_recoverable() {
                    Error::Transport(TransportError::Connect)
                } else {
                    Error::Config(mqtt_core::ConfigError::TransportRejected)
                }
            }
        };
        match backoff.next_delay_ms(&cause) {
            Some(delay) => {
                info!("reconnecting in {delay} ms");
                sleep_ms(delay);
            }
            None => halt(format_args!("not reconnecting: {cause}; fix the configuration and reboot")),
        }
    }
}

fn connect(settings: &Settings, host_name: &core::ffi::CStr, sec_tags: &[i32]) -> Result<TlsSocket, NetError> {
    info!("connecting to {}:{}", settings.broker_host, settings.broker_port);
    let address = net::resolve(host_name, settings.broker_port)?;
    let socket = TlsSocket::connect(&address, host_name, sec_tags)?;
    info!("tls: connected to {}", settings.broker_host);
    Ok(socket)
}

/// Runs one MQTT connection over `socket` until it ends; returns why it ended.
fn run_connection(client: &mut Client<'_, TlsSocket, Uptime>, socket: TlsSocket, topics: &Topics) -> Error {
    client.attach(socket);
    loop {
        let mut just_connected = false;
        let result = client.poll(1_000, &mut |event| match event {
            Event::Connected { session_present } => {
                info!("mqtt: connected (session present: {session_present})");
                just_connected = true;
            }
            Event::Message(message) => match core::str::from_utf8(message.payload) {
                Ok(text) => info!("mqtt: received on {}: {}", message.topic, text),
                Err(_) => info!("mqtt: received on {}: {} bytes", message.topic, message.payload.len()),
            },
            Event::Published(id) => log::debug!("mqtt: {id:?} acknowledged"),
            Event::Subscribed { packet_id, results } => {
                info!("mqtt: subscribed (request {packet_id}): {results:?}")
            }
            Event::Unsubscribed { packet_id } => info!("mqtt: unsubscribed (request {packet_id})"),
            Event::ConnectionLost(cause) => warn!("mqtt: connection lost: {cause}"),
        });
        if let Err(cause) = result {
            return cause;
        }
        if just_connected {
            match client.session().publish(&topics.status, b"online", QoS::AtLeastOnce, true) {
                Ok(_) => info!("mqtt: published online to {}", topics.status),
                Err(cause) => warn!("mqtt: status not published: {cause}"),
            }
        }
        if client.session().state() == ConnectionState::Disconnected {
            return Error::Transport(TransportError::Closed);
        }
    }
}

/// Stops the device's work for good with an error line, repeated so that a console opened
/// later still shows it.
fn halt(reason: core::fmt::Arguments<'_>) -> ! {
    loop {
        error!("halted: {reason}");
        sleep_ms(60_000);
    }
}
