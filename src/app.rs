//! The device's one thread: credentials, network, then connect → run → back off → reconnect,
//! forever. The MQTT protocol is `mqtt_core`, what the device does with it is `device_app`;
//! this module feeds them a TLS socket, the clock, the LEDs and the counters.
//!
//! Log lines at `info` are one per state change and stable: the end-to-end tests match them.

use crate::control::{self, LinkState, Status};
use crate::credentials;
use crate::leds::Leds;
use crate::net::{self, CertificateProblem, CipherSuite, NetError, TlsSocket};
use crate::outbox_journal;
use crate::runtime_credentials;
use crate::settings::Settings;
use device_app::{Command, CommandError, DeviceTopics, Endpoint, Telemetry, MAX_ENDPOINTS};
use heapless::{Deque, String, Vec};
use log::{error, info, warn};
use mqtt_core::backoff::{Backoff, BackoffConfig};
use mqtt_core::driver::{Client, Clock};
use mqtt_core::{
    ConnectOptions, Error, Event, Instant, LastWill, Password, ProtocolError, QoS, Recovery,
    ResourceError, Session, SessionConfig, TransportError,
};

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

/// How long one SNTP request may take.
const SNTP_TIMEOUT_MS: u32 = 5_000;

/// Largest reply payload (a ping is echoed up to this size).
const REPLY_CAPACITY: usize = 256;
/// Replies produced by one round of received messages, published right after it.
const PENDING_REPLIES: usize = 4;
/// Longest wait for the socket in one loop round: a shell request (`mqtt pub`) waits at most
/// this long for the MQTT thread. Short, because waking up costs one `poll` call.
const ROUND_MS: u32 = 250;
/// While the network is down, requests are served this often.
const NETWORK_POLL_MS: i32 = 1_000;

/// A reply to a command, owned: it is published after the event that caused it is gone.
struct Reply {
    to_error_topic: bool,
    payload: Vec<u8, REPLY_CAPACITY>,
}

/// What the device counts for telemetry.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    published: u32,
    received: u32,
    reconnects: u32,
}

/// State the MQTT thread carries across connections.
struct Device {
    topics: DeviceTopics,
    leds: Leds,
    counters: Counters,
    replies: Deque<Reply, PENDING_REPLIES>,
    telemetry_interval_ms: u64,
    next_telemetry: Instant,
    cipher_suite: CipherSuite,
    /// What `mqtt status` shows.
    status: Status,
    /// The broker answered CONNECT on the current connection.
    connack_seen: bool,
    /// "online" is still to be queued for this connection.
    online_pending: bool,
    /// The `mqtt bench` in progress, if any.
    bench: Option<control::BenchRun>,
}

