/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * bench/features.py, "RSA" (rsa.conf): the application's mbedTLS settings without the
 * INTEROP profile's RSA: no ECDHE-RSA, no PSS, and no RSA in PSA (rsa-psa.h, read after
 * Zephyr's PSA_WANT_* header).
 */
#include "tls_profile_config.h"

#undef MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#undef MBEDTLS_X509_RSASSA_PSS_SUPPORT
#define MBEDTLS_PSA_CRYPTO_USER_CONFIG_FILE "../../bench/conf/features/rsa-psa.h"
