//! Exposes Kconfig booleans as `cfg(CONFIG_...)` and devicetree nodes as `cfg(dt = "...")`
//! (the LEDs) to the application crate, and generates `src/ffi.rs`'s declarations with
//! bindgen: from `src/shim.h` (the C/Rust boundary, written once in C and checked by both
//! compilers) and from the Zephyr and mbedTLS headers `src/ffi.h` includes.
//!
//! Zephyr's socket calls (`zsock_*`) are `static inline` syscall wrappers with no symbol to
//! link: bindgen writes a C function for each (`wrap_static_fns`), which CMakeLists.txt
//! compiles into the image, as zephyr-sys does for the kernel's.

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    zephyr_build::export_kconfig_bool_options();
    zephyr_build::dt_cfgs();
    bindings()
}

/// The clang arguments zephyr-sys parses Zephyr's headers with: the target, the minimal libc's
/// headers, and the include directories and definitions of Zephyr's own C (from the Zephyr
/// build, in the environment), without `KERNEL` (as zephyr-sys's wrapper.h).
fn zephyr_args() -> Result<Vec<String>, Box<dyn Error>> {
    let zephyr_base = env::var("ZEPHYR_BASE")?;
    let mut args = vec![
        format!("--target={}", env::var("TARGET")?),
        "-DRUST_BINDGEN".to_owned(),
        format!("-I{zephyr_base}/lib/libc/minimal/include"),
    ];
    for (prefix, var) in [("-I", "INCLUDE_DIRS"), ("-D", "INCLUDE_DEFINES")] {
        let text = env::var(var)?;
        args.extend(
            text.split([' ', ';'])
                .filter(|entry| !entry.is_empty())
                .map(|entry| format!("{prefix}{entry}")),
        );
    }
    args.push("-UKERNEL".to_owned());
    // The C compiler gets Kconfig's values with -imacros; and what zephyr-sys's wrapper.h
    // defines for clang: GCC's integer-constant macros, and soft float on a Cortex-M without
    // the hard-float ABI (the CMSIS headers need to know).
    args.extend(["-include", "zephyr/autoconf.h"].map(str::to_owned));
    for (width, value) in [
        ("INT8", "x"),
        ("INT16", "x"),
        ("INT32", "x"),
        ("INT64", "x##LL"),
        ("INTMAX", "x##LL"),
        ("UINT8", "x##U"),
        ("UINT16", "x##U"),
        ("UINT32", "x##U"),
        ("UINT64", "x##ULL"),
        ("UINTMAX", "x##ULL"),
    ] {
        args.push(format!("-D__{width}_C(x)={value}"));
    }
    let options = zephyr_build::extract_kconfig_bool_options(&env::var("DOTCONFIG")?)?;
    if options.contains("CONFIG_CPU_CORTEX_M") && !options.contains("CONFIG_FP_HARDABI") {
        args.push("-D__SOFTFP__".to_owned());
    }
    // mbedTLS's include directories and configuration, one argument a line (CMakeLists.txt).
    let mbedtls = PathBuf::from(env::var("BUILD_DIR")?).join("app_bindgen_args.txt");
    println!("cargo:rerun-if-changed={}", mbedtls.display());
    args.extend(fs::read_to_string(&mbedtls)?.lines().map(str::to_owned));
    Ok(args)
}

fn bindings() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/ffi.h");
    let wrappers = PathBuf::from(env::var("BUILD_DIR")?).join("rust/app_ffi_wrappers");
    let bindings = bindgen::Builder::default()
        // Absolute: the generated C includes it by this name.
        .header(fs::canonicalize("src/ffi.h")?.to_string_lossy())
        .clang_args(zephyr_args()?)
        .use_core()
        .wrap_static_fns(true)
        .wrap_static_fns_path(wrappers)
        .prepend_enum_name(false)
        .allowlist_function("app_.*")
        // Defined in Rust for C to call; C checks its calls against the header.
        .blocklist_function("app_cred_command|app_mqtt_command|app_dhcp_bound|app_dhcp_stopped")
        .allowlist_var("APP_.*")
        .allowlist_type("app_.*")
        .allowlist_function(
            "zsock_(socket|setsockopt|getsockopt|connect|send|recv|close|getaddrinfo|freeaddrinfo)",
        )
        .allowlist_function("tls_credential_(add|delete)|sys_(cs)?rand_get")
        .allowlist_function(
            "settings_(subsys_init|load_subtree_direct|save_one|delete|storage_get)|nvs_read",
        )
        .allowlist_function("flash_area_(open|close|read|erase|get_sectors)")
        .allowlist_function(
            "mbedtls_x509_crt_(init|free|parse_der|check_key_usage|check_extended_key_usage|verify)",
        )
        .allowlist_function(
            "mbedtls_pk_(init|free|parse_key|check_pair|write_pubkey_der|get_psa_attributes|import_into_psa)",
        )
        // Keys made on the device and the signature of their certificate requests.
        .allowlist_function(
            "psa_(crypto_init|key_attributes_init|(set|get)_key_(type|bits|usage_flags|algorithm)|generate_key|export_key|export_public_key|sign_message|destroy_key|reset_key_attributes)",
        )
        .allowlist_function("mbedtls_sha256|mbedtls_calloc|mbedtls_free")
        .allowlist_var("(SOL|SO|TLS|AF|ZSOCK_MSG|MBEDTLS_X509_BADCERT|MBEDTLS_X509_KU)_.*")
        .allowlist_item("net_sock_type|net_ip_protocol_secure|dns_resolve_status|sockaddr_in6|tls_cert_verify_cb")
        .allowlist_var("MBEDTLS_ERR_PK_BAD_INPUT_DATA|CONFIG_NET_SOCKETS_TLS_MAX_APP_PROTOCOLS")
        // Only passed by pointer (settings' storage; a flash area's device).
        .opaque_type("nvs_fs|device")
        .layout_tests(false)
        .generate()?;
    bindings.write_to_file(PathBuf::from(env::var("OUT_DIR")?).join("shim.rs"))?;
    Ok(())
}
