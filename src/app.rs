//! The device's one thread: a supervisor that is a state machine (waiting for network,
//! connecting, connected, backing off until a deadline) around one MQTT session, forever.
//! The MQTT protocol is `mqtt_core`; what the device does with its connection is
//! [`device_app::Device`]; this module feeds them a TLS socket, the clock, the LEDs, the
//! shell's requests and the network's events.
//!
//! Log lines at `info` are one per state change and stable: the end-to-end tests match them.

use crate::control::{self, Status};
use crate::credentials;
use crate::fleet::{self, Fleet};
use crate::leds::Leds;
use crate::net::{self, NetError, TlsSocket};
use crate::outbox_journal::OutboxJournal;
use crate::runtime_credentials::Credentials;
use crate::settings::Settings;
use core::ffi::CStr;
use device_app::{
    AlpnNames, AttemptOutcome, Board, CertificateProblem, Device, DeviceTopics, Endpoint,
    LedAction, LinkState, Publisher, Rotation, MAX_ENDPOINTS,
};
use heapless::{String, Vec};
use log::{error, info, warn};
use mqtt_core::backoff::{Backoff, BackoffConfig};
use mqtt_core::driver::{Client, Clock};
use mqtt_core::{
    ConnectOptions, Error, Event, Instant, LastWill, MessageId, Password, ProtocolError, QoS,
    Recovery, Session, SessionConfig, SubscribeResult, TransportError,
};
use static_cell::{ConstStaticCell, StaticCell};

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
/// Longest wait for the socket in one round while the shell is quiet: a shell request waits
/// at most this long for the MQTT thread, which cannot be woken from its socket wait.
const ROUND_MS: u64 = 250;
/// Requests come in bursts (a `cred` upload is a line per request): for a while after one,
/// rounds are this short, so that a burst is not paced at one request per quiet round.
const BURST_ROUND_MS: u64 = 10;
const BURST_MS: u64 = 1_000;
/// While the network is down, requests are served this often.
const NETWORK_POLL_MS: i32 = 250;

/// The LEDs, and what telemetry reports about the board.
struct BoardIo {
    leds: Leds,
}

impl Board for BoardIo {
    fn set_led(&mut self, index: u8, action: LedAction) -> Option<bool> {
        self.leds.apply(index, action).ok()
    }

    fn heap_free(&self) -> Option<u32> {
        net::heap_free_bytes()
    }
}

