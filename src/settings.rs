//! Settings from Kconfig (`APP_*`, see `Kconfig`), checked once at build time.

use zephyr::kconfig;

/// Everything the application reads from Kconfig.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub broker_host: &'static str,
    pub broker_port: u16,
    /// `host:port` list; blank: `broker_host:broker_port` alone.
    pub broker_endpoints: &'static str,
    /// ALPN names, separated by spaces or commas; empty: none.
    pub alpn: &'static str,
    pub client_id: &'static str,
    /// Empty: no user name in CONNECT.
    pub username: &'static str,
    pub topic_prefix: &'static str,
    pub keep_alive_s: u16,
    pub ping_timeout_ms: u32,
    pub clean_session: bool,
    pub inflight_window: usize,
    pub sec_tag: i32,
    pub reconnect_base_ms: u32,
    pub reconnect_cap_ms: u32,
    /// The largest reconnect delay after refusals that need a person (bad credentials, ...).
    pub reconnect_attention_cap_ms: u32,
    pub network_wait_ms: i32,
    pub telemetry_interval_ms: u64,
    pub sntp_server: &'static str,
    /// SHA-256 of the broker's public key as 64 hex digits; empty: no pin.
    pub pinned_key: &'static str,
}

// Kconfig's `range` makes these conversions lossless; the assertions make a wrong range a
// build error rather than a silent truncation.
const _: () =
    assert!(kconfig::CONFIG_APP_BROKER_PORT >= 1 && kconfig::CONFIG_APP_BROKER_PORT <= 65535);
const _: () = assert!(
    kconfig::CONFIG_APP_MQTT_KEEPALIVE_S >= 0 && kconfig::CONFIG_APP_MQTT_KEEPALIVE_S <= 65535
);
const _: () = assert!(kconfig::CONFIG_APP_MQTT_PING_TIMEOUT_MS > 0);
const _: () = assert!(kconfig::CONFIG_APP_MQTT_INFLIGHT_WINDOW >= 1);
const _: () = assert!(
    kconfig::CONFIG_APP_TLS_SEC_TAG >= 1 && kconfig::CONFIG_APP_TLS_SEC_TAG <= i32::MAX as isize
);
const _: () =
    assert!(kconfig::CONFIG_APP_RECONNECT_BASE_MS > 0 && kconfig::CONFIG_APP_RECONNECT_CAP_MS > 0);
const _: () = assert!(
    kconfig::CONFIG_APP_RECONNECT_ATTENTION_CAP_S >= 1
        && kconfig::CONFIG_APP_RECONNECT_ATTENTION_CAP_S <= 86_400
);
const _: () =
    assert!(kconfig::CONFIG_APP_NETWORK_WAIT_S > 0 && kconfig::CONFIG_APP_NETWORK_WAIT_S <= 3600);
const _: () = assert!(kconfig::CONFIG_APP_TELEMETRY_INTERVAL_S > 0);

/// The broker port given on the native_sim command line (`--broker-port`), if any.
#[cfg(CONFIG_ARCH_POSIX)]
fn broker_port_override() -> Option<u16> {
    // SAFETY: plain call; reads a value written once by the command-line parser at boot.
    match unsafe { crate::ffi::app_broker_port_override() } {
        0 => None,
        port => Some(port),
    }
}

#[cfg(not(CONFIG_ARCH_POSIX))]
fn broker_port_override() -> Option<u16> {
    None
}

/// The MQTT keepalive given on the native_sim command line (`--keepalive-s`), if any: the
/// fault tests use a short one to see a ping timeout in seconds.
#[cfg(CONFIG_ARCH_POSIX)]
fn keepalive_override() -> Option<u16> {
    // SAFETY: plain call; reads a value written once by the command-line parser at boot.
    match unsafe { crate::ffi::app_keepalive_override() } {
        0 => None,
        seconds => Some(seconds),
    }
}

#[cfg(not(CONFIG_ARCH_POSIX))]
fn keepalive_override() -> Option<u16> {
    None
}

/// The reconnect delay ceiling given on the native_sim command line (`--reconnect-cap-ms`),
/// if any: twenty broker restarts in a row would otherwise push the delay to minutes.
#[cfg(CONFIG_ARCH_POSIX)]
fn reconnect_cap_override() -> Option<u32> {
    // SAFETY: plain call; reads a value written once by the command-line parser at boot.
    match unsafe { crate::ffi::app_reconnect_cap_override() } {
        0 => None,
        ms => Some(ms),
    }
}

