/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * bench/features.py, "P-384" (p384.conf): the application's mbedTLS settings, then PSA without
 * the P-384 curve (p384-psa.h, read after Zephyr's PSA_WANT_* header).
 */
#include "tls_profile_config.h"

#define MBEDTLS_PSA_CRYPTO_USER_CONFIG_FILE "../../bench/conf/features/p384-psa.h"