/// The session as the device's publisher: through the journal, which writes a QoS 1 message
/// queued while offline to flash.
struct Journaled<'s, 'a>(&'s mut MqttSession<'a>, &'s mut OutboxJournal);

impl Publisher for Journaled<'_, '_> {
    fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<MessageId, Error> {
        self.1.publish(self.0, topic, payload, qos, retain)
    }

    fn outbox_len(&self) -> usize {
        self.0.outbox_len()
    }
}

/// Where the supervisor stands.
enum Link {
    WaitingForNetwork,
    Connecting,
    /// TLS is up; the MQTT connection runs on it (CONNACK or not yet).
    TlsUp(TlsSocket),
    /// Waiting out the reconnect delay, which ends early when new credentials are committed.
    BackingOff {
        until: Instant,
    },
}

impl Link {
    fn state(&self) -> LinkState {
        match self {
            Link::WaitingForNetwork => LinkState::WaitingForNetwork,
            Link::Connecting => LinkState::Connecting,
            Link::TlsUp(_) => LinkState::MqttConnecting,
            Link::BackingOff { .. } => LinkState::BackingOff,
        }
    }
}

/// A NUL-terminated copy of a host name or list for the socket API.
fn nul_terminated(host: &str) -> Option<String<256>> {
    let mut name = String::new();
    name.push_str(host).ok()?;
    name.push('\0').ok()?;
    Some(name)
}

/// The MQTT client: its session (receive buffer, outbox) and transmit buffer, made at compile
/// time and configured at start, so that it never sits in a stack frame: the MQTT thread's
/// stack holds only what one call needs, the TLS handshake's frames above all. Made at run
/// time instead (`StaticCell::init_with`), it passed through the stack and overflowed the
/// 12 KiB main stack at boot on mps2/an386. Made at compile time it is all zero bytes
/// (`Session::unconfigured`), so it lies in `.bss`; one non-zero byte would put all 7.7 KB
/// of it into `.data`, which costs as much flash (`scripts/test` checks its section).
static CLIENT: ConstStaticCell<MqttClient> =
    ConstStaticCell::new(Client::new(Session::unconfigured(), Uptime));
/// What the device runs on, made once at start (see [`start`]).
static SETTINGS: StaticCell<Settings> = StaticCell::new();
static STATUS_TOPIC: ConstStaticCell<String<128>> = ConstStaticCell::new(String::new());
static NUL_STRINGS: StaticCell<NulStrings> = StaticCell::new();
static ALPN: StaticCell<AlpnNames> = StaticCell::new();
static SUPERVISOR: StaticCell<Supervisor<'static>> = StaticCell::new();

/// The receive buffer (Kconfig `APP_MQTT_RX_BUFFER_SIZE`): the largest packet taken whole.
pub const RX_BUFFER: usize = zephyr::kconfig::CONFIG_APP_MQTT_RX_BUFFER_SIZE as usize;
type MqttClient = Client<'static, TlsSocket, Uptime, RX_BUFFER>;
/// The session with the receive buffer Kconfig sizes.
pub type MqttSession<'a> = Session<'a, RX_BUFFER>;

/// Never returns: the device runs until power goes away.
pub fn run() -> ! {
    let settings: &'static Settings = SETTINGS.init(Settings::current());
    announce(settings);
    // Before `start`, not inside it: the credential checks' mbedTLS frames then sit on
    // `run`'s frame alone, not on `start`'s as well (together they set the thread's peak).
    let credentials = Credentials::take();
    let mutual_tls = install_credentials(settings, credentials);
    let supervisor = start(settings, credentials, mutual_tls);
    let mut link = Link::WaitingForNetwork;
    loop {
        supervisor.status.set_state(link.state());
        link = match link {
            Link::WaitingForNetwork => supervisor.wait_for_network(),
            Link::Connecting => supervisor.connect(),
            Link::TlsUp(socket) => supervisor.run_connection(socket),
            Link::BackingOff { until } => supervisor.back_off(until),
        };
    }
}

/// Checks the settings and makes the supervisor in its static.
/// Not inlined: what it builds passes through its frame, which is gone before the first
/// connection instead of staying in `run`'s.
#[inline(never)]
fn start(
    settings: &'static Settings,
    credentials: &'static mut Credentials,
    mutual_tls: bool,
) -> &'static mut Supervisor<'static> {
    let checked = check_settings(settings);
    let status_topic = STATUS_TOPIC.take();
    if status_topic.push_str(checked.topics.status()).is_err() {
        halt(format_args!("status topic longer than 128 bytes"));
    }
    let strings: &'static NulStrings = NUL_STRINGS.init(checked.strings);
    let Ok(sntp_server) = CStr::from_bytes_with_nul(strings.sntp_server.as_bytes()) else {
        halt(format_args!("SNTP server name contains a NUL byte"));
    };
    let alpn: &'static AlpnNames = ALPN.init(checked.alpn);
    let fleet = Fleet::new(settings);
    let claim = fleet::built_in(&fleet).is_some()
        && Fleet::identity(settings.client_id) == Some(fleet::Identity::Claim);
    let journal = OutboxJournal::take();
    let commands = checked.topics.commands();
    let client = configure_client(settings, status_topic, commands, claim, journal);
    SUPERVISOR.init_with(|| {
        Supervisor::new(
            settings,
            (client, journal),
            checked.topics,
            checked.endpoints,
            (alpn, sntp_server),
            (credentials, mutual_tls, fleet, claim),
            status_topic,
        )
    })
}

/// The socket API's NUL-terminated strings, kept for as long as the device runs.
struct NulStrings {
    sntp_server: String<256>,
}

/// What the settings give the device, checked once at boot.
struct CheckedSettings {
    topics: DeviceTopics,
    endpoints: Vec<Endpoint<'static>, MAX_ENDPOINTS>,
    alpn: AlpnNames,
    strings: NulStrings,
}

/// Logs what the device starts with: the boot's first lines.
fn announce(settings: &Settings) {
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
}

/// Checks what the device cannot run without; halts with the reason otherwise. Pins the
/// broker's key if the settings say so.
fn check_settings(settings: &'static Settings) -> CheckedSettings {
    let topics = match DeviceTopics::new(settings.topic_prefix, settings.client_id) {
        Ok(topics) => topics,
        Err(cause) => halt(format_args!("invalid topic prefix or client id: {cause}")),
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
    match device_app::parse_pin(settings.pinned_key) {
        Ok(pin) => net::pin_broker_key(pin.as_ref()),
        Err(cause) => halt(format_args!("broker key pin: {cause}")),
    }
    let alpn = match AlpnNames::parse(settings.alpn) {
        Ok(alpn) => alpn,
        Err(cause) => halt(format_args!("ALPN list \"{}\": {cause}", settings.alpn)),
    };
    let Some(sntp_server) = nul_terminated(settings.sntp_server) else {
        halt(format_args!("SNTP server name is longer than 255 bytes"));
    };
    CheckedSettings {
        topics,
        endpoints,
        alpn,
        strings: NulStrings { sntp_server },
    }
}

/// The stored credential set (or the image's) in the TLS credential store; whether the
/// device has a client certificate. Halts if the store cannot take them.
#[inline(never)]
fn install_credentials(settings: &Settings, credentials: &mut Credentials) -> bool {
    credentials.init();
    match credentials.apply(settings.sec_tag) {
        Ok(installed) => {
            info!(
                "credentials installed (mutual TLS: {})",
                installed.mutual_tls
            );
            installed.mutual_tls
        }
        Err((kind, cause)) => halt(format_args!("cannot register the {kind}: {cause}")),
    }
}

/// The MQTT client in its static, configured: will `offline` on the status topic, subscribed
/// to the command filter, with the journaled messages from before a reboot queued again.
/// With the claim certificate (`claim`), neither: the broker allows it the provisioning
/// topics only. Not inlined: its temporaries would add to [`start`]'s frame.
#[inline(never)]
fn configure_client(
    settings: &'static Settings,
    status_topic: &'static str,
    commands: &str,
    claim: bool,
    journal: &mut OutboxJournal,
) -> &'static mut MqttClient {
    let mut config = SessionConfig::new(ConnectOptions {
        client_id: settings.client_id,
        username: (!settings.username.is_empty()).then_some(settings.username),
        password: credentials::builtin_mqtt_password().map(Password),
        clean_session: settings.clean_session,
        keep_alive_s: settings.keep_alive_s,
        last_will: Some(offline_will(status_topic)),
    });
    config.inflight_window = settings.inflight_window;
    config.max_packet_size = RX_BUFFER;
    config.ping_timeout_ms = settings.ping_timeout_ms;
    let client = CLIENT.take();
    let session = client.session();
    if let Err(cause) = session.configure(config) {
        halt(format_args!("invalid MQTT settings: {cause}"));
    }
    if claim {
        set_claim_identity(session, commands, None);
    } else if let Err(cause) = session.subscribe(&[(commands, QoS::AtLeastOnce)]) {
        halt(format_args!("cannot subscribe to {commands}: {cause}"));
    }
    journal.restore(session);
    client
}

/// What the supervisor carries across connections.
struct Supervisor<'a> {
    settings: &'a Settings,
    client: &'a mut MqttClient,
    /// The outbox's records in flash, which follow the client's outbox.
    journal: &'a mut OutboxJournal,
    /// The operator's staged set and a commit waiting for the next connection.
    credentials: &'a mut Credentials,
    device: Device,
    board: BoardIo,
    status: Status,
    backoff: Backoff,
    brokers: Rotation<'a>,
    tls: TlsSettings<'a>,
    sntp_server: &'a CStr,
    last_address: Option<String<16>>,
    /// Rounds are short until then: the shell is sending a burst of requests.
    burst_until: Instant,
    /// CPU time (all threads, this thread) when the running `mqtt bench` started, where
    /// runtime statistics exist: its cost per message is logged when it ends.
    bench_cpu_start: Option<(u64, u64)>,
    /// Certificates over MQTT (Kconfig `APP_FLEET_PROVISIONING`).
    fleet: Option<&'a mut Fleet>,
    /// The session is set up for the claim certificate: no will, no commands, no telemetry.
    claim: bool,
    /// The next connection is made with the staged set, which the fleet's flow tries.
    trying_new_set: bool,
    /// The will's topic, for the device's own certificate.
    status_topic: &'static str,
}

