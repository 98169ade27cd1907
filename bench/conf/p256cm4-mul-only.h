/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * docs/p256-on-arm.md, variant "p256cm4-mul-only" (bench/conf/p256cm4-mul-only.conf): the
 * application's mbedTLS settings without the ECDSA verification hook, to measure what it
 * adds over the multiplication hook alone.
 */
#include "tls_profile_config.h"

#undef MBEDTLS_ECDSA_P256_VERIFY_ACCEL
