/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The operator's side of the MQTT thread (src/control.rs): the `mqtt status` and `mqtt pub`
 * shell commands, and the connection manager's "network went down" event.
 *
 * The MQTT session belongs to the MQTT thread alone, so the shell never touches it:
 * - `mqtt pub` puts a request into a bounded k_msgq that the MQTT thread drains every loop
 *   round, and waits (bounded) for the answer on a semaphore. A request that cannot be queued
 *   or is not answered in time is reported, never dropped without a line.
 * - `mqtt status` prints a snapshot that the MQTT thread copies in every round, under a
 *   spinlock (a short memcpy on both sides).
 * - `mqtt bench` leaves one benchmark plan (count, QoS, payload size) for the MQTT thread,
 *   which publishes the numbered messages itself: a shell line per message would measure the
 *   shell, not the client.
 *
 * Struct layouts are mirrored in src/ffi.rs; keep them in the same order.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zephyr/init.h>
#include <zephyr/kernel.h>

#if defined(CONFIG_SHELL)
#include <zephyr/shell/shell.h>
#endif

#if defined(CONFIG_THREAD_ANALYZER)
#include <zephyr/debug/thread_analyzer.h>
#include <zephyr/net/net_pkt.h>
#endif

#define APP_CONTROL_TOPIC_MAX   128
#define APP_CONTROL_PAYLOAD_MAX 192
/* BENCH_PAYLOAD_MIN in crates/device-app: room for the largest sequence number. */
#define APP_BENCH_PAYLOAD_MIN 11
/* Requests waiting for the MQTT thread; more are refused with "request queue full". */
#define APP_CONTROL_QUEUE_DEPTH 4
/* The MQTT thread answers within one loop round unless it is inside a TLS handshake. */
#define APP_CONTROL_ANSWER_TIMEOUT_MS 5000

struct app_publish_request {
	uint32_t ticket;
	uint16_t topic_len;
	uint16_t payload_len;
	uint8_t qos;
	char topic[APP_CONTROL_TOPIC_MAX];
	uint8_t payload[APP_CONTROL_PAYLOAD_MAX];
};

struct app_publish_answer {
	uint32_t queued; /* 1: in the outbox as message_id; 0: rejected for reason */
	uint32_t message_id;
	uint32_t outbox;
	char reason[96];
};

/* A benchmark plan; count 0 means "none waiting". */
struct app_bench_request {
	uint32_t count;
	uint16_t payload_len;
	uint8_t qos;
};

struct app_mqtt_status {
	uint32_t inflight;
	uint32_t outbox;
	uint32_t reconnects;
	uint32_t published;
	uint16_t port;
	char state[16];
	char host[64];
	char tls_version[16];
	char cipher[48];
	char last_error[96];
};

K_MSGQ_DEFINE(publish_requests, sizeof(struct app_publish_request), APP_CONTROL_QUEUE_DEPTH, 4);

static struct k_spinlock lock;
/* Under `lock`: the snapshot, and the one answer a shell command is waiting for. */
static struct app_mqtt_status status = {.state = "starting"};
static uint32_t awaited_ticket;
static struct app_bench_request waiting_bench;
static struct app_publish_answer awaited_answer;
static K_SEM_DEFINE(answered, 0, 1);

/* --- The MQTT thread's side ------------------------------------------------------------------ */

/* 0 and a request in *out, or -ENOMSG when none came within timeout_ms. */
int app_control_take_request(struct app_publish_request *out, int32_t timeout_ms)
{
	k_timeout_t timeout = timeout_ms > 0 ? K_MSEC(timeout_ms) : K_NO_WAIT;

	return k_msgq_get(&publish_requests, out, timeout) == 0 ? 0 : -ENOMSG;
}

/*
 * Wakes the MQTT thread from a reconnect delay (new credentials were committed): a request
 * with ticket 0 carries nothing. A full queue wakes it anyway.
 */
void app_control_wake(void)
{
	static const struct app_publish_request wake = {.ticket = 0};

	(void)k_msgq_put(&publish_requests, &wake, K_NO_WAIT);
}

/* Hands the result to the shell command if it still waits; the MQTT thread logs it anyway. */
void app_control_answer(uint32_t ticket, const struct app_publish_answer *answer)
{
	bool waiting;
	k_spinlock_key_t key = k_spin_lock(&lock);

	waiting = ticket != 0 && ticket == awaited_ticket;
	if (waiting) {
		awaited_answer = *answer;
		awaited_answer.reason[sizeof(awaited_answer.reason) - 1] = '\0';
		awaited_ticket = 0;
	}
	k_spin_unlock(&lock, key);
	if (waiting) {
		k_sem_give(&answered);
	}
}

/* true and the plan in *out when `mqtt bench` left one since the last call. */
bool app_control_take_bench(struct app_bench_request *out)
{
	bool taken;
	k_spinlock_key_t key = k_spin_lock(&lock);

	taken = waiting_bench.count != 0;
	if (taken) {
		*out = waiting_bench;
		waiting_bench.count = 0;
	}
	k_spin_unlock(&lock, key);
	return taken;
}

