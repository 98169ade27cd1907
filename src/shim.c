/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The C side of the firmware's bindings. Zephyr's zsock_* calls are inline syscall
 * wrappers with no symbol to link against, and the TLS option values are macros, so each is
 * wrapped here in a function with a plain C ABI. Every app_* function returns >= 0 on
 * success or a negative errno; the Rust side (src/net.rs) maps errno in one place.
 *
 * The option order and close-on-error follow subsys/net/lib/mqtt/mqtt_transport_socket_tls.c.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <zephyr/kernel.h>
#include <zephyr/net/net_if.h>
#include <zephyr/net/socket.h>
#include <zephyr/net/tls_credentials.h>
#include <zephyr/random/random.h>
#include <zephyr/sys/atomic.h>
#include <zephyr/sys/clock.h>
#include <zephyr/sys/sys_heap.h>

#include <time.h>

#if defined(CONFIG_SNTP)
#include <zephyr/net/sntp.h>
#endif

#include "shim.h"

#include <mbedtls/memory_buffer_alloc.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#if defined(CONFIG_NET_CONNECTION_MANAGER)
#include <zephyr/init.h>
#include <zephyr/net/conn_mgr_monitor.h>
#include <zephyr/net/dhcpv4.h>
#include <zephyr/net/net_event.h>
#include <zephyr/net/net_mgmt.h>
#endif

/* --- Certificates built into the image (see CMakeLists.txt) -------------------------------- */

static const uint8_t builtin_ca[] = {
#include "app_certs/ca.crt.der.inc"
};

/* Further trust anchors (ca-2.crt.der .. ca-4.crt.der), in order. */
#if APP_EXTRA_CA_COUNT >= 1
static const uint8_t builtin_ca_2[] = {
#include "app_certs/ca-2.crt.der.inc"
};
#endif
#if APP_EXTRA_CA_COUNT >= 2
static const uint8_t builtin_ca_3[] = {
#include "app_certs/ca-3.crt.der.inc"
};
#endif
#if APP_EXTRA_CA_COUNT >= 3
static const uint8_t builtin_ca_4[] = {
#include "app_certs/ca-4.crt.der.inc"
};
#endif

#if APP_HAS_DEVICE_CREDENTIALS
static const uint8_t builtin_device_cert[] = {
#include "app_certs/device.crt.der.inc"
};
static const uint8_t builtin_device_key[] = {
#include "app_certs/device.key.der.inc"
};
#endif

#if APP_HAS_MQTT_PASSWORD
static const uint8_t builtin_mqtt_password[] = {
#include "app_certs/mqtt-password.inc"
};
#endif

/* The MQTT password from the credentials directory (mqtt-password), or -ENOENT. */
int app_builtin_mqtt_password(const uint8_t **data, size_t *len)
{
#if APP_HAS_MQTT_PASSWORD
	*data = builtin_mqtt_password;
	*len = sizeof(builtin_mqtt_password);
	return 0;
#else
	ARG_UNUSED(data);
	ARG_UNUSED(len);
	return -ENOENT;
#endif
}

/* Kinds shared with src/credentials.rs. */
int app_builtin_credential(int kind, const uint8_t **data, size_t *len)
{
	switch (kind) {
	case APP_CREDENTIAL_CA:
		*data = builtin_ca;
		*len = sizeof(builtin_ca);
		return 0;
#if APP_HAS_DEVICE_CREDENTIALS
	case APP_CREDENTIAL_DEVICE_CERT:
		*data = builtin_device_cert;
		*len = sizeof(builtin_device_cert);
		return 0;
	case APP_CREDENTIAL_DEVICE_KEY:
		*data = builtin_device_key;
		*len = sizeof(builtin_device_key);
		return 0;
#endif
	default:
		return -ENOENT;
	}
}

