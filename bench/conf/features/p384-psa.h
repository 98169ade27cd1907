/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * bench/features.py, "P-384": the curve out of PSA.
 */
#undef PSA_WANT_ECC_SECP_R1_384
