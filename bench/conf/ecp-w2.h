/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * docs/p256-on-arm.md, variant "ecp-w2" (bench/conf/ecp-w2.conf): the application's mbedTLS
 * settings, then the ECP module's window size and fixed-point tables, which replace
 * tls_profile_config.h's (mbedTLS's defaults: a window of 4 with fixed-point tables).
 */
#include "tls_profile_config.h"

#undef MBEDTLS_ECP_WINDOW_SIZE
#undef MBEDTLS_ECP_FIXED_POINT_OPTIM
#define MBEDTLS_ECP_WINDOW_SIZE 2
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 1