/* The index-th further trust anchor of the image (0: ca-2.crt.der), or -ENOENT. */
int app_builtin_extra_ca(int index, const uint8_t **data, size_t *len)
{
	switch (index) {
#if APP_EXTRA_CA_COUNT >= 1
	case 0:
		*data = builtin_ca_2;
		*len = sizeof(builtin_ca_2);
		return 0;
#endif
#if APP_EXTRA_CA_COUNT >= 2
	case 1:
		*data = builtin_ca_3;
		*len = sizeof(builtin_ca_3);
		return 0;
#endif
#if APP_EXTRA_CA_COUNT >= 3
	case 2:
		*data = builtin_ca_4;
		*len = sizeof(builtin_ca_4);
		return 0;
#endif
	default:
		ARG_UNUSED(data);
		ARG_UNUSED(len);
		return -ENOENT;
	}
}

static int credential_type(int kind, enum tls_credential_type *type)
{
	switch (kind) {
	case APP_CREDENTIAL_CA:
		*type = TLS_CREDENTIAL_CA_CERTIFICATE;
		return 0;
	case APP_CREDENTIAL_DEVICE_CERT:
		/* The "server" certificate is the socket's own certificate, client or server. */
		*type = TLS_CREDENTIAL_PUBLIC_CERTIFICATE;
		return 0;
	case APP_CREDENTIAL_DEVICE_KEY:
		*type = TLS_CREDENTIAL_PRIVATE_KEY;
		return 0;
	default:
		return -EINVAL;
	}
}

/* The buffer must outlive the registration: the credential store keeps the pointer. */
int app_credential_add(int sec_tag, int kind, const uint8_t *data, size_t len)
{
	enum tls_credential_type type;
	int ret = credential_type(kind, &type);

	if (ret < 0) {
		return ret;
	}
	return tls_credential_add(sec_tag, type, data, len);
}

int app_credential_delete(int sec_tag, int kind)
{
	enum tls_credential_type type;
	int ret = credential_type(kind, &type);

	if (ret < 0) {
		return ret;
	}
	return tls_credential_delete(sec_tag, type);
}

/* --- Name resolution ------------------------------------------------------------------------ */

/*
 * Resolves host:port to its first IPv4/IPv6 address, copied into addr (capacity *addr_len,
 * updated to the address length).
 */
/*
 * Every address `host` resolves to for `port`, at most `max`: address i goes to addrs[i]
 * (APP_ADDRESS_SIZE bytes) and its length to lens[i]. Returns how many.
 */
BUILD_ASSERT(sizeof(struct sockaddr_in6) <= APP_ADDRESS_SIZE,
	     "an IPv6 address does not fit APP_ADDRESS_SIZE (src/net.rs: ADDRESS_SIZE)");

int app_resolve(const char *host, uint16_t port, uint8_t (*addrs)[APP_ADDRESS_SIZE], size_t *lens,
		size_t max)
{
	struct zsock_addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
	};
	struct zsock_addrinfo *result = NULL;
	char port_text[6];
	size_t count = 0;
	int ret;

	snprintk(port_text, sizeof(port_text), "%u", port);
	ret = zsock_getaddrinfo(host, port_text, &hints, &result);
	if (ret != 0) {
		/* DNS_EAI_* codes are negative; report them as "no such host". */
		return ret == DNS_EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	}
	for (struct zsock_addrinfo *ai = result; ai != NULL && count < max; ai = ai->ai_next) {
		if (ai->ai_addrlen <= APP_ADDRESS_SIZE) {
			memcpy(addrs[count], ai->ai_addr, ai->ai_addrlen);
			lens[count] = ai->ai_addrlen;
			count++;
		}
	}
	zsock_freeaddrinfo(result);
	return count > 0 ? (int)count : -EHOSTUNREACH;
}

/* --- TLS sockets ----------------------------------------------------------------------------- */

