/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The fair C peer of bench/: a client certificate for samples/net/mqtt_publisher. The sample
 * gives its TLS socket sec tag 1 (APP_CA_CERT_TAG in its main.c) and adds its CA there in
 * main(); a certificate and key under the same tag make Zephyr's TLS layer present them, so
 * the sample does mutual TLS as our firmware does, without a change to its sources.
 */

#include <time.h>

#include <zephyr/init.h>
#include <zephyr/net/tls_credentials.h>
#include <zephyr/sys/clock.h>
#include <zephyr/sys/printk.h>
#if defined(CONFIG_BOARD_NATIVE_SIM)
#include "native_rtc.h"
#endif

#define SAMPLE_SEC_TAG 1

/* DER (tls_credential_add keeps the pointer), as `xxd -i` bytes: bench/c_peer.sh writes them
 * at bench time from a throwaway key; they are never committed.
 */
static const unsigned char client_cert[] = {
#include "client_cert.der.inc"
};

static const unsigned char client_key[] = {
#include "client_key.der.inc"
};

static int client_cred_init(void)
{
#if defined(CONFIG_BOARD_NATIVE_SIM)
	/* mbedTLS checks certificate dates (CONFIG_MBEDTLS_HAVE_TIME_DATE, as ours), and Zephyr's
	 * realtime clock starts at 1970 in the sample, which has no clock source: the host's time,
	 * as our firmware sees it on native_sim.
	 */
	uint32_t nsec;
	uint64_t sec;

	native_rtc_gettime(RTC_CLOCK_REALTIME, &nsec, &sec);
	sys_clock_settime(SYS_CLOCK_REALTIME, &(struct timespec){.tv_sec = sec, .tv_nsec = nsec});
#endif
	int err = tls_credential_add(SAMPLE_SEC_TAG, TLS_CREDENTIAL_PUBLIC_CERTIFICATE,
				     client_cert, sizeof(client_cert));

	if (err == 0) {
		err = tls_credential_add(SAMPLE_SEC_TAG, TLS_CREDENTIAL_PRIVATE_KEY, client_key,
					 sizeof(client_key));
	}
	if (err != 0) {
		/* The handshake then fails at the broker, which requires a certificate. */
		printk("c-peer: client credential not added: %d\n", err);
	}
	return 0;
}

/* Before main(), which adds the CA under the same tag. */
SYS_INIT(client_cred_init, APPLICATION, CONFIG_APPLICATION_INIT_PRIORITY);
