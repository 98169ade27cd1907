//! Secure MQTT firmware: the Zephyr layer.
//!
//! Everything that touches Zephyr lives here and nothing else does: the TLS socket and name
//! resolution ([`net`]), TLS credentials ([`credentials`]), settings from Kconfig
//! ([`settings`]), the LEDs ([`leds`]), the shell's view of the MQTT thread ([`control`]), run-time credential provisioning ([`runtime_credentials`]) and the thread that drives the sans-IO MQTT core ([`app`]). Every `unsafe`
//! block is in [`net`], [`credentials`], [`settings`], [`control`] or [`runtime_credentials`] and says why it is sound; the C functions they call
//! are in `shim.c` (Zephyr's `zsock_*` calls are inline syscall wrappers with no symbol).
#![no_std]

mod app;
mod control;
mod credentials;
mod ffi;
mod leds;
mod net;
mod outbox_journal;
#[cfg(CONFIG_APP_P256_CORTEX_M4)]
mod p256_accel;
mod records;
mod runtime_credentials;
mod settings;
mod sync;

#[no_mangle]
extern "C" fn rust_main() {
    // SAFETY: rust_main runs once at startup, before any other Rust code or thread exists.
    if unsafe { zephyr::set_logger() }.is_err() {
        zephyr::printkln!("logger was already set");
    }
    app::run()
}