int app_tls_socket(const uint8_t *addr)
{
	const struct sockaddr *sa = (const struct sockaddr *)addr;
	int fd = zsock_socket(sa->sa_family, SOCK_STREAM, IPPROTO_TLS_1_2);

	return fd < 0 ? -errno : fd;
}

static int set_tls_option(int fd, int option, const void *value, socklen_t len)
{
	return zsock_setsockopt(fd, SOL_TLS, option, value, len) < 0 ? -errno : 0;
}

int app_tls_require_peer_verification(int fd)
{
	int verify = TLS_PEER_VERIFY_REQUIRED;

	return set_tls_option(fd, TLS_PEER_VERIFY, &verify, sizeof(verify));
}

int app_tls_set_sec_tags(int fd, const int32_t *tags, size_t count)
{
	/*
	 * The certificates behind the tags are DER in static storage (the image's, or the
	 * provisioned set's), so mbedTLS may parse them in place instead of copying each one
	 * into its heap for the life of the connection.
	 */
	int nocopy = TLS_CERT_NOCOPY_OPTIONAL;
	int ret = set_tls_option(fd, TLS_CERT_NOCOPY, &nocopy, sizeof(nocopy));

	if (ret < 0) {
		return ret;
	}
	return set_tls_option(fd, TLS_SEC_TAG_LIST, tags, count * sizeof(sec_tag_t));
}

/* host must be NUL-terminated. */
int app_tls_set_hostname(int fd, const char *host)
{
	return set_tls_option(fd, TLS_HOSTNAME, host, strlen(host) + 1);
}

/*
 * ALPN: `count` protocol names (CONFIG_APP_TLS_ALPN, parsed by the Rust side), e.g.
 * "x-amzn-mqtt-ca" for AWS IoT Core on port 443. Zephyr copies the pointer array but keeps the
 * pointers, so the names must live as long as the socket. None sends no ALPN extension.
 */
int app_tls_set_alpn(int fd, const char *const *names, size_t count)
{
	if (count == 0) {
		return 0;
	}
#if defined(CONFIG_MBEDTLS_SSL_ALPN)
	BUILD_ASSERT(CONFIG_NET_SOCKETS_TLS_MAX_APP_PROTOCOLS >= APP_ALPN_MAX_NAMES);
	return set_tls_option(fd, TLS_ALPN_LIST, names, count * sizeof(names[0]));
#else
	ARG_UNUSED(fd);
	ARG_UNUSED(names);
	return -EINVAL;
#endif
}

int app_tls_enable_session_cache(int fd)
{
	int cache = TLS_SESSION_CACHE_ENABLED;

	return set_tls_option(fd, TLS_SESSION_CACHE, &cache, sizeof(cache));
}

/* Forgets every cached TLS session (the option purges the whole cache). */
int app_tls_purge_session_cache(int fd)
{
	int purge = 1;

	return set_tls_option(fd, TLS_SESSION_CACHE_PURGE, &purge, sizeof(purge));
}

/*
 * Why the broker's certificate was refused. Zephyr resets the mbedTLS context after a failed
 * handshake, so TLS_CERT_VERIFY_RESULT reads 0 by then; instead a verification callback
 * (mbedtls_ssl_conf_verify: it runs after mbedTLS's own checks of each certificate of the
 * chain and sees their flags) records the flags. One connection attempt at a time, so one
 * record. The callback never clears a flag: CA trust, validity and host name stay mbedTLS's.
 *
 * With CONFIG_APP_TLS_PINNED_KEY_SHA256 set, the same callback also refuses a broker whose
 * public key is not the pinned one, on top of those checks: a key our CA signed by mistake,
 * or for someone else, is still refused.
 */
static uint32_t last_verify_flags;