impl<'a> Supervisor<'a> {
    /// Not inlined: built in its static through [`StaticCell::init_with`], its temporaries
    /// in this frame only.
    #[inline(never)]
    fn new(
        settings: &'a Settings,
        (client, journal): (&'a mut MqttClient, &'a mut OutboxJournal),
        topics: DeviceTopics,
        endpoints: Vec<Endpoint<'static>, MAX_ENDPOINTS>,
        (alpn, sntp_server): (&'a AlpnNames, &'a CStr),
        (credentials, mutual_tls, fleet, claim): (
            &'a mut Credentials,
            bool,
            Option<&'a mut Fleet>,
            bool,
        ),
        status_topic: &'static str,
    ) -> Self {
        let board = BoardIo { leds: Leds::new() };
        info!("leds: {} available", board.leds.available());
        Supervisor {
            status: Status::new(settings.broker_host, settings.broker_port),
            device: Device::new(topics, settings.telemetry_interval_ms),
            board,
            client,
            journal,
            credentials,
            backoff: Backoff::new(
                BackoffConfig {
                    base_ms: settings.reconnect_base_ms,
                    cap_ms: settings.reconnect_cap_ms,
                    attention_cap_ms: settings.reconnect_attention_cap_ms,
                    ..BackoffConfig::default()
                },
                net::random_u64(),
            ),
            brokers: Rotation::new(endpoints),
            tls: TlsSettings {
                sec_tag: settings.sec_tag,
                extra_cas: 0,
                alpn,
                forget_sessions: false,
                mutual_tls,
            },
            settings,
            sntp_server,
            last_address: None,
            burst_until: Instant(0),
            bench_cpu_start: None,
            fleet,
            claim,
            trying_new_set: false,
            status_topic,
        }
    }