#[cfg(not(CONFIG_ARCH_POSIX))]
fn reconnect_cap_override() -> Option<u32> {
    None
}

/// The text options of the native_sim command line.
#[derive(Clone, Copy)]
#[cfg_attr(not(CONFIG_ARCH_POSIX), allow(dead_code))]
enum TextOption {
    /// `--broker-endpoints=LIST`
    BrokerEndpoints = 0,
    /// `--tls-alpn=LIST`
    TlsAlpn = 1,
    /// `--client-id=ID`: one image, many simulated devices (pytest/test_fleet.py).
    ClientId = 2,
}

/// A text option given on the native_sim command line, if any.
#[cfg(CONFIG_ARCH_POSIX)]
fn text_override(option: TextOption) -> Option<&'static str> {
    // SAFETY: plain call; returns NULL or a pointer into the process's argv, which the
    // command-line parser stored at boot and nothing changes afterwards.
    let text = unsafe { crate::ffi::app_text_override(option as core::ffi::c_int) };
    if text.is_null() {
        return None;
    }
    // SAFETY: text is non-null, NUL-terminated (an argv string) and lives as long as the
    // process.
    unsafe { core::ffi::CStr::from_ptr(text) }.to_str().ok()
}

#[cfg(not(CONFIG_ARCH_POSIX))]
fn text_override(_option: TextOption) -> Option<&'static str> {
    None
}

impl Settings {
    /// The settings in force: Kconfig, with the simulator's command-line overrides.
    pub fn current() -> Self {
        let mut settings = Self::from_kconfig();
        if let Some(port) = broker_port_override() {
            settings.broker_port = port;
        }
        if let Some(seconds) = keepalive_override() {
            settings.keep_alive_s = seconds;
        }
        if let Some(list) = text_override(TextOption::BrokerEndpoints) {
            settings.broker_endpoints = list;
        }
        if let Some(list) = text_override(TextOption::TlsAlpn) {
            settings.alpn = list;
        }
        if let Some(id) = text_override(TextOption::ClientId) {
            settings.client_id = id;
        }
        if let Some(ms) = reconnect_cap_override() {
            settings.reconnect_cap_ms = ms;
            // The tests that shorten the usual cap check recovery after refusals too.
            settings.reconnect_attention_cap_ms = ms;
        }
        settings
    }

    /// The settings this image was built with.
    pub const fn from_kconfig() -> Self {
        Self {
            broker_host: kconfig::CONFIG_APP_BROKER_HOSTNAME,
            broker_port: kconfig::CONFIG_APP_BROKER_PORT as u16,
            broker_endpoints: kconfig::CONFIG_APP_BROKER_ENDPOINTS,
            alpn: kconfig::CONFIG_APP_TLS_ALPN,
            client_id: kconfig::CONFIG_APP_MQTT_CLIENT_ID,
            username: kconfig::CONFIG_APP_MQTT_USERNAME,
            topic_prefix: kconfig::CONFIG_APP_TOPIC_PREFIX,
            keep_alive_s: kconfig::CONFIG_APP_MQTT_KEEPALIVE_S as u16,
            ping_timeout_ms: kconfig::CONFIG_APP_MQTT_PING_TIMEOUT_MS as u32,
            clean_session: cfg!(CONFIG_APP_MQTT_CLEAN_SESSION),
            inflight_window: kconfig::CONFIG_APP_MQTT_INFLIGHT_WINDOW as usize,
            sec_tag: kconfig::CONFIG_APP_TLS_SEC_TAG as i32,
            reconnect_base_ms: kconfig::CONFIG_APP_RECONNECT_BASE_MS as u32,
            reconnect_cap_ms: kconfig::CONFIG_APP_RECONNECT_CAP_MS as u32,
            reconnect_attention_cap_ms: (kconfig::CONFIG_APP_RECONNECT_ATTENTION_CAP_S as u32)
                * 1000,
            network_wait_ms: (kconfig::CONFIG_APP_NETWORK_WAIT_S * 1000) as i32,
            telemetry_interval_ms: (kconfig::CONFIG_APP_TELEMETRY_INTERVAL_S as u64) * 1000,
            sntp_server: kconfig::CONFIG_APP_SNTP_SERVER,
            pinned_key: kconfig::CONFIG_APP_TLS_PINNED_KEY_SHA256,
        }
    }
}