/// A NUL-terminated copy of a host name or list for the socket API.
fn nul_terminated(host: &str) -> Option<String<256>> {
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
    if !settings.username.is_empty() {
        let password = if credentials::builtin_mqtt_password().is_some() {
            "with"
        } else {
            "without"
        };
        info!(
            "mqtt: user name {} ({password} a password)",
            settings.username
        );
    }

    runtime_credentials::init();
    let mut mutual_tls = match runtime_credentials::apply(settings.sec_tag) {
        Ok(installed) => {
            info!(
                "credentials installed (mutual TLS: {})",
                installed.mutual_tls
            );
            installed.mutual_tls
        }
        Err((kind, cause)) => halt(format_args!(
            "cannot register {kind:?} credential: {cause:?}"
        )),
    };
    let topics = match DeviceTopics::new(settings.topic_prefix, settings.client_id) {
        Ok(topics) => topics,
        Err(cause) => halt(format_args!("invalid topic prefix or client id: {cause:?}")),
    };
    let endpoints = match device_app::parse_endpoints(
        settings.broker_endpoints,
        settings.broker_host,
        settings.broker_port,
    ) {
        Ok(endpoints) => endpoints,
        Err(cause) => halt(format_args!(
            "broker endpoints \"{}\": {}",
            settings.broker_endpoints,
            cause.as_str()
        )),
    };
    let mut brokers = Brokers {
        endpoints,
        last_good: 0,
        refused_in_row: 0,
    };
    let Some(alpn) = nul_terminated(settings.alpn) else {
        halt(format_args!("ALPN list is longer than 255 bytes"));
    };
    let Ok(alpn) = core::ffi::CStr::from_bytes_with_nul(alpn.as_bytes()) else {
        halt(format_args!("ALPN list contains a NUL byte"));
    };
    let Some(sntp_server) = nul_terminated(settings.sntp_server) else {
        halt(format_args!("SNTP server name is longer than 255 bytes"));
    };
    let Ok(sntp_server) = core::ffi::CStr::from_bytes_with_nul(sntp_server.as_bytes()) else {
        halt(format_args!("SNTP server name contains a NUL byte"));
    };

    let mut device = Device {
        topics,
        leds: Leds::new(),
        counters: Counters::default(),
        replies: Deque::new(),
        telemetry_interval_ms: settings.telemetry_interval_ms,
        next_telemetry: Instant(0),
        cipher_suite: CipherSuite::default(),
        status: Status::new(settings.broker_host, settings.broker_port),
        connack_seen: false,
        online_pending: false,
        bench: None,
    };
    info!("leds: {} available", device.leds.available());

    // The will and the session borrow the topics: they live as long as this function, which
    // never returns.
    let status_topic: String<128> = String::from(device.topics.status());
    let will = LastWill {
        topic: &status_topic,
        payload: b"offline",
        qos: QoS::AtLeastOnce,
        retain: true,
    };
    let mut config = SessionConfig::new(ConnectOptions {
        client_id: settings.client_id,
        username: (!settings.username.is_empty()).then_some(settings.username),
        password: credentials::builtin_mqtt_password().map(Password),
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
    let commands = device.topics.commands();
    if let Err(cause) = client.session().subscribe(&[(commands, QoS::AtLeastOnce)]) {
        halt(format_args!("cannot subscribe to {commands}: {cause}"));
    }
    outbox_journal::restore(client.session());

    let backoff_config = BackoffConfig {
        base_ms: settings.reconnect_base_ms,
        cap_ms: settings.reconnect_cap_ms,
        attention_cap_ms: settings.reconnect_attention_cap_ms,
        ..BackoffConfig::default()
    };
    let mut backoff = Backoff::new(backoff_config, net::random_u64());
    let sec_tags = [settings.sec_tag];
    let mut connected_before = false;
    let mut last_address = None;

    loop {
        device.status.set_state(LinkState::WaitingForNetwork);
        let mut waited_ms = 0;
        let mut was_down = false;
        // In short steps, so that shell requests are served while the network is down.
        while let Err(cause) = net::wait_for_network(NETWORK_POLL_MS) {
            control::serve_requests(client.session(), &mut device.status);
            was_down = true;
            waited_ms += NETWORK_POLL_MS;
            if waited_ms >= settings.network_wait_ms {
                warn!("network not up yet ({cause}); still waiting");
                waited_ms = 0;
            }
        }
        let address = net::ipv4_address();
        if address.is_some() && (was_down || address != last_address) {
            info!("network: up, address {}", address.as_deref().unwrap_or(""));
            last_address = address;
        }
        // A "network down" from before this connection is not about it.
        let _ = net::network_went_down();
        // Credentials committed from the shell take effect here, between connections.
        let new_credentials = runtime_credentials::commit_pending();
        if new_credentials {
            backoff.reset();
            match runtime_credentials::apply(settings.sec_tag) {
                Ok(installed) => {
                    info!(
                        "credentials: new set in use (mutual TLS: {})",
                        installed.mutual_tls
                    );
                    mutual_tls = installed.mutual_tls;
                }
                Err((kind, cause)) => {
                    error!("credentials: cannot register the {kind:?} credential: {cause:?}; provision a set that fits (cred)");
                }
            }
        }
        device.status.set_state(LinkState::Connecting);
        let tls = TlsSettings {
            sec_tags: &sec_tags,
            alpn,
            forget_sessions: new_credentials,
            mutual_tls,
        };
        let recovery = match connect(&settings, &mut brokers, sntp_server, &tls) {
            Ok(socket) => {
                if connected_before {
                    device.counters.reconnects = device.counters.reconnects.saturating_add(1);
                }
                connected_before = true;
                device.cipher_suite = socket.cipher_suite();
                device
                    .status
                    .set_tls(device.cipher_suite.version(), device.cipher_suite.name());
                let started = client.clock().now();
                device.connack_seen = false;
                let cause = run_connection(&mut client, socket, &mut device);
                // Another endpoint may accept what this one refused: the slow schedule only
                // once every endpoint has refused in a row.
                let mut recovery = cause.recovery();
                if device.connack_seen {
                    backoff.accepted();
                    brokers.accepted();
                } else if !brokers.refused() {
                    recovery = Recovery::Retry;
                }
                if device.connack_seen {
                    // Accepted: nothing to explain.
                } else if let Error::Protocol(ProtocolError::ConnectionRefused(refusal)) = cause {
                    warn!(
                        "broker refused the connection: {refusal} (CONNACK {}); fix: {}",
                        refusal.code(),
                        refusal.remedy()
                    );
                } else if !mutual_tls {
                    // With TLS 1.3 a broker checks the client certificate after the client's
                    // handshake is done, so its refusal arrives as a closed connection.
                    warn!("broker closed the connection before CONNACK; this device has no client certificate, which the broker may require");
                }
                let lasted = client.clock().now().ms_since(started);
                backoff.connection_ended(lasted);
                device.status.set_last_error(&cause);
                recovery
            }
            Err(failure) => {
                device.status.set_last_error(&failure.cause);
                failure.recovery
            }
        };
        let delay = backoff.next_delay_ms(recovery);
        match recovery {
            Recovery::Retry => info!("reconnecting in {delay} ms"),
            Recovery::NeedsAttention => {
                info!("reconnecting in {delay} ms (refused: retried rarely, or at once after cred commit)")
            }
        }
        device.status.set_state(LinkState::BackingOff);
        control::wait_serving(
            client.session(),
            &mut device.status,
            delay,
            || Uptime.now().0,
            runtime_credentials::commit_pending,
        );
    }
}

/// Where the device connects: its broker endpoints, and the one that worked last (tried
/// first next time, so a device stays on a healthy node).
struct Brokers<'a> {
    endpoints: Vec<Endpoint<'a>, MAX_ENDPOINTS>,
    last_good: usize,
    /// Connections in a row that ended without CONNACK 0 (refused, or closed before it).
    refused_in_row: usize,
}

impl Brokers<'_> {
    /// The endpoint in use took the TLS connection but not the device: the next attempt
    /// starts at the next endpoint. Whether every endpoint has now refused in a row.
    fn refused(&mut self) -> bool {
        self.refused_in_row = self.refused_in_row.saturating_add(1);
        self.last_good = (self.last_good + 1) % self.endpoints.len().max(1);
        self.refused_in_row >= self.endpoints.len()
    }

    fn accepted(&mut self) {
        self.refused_in_row = 0;
    }
}