    /// Until the network is up (a DHCPv4 lease on the board), serving shell requests.
    fn wait_for_network(&mut self) -> Link {
        let mut waited_ms = 0;
        let mut was_down = false;
        // In short steps, so that shell requests are served while the network is down.
        while let Err(cause) = net::wait_for_network(NETWORK_POLL_MS) {
            self.serve_shell();
            was_down = true;
            waited_ms += NETWORK_POLL_MS;
            if waited_ms >= self.settings.network_wait_ms {
                warn!("network not up yet ({cause}); still waiting");
                waited_ms = 0;
            }
        }
        let address = net::ipv4_address();
        if address.is_some() && (was_down || address != self.last_address) {
            info!("network: up, address {}", address.as_deref().unwrap_or(""));
            self.last_address = address;
        }
        // A "network down" from before this connection is not about it.
        let _ = net::network_went_down();
        Link::Connecting
    }

    /// Credentials committed from the shell take effect between connections: before the
    /// next one is made.
    fn take_committed_credentials(&mut self) {
        self.tls.forget_sessions = self.credentials.commit_pending();
        if self.tls.forget_sessions {
            self.backoff.reset();
            match self.credentials.apply(self.settings.sec_tag) {
                Ok(installed) => {
                    info!(
                        "credentials: new set in use (mutual TLS: {})",
                        installed.mutual_tls
                    );
                    self.tls.mutual_tls = installed.mutual_tls;
                }
                Err((kind, cause)) => {
                    error!("credentials: cannot register the {kind}: {cause}; provision a set that fits (cred)");
                }
            }
        }
    }

    /// Committed credentials, the clock, then every endpoint in turn; backs off when none
    /// takes the connection.
    fn connect(&mut self) -> Link {
        if self.trying_new_set {
            let installed = self.credentials.apply_staged(self.settings.sec_tag);
            self.install_set(installed);
        } else {
            self.take_committed_credentials();
        }
        self.follow_identity();
        self.tls.extra_cas = self.credentials.extra_cas();
        match dial(
            self.settings,
            &mut self.brokers,
            self.sntp_server,
            &self.tls,
        ) {
            Ok(socket) => Link::TlsUp(socket),
            Err(failure) => {
                self.new_set_failed();
                self.status.set_last_error(&failure.cause);
                self.back_off_after(failure.recovery)
            }
        }
    }

    /// Registers a set for the next connection; cached TLS sessions are dropped, so that the
    /// handshake presents it.
    fn install_set(
        &mut self,
        installed: Result<
            credentials::Installed,
            (credentials::CredentialKind, credentials::CredentialError),
        >,
    ) {
        self.tls.forget_sessions = true;
        match installed {
            Ok(installed) => self.tls.mutual_tls = installed.mutual_tls,
            Err((kind, cause)) => {
                error!("credentials: cannot register the {kind}: {cause}; provision a set that fits (cred)");
            }
        }
    }

    /// The connection tried with the staged set failed before CONNACK: the stored set is
    /// registered again and stays the device's.
    fn new_set_failed(&mut self) {
        if !core::mem::take(&mut self.trying_new_set) {
            return;
        }
        if let Some(fleet) = fleet::built_in_mut(&mut self.fleet) {
            fleet.new_set_refused(Uptime.now(), self.credentials);
        }
        let installed = self.credentials.apply(self.settings.sec_tag);
        self.install_set(installed);
        self.follow_identity();
    }

