/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The boundary between the firmware's C and Rust, declared once. The C files that define
 * these functions include this header, so the compiler checks each definition against it;
 * build.rs runs bindgen on it, so src/ffi.rs is generated from it, never written by hand.
 * Only the C library's fixed-width types appear here: the header must parse for the Rust
 * target without Zephyr's include paths.
 *
 * Every app_* function that returns int returns >= 0 on success or a negative errno.
 */

#ifndef APP_SHIM_H_
#define APP_SHIM_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- Credentials (shim.c) ------------------------------------------------------------------ */

/* Which credential; the Rust side's CredentialKind takes these values. */
#define APP_CREDENTIAL_CA          0
#define APP_CREDENTIAL_DEVICE_CERT 1
#define APP_CREDENTIAL_DEVICE_KEY  2

int app_builtin_credential(int kind, const uint8_t **data, size_t *len);
int app_builtin_extra_ca(int index, const uint8_t **data, size_t *len);
int app_builtin_mqtt_password(const uint8_t **data, size_t *len);
int app_credential_add(int sec_tag, int kind, const uint8_t *data, size_t len);
int app_credential_delete(int sec_tag, int kind);

/* --- Sockets and TLS (shim.c) -------------------------------------------------------------- */

/* Room for one resolved address (a struct sockaddr_in6 fits; shim.c asserts it). */
#define APP_ADDRESS_SIZE 48

/* mbedTLS's X.509 verify flags that the Rust side names a refusal by (MBEDTLS_X509_BADCERT_*;
 * shim.c asserts each), and the flags shim.c adds, bits mbedTLS does not use: the broker's key
 * is not the pinned one; the verify callback ran; it saw a certificate mbedTLS could not read.
 */
#define APP_BADCERT_EXPIRED            0x01u
#define APP_BADCERT_CN_MISMATCH        0x04u
#define APP_BADCERT_NOT_TRUSTED        0x08u
#define APP_BADCERT_FUTURE             0x200u
#define APP_BADCERT_KEY_USAGE          0x800u
#define APP_BADCERT_EXT_KEY_USAGE      0x1000u
#define APP_BADCERT_NS_CERT_TYPE       0x2000u
#define APP_BADCERT_BAD_MD             0x4000u
#define APP_BADCERT_BAD_PK             0x8000u
#define APP_BADCERT_BAD_KEY            0x10000u
#define APP_VERIFY_PINNED_KEY_MISMATCH 0x80000000u
#define APP_VERIFY_CHECKED             0x40000000u
#define APP_VERIFY_UNREADABLE          0x20000000u
/* Most ALPN names offered (at most CONFIG_NET_SOCKETS_TLS_MAX_APP_PROTOCOLS). */
#define APP_ALPN_MAX_NAMES             2

int app_resolve(const char *host, uint16_t port, uint8_t (*addrs)[APP_ADDRESS_SIZE],
		size_t *lens, size_t max);
int app_tls_socket(const uint8_t *addr);
int app_tls_require_peer_verification(int fd);
int app_tls_set_sec_tags(int fd, const int32_t *tags, size_t count);
int app_tls_set_hostname(int fd, const char *host);
int app_tls_set_alpn(int fd, const char *const *names, size_t count);
int app_tls_enable_session_cache(int fd);
int app_tls_purge_session_cache(int fd);
/* The broker key pin for every handshake from now on: the SHA-256 of its SubjectPublicKeyInfo
 * (32 bytes, copied), or NULL for none.
 */
void app_tls_pin_key(const uint8_t *sha256);
int app_tls_check_peer_certificate(int fd);
int app_tls_ciphersuite(int fd);
uint32_t app_tls_last_verify_flags(void);
int app_connect(int fd, const uint8_t *addr, size_t addr_len);
int app_send(int fd, const uint8_t *data, size_t len);
int app_recv(int fd, uint8_t *buf, size_t len, int32_t timeout_ms);
int app_close(int fd);

/* errno as the C side was compiled: the C library's values, which the Rust bindings may not
 * see (Zephyr's minimal libc or picolibc on the board, the host's on native_sim).
 */
struct app_errno_values {
	int32_t eagain, econnrefused, ehostunreach, enetunreach, enetdown, etimedout, econnreset,
		econnaborted, epipe, enotconn, enomem, enfile, emfile, enobufs, einval, enoprotoopt,
		eprotonosupport, enetreset;
};

const struct app_errno_values *app_errno_values(void);

/* --- Platform (shim.c) --------------------------------------------------------------------- */

int64_t app_wall_clock_s(void);
int app_wall_clock_sync(const char *server, uint32_t timeout_ms);
uint64_t app_random_u64(void);
int64_t app_heap_free_bytes(void);
int app_tls_heap_stats(uint32_t *used, uint32_t *peak, uint32_t *size);
int app_cpu_time_us(uint64_t *all_threads, uint64_t *this_thread);

/* --- Network events (shim.c) --------------------------------------------------------------- */

int app_network_wait(int32_t timeout_ms);
int app_ipv4_address(char *text, size_t len);
bool app_network_went_down(void);

/* --- Flash records and credential checks (provisioning.c) ---------------------------------- */

int app_record_load(const char *key, uint8_t *buf, size_t cap);
int app_record_save(const char *key, const uint8_t *bytes, size_t len);
int app_record_delete(const char *key);
int app_records_unreadable_format(void);
void *app_scratch_alloc(size_t len);
void app_scratch_free(void *buf);
int app_parse_certificate(const uint8_t *der, size_t len);
int app_parse_private_key(const uint8_t *der, size_t len);
bool app_key_matches_certificate(const uint8_t *cert, size_t cert_len, const uint8_t *key,
				 size_t key_len);
int app_fingerprint(bool is_key, const uint8_t *der, size_t len, uint8_t digest[32]);

/* --- Command-line options of the native_sim image (native_sim_options.c) ------------------- */

uint16_t app_broker_port_override(void);
uint16_t app_keepalive_override(void);
uint32_t app_reconnect_cap_override(void);
const char *app_text_override(int index);

/* --- Shell commands, implemented in Rust --------------------------------------------------- */

/* The `cred` operations (src/runtime_credentials.rs). */
#define APP_CRED_BEGIN  0
#define APP_CRED_DATA   1
#define APP_CRED_END    2
#define APP_CRED_ABORT  3
#define APP_CRED_DELETE 4
#define APP_CRED_IMAGE  5
#define APP_CRED_COMMIT 6
#define APP_CRED_LIST   7
#define APP_CRED_ADD    8

/* >= 0: done, `out` holds the answer; < 0: refused, `out` says why. */
int app_cred_command(int op, const char *arg, size_t arg_len, char *out, size_t out_cap);

/* `mqtt status|pub|bench` (src/control.rs): 0 done, 1 a warning, < 0 refused; `out` holds
 * the lines to print.
 */
int app_mqtt_command(size_t argc, char **argv, char *out, size_t out_cap);

/* DHCPv4 events (src/net.rs), on the net_mgmt thread. Whether a lease for `address` (network
 * order) ends the connections on the previous lease's address; DHCPv4 stopped.
 */
bool app_dhcp_bound(const uint8_t address[4]);
void app_dhcp_stopped(void);

#endif /* APP_SHIM_H_ */
