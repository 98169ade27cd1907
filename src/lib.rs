//! Secure MQTT firmware: the Zephyr layer.
//!
//! Everything that touches Zephyr lives here and nothing else does: the TLS socket and name
//! resolution ([`net`]), TLS credentials ([`credentials`]), settings from Kconfig
//! ([`settings`]), the LEDs ([`leds`]), the shell's view of the MQTT thread ([`control`]), run-time credential provisioning ([`runtime_credentials`]) and the thread that drives the sans-IO MQTT core ([`app`]). Every `unsafe`
//! block is in [`net`], [`credentials`], [`settings`], [`control`], [`runtime_credentials`] or `shim` (Zephyr's
//! socket, settings and mbedTLS calls over bindgen's bindings) and says why it is sound; the
//! C they call beyond Zephyr is in `shim.c` and `control.c`.
#![no_std]

mod app;
mod control;
mod credentials;
mod device_key;
mod ffi;
mod fleet;
mod leds;
mod net;
mod outbox_journal;
#[cfg(CONFIG_APP_P256_CORTEX_M4)]
mod p256_accel;
mod records;
mod runtime_credentials;
mod settings;
mod shim;
mod sync;

#[no_mangle]
extern "C" fn rust_main() {
    // SAFETY: rust_main runs once at startup, before any other Rust code or thread exists.
    if unsafe { zephyr::set_logger() }.is_err() {
        zephyr::printkln!("logger was already set");
    }
    app::run()
}