    /// Sets the session up for the identity of the set registered: the claim certificate has
    /// no will and no commands.
    fn follow_identity(&mut self) {
        if fleet::built_in(&self.fleet).is_none() {
            return;
        }
        let claim = Fleet::identity(self.settings.client_id) == Some(fleet::Identity::Claim);
        if claim != self.claim {
            self.claim = claim;
            let will = (!claim).then(|| offline_will(self.status_topic));
            set_claim_identity(self.client.session(), self.device.topics().commands(), will);
        }
    }

    /// Runs one MQTT connection until it ends, then backs off by how it ended.
    fn run_connection(&mut self, socket: TlsSocket) -> Link {
        let suite = socket.cipher_suite();
        self.status.set_tls(suite.version(), suite.name());
        let started = Uptime.now();
        let end = self.drive(socket, suite.version(), suite.name());
        if let Some(fleet) = fleet::built_in_mut(&mut self.fleet) {
            fleet.disconnected(Uptime.now());
        }
        let (connack_seen, cause) = match end {
            ConnectionEnd::BeforeConnack(cause) => (false, cause),
            ConnectionEnd::AfterConnack(cause) => (true, cause),
            ConnectionEnd::ForNewSet => {
                info!("mqtt: disconnected to connect with the new certificate");
                self.device.handle_disconnected();
                self.trying_new_set = true;
                return Link::Connecting;
            }
        };
        warn!("mqtt: connection lost: {cause}");
        if !connack_seen {
            self.new_set_failed();
        }
        self.device.handle_disconnected();
        match (connack_seen, &cause) {
            (true, _) => self.backoff.accepted(),
            (false, Error::Protocol(ProtocolError::ConnectionRefused(refusal))) => warn!(
                "broker refused the connection: {refusal} (CONNACK {}); fix: {}",
                refusal.code(),
                refusal.remedy()
            ),
            // With TLS 1.3 a broker checks the client certificate after the client's
            // handshake is done, so its refusal arrives as a closed connection.
            (false, _) if !self.tls.mutual_tls => warn!("broker closed the connection before CONNACK; this device has no client certificate, which the broker may require"),
            // Revoked, expired, or from a CA the broker does not trust: it cannot say which.
            (false, _) => warn!("broker closed the connection before CONNACK; it may refuse this device's certificate (revoked, expired, or from a CA it does not trust)"),
        }
        let recovery = self
            .brokers
            .connection_ended(connack_seen, cause.recovery());
        let lasted = Uptime.now().ms_since(started);
        self.backoff.connection_ended(lasted);
        self.status.set_last_error(&cause);
        self.back_off_after(recovery)
    }

    fn back_off_after(&mut self, recovery: Recovery) -> Link {
        let delay = self.backoff.next_delay_ms(recovery);
        match recovery {
            Recovery::Retry => info!("reconnecting in {delay} ms"),
            Recovery::NeedsAttention => {
                info!("reconnecting in {delay} ms (refused: retried rarely, or at once after cred commit)")
            }
        }
        Link::BackingOff {
            until: Uptime.now().plus_ms(u64::from(delay)),
        }
    }

    /// Waits out the reconnect delay serving the shell (offline publishes go to the outbox
    /// at once); a `cred commit` ends it early.
    fn back_off(&mut self, until: Instant) -> Link {
        control::wait_serving(
            self.client.session(),
            &mut self.status,
            &mut control::Owned {
                journal: self.journal,
                credentials: self.credentials,
            },
            until.0,
            || Uptime.now().0,
            |owned| owned.credentials.commit_pending(),
        );
        Link::WaitingForNetwork
    }

    /// The connection's rounds: the device's room for commands, socket input and the core's
    /// timers, the network's events, what the device has to publish, and the shell. Returns
    /// how far the connection got and why it ended.
    fn drive(
        &mut self,
        socket: TlsSocket,
        tls_version: &'static str,
        cipher: &'static str,
    ) -> ConnectionEnd {
        self.client.attach(socket);
        let max_packet_size = self.client.session().config().max_packet_size;
        let mut connack_seen = false;
        loop {
            let wait_ms = self.round_wait_ms();
            let Self {
                client,
                journal,
                credentials,
                device,
                board,
                fleet,
                claim,
                trying_new_set,
                ..
            } = self;
            let mut events = ConnectionEvents {
                journal,
                credentials,
                device,
                board,
                fleet,
                claim: *claim,
                trying_new_set,
                connack_seen: &mut connack_seen,
                tls: (tls_version, cipher),
                max_packet_size,
            };
            if let Err(cause) = client.poll(wait_ms, &mut |event| events.handle(event)) {
                self.update_status();
                return ConnectionEnd::new(connack_seen, cause);
            }
            if let Some(end) = self.after_events(connack_seen) {
                return end;
            }
        }
    }

