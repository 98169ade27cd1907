/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The boundary between the firmware's C and Rust, declared once. The C files that define
 * these functions include this header, so the compiler checks each definition against it;
 * build.rs runs bindgen on it (through src/ffi.h), so src/ffi.rs is generated from it, never
 * written by hand. Only the C library's fixed-width types appear here, whose sizes bindgen's
 * clang and the C compiler agree on.
 *
 * Every app_* function that returns int returns >= 0 on success or a negative errno.
 */

#ifndef APP_SHIM_H_
#define APP_SHIM_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- Records in flash (shim.c; the rest in src/shim.rs) --------------------------------------- */

uint8_t app_settings_partition_id(void);

/* errno as the C side was compiled: the C library's values, which the Rust bindings may not
 * see (Zephyr's minimal libc or picolibc on the board, the host's on native_sim).
 */
struct app_errno_values {
	int32_t eagain, econnrefused, ehostunreach, enetunreach, enetdown, etimedout, econnreset,
		econnaborted, epipe, enotconn, enomem, enfile, emfile, enobufs, einval, enoprotoopt,
		eprotonosupport, enetreset, efbig, edeadlk;
};

const struct app_errno_values *app_errno_values(void);

/* --- Platform (shim.c) --------------------------------------------------------------------- */

int64_t app_wall_clock_s(void);
int app_wall_clock_sync(const char *server, uint32_t timeout_ms);
int64_t app_heap_free_bytes(void);
int app_tls_heap_stats(uint32_t *used, uint32_t *peak, uint32_t *size);
int app_cpu_time_us(uint64_t *all_threads, uint64_t *this_thread);

/* --- Network events (shim.c) --------------------------------------------------------------- */

int app_network_wait(int32_t timeout_ms);
int app_ipv4_address(char *text, size_t len);
bool app_network_went_down(void);

/* --- Command-line options of the native_sim image (native_sim_options.c) ------------------- */

uint16_t app_broker_port_override(void);
uint16_t app_keepalive_override(void);
uint32_t app_reconnect_cap_override(void);
const char *app_text_override(int index);

/* --- Shell commands, implemented in Rust --------------------------------------------------- */

/* `cred begin|add|data|end|abort|delete|image|commit|list` (src/runtime_credentials.rs): >= 0
 * done, `out` holds the answer; < 0: refused, `out` says why.
 */
int app_cred_command(size_t argc, char **argv, char *out, size_t out_cap);

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