/// The TLS side of one connection attempt.
struct TlsSettings<'a> {
    sec_tags: &'a [i32],
    alpn: &'a core::ffi::CStr,
    /// Forget cached TLS sessions, whose resumption would skip presenting new credentials.
    forget_sessions: bool,
    /// A device certificate is installed (for the hint when a broker closes on us).
    mutual_tls: bool,
}

/// Why no endpoint could be reached: the last endpoint's cause, and whether waiting helps.
struct ConnectFailure {
    cause: NetError,
    recovery: Recovery,
}

/// Connects to the first endpoint that answers, trying every address of each, from the one
/// that worked last. Logs each endpoint's failure in words.
fn connect(
    settings: &Settings,
    brokers: &mut Brokers<'_>,
    sntp_server: &core::ffi::CStr,
    tls: &TlsSettings<'_>,
) -> Result<TlsSocket, ConnectFailure> {
    if !net::wall_clock_is_set() {
        // mbedTLS would take every certificate for "not yet valid"; ask for the time first.
        if net::sync_wall_clock(sntp_server, SNTP_TIMEOUT_MS).is_err() || !net::wall_clock_is_set()
        {
            let cause = NetError::ClockNotSet;
            warn!("connect failed: {cause}");
            return Err(ConnectFailure {
                cause,
                recovery: cause.recovery(),
            });
        }
        info!("clock: set by SNTP from {}", settings.sntp_server);
    }
    let mut failure: Option<ConnectFailure> = None;
    for index in device_app::try_order(brokers.endpoints.len(), brokers.last_good) {
        let Some(endpoint) = brokers.endpoints.get(index).copied() else {
            continue;
        };
        match connect_endpoint(endpoint, tls) {
            Ok(socket) => {
                brokers.last_good = index;
                return Ok(socket);
            }
            Err(cause) => {
                let hint = match cause {
                    NetError::Handshake(CertificateProblem::None) if !tls.mutual_tls => {
                        "; this device has no client certificate, which the broker may require"
                    }
                    _ => "",
                };
                warn!(
                    "connect to {}:{} failed: {cause}{hint}",
                    endpoint.host, endpoint.port
                );
                // Waiting helps if it helps any endpoint; only when every one needs a person
                // does the slow schedule apply.
                let recovery = match (failure.as_ref().map(|f| f.recovery), cause.recovery()) {
                    (Some(Recovery::Retry), _) | (_, Recovery::Retry) => Recovery::Retry,
                    _ => Recovery::NeedsAttention,
                };
                failure = Some(ConnectFailure { cause, recovery });
            }
        }
    }
    Err(failure.unwrap_or(ConnectFailure {
        cause: NetError::NameNotResolved,
        recovery: Recovery::Retry,
    }))
}