    /// After a round's events: the fleet's flow (which may close the connection to try a
    /// new set), the network's state, then the device and the shell.
    fn after_events(&mut self, connack_seen: bool) -> Option<ConnectionEnd> {
        let now = Uptime.now();
        let wants = fleet::built_in_mut(&mut self.fleet)
            .and_then(|fleet| fleet.poll(self.client.session(), now, self.credentials));
        if wants == Some(fleet::Request::TryNewSet) {
            drop(self.client.disconnect());
            self.update_status();
            return Some(ConnectionEnd::ForNewSet);
        }
        if net::network_went_down() {
            // No DISCONNECT: it could not get through, and the broker should publish the
            // will. Closing now frees the socket instead of waiting for the ping timeout.
            info!("network down (link, lease or address gone): closing the MQTT connection");
            drop(self.client.detach());
            self.update_status();
            let cause = Error::Transport(TransportError::Closed);
            return Some(ConnectionEnd::new(connack_seen, cause));
        }
        self.status
            .set_state(LinkState::of_connection(connack_seen));
        self.after_round();
        None
    }

    /// How long this round may wait for the socket, having given the session the device's
    /// room for the broker's commands.
    fn round_wait_ms(&mut self) -> u32 {
        let now = Uptime.now();
        let round = if now < self.burst_until {
            BURST_ROUND_MS
        } else {
            ROUND_MS
        };
        let wait_ms = self.device.poll_timeout(now).ms_since(now).min(round) as u32;
        // The broker's commands past the device's room wait, unacknowledged, in the
        // session's receive buffer or at the broker (back-pressure).
        let session = self.client.session();
        session.set_message_room(self.device.message_room());
        if session.receive_blocked() {
            // Nothing can be read, and only time changes that (the keepalive): wait the
            // round out here instead of spinning through it.
            sleep_ms(wait_ms);
        }
        wait_ms
    }

    /// What the device owes (replies to commands it acknowledged) takes the outbox's room
    /// before the shell: a refused `mqtt pub` is retried by whoever typed it, while a reply
    /// waiting for room holds back every command behind it.
    fn after_round(&mut self) {
        let now = Uptime.now();
        if !self.claim {
            self.device.poll_publish(
                now,
                &mut Journaled(self.client.session(), self.journal),
                &self.board,
            );
        }
        self.serve_shell();
        self.log_bench_cpu();
        self.update_status();
    }

    /// Once a benchmark has ended: the CPU time it took, for the emulated board's figures.
    fn log_bench_cpu(&mut self) {
        if self.device.bench_running() {
            return;
        }
        let Some((all_start, mine_start)) = self.bench_cpu_start.take() else {
            return;
        };
        if let Some((all, mine)) = net::cpu_time_us() {
            info!(
                "cpu: bench took {} us of all threads, {} us of the MQTT thread",
                all.saturating_sub(all_start),
                mine.saturating_sub(mine_start)
            );
        }
    }

    /// Every shell request already queued: publishes, and a benchmark to start.
    fn serve_shell(&mut self) {
        let mut owned = control::Owned {
            journal: self.journal,
            credentials: self.credentials,
        };
        if control::serve_requests(self.client.session(), &mut self.status, &mut owned) > 0 {
            self.burst_until = Uptime.now().plus_ms(BURST_MS);
        }
        #[cfg(CONFIG_APP_SHELL_BENCH)]
        if let Some(request) = control::take_bench() {
            match self.device.start_bench(request, Uptime.now()) {
                Ok(()) => self.bench_cpu_start = net::cpu_time_us(),
                Err(cause) => warn!("bench: refused: {cause}"),
            }
        }
    }

    fn update_status(&mut self) {
        let counters = self.device.counters();
        self.status.update(
            self.client.session(),
            counters.published,
            counters.reconnects,
        );
    }
}

/// How far a connection got before it ended, and why it ended.
enum ConnectionEnd {
    /// TLS was up, the broker never accepted the session.
    BeforeConnack(Error),
    /// The session was up.
    AfterConnack(Error),
    /// Closed (DISCONNECT) to connect with the staged set the fleet's flow tries.
    ForNewSet,
}

impl ConnectionEnd {
    fn new(connack_seen: bool, cause: Error) -> Self {
        if connack_seen {
            ConnectionEnd::AfterConnack(cause)
        } else {
            ConnectionEnd::BeforeConnack(cause)
        }
    }
}

