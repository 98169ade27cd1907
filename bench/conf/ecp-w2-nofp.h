/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * docs/an386-measurements.md, variant "ecp-w2-nofp" (bench/conf/ecp-w2-nofp.conf): the
 * application's mbedTLS settings, then the ECP module's window size and fixed-point tables.
 */
#include "tls_profile_config.h"

#undef MBEDTLS_ECP_WINDOW_SIZE
#undef MBEDTLS_ECP_FIXED_POINT_OPTIM
#define MBEDTLS_ECP_WINDOW_SIZE 2
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 0
