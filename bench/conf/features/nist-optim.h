/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * bench/features.py, "NIST reduction" (nist-optim.conf): the application's mbedTLS settings
 * without MBEDTLS_ECP_NIST_OPTIM.
 */
#include "tls_profile_config.h"

#undef MBEDTLS_ECP_NIST_OPTIM
