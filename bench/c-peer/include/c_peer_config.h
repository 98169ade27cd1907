/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The fair C peer of bench/: stands in for samples/net/mqtt_publisher's src/config.h, which
 * this header's definition of its include guard turns into nothing (CMakeLists.txt forces this
 * header first on the app's sources). Every macro of that file, with its values and
 * conditions, except APP_SLEEP_MSECS, which comes from CONFIG_BENCH_C_PEER_SLEEP_MS. Kept in
 * step with the sample's config.h of Zephyr 4.3.
 */

#ifndef __CONFIG_H__
#define __CONFIG_H__

#ifdef CONFIG_NET_CONFIG_SETTINGS
#ifdef CONFIG_NET_IPV6
#define ZEPHYR_ADDR		CONFIG_NET_CONFIG_MY_IPV6_ADDR
#define SERVER_ADDR		CONFIG_NET_CONFIG_PEER_IPV6_ADDR
#else
#define ZEPHYR_ADDR		CONFIG_NET_CONFIG_MY_IPV4_ADDR
#define SERVER_ADDR		CONFIG_NET_CONFIG_PEER_IPV4_ADDR
#endif
#else
#ifdef CONFIG_NET_IPV6
#define ZEPHYR_ADDR		"2001:db8::1"
#define SERVER_ADDR		"2001:db8::2"
#else
#define ZEPHYR_ADDR		"192.168.1.101"
#define SERVER_ADDR		"192.168.1.10"
#endif
#endif

#if defined(CONFIG_SOCKS)
#define SOCKS5_PROXY_ADDR	SERVER_ADDR
#define SOCKS5_PROXY_PORT	1080
#endif

#ifdef CONFIG_MQTT_LIB_WEBSOCKET
#define SERVER_PORT		9001
#elif defined(CONFIG_MQTT_LIB_TLS)
#define SERVER_PORT		8883
#else
#define SERVER_PORT		1883
#endif

#define APP_CONNECT_TIMEOUT_MS	2000
/* The one change: the sample's wait after each ping and publish (500 there). */
#define APP_SLEEP_MSECS		CONFIG_BENCH_C_PEER_SLEEP_MS

#define APP_CONNECT_TRIES	10

#define APP_MQTT_BUFFER_SIZE	128

#define MQTT_CLIENTID		"zephyr_publisher"

#define APP_BLUEMIX_TOPIC	0

#endif /* __CONFIG_H__ */