void app_control_set_status(const struct app_mqtt_status *snapshot)
{
	k_spinlock_key_t key = k_spin_lock(&lock);

	status = *snapshot;
	k_spin_unlock(&lock, key);
}

/* --- Shell commands ------------------------------------------------------------------------- */
#if defined(CONFIG_SHELL)

/* In shim.c. */
int64_t app_heap_free_bytes(void);
int app_tls_heap_stats(uint32_t *used, uint32_t *peak, uint32_t *size);

static void print_heaps(const struct shell *sh)
{
	int64_t heap_free = app_heap_free_bytes();
	uint32_t used, peak, size;

	if (heap_free >= 0) {
		shell_print(sh, "heap free: %u", (uint32_t)heap_free);
	} else {
		shell_print(sh, "heap free: not counted in this build");
	}
	if (app_tls_heap_stats(&used, &peak, &size) == 0) {
		shell_print(sh, "tls heap: %u used, peak %u of %u", used, peak, size);
	} else {
		shell_print(sh, "tls heap: not counted in this build");
	}
}

static int cmd_status(const struct shell *sh, size_t argc, char **argv)
{
	/* static: a 300-byte copy is better off the shell thread's stack; one shell, one caller. */
	static struct app_mqtt_status copy;
	k_spinlock_key_t key = k_spin_lock(&lock);

	ARG_UNUSED(argc);
	ARG_UNUSED(argv);
	copy = status;
	k_spin_unlock(&lock, key);
	shell_print(sh, "state: %s", copy.state);
	shell_print(sh, "broker: %s:%u", copy.host, copy.port);
	shell_print(sh, "tls: %s %s", copy.tls_version, copy.cipher);
	shell_print(sh, "in flight: %u", copy.inflight);
	shell_print(sh, "outbox: %u", copy.outbox);
	shell_print(sh, "published: %u", copy.published);
	shell_print(sh, "reconnects: %u", copy.reconnects);
	shell_print(sh, "last error: %s", copy.last_error[0] != '\0' ? copy.last_error : "none");
	print_heaps(sh);
	return 0;
}

/* An unsigned decimal in [min, max], or a shell error naming the command and the argument. */
static bool parse_bounded(const struct shell *sh, const char *command, const char *name,
			  const char *text, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long value = strtoul(text, &end, 10);

	if (*end != '\0' || end == text || value < min || value > max) {
		shell_error(sh, "%s rejected: %s must be %lu to %lu, not '%s'", command, name, min,
			    max, text);
		return false;
	}
	*out = value;
	return true;
}

static K_MUTEX_DEFINE(publish_lock);
static uint32_t last_ticket;

static int cmd_pub(const struct shell *sh, size_t argc, char **argv)
{
	/* Guarded by publish_lock; static for the same reason as in cmd_status. */
	static struct app_publish_request request;
	size_t topic_len = strlen(argv[1]);
	size_t payload_len = strlen(argv[2]);
	unsigned long qos = 1;
	uint32_t ticket;
	bool answered_in_time;
	int ret;

	if (argc > 3 && !parse_bounded(sh, "pub", "qos", argv[3], 0, 2, &qos)) {
		return -EINVAL;
	}
	if (topic_len == 0 || topic_len > APP_CONTROL_TOPIC_MAX) {
		shell_error(sh, "pub rejected: topic must be 1 to %d bytes", APP_CONTROL_TOPIC_MAX);
		return -EINVAL;
	}
	if (payload_len > APP_CONTROL_PAYLOAD_MAX) {
		shell_error(sh, "pub rejected: payload longer than %d bytes", APP_CONTROL_PAYLOAD_MAX);
		return -EINVAL;
	}

	k_mutex_lock(&publish_lock, K_FOREVER);
	ticket = ++last_ticket;
	if (ticket == 0) { /* 0 means "nobody waits" */
		ticket = ++last_ticket;
	}
	request.ticket = ticket;
	request.qos = (uint8_t)qos;
	request.topic_len = (uint16_t)topic_len;
	request.payload_len = (uint16_t)payload_len;
	memcpy(request.topic, argv[1], topic_len);
	memcpy(request.payload, argv[2], payload_len);

	/* Announce the wait before queueing: the answer may come before k_msgq_put returns. */
	k_sem_reset(&answered);
	K_SPINLOCK(&lock) {
		awaited_ticket = ticket;
	}
	if (k_msgq_put(&publish_requests, &request, K_NO_WAIT) != 0) {
		K_SPINLOCK(&lock) {
			awaited_ticket = 0;
		}
		shell_error(sh, "pub #%u rejected: request queue full (%d waiting for the MQTT thread)",
			    ticket, APP_CONTROL_QUEUE_DEPTH);
		k_mutex_unlock(&publish_lock);
		return -EBUSY;
	}

	answered_in_time = k_sem_take(&answered, K_MSEC(APP_CONTROL_ANSWER_TIMEOUT_MS)) == 0;
	K_SPINLOCK(&lock) {
		if (!answered_in_time && awaited_ticket == 0) {
			/* Answered between the timeout and this lock. */
			answered_in_time = true;
		}
		awaited_ticket = 0;
	}
	if (!answered_in_time) {
		shell_warn(sh, "pub #%u still queued: no answer within %d ms (the MQTT thread is busy, "
			   "e.g. connecting); it logs the result", ticket, APP_CONTROL_ANSWER_TIMEOUT_MS);
		ret = -ETIMEDOUT;
	} else if (awaited_answer.queued) {
		shell_print(sh, "pub #%u queued as message %u (outbox %u)", ticket,
			    awaited_answer.message_id, awaited_answer.outbox);
		ret = 0;
	} else {
		shell_error(sh, "pub #%u rejected: %s", ticket, awaited_answer.reason);
		ret = -EIO;
	}
	k_mutex_unlock(&publish_lock);
	return ret;
}

