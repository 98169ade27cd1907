// Exposes Kconfig booleans as `cfg(CONFIG_...)` and devicetree nodes as `cfg(dt = "...")`
// (the LEDs) to the application crate.
fn main() {
    zephyr_build::export_kconfig_bool_options();
    zephyr_build::dt_cfgs();
}