/* The flags shim.h names for the Rust side are mbedTLS's; ours is none of them. */
BUILD_ASSERT(APP_BADCERT_EXPIRED == MBEDTLS_X509_BADCERT_EXPIRED);
BUILD_ASSERT(APP_BADCERT_CN_MISMATCH == MBEDTLS_X509_BADCERT_CN_MISMATCH);
BUILD_ASSERT(APP_BADCERT_NOT_TRUSTED == MBEDTLS_X509_BADCERT_NOT_TRUSTED);
BUILD_ASSERT(APP_BADCERT_FUTURE == MBEDTLS_X509_BADCERT_FUTURE);
BUILD_ASSERT(APP_BADCERT_KEY_USAGE == MBEDTLS_X509_BADCERT_KEY_USAGE);
BUILD_ASSERT(APP_BADCERT_EXT_KEY_USAGE == MBEDTLS_X509_BADCERT_EXT_KEY_USAGE);
BUILD_ASSERT(APP_BADCERT_NS_CERT_TYPE == MBEDTLS_X509_BADCERT_NS_CERT_TYPE);
BUILD_ASSERT(APP_BADCERT_BAD_MD == MBEDTLS_X509_BADCERT_BAD_MD);
BUILD_ASSERT(APP_BADCERT_BAD_PK == MBEDTLS_X509_BADCERT_BAD_PK);
BUILD_ASSERT(APP_BADCERT_BAD_KEY == MBEDTLS_X509_BADCERT_BAD_KEY);
BUILD_ASSERT(((APP_VERIFY_PINNED_KEY_MISMATCH | APP_VERIFY_CHECKED | APP_VERIFY_UNREADABLE) &
	      (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_REVOKED |
	       MBEDTLS_X509_BADCERT_CN_MISMATCH | MBEDTLS_X509_BADCERT_NOT_TRUSTED |
	       MBEDTLS_X509_BADCRL_NOT_TRUSTED | MBEDTLS_X509_BADCRL_EXPIRED |
	       MBEDTLS_X509_BADCERT_MISSING | MBEDTLS_X509_BADCERT_SKIP_VERIFY |
	       MBEDTLS_X509_BADCERT_OTHER | MBEDTLS_X509_BADCERT_FUTURE |
	       MBEDTLS_X509_BADCRL_FUTURE | MBEDTLS_X509_BADCERT_KEY_USAGE |
	       MBEDTLS_X509_BADCERT_EXT_KEY_USAGE | MBEDTLS_X509_BADCERT_NS_CERT_TYPE |
	       MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK |
	       MBEDTLS_X509_BADCERT_BAD_KEY | MBEDTLS_X509_BADCRL_BAD_MD |
	       MBEDTLS_X509_BADCRL_BAD_PK | MBEDTLS_X509_BADCRL_BAD_KEY)) == 0,
	     "one of our flags collides with an mbedTLS flag");

/* Set once at boot by the MQTT thread (app_tls_pin_key), before its first handshake; the
 * handshakes that read it run on the same thread.
 */
static uint8_t pinned_key[32];
static bool key_pinned;

void app_tls_pin_key(const uint8_t *sha256)
{
	key_pinned = sha256 != NULL;
	if (key_pinned) {
		memcpy(pinned_key, sha256, sizeof(pinned_key));
	}
}

/* Whether the leaf certificate's SubjectPublicKeyInfo hashes to the pinned SHA-256. */
static bool matches_pinned_key(const mbedtls_x509_crt *crt)
{
	uint8_t digest[sizeof(pinned_key)];
	uint8_t difference = 0;

	if (mbedtls_sha256(crt->pk_raw.p, crt->pk_raw.len, digest, 0) != 0) {
		return false;
	}
	for (size_t i = 0; i < sizeof(digest); i++) {
		difference |= digest[i] ^ pinned_key[i];
	}
	return difference == 0;
}