/// One endpoint: every address its name resolves to, in turn.
fn connect_endpoint(endpoint: Endpoint<'_>, tls: &TlsSettings<'_>) -> Result<TlsSocket, NetError> {
    let host_name = nul_terminated(endpoint.host).ok_or(NetError::NameNotResolved)?;
    let host_name = core::ffi::CStr::from_bytes_with_nul(host_name.as_bytes())
        .map_err(|_| NetError::NameNotResolved)?;
    info!("connecting to {}:{}", endpoint.host, endpoint.port);
    let addresses = net::resolve(host_name, endpoint.port)?;
    let mut last = NetError::NameNotResolved;
    for address in &addresses {
        let cpu_before = net::cpu_time_us();
        match TlsSocket::connect(
            address,
            host_name,
            tls.sec_tags,
            tls.alpn,
            tls.forget_sessions,
        ) {
            Ok(socket) => {
                let suite = socket.cipher_suite();
                info!(
                    "tls: connected to {} ({}, {})",
                    endpoint.host,
                    suite.version(),
                    suite.name()
                );
                if let (Some((_, before)), Some((_, after))) = (cpu_before, net::cpu_time_us()) {
                    info!(
                        "cpu: handshake took {} us of the MQTT thread",
                        after.saturating_sub(before)
                    );
                }
                if let Some((used, peak, size)) = net::tls_heap() {
                    info!("tls: heap {used} bytes in use, peak {peak} of {size}");
                }
                return Ok(socket);
            }
            Err(cause) => {
                if addresses.len() > 1 {
                    info!(
                        "connect to {}:{} at one of its {} addresses failed: {cause}",
                        endpoint.host,
                        endpoint.port,
                        addresses.len()
                    );
                }
                last = cause;
            }
        }
    }
    Err(last)
}

/// Runs one MQTT connection over `socket` until it ends; returns why it ended.
fn run_connection(
    client: &mut Client<'_, TlsSocket, Uptime>,
    socket: TlsSocket,
    device: &mut Device,
) -> Error {
    client.attach(socket);
    loop {
        let mut just_connected = false;
        // A benchmark with room in the outbox goes on at once; otherwise wait for input.
        let wait_ms = if device
            .bench
            .as_ref()
            .is_some_and(|run| run.has_room_for_more())
        {
            0
        } else {
            ROUND_MS
        };
        let result = client.poll(wait_ms, &mut |event| match event {
            Event::Connected { session_present } => {
                info!("mqtt: connected (session present: {session_present})");
                if let Some((all, _)) = net::cpu_time_us() {
                    info!("cpu: {all} us used since boot (all threads)");
                }
                just_connected = true;
                device.connack_seen = true;
            }
            Event::Message(message) => {
                device.counters.received = device.counters.received.saturating_add(1);
                on_message(device, message.topic, message.payload);
            }
            Event::Published(id) => {
                device.counters.published = device.counters.published.saturating_add(1);
                outbox_journal::acknowledged(id);
                log::debug!("mqtt: {id:?} acknowledged");
            }
            Event::Subscribed { packet_id, results } => {
                info!("mqtt: subscribed (request {packet_id}): {results:?}")
            }
            Event::Unsubscribed { packet_id } => info!("mqtt: unsubscribed (request {packet_id})"),
            Event::ConnectionLost(cause) => warn!("mqtt: connection lost: {cause}"),
        });
        if let Err(cause) = result {
            // What the shell shows from now on is what the next connection sends again.
            device.status.update(
                client.session(),
                device.counters.published,
                device.counters.reconnects,
            );
            return cause;
        }
        if net::network_went_down() {
            // No DISCONNECT: it could not get through, and the broker should publish the
            // will. Closing now frees the socket instead of waiting for the ping timeout.
            info!("network down (link, lease or address gone): closing the MQTT connection");
            drop(client.detach());
            return Error::Transport(TransportError::Closed);
        }
        let session = client.session();
        control::serve_requests(session, &mut device.status);
        serve_bench(session, device);
        if just_connected {
            device.status.set_state(LinkState::Connected);
            device.online_pending = true;
        }
        if device.online_pending {
            // Retried every round until it is in the outbox: messages queued while offline
            // may fill it at the moment of connecting, and "online" must follow them.
            match session.publish(device.topics.status(), b"online", QoS::AtLeastOnce, true) {
                Ok(_) => {
                    info!("mqtt: published online to {}", device.topics.status());
                    device.online_pending = false;
                }
                Err(Error::Exhausted(ResourceError::OutboxFull)) if just_connected => {
                    info!("mqtt: outbox full; online follows once it has room");
                }
                Err(Error::Exhausted(ResourceError::OutboxFull)) => {}
                Err(cause) => {
                    warn!("mqtt: status not published: {cause}");
                    device.online_pending = false;
                }
            }
        }
        while let Some(reply) = device.replies.pop_front() {
            let topic = if reply.to_error_topic {
                device.topics.reply_error()
            } else {
                device.topics.reply_ping()
            };
            if let Err(cause) = session.publish(topic, &reply.payload, QoS::AtLeastOnce, false) {
                warn!("mqtt: reply to {topic} not published: {cause}");
            }
        }
        let now = Uptime.now();
        if now >= device.next_telemetry {
            device.next_telemetry = now.plus_ms(device.telemetry_interval_ms);
            publish_telemetry(client, device, now);
        }
        device.status.update(
            client.session(),
            device.counters.published,
            device.counters.reconnects,
        );
    }
}

