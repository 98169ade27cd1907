/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * What build.rs runs bindgen on for src/ffi.rs: our boundary (shim.h) and the Zephyr and
 * mbedTLS calls the Rust side makes itself. A `static inline` function here or in these
 * headers becomes a linkable C function in the generated app_ffi_wrappers.c.
 */

#ifndef APP_FFI_H_
#define APP_FFI_H_

#ifdef RUST_BINDGEN
/* The errno of Zephyr's headers, for bindgen's clang, which has not the C library's (as in
 * zephyr-sys's wrapper.h).
 */
extern int errno;
#endif

#include <errno.h>

#include <zephyr/fs/nvs.h>
#include <zephyr/kernel.h>
#include <zephyr/net/socket.h>
#include <zephyr/net/tls_credentials.h>
#include <zephyr/random/random.h>
#include <zephyr/settings/settings.h>
#include <zephyr/storage/flash_map.h>

#include <mbedtls/pk.h>
#include <mbedtls/platform.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#include "shim.h"

/* errno is a macro (thread-local in the board's picolibc): the Rust side reads it here. */
static inline int app_errno(void)
{
	return errno;
}

/* SO_RCVTIMEO takes the C library's struct timeval, whose layout only the C compiler knows. */
static inline int app_set_recv_timeout(int fd, int32_t timeout_ms)
{
	struct zsock_timeval timeout = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};

	return zsock_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
}

/* PSA's key types and algorithms are function-like macros, which bindgen does not evaluate. */
static inline psa_key_type_t app_psa_p256_key_pair(void)
{
	return PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1);
}

static inline psa_algorithm_t app_psa_ecdsa_sha256(void)
{
	return PSA_ALG_ECDSA(PSA_ALG_SHA_256);
}

#endif /* APP_FFI_H_ */