/// What a connection's events reach: the supervisor's parts but the client, which delivers
/// them.
struct ConnectionEvents<'e, 'a> {
    journal: &'e mut OutboxJournal,
    credentials: &'e mut Credentials,
    device: &'e mut Device,
    board: &'e mut BoardIo,
    fleet: &'e mut Option<&'a mut Fleet>,
    /// The session is set up for the claim certificate (it changes between connections).
    claim: bool,
    trying_new_set: &'e mut bool,
    connack_seen: &'e mut bool,
    /// The TLS version and cipher suite of the connection.
    tls: (&'static str, &'static str),
    max_packet_size: usize,
}

impl ConnectionEvents<'_, '_> {
    fn handle(&mut self, event: Event<'_>) {
        let now = Uptime.now();
        match event {
            Event::Connected { session_present } => self.connected(session_present, now),
            Event::Message(message) => {
                let unix = net::unix_time();
                let for_fleet = fleet::built_in_mut(self.fleet).is_some_and(|fleet| {
                    let credentials = &mut *self.credentials;
                    fleet.handle_message(message.topic, message.payload, now, unix, credentials)
                });
                if for_fleet {
                } else if self.claim {
                    warn!(
                        "fleet: message on {} ignored: this device has only its claim certificate yet",
                        message.topic
                    );
                } else {
                    self.hand_to_device(Event::Message(message));
                }
            }
            Event::Subscribed { packet_id, results } => {
                if let Some(fleet) = fleet::built_in_mut(self.fleet) {
                    let granted = results
                        .iter()
                        .all(|result| matches!(result, SubscribeResult::Granted(_)));
                    fleet.handle_subscribed(packet_id, granted, now);
                }
                self.hand_to_device(Event::Subscribed { packet_id, results });
            }
            event => self.hand_to_device(event),
        }
    }

    /// CONNACK: the device is online (not with the claim certificate), and the fleet's flow
    /// learns whether the set it tries was accepted.
    fn connected(&mut self, session_present: bool, now: Instant) {
        info!("mqtt: connected (session present: {session_present})");
        if let Some((all, _)) = net::cpu_time_us() {
            info!("cpu: {all} us used since boot (all threads)");
        }
        *self.connack_seen = true;
        if !self.claim {
            let (tls_version, cipher) = self.tls;
            self.device.handle_connected(tls_version, cipher);
        }
        if let Some(fleet) = fleet::built_in_mut(self.fleet) {
            fleet.connected(*self.trying_new_set, now, net::unix_time());
        }
        *self.trying_new_set = false;
    }

    fn hand_to_device(&mut self, event: Event<'_>) {
        let journal = &mut *self.journal;
        handle_event(
            event,
            self.device,
            self.board,
            journal,
            self.max_packet_size,
        );
    }
}

/// The session's events other than CONNACK, handed to the device or logged.
fn handle_event(
    event: Event<'_>,
    device: &mut Device,
    board: &mut BoardIo,
    journal: &mut OutboxJournal,
    max_packet: usize,
) {
    match event {
        Event::Message(message) => {
            device.handle_message(message.topic, message.payload, message.qos, board);
        }
        Event::MessageDropped {
            topic,
            packet_len,
            qos,
        } => warn!(
            "mqtt: message on {topic} dropped: {packet_len} bytes, more than the {max_packet} this device accepts (QoS {}: acknowledged, not delivered)",
            qos as u8
        ),
        Event::Published(id) => {
            device.handle_published(id);
            journal.acknowledged(id);
            log::debug!("mqtt: {id:?} acknowledged");
        }
        Event::Subscribed { packet_id, results } => {
            info!(
                "mqtt: subscribed (request {packet_id}): {}",
                Granted(&results)
            );
        }
        Event::Unsubscribed { packet_id } => {
            info!("mqtt: unsubscribed (request {packet_id})")
        }
        // Handled by the caller.
        Event::Connected { .. } => {}
        // Logged once, with whatever else ended the connection, by run_connection.
        Event::ConnectionLost(_) => {}
    }
}

/// `offline`, retained on the status topic, if the connection ends without DISCONNECT.
fn offline_will(status_topic: &str) -> LastWill<'_> {
    LastWill {
        topic: status_topic,
        payload: b"offline",
        qos: QoS::AtLeastOnce,
        retain: true,
    }
}