static int check_peer_certificate(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	ARG_UNUSED(ctx);
	last_verify_flags |= APP_VERIFY_CHECKED;
	/* mbedTLS skips a certificate it cannot parse (an algorithm the build lacks) and checks
	 * an empty one in its place.
	 */
	if (crt->version == 0) {
		last_verify_flags |= APP_VERIFY_UNREADABLE;
	}
	/* Depth 0 is the broker's own certificate; the pin is on its key, not the CA's. */
	if (depth == 0 && key_pinned && !matches_pinned_key(crt)) {
		*flags |= MBEDTLS_X509_BADCERT_OTHER;
		last_verify_flags |= APP_VERIFY_PINNED_KEY_MISMATCH;
	}
	/*
	 * mbedTLS checks the leaf's usage only after this callback (and then fails the handshake
	 * without a flag anyone can read): record the same verdict here, so the log names it.
	 */
	if (depth == 0 &&
	    mbedtls_x509_crt_check_extended_key_usage(crt, MBEDTLS_OID_SERVER_AUTH,
						       MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) != 0) {
		last_verify_flags |= MBEDTLS_X509_BADCERT_EXT_KEY_USAGE;
	}
	/* ECDHE: the server signs its key share, so its key must be for digitalSignature. */
	if (depth == 0 &&
	    mbedtls_x509_crt_check_key_usage(crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) != 0) {
		last_verify_flags |= MBEDTLS_X509_BADCERT_KEY_USAGE;
	}
	last_verify_flags |= *flags;
	return 0;
}

int app_tls_check_peer_certificate(int fd)
{
	static const struct tls_cert_verify_cb callback = {
		.cb = check_peer_certificate,
		.ctx = NULL,
	};

	last_verify_flags = 0;
	return set_tls_option(fd, TLS_CERT_VERIFY_CALLBACK, &callback, sizeof(callback));
}

/* MBEDTLS_X509_BADCERT_* flags (and our pin flag) seen during the last handshake. */
uint32_t app_tls_last_verify_flags(void)
{
	return last_verify_flags;
}

/* The IANA id of the cipher suite the handshake chose. */
int app_tls_ciphersuite(int fd)
{
	int suite = 0;
	socklen_t len = sizeof(suite);

	return zsock_getsockopt(fd, SOL_TLS, TLS_CIPHERSUITE_USED, &suite, &len) < 0 ? -errno : suite;
}

/* Connects (and, for a TLS socket, runs the handshake) within timeout_ms. */
int app_connect(int fd, const uint8_t *addr, size_t addr_len)
{
	return zsock_connect(fd, (const struct sockaddr *)addr, addr_len) < 0 ? -errno : 0;
}

int app_send(int fd, const uint8_t *data, size_t len)
{
	ssize_t sent = zsock_send(fd, data, len, 0);

	return sent < 0 ? -errno : (int)sent;
}

/*
 * Bytes received, 0 at end of stream, -EAGAIN when nothing came within timeout_ms.
 *
 * A blocking recv with SO_RCVTIMEO, not zsock_poll + recv: when the broker's TCP stream ends
 * without a TLS close_notify (broker killed), Zephyr's TLS poll sees readable bytes that
 * mbedtls_ssl_read turns into "0 bytes, no record yet" and polls again, spinning until the
 * timeout and never reporting the end of stream (on native_sim, where time stands still in a
 * busy loop, forever). recv itself returns 0 there, as it should.
 */
int app_recv(int fd, uint8_t *buf, size_t len, int32_t timeout_ms)
{
	struct zsock_timeval timeout = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};
	ssize_t received;

	if (timeout_ms > 0 &&
	    zsock_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0) {
		return -errno;
	}
	received = zsock_recv(fd, buf, len, timeout_ms > 0 ? 0 : ZSOCK_MSG_DONTWAIT);
	if (received < 0) {
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
	return (int)received;
}

int app_close(int fd)
{
	return zsock_close(fd) < 0 ? -errno : 0;
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
		EPROTONOSUPPORT, ENETRESET,
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

uint64_t app_random_u64(void)
{
	uint64_t value = 0;

	sys_rand_get(&value, sizeof(value));
	return value;
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