static int cmd_bench(const struct shell *sh, size_t argc, char **argv)
{
	unsigned long count, qos, payload_len = 64;
	bool accepted;

	if (!parse_bounded(sh, "bench", "count", argv[1], 1, 1000000, &count) ||
	    !parse_bounded(sh, "bench", "qos", argv[2], 0, 2, &qos) ||
	    (argc > 3 && !parse_bounded(sh, "bench", "size", argv[3], APP_BENCH_PAYLOAD_MIN,
					APP_CONTROL_PAYLOAD_MAX, &payload_len))) {
		return -EINVAL;
	}
	K_SPINLOCK(&lock) {
		accepted = waiting_bench.count == 0;
		if (accepted) {
			waiting_bench = (struct app_bench_request){
				.count = count, .payload_len = payload_len, .qos = qos};
		}
	}
	if (!accepted) {
		shell_error(sh, "bench rejected: another one waits for the MQTT thread");
		return -EBUSY;
	}
	shell_print(sh, "bench queued: %lu messages, QoS %lu, %lu bytes (the MQTT thread logs "
		    "\"bench: done\")", count, qos, payload_len);
	return 0;
}

#if defined(CONFIG_THREAD_ANALYZER)
/*
 * What the board's RAM budget is sized from: every thread's stack high-water mark (and the
 * interrupt stack's), the peak use of the network packet and buffer pools, and the heaps.
 */
static int cmd_memory(const struct shell *sh, size_t argc, char **argv)
{
	ARG_UNUSED(argc);
	ARG_UNUSED(argv);
	thread_analyzer_print(0);
#if defined(CONFIG_NET_BUF_POOL_USAGE) && defined(CONFIG_MEM_SLAB_TRACE_MAX_UTILIZATION)
	struct k_mem_slab *rx, *tx;
	struct net_buf_pool *rx_data, *tx_data;

	net_pkt_get_info(&rx, &tx, &rx_data, &tx_data);
	shell_print(sh, "net pkt rx: peak %u of %u", k_mem_slab_max_used_get(rx), rx->info.num_blocks);
	shell_print(sh, "net pkt tx: peak %u of %u", k_mem_slab_max_used_get(tx), tx->info.num_blocks);
	shell_print(sh, "net buf rx: peak %u of %u", rx_data->max_used, rx_data->buf_count);
	shell_print(sh, "net buf tx: peak %u of %u", tx_data->max_used, tx_data->buf_count);
#endif
	print_heaps(sh);
	return 0;
}
#define APP_MEMORY_CMD                                                                             \
	SHELL_CMD_ARG(memory, NULL, "Stack, network buffer and heap peaks (thread analyzer)",      \
		      cmd_memory, 1, 0),
#else
#define APP_MEMORY_CMD
#endif

SHELL_STATIC_SUBCMD_SET_CREATE(
	mqtt_commands,
	APP_MEMORY_CMD
	SHELL_CMD_ARG(status, NULL,
		      "Connection state, broker, TLS in use, in flight, outbox, reconnects, last "
		      "error",
		      cmd_status, 1, 0),
	SHELL_CMD_ARG(pub, NULL,
		      "<topic> <payload> [qos]: publish through the MQTT thread (qos 0, 1 or 2; "
		      "default 1); queued in the outbox while offline",
		      cmd_pub, 3, 1),
	SHELL_CMD_ARG(bench, NULL,
		      "<count> <qos> [size]: publish count numbered messages of size bytes "
		      "(default 64) to <base>/bench/q<qos> as fast as the outbox takes them",
		      cmd_bench, 3, 1),
	SHELL_SUBCMD_SET_END);

SHELL_CMD_REGISTER(mqtt, &mqtt_commands, "The MQTT client", NULL);

#endif /* CONFIG_SHELL */