/// The session's will and command subscription for the identity in use (between
/// connections): the claim certificate gets neither (`will` is `None`; a broker such as AWS
/// IoT closes a connection that uses a topic its policy does not allow); the device's own
/// certificate gets both.
fn set_claim_identity(
    session: &mut MqttSession<'_>,
    commands: &str,
    will: Option<LastWill<'static>>,
) {
    let mut config = *session.config();
    config.connect.last_will = will;
    if let Err(cause) = session.configure(config) {
        warn!("fleet: the will could not be changed: {cause}");
    }
    if will.is_some() {
        if let Err(cause) = session.subscribe(&[(commands, QoS::AtLeastOnce)]) {
            warn!("mqtt: cannot subscribe to {commands}: {cause}");
        }
    }
}

/// SUBACK results in words: `granted QoS 1`, or `refused` per filter.
struct Granted<'r>(&'r [SubscribeResult]);

impl core::fmt::Display for Granted<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (index, result) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            match result {
                SubscribeResult::Granted(qos) => write!(f, "granted QoS {}", *qos as u8)?,
                SubscribeResult::Refused => f.write_str("refused")?,
            }
        }
        Ok(())
    }
}

/// The TLS side of one connection attempt.
struct TlsSettings<'a> {
    /// The device's set; the image's further trust anchors follow it (`credentials::sec_tags`).
    sec_tag: i32,
    /// How many further trust anchors are registered after it, as of this attempt.
    extra_cas: usize,
    alpn: &'a AlpnNames,
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

/// Sets the clock, then connects to the first endpoint that answers, trying every address
/// of each, in the order the rotation gives. Logs each endpoint's failure in words.
fn dial(
    settings: &Settings,
    brokers: &mut Rotation<'_>,
    sntp_server: &CStr,
    tls: &TlsSettings<'_>,
) -> Result<TlsSocket, ConnectFailure> {
    if let Err(cause) = set_wall_clock(settings, sntp_server) {
        warn!("connect failed: {cause}");
        return Err(ConnectFailure {
            cause,
            recovery: cause.recovery(),
        });
    }
    let mut outcome = AttemptOutcome::default();
    let mut last_cause = NetError::NameNotResolved;
    for index in brokers.attempt() {
        let Some(endpoint) = brokers.endpoint(index) else {
            continue;
        };
        match connect_endpoint(endpoint, tls) {
            Ok(socket) => {
                brokers.connected(index);
                return Ok(socket);
            }
            Err(cause) => {
                let hint = match cause {
                    NetError::Handshake(CertificateProblem::PassedChecks) if !tls.mutual_tls => {
                        "; this device has no client certificate, which the broker may require"
                    }
                    NetError::Handshake(CertificateProblem::PassedChecks) => {
                        "; the broker may refuse this device's certificate (revoked, expired, or from a CA it does not trust)"
                    }
                    _ => "",
                };
                warn!(
                    "connect to {}:{} failed: {cause}{hint}",
                    endpoint.host, endpoint.port
                );
                outcome.failed(cause.recovery());
                last_cause = cause;
            }
        }
    }
    Err(ConnectFailure {
        cause: last_cause,
        recovery: outcome.recovery(),
    })
}

/// The wall clock, from SNTP if it is not set: mbedTLS would take every certificate for
/// "not yet valid" without it.
fn set_wall_clock(settings: &Settings, sntp_server: &CStr) -> Result<(), NetError> {
    if net::wall_clock_is_set() {
        return Ok(());
    }
    if net::sync_wall_clock(sntp_server, SNTP_TIMEOUT_MS).is_err() || !net::wall_clock_is_set() {
        return Err(NetError::ClockNotSet);
    }
    info!("clock: set by SNTP from {}", settings.sntp_server);
    Ok(())
}

/// One endpoint: every address its name resolves to, in turn.
fn connect_endpoint(endpoint: Endpoint<'_>, tls: &TlsSettings<'_>) -> Result<TlsSocket, NetError> {
    let host_name = nul_terminated(endpoint.host).ok_or(NetError::NameNotResolved)?;
    let host_name =
        CStr::from_bytes_with_nul(host_name.as_bytes()).map_err(|_| NetError::NameNotResolved)?;
    info!("connecting to {}:{}", endpoint.host, endpoint.port);
    let addresses = net::resolve(host_name, endpoint.port)?;
    let mut last = NetError::NameNotResolved;
    for address in &addresses {
        let cpu_before = net::cpu_time_us();
        match TlsSocket::connect(
            address,
            host_name,
            &credentials::sec_tags(tls.sec_tag, tls.extra_cas),
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

/// Stops the device's work for good with an error line, repeated so that a console opened
/// later still shows it.
fn halt(reason: core::fmt::Arguments<'_>) -> ! {
    loop {
        error!("halted: {reason}");
        sleep_ms(60_000);
    }
}