/// Starts a benchmark `mqtt bench` asked for, feeds the running one and reports its end.
fn serve_bench(session: &mut Session<'_>, device: &mut Device) {
    if let Some(run) = control::take_bench(device.topics.base(), Uptime.now().0) {
        if let Some(old) = device.bench.replace(run) {
            warn!(
                "bench: the one before stops after {} messages queued",
                old.queued()
            );
        }
    }
    let Some(run) = device.bench.as_mut() else {
        return;
    };
    match run.feed(session) {
        Err(cause) => {
            warn!(
                "bench: stopped after {} messages queued: {cause}",
                run.queued()
            );
            device.bench = None;
        }
        Ok(()) if run.finished(session) => {
            run.report_done(Uptime.now().0);
            device.bench = None;
        }
        Ok(()) => {}
    }
}

/// Carries out a command; replies wait in `device.replies` until the event is gone.
fn on_message(device: &mut Device, topic: &str, payload: &[u8]) {
    let reply = match device_app::parse_command(&device.topics, topic, payload) {
        Ok(Command::Led { index, action }) => match device.leds.apply(index, action) {
            Ok(level) => {
                info!(
                    "led{index}: {action:?} -> {}",
                    if level { "on" } else { "off" }
                );
                None
            }
            Err(cause) => {
                warn!("led{index}: {cause:?}");
                error_reply(CommandError::NoSuchLed, topic)
            }
        },
        Ok(Command::Ping { payload }) => {
            info!("mqtt: ping ({} bytes)", payload.len());
            match Vec::from_slice(payload) {
                Ok(echo) => Some(Reply {
                    to_error_topic: false,
                    payload: echo,
                }),
                Err(()) => error_reply(CommandError::BadPayload, topic),
            }
        }
        Err(cause) => {
            warn!("command on {topic} refused: {}", cause.as_str());
            error_reply(cause, topic)
        }
    };
    if let Some(reply) = reply {
        if device.replies.push_back(reply).is_err() {
            warn!("reply to {topic} dropped: more than {PENDING_REPLIES} commands in one round");
        }
    }
}

fn error_reply(cause: CommandError, topic: &str) -> Option<Reply> {
    let mut buf = [0u8; REPLY_CAPACITY];
    let written = device_app::format_error_reply(cause, topic, &mut buf).ok()?;
    let payload = Vec::from_slice(buf.get(..written)?).ok()?;
    Some(Reply {
        to_error_topic: true,
        payload,
    })
}

fn publish_telemetry(
    client: &mut Client<'_, TlsSocket, Uptime>,
    device: &mut Device,
    now: Instant,
) {
    let session = client.session();
    let telemetry = Telemetry {
        uptime_s: now.0 / 1000,
        published: device.counters.published,
        received: device.counters.received,
        reconnects: device.counters.reconnects,
        heap_free: net::heap_free_bytes(),
        outbox: u32::try_from(session.outbox_len()).unwrap_or(u32::MAX),
        tls_version: device.cipher_suite.version(),
        cipher: device.cipher_suite.name(),
    };
    let mut buf = [0u8; 384];
    let Ok(written) = device_app::format_telemetry(&telemetry, &mut buf) else {
        warn!("telemetry does not fit {} bytes", buf.len());
        return;
    };
    let payload = buf.get(..written).unwrap_or(&[]);
    match session.publish(device.topics.telemetry(), payload, QoS::AtLeastOnce, false) {
        Ok(_) => info!("mqtt: telemetry queued ({written} bytes)"),
        Err(cause) => warn!("mqtt: telemetry not queued: {cause}"),
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
