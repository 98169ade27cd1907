/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * native_sim only: command-line options for the tests, so that an image built once can talk
 * to a broker the test started on a free loopback port:
 *   zephyr.exe --broker-port=18883
 * and, for the fault tests, a short MQTT keepalive (a ping timeout within seconds) and a low
 * reconnect delay ceiling (twenty broker restarts in a row within minutes):
 *   zephyr.exe --keepalive-s=2 --reconnect-cap-ms=2000
 * and, for a simulated fleet, a client id per process (with credentials provisioned through
 * the `cred` shell into the process's own --flash file):
 *   zephyr.exe --client-id=fleet-007 --flash=fleet-007.bin
 */

#include <stdint.h>

#include <zephyr/kernel.h>

#include "shim.h"
#include "soc.h"
#include "cmdline.h" /* native_sim command-line options */

static uint32_t broker_port_override;
static uint32_t keepalive_override;
static uint32_t reconnect_cap_override;
/* Indexed by TextOption in src/settings.rs. */
static char *text_overrides[3];

static void add_app_options(void)
{
	static struct args_struct_t app_options[] = {
		{
			.option = "broker-port",
			.name = "port",
			.type = 'u',
			.dest = (void *)&broker_port_override,
			.descript = "TCP port of the MQTT broker (overrides CONFIG_APP_BROKER_PORT)",
		},
		{
			.option = "keepalive-s",
			.name = "seconds",
			.type = 'u',
			.dest = (void *)&keepalive_override,
			.descript = "MQTT keepalive in seconds, 1..65535 (overrides "
				    "CONFIG_APP_MQTT_KEEPALIVE_S)",
		},
		{
			.option = "reconnect-cap-ms",
			.name = "ms",
			.type = 'u',
			.dest = (void *)&reconnect_cap_override,
			.descript = "Largest reconnect delay ceiling in milliseconds (overrides "
				    "CONFIG_APP_RECONNECT_CAP_MS)",
		},
		{
			.option = "broker-endpoints",
			.name = "list",
			.type = 's',
			.dest = (void *)&text_overrides[0],
			.descript = "host:port list tried in turn (overrides "
				    "CONFIG_APP_BROKER_ENDPOINTS)",
		},
		{
			.option = "tls-alpn",
			.name = "list",
			.type = 's',
			.dest = (void *)&text_overrides[1],
			.descript = "ALPN names offered in the handshake (overrides "
				    "CONFIG_APP_TLS_ALPN)",
		},
		{
			.option = "client-id",
			.name = "id",
			.type = 's',
			.dest = (void *)&text_overrides[2],
			.descript = "MQTT client id, the CN of the device certificate in use "
				    "(overrides CONFIG_APP_MQTT_CLIENT_ID)",
		},
		ARG_TABLE_ENDMARKER,
	};

	native_add_command_line_opts(app_options);
}

NATIVE_TASK(add_app_options, PRE_BOOT_1, 10);

/* 0 when the option was not given or is out of range. */
uint16_t app_broker_port_override(void)
{
	return broker_port_override <= UINT16_MAX ? (uint16_t)broker_port_override : 0;
}

/* 0 when the option was not given or is out of range. */
uint16_t app_keepalive_override(void)
{
	return keepalive_override <= UINT16_MAX ? (uint16_t)keepalive_override : 0;
}

/*
 * 0 when the option was not given: the command-line parser presets unsigned options to
 * UINT32_MAX, which taken as a value made the reconnect cap 49 days.
 */
uint32_t app_reconnect_cap_override(void)
{
	return reconnect_cap_override == UINT32_MAX ? 0 : reconnect_cap_override;
}

/* The text given for option `index` (see TextOption in src/settings.rs), or NULL. */
const char *app_text_override(int index)
{
	return index >= 0 && index < (int)ARRAY_SIZE(text_overrides) ? text_overrides[index] : NULL;
}
