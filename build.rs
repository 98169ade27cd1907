//! Exposes Kconfig booleans as `cfg(CONFIG_...)` and devicetree nodes as `cfg(dt = "...")`
//! (the LEDs) to the application crate, and generates `src/ffi.rs`'s declarations from
//! `src/shim.h`: the C/Rust boundary is written once, in C, and checked by both compilers.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    zephyr_build::export_kconfig_bool_options();
    zephyr_build::dt_cfgs();
    shim_bindings()
}

fn shim_bindings() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=src/shim.h");
    // The header holds only fixed-width C types, so clang's own freestanding headers for the
    // Rust target give the sizes the firmware's C compiler uses.
    let target = std::env::var("TARGET")?;
    let bindings = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args([format!("--target={target}"), "-ffreestanding".to_owned()])
        .use_core()
        .allowlist_function("app_.*")
        // Defined in Rust for C to call; C checks its calls against the header.
        .blocklist_function("app_cred_command|app_mqtt_command|app_dhcp_bound|app_dhcp_stopped")
        .allowlist_var("APP_.*")
        .allowlist_type("app_.*")
        .layout_tests(false)
        .generate()?;
    bindings.write_to_file(PathBuf::from(std::env::var("OUT_DIR")?).join("shim.rs"))?;
    Ok(())
}
