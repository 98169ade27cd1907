/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * What stays C of the firmware's bindings (the sockets, TLS verification, records and mbedTLS
 * checks are Rust, src/shim.rs): the settings partition's repair (devicetree macros), the C
 * library's errno values, Zephyr's network events and a few calls behind Kconfig options. Every app_* function returns >= 0 on success or a
 * negative errno; the Rust side (src/net.rs) maps errno in one place.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <zephyr/kernel.h>
#include <zephyr/net/net_if.h>
#include <zephyr/settings/settings.h>
#include <zephyr/storage/flash_map.h>
#include <zephyr/sys/printk.h>
#include <zephyr/sys/atomic.h>
#include <zephyr/sys/clock.h>
#include <zephyr/sys/sys_heap.h>

#include <time.h>

#if defined(CONFIG_SNTP)
#include <zephyr/net/sntp.h>
#endif

#include "shim.h"

#include <mbedtls/memory_buffer_alloc.h>

#if defined(CONFIG_NET_CONNECTION_MANAGER)
#include <zephyr/init.h>
#include <zephyr/net/conn_mgr_monitor.h>
#include <zephyr/net/dhcpv4.h>
#include <zephyr/net/net_event.h>
#include <zephyr/net/net_mgmt.h>
#endif

/* --- Records in flash (the rest in src/shim.rs) ---------------------------------------------- */

#if DT_HAS_CHOSEN(zephyr_settings_partition)
#define SETTINGS_PARTITION DT_FIXED_PARTITION_ID(DT_CHOSEN(zephyr_settings_partition))
#else
#define SETTINGS_PARTITION FIXED_PARTITION_ID(storage_partition)
#endif

/* The settings partition's id, a devicetree macro; the torn-sector repair is in shim.rs. */
uint8_t app_settings_partition_id(void)
{
	return SETTINGS_PARTITION;
}

/* --- errno values ---------------------------------------------------------------------------
 * The values of errno depend on the C library the image is built with (Zephyr's minimal libc
 * and picolibc on the board, the host's glibc on native_sim), and the Rust bindings may see
 * another errno.h than this file. So the Rust side compares against the values this file was
 * compiled with (struct app_errno_values in shim.h).
 */

const struct app_errno_values *app_errno_values(void)
{
	static const struct app_errno_values values = {
		EAGAIN, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ENETDOWN, ETIMEDOUT, ECONNRESET,
		ECONNABORTED, EPIPE, ENOTCONN, ENOMEM, ENFILE, EMFILE, ENOBUFS, EINVAL, ENOPROTOOPT,
		EPROTONOSUPPORT, ENETRESET, EFBIG, EDEADLK,
	};

	return &values;
}

/* --- Platform ------------------------------------------------------------------------------- */

/* Seconds since 1970 UTC by the wall clock mbedTLS checks certificate dates against (the
 * host's on native_sim, Zephyr's realtime clock on the board).
 */
int64_t app_wall_clock_s(void)
{
	return (int64_t)time(NULL);
}

/* Sets the wall clock from an SNTP server (host name); -ENOTSUP without CONFIG_SNTP. */
int app_wall_clock_sync(const char *server, uint32_t timeout_ms)
{
#if defined(CONFIG_SNTP)
	struct sntp_time now;
	struct timespec ts;
	int ret = sntp_simple(server, timeout_ms, &now);

	if (ret < 0) {
		return ret;
	}
	ts.tv_sec = (time_t)now.seconds;
	ts.tv_nsec = (long)(((uint64_t)now.fraction * NSEC_PER_SEC) >> 32);
	return sys_clock_settime(SYS_CLOCK_REALTIME, &ts);
#else
	ARG_UNUSED(server);
	ARG_UNUSED(timeout_ms);
	return -ENOTSUP;
#endif
}

/* Free bytes of the system heap (k_malloc), or -ENOTSUP without runtime statistics. */
int64_t app_heap_free_bytes(void)
{
#if defined(CONFIG_SYS_HEAP_RUNTIME_STATS) && (K_HEAP_MEM_POOL_SIZE > 0)
	extern struct sys_heap _system_heap;
	struct sys_memory_stats stats;

	if (sys_heap_runtime_stats_get(&_system_heap, &stats) != 0) {
		return -EINVAL;
	}
	return (int64_t)stats.free_bytes;
#else
	return -ENOTSUP;
#endif
}

/*
 * mbedTLS's own heap (CONFIG_MBEDTLS_HEAP_SIZE): bytes in use now and at the peak. Only
 * images with CONFIG_MBEDTLS_MEMORY_DEBUG count them (native_sim); -ENOTSUP elsewhere.
 */
int app_tls_heap_stats(uint32_t *used, uint32_t *peak, uint32_t *size)
{
#if defined(CONFIG_MBEDTLS_MEMORY_DEBUG) && defined(CONFIG_MBEDTLS_ENABLE_HEAP)
	size_t used_bytes, used_blocks, peak_bytes, peak_blocks;

	mbedtls_memory_buffer_alloc_cur_get(&used_bytes, &used_blocks);
	mbedtls_memory_buffer_alloc_max_get(&peak_bytes, &peak_blocks);
	*used = (uint32_t)used_bytes;
	*peak = (uint32_t)peak_bytes;
	*size = CONFIG_MBEDTLS_HEAP_SIZE;
	return 0;
#else
	ARG_UNUSED(used);
	ARG_UNUSED(peak);
	ARG_UNUSED(size);
	return -ENOTSUP;
#endif
}

