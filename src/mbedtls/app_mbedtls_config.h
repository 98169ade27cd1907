/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * mbedTLS settings Zephyr's Kconfig does not reach with PSA-only ECC
 * (CONFIG_MBEDTLS_USER_CONFIG_FILE, included at the end of Zephyr's config-mbedtls.h).
 */

/*
 * P-256 reduction through the special form of the NIST prime instead of generic modular
 * reduction: the full TLS 1.3 handshake with mutual TLS took 3.4 times fewer instructions
 * (callgrind on native_sim: 50.4 M instead of 171.6 M), for a little more flash. Zephyr's
 * CONFIG_MBEDTLS_ECP_NIST_OPTIM depends on the legacy CONFIG_MBEDTLS_ECP_C, which this
 * image does not use.
 */
#define MBEDTLS_ECP_NIST_OPTIM

/* --- Footprint (frdm_k64f, measured: see docs/benchmark.md) ------------------------------- */

/* Client-only TLS: the device never accepts TLS connections. */
#undef MBEDTLS_SSL_SRV_C
/* Server-side ticket issuing (the client's ticket support is MBEDTLS_SSL_SESSION_TICKETS). */
#undef MBEDTLS_SSL_TICKET_C
/* 0-RTT early data: not used, and replayable. */
#undef MBEDTLS_SSL_EARLY_DATA
/* Outgoing records: the largest MQTT packet is about 1 KiB. Incoming stays at 4096. */
#undef MBEDTLS_SSL_OUT_CONTENT_LEN
#define MBEDTLS_SSL_OUT_CONTENT_LEN 2048
/* Only the suites this configuration can negotiate anyway (mbedTLS's preference list holds
 * every suite it knows, filtered at run time). */
#define MBEDTLS_SSL_CIPHERSUITES \
	MBEDTLS_TLS1_3_AES_128_GCM_SHA256, MBEDTLS_TLS1_3_AES_256_GCM_SHA384, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, \
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
/* AES-GCM only encrypts with the block cipher: no decryption tables or code. */
#define MBEDTLS_BLOCK_CIPHER_NO_DECRYPT
/* No mbedtls_x509_*_info() text: refusals are reported from the verify flags (shim.c). */
#define MBEDTLS_X509_REMOVE_INFO
