// Exposes Kconfig booleans as `cfg(CONFIG_...)` to the application crate.
fn main() {
    zephyr_build::export_kconfig_bool_options();
}
