/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The `mqtt` and `cred` shell commands: registration only. `mqtt status`, `pub` and `bench`
 * go to app_mqtt_command(), the `cred` subcommands to app_cred_command(), both in
 * src/control.rs: they check the arguments, hand the request to the MQTT thread
 * and write the answer. `mqtt memory` prints the thread analyzer's figures, which only C can
 * reach.
 */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <zephyr/kernel.h>

#include "shim.h"

#if defined(CONFIG_SHELL)
#include <zephyr/shell/shell.h>

#if defined(CONFIG_THREAD_ANALYZER)
#include <zephyr/debug/thread_analyzer.h>
#include <zephyr/net/net_pkt.h>
#endif
#if defined(CONFIG_THREAD_ANALYZER) && defined(CONFIG_MBEDTLS_MEMORY_DEBUG)
#include <mbedtls/memory_buffer_alloc.h>
#endif

/* `cred list` is the longest answer: four roots, a certificate and a key. */
#define ANSWER_MAX 768
/* One shell command at a time: the answer buffer is static to spare the shell's stack. */
static char answer[ANSWER_MAX];
static K_MUTEX_DEFINE(answer_lock);

static int run(const struct shell *sh, int (*command)(size_t, char **, char *, size_t),
	       const char *refused, size_t argc, char **argv)
{
	int ret;

	k_mutex_lock(&answer_lock, K_FOREVER);
	ret = command(argc, argv, answer, sizeof(answer));
	if (ret < 0) {
		shell_error(sh, "%s%s", refused, answer);
	} else if (ret > 0) {
		shell_warn(sh, "%s", answer);
	} else {
		shell_print(sh, "%s", answer);
	}
	k_mutex_unlock(&answer_lock);
	return ret < 0 ? -EINVAL : 0;
}

/* Every subcommand of a tree goes to one Rust function, which dispatches on argv[0]. */
static int cmd_mqtt(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, app_mqtt_command, "", argc, argv);
}

static int cmd_cred(const struct shell *sh, size_t argc, char **argv)
{
	return run(sh, app_cred_command, "cred: ", argc, argv);
}

#if defined(CONFIG_THREAD_ANALYZER)
/*
 * What the board's RAM budget is sized from: every thread's stack high-water mark (and the
 * interrupt stack's), the peak use of the network packet and buffer pools, and the heaps.
 */
static int cmd_memory(const struct shell *sh, size_t argc, char **argv)
{
	int64_t heap_free = app_heap_free_bytes();
	uint32_t used, peak, size;

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
	if (heap_free >= 0) {
		shell_print(sh, "heap free: %u", (uint32_t)heap_free);
	}
	if (app_tls_heap_stats(&used, &peak, &size) == 0) {
#if defined(CONFIG_MBEDTLS_MEMORY_DEBUG)
		/*
		 * The byte counts leave out each block's header (mbedTLS's memory_header, eight
		 * words): the blocks say how much that adds.
		 */
		size_t bytes, blocks, peak_blocks;

		mbedtls_memory_buffer_alloc_cur_get(&bytes, &blocks);
		mbedtls_memory_buffer_alloc_max_get(&bytes, &peak_blocks);
		shell_print(sh, "tls heap: %u used, peak %u of %u; blocks %u in use, peak %u", used,
			    peak, size, (uint32_t)blocks, (uint32_t)peak_blocks);
#else
		shell_print(sh, "tls heap: %u used, peak %u of %u", used, peak, size);
#endif
	}
	return 0;
}
#define APP_MEMORY_CMD                                                                             \
	SHELL_CMD_ARG(memory, NULL, "Stack, network buffer and heap peaks (thread analyzer)",      \
		      cmd_memory, 1, 0),
#else
#define APP_MEMORY_CMD
#endif

#if defined(CONFIG_APP_SHELL_BENCH)
#define APP_BENCH_CMD                                                                              \
	SHELL_CMD_ARG(bench, NULL,                                                                 \
		      "<count> <qos> [size]: publish count numbered messages of size bytes "       \
		      "(default 64) to <base>/bench/q<qos> as fast as the outbox takes them",      \
		      cmd_mqtt, 3, 1),
#else
#define APP_BENCH_CMD
#endif

SHELL_STATIC_SUBCMD_SET_CREATE(
	mqtt_commands,
	APP_MEMORY_CMD
	SHELL_CMD_ARG(status, NULL,
		      "Connection state, broker, TLS in use, in flight, outbox, reconnects, last "
		      "error",
		      cmd_mqtt, 1, 0),
	SHELL_CMD_ARG(pub, NULL,
		      "<topic> <payload> [qos]: publish through the MQTT thread (qos 0, 1 or 2; "
		      "default 1); queued in the outbox while offline",
		      cmd_mqtt, 3, 1),
	APP_BENCH_CMD
	SHELL_SUBCMD_SET_END);

SHELL_CMD_REGISTER(mqtt, &mqtt_commands, "The MQTT client", NULL);

SHELL_STATIC_SUBCMD_SET_CREATE(
	cred_commands,
	SHELL_CMD_ARG(begin, NULL, "Start an upload: begin ca|cert|key", cmd_cred, 2, 0),
	SHELL_CMD_ARG(add, NULL, "Start an upload of one more root for the CA bundle: add ca",
		      cmd_cred, 2, 0),
	SHELL_CMD_ARG(data, NULL, "One line of the DER in base64", cmd_cred, 2, 0),
	SHELL_CMD_ARG(end, NULL, "Finish the upload; check it and stage it", cmd_cred, 1, 0),
	SHELL_CMD_ARG(abort, NULL, "Drop the upload and everything staged", cmd_cred, 1, 0),
	SHELL_CMD_ARG(delete, NULL, "Stage removal: delete ca|cert|key", cmd_cred, 2, 0),
	SHELL_CMD_ARG(image, NULL, "Stage the image's credential: image ca|cert|key", cmd_cred,
		      2, 0),
	SHELL_CMD_ARG(commit, NULL, "Check the staged set and store it; used from the next "
		      "connection on", cmd_cred, 1, 0),
	SHELL_CMD_ARG(keygen, NULL, "Make a P-256 key on the device and stage it (its private "
		      "half is never shown)", cmd_cred, 1, 0),
	SHELL_CMD_ARG(csr, NULL, "Print a certificate request (PEM) for the staged key, CN the "
		      "client id", cmd_cred, 1, 0),
	SHELL_CMD_ARG(list, NULL, "Stored, staged and active credentials with SHA-256 "
		      "fingerprints", cmd_cred, 1, 0),
	SHELL_SUBCMD_SET_END);

SHELL_CMD_REGISTER(cred, &cred_commands, "TLS credentials: provision without rebuilding", NULL);

#endif /* CONFIG_SHELL */