/*
 * CPU time (microseconds) used since boot by all threads but idle, and by the calling thread,
 * or -ENOTSUP without CONFIG_THREAD_RUNTIME_STATS. Under QEMU's -icount shift=0 one
 * microsecond is 1,000 guest instructions.
 */
int app_cpu_time_us(uint64_t *all_threads, uint64_t *this_thread)
{
#if defined(CONFIG_THREAD_RUNTIME_STATS)
	k_thread_runtime_stats_t all, mine;

	if (k_thread_runtime_stats_all_get(&all) != 0 ||
	    k_thread_runtime_stats_get(k_current_get(), &mine) != 0) {
		return -EINVAL;
	}
	*all_threads = k_cyc_to_us_floor64(all.total_cycles);
	*this_thread = k_cyc_to_us_floor64(mine.execution_cycles);
	return 0;
#else
	ARG_UNUSED(all_threads);
	ARG_UNUSED(this_thread);
	return -ENOTSUP;
#endif
}

#if defined(CONFIG_NET_CONNECTION_MANAGER)
static K_SEM_DEFINE(network_up, 0, 1);
/* Set when the network or the address in use went away; the MQTT thread reads and clears it. */
static atomic_t connection_invalidated;
#if defined(CONFIG_NET_DHCPV4) && defined(CONFIG_NET_MGMT_EVENT_INFO)
static struct net_mgmt_event_callback dhcp_callback;
#endif
static struct net_mgmt_event_callback l4_callback;
static bool status_resent;

/*
 * One handler for every network event the application follows. Zephyr keeps an address that a
 * TCP connection still uses after its lease ends or DHCPv4 stops (it is removed, and L4 reported
 * down, only once that connection closes), so the lease events are what tell the MQTT thread
 * that its connection's address is no longer ours.
 */
static void on_network_event(struct net_mgmt_event_callback *cb, uint64_t event,
			     struct net_if *iface)
{
	ARG_UNUSED(iface);
	switch (event) {
	case NET_EVENT_L4_CONNECTED:
		k_sem_give(&network_up);
		break;
	case NET_EVENT_L4_DISCONNECTED:
		k_sem_reset(&network_up);
		atomic_set(&connection_invalidated, 1);
		break;
#if defined(CONFIG_NET_DHCPV4) && defined(CONFIG_NET_MGMT_EVENT_INFO)
	case NET_EVENT_IPV4_DHCP_STOP:
		app_dhcp_stopped();
		atomic_set(&connection_invalidated, 1);
		break;
	case NET_EVENT_IPV4_DHCP_BOUND: {
		const struct net_if_dhcpv4 *dhcp = cb->info;

		if (dhcp == NULL || cb->info_length != sizeof(*dhcp)) {
			break;
		}
		if (app_dhcp_bound(dhcp->requested_ip.s4_addr)) {
			atomic_set(&connection_invalidated, 1);
		}
		break;
	}
#endif
	default:
		break;
	}
}

static int register_network_events(void)
{
	net_mgmt_init_event_callback(&l4_callback, on_network_event,
				     NET_EVENT_L4_CONNECTED | NET_EVENT_L4_DISCONNECTED);
	net_mgmt_add_event_callback(&l4_callback);
#if defined(CONFIG_NET_DHCPV4) && defined(CONFIG_NET_MGMT_EVENT_INFO)
	net_mgmt_init_event_callback(&dhcp_callback, on_network_event,
				     NET_EVENT_IPV4_DHCP_BOUND | NET_EVENT_IPV4_DHCP_STOP);
	net_mgmt_add_event_callback(&dhcp_callback);
#endif
	return 0;
}

SYS_INIT(register_network_events, APPLICATION, 0);
#endif

/*
 * Whether the network or the address the current connection uses went away since the last call
 * (always false without a connection manager, e.g. on native_sim).
 */
bool app_network_went_down(void)
{
#if defined(CONFIG_NET_CONNECTION_MANAGER)
	return atomic_clear(&connection_invalidated) != 0;
#else
	return false;
#endif
}

/*
 * The default interface's IPv4 address as text (DHCPv4's lease on the board), or -ENOENT
 * (native_sim: the host's addresses are not Zephyr's).
 */
int app_ipv4_address(char *text, size_t len)
{
#if defined(CONFIG_NET_NATIVE_IPV4)
	struct net_if *iface = net_if_get_default();
	struct in_addr *addr =
		iface != NULL ? net_if_ipv4_get_global_addr(iface, NET_ADDR_PREFERRED) : NULL;

	if (addr == NULL || net_addr_ntop(AF_INET, addr, text, len) == NULL) {
		return -ENOENT;
	}
	return 0;
#else
	ARG_UNUSED(text);
	ARG_UNUSED(len);
	return -ENOENT;
#endif
}

/*
 * Waits until an interface has an address and a route (DHCPv4 bound on the board). With
 * host sockets (native_sim) the host's network is up already.
 */
int app_network_wait(int32_t timeout_ms)
{
#if defined(CONFIG_NET_CONNECTION_MANAGER)
	if (!status_resent) {
		/* Events from before the callback was registered: the connection manager tells
		 * the current state again.
		 */
		conn_mgr_mon_resend_status();
		status_resent = true;
	}
	if (k_sem_take(&network_up, K_MSEC(timeout_ms)) != 0) {
		return -ETIMEDOUT;
	}
	/* Leave the state visible to the next caller. */
	k_sem_give(&network_up);
	return 0;
#else
	ARG_UNUSED(timeout_ms);
	return 0;
#endif
}
