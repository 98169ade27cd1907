/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The TLS profiles (Kconfig APP_TLS_PROFILE) in mbedTLS's settings, where Zephyr's Kconfig
 * does not reach them with PSA-only ECC: the cipher suites each profile offers, its RSA, the
 * curves' speed-ups, record sizes and what a client-only image leaves out
 * (CONFIG_MBEDTLS_USER_CONFIG_FILE, included at the end of Zephyr's config-mbedtls.h).
 */

/*
 * NIST curve reduction through the special form of the prime instead of generic modular
 * reduction: the full TLS 1.3 handshake with mutual TLS on P-256 took 3.4 times fewer
 * instructions (callgrind on native_sim: 50.4 M instead of 171.6 M), for a little more flash.
 * It covers P-384 as well. Zephyr's CONFIG_MBEDTLS_ECP_NIST_OPTIM depends on the legacy
 * CONFIG_MBEDTLS_ECP_C, which this image does not use.
 */
#define MBEDTLS_ECP_NIST_OPTIM

/*
 * The ECP module's comb window and its precomputed generator tables in flash: mbedTLS's
 * defaults, kept on measured numbers. The window caps what mbedTLS would pick (5 for P-384's
 * variable points; the generator's table in flash has its own width). They matter for P-384
 * only on the Cortex-M4, where P-256 runs in assembly (docs/p256-on-arm.md); on native_sim
 * P-256 uses them too.
 * A TLS 1.3 handshake with a P-384 chain and device key on mps2/an386 (bench/an386.py,
 * --ecp-variant): 171.3 M instructions with both, 186.8 M with a window of 2,
 * 261.7 M without the tables, 298.1 M without either. A window of 2 takes 2,548 B off that
 * handshake's heap peak (27,748 instead of 30,296 B), but INTEROP's heap is sized by the RSA
 * chain (41,464 B), so it would save no RAM; the tables cost 5,392 B of flash.
 */
#define MBEDTLS_ECP_WINDOW_SIZE 4
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 1

/*
 * Largest number mbedTLS handles, in bytes: a 4096-bit RSA key (the largest root in public
 * use) is 512. It also sizes stack buffers for signatures; mbedTLS's default is 1024.
 */
#define MBEDTLS_MPI_MAX_SIZE 512

#if defined(CONFIG_APP_TLS_PROFILE_INTEROP)
/*
 * The INTEROP profile's RSA (Kconfig APP_TLS_PROFILE_INTEROP selects it through PSA_WANT_*).
 * Zephyr's CONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED depends on the legacy ECDH module;
 * mbedTLS itself needs only PSA's ECDH (MBEDTLS_CAN_ECDH), RSA and PKCS#1 v1.5.
 */
#define MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
/*
 * RSA-PSS signatures (rsa_pss_rsae_*) in the signature_algorithms the client offers: TLS 1.3
 * allows no other RSA handshake signature (RFC 8446 4.2.3), so without it no RSA broker
 * completes a TLS 1.3 handshake. mbedTLS lists them only under this option, which also lets
 * X.509 parse certificates signed with PSS.
 */
#define MBEDTLS_X509_RSASSA_PSS_SUPPORT
#endif

#if defined(CONFIG_APP_P256_CORTEX_M4)
/*
 * P-256 scalar multiplication and ECDSA verification by P256-Cortex-M4 (src/p256_accel.rs),
 * through the hooks of zephyr/patches/mbedtls: a full mutual-TLS handshake takes
 * far fewer instructions (docs/p256-on-arm.md). Other curves keep mbedTLS's code.
 */
#define MBEDTLS_ECP_P256_MUL_ACCEL
#define MBEDTLS_ECDSA_P256_VERIFY_ACCEL
#endif

/* --- Footprint (frdm_k64f, measured: see docs/benchmark.md) ------------------------------- */

/* Client-only TLS: the device never accepts TLS connections. */
#undef MBEDTLS_SSL_SRV_C
/* Server-side ticket issuing (the client's ticket support is MBEDTLS_SSL_SESSION_TICKETS). */
#undef MBEDTLS_SSL_TICKET_C
/* 0-RTT early data: not used, and replayable. */
#undef MBEDTLS_SSL_EARLY_DATA
/*
 * Outgoing records: the largest MQTT packet is about 1 KiB and the largest handshake message
 * the device writes is its certificate. Incoming records stay at the 16 KiB TLS allows
 * (prj.conf).
 */
#undef MBEDTLS_SSL_OUT_CONTENT_LEN
#define MBEDTLS_SSL_OUT_CONTENT_LEN 2048
/* Only the suites this configuration can negotiate anyway (mbedTLS's preference list holds
 * every suite it knows, filtered at run time).
 */
#if defined(CONFIG_APP_TLS_PROFILE_INTEROP)
#define MBEDTLS_SSL_CIPHERSUITES \
	MBEDTLS_TLS1_3_AES_128_GCM_SHA256, MBEDTLS_TLS1_3_AES_256_GCM_SHA384, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, \
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, \
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
#else
#define MBEDTLS_SSL_CIPHERSUITES \
	MBEDTLS_TLS1_3_AES_128_GCM_SHA256, MBEDTLS_TLS1_3_AES_256_GCM_SHA384, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
#endif
/* AES-GCM only encrypts with the block cipher: no decryption tables or code. */
#define MBEDTLS_BLOCK_CIPHER_NO_DECRYPT
/* No mbedtls_x509_*_info() text: refusals are reported from the verify flags (src/shim.rs). */
#define MBEDTLS_X509_REMOVE_INFO
