# SPDX-License-Identifier: Apache-2.0
# bench/c_peer.sh: the fair C peer's images (bench/METHOD.md, "The fair C peer"), for bench/run
# to `source` after its own builds: Zephyr's samples/net/mqtt_publisher with overlay-tls.conf,
# bench/conf/c-fair-tls.conf and the module bench/c-peer. Uses what bench/run defines: $P,
# $RESULTS, $SAMPLE, $BENCH, build(). Makes:
#   ${P}c-fair-certs   our dev CA and broker certificate (for Mosquitto), a throwaway client
#                      key and certificate for CN=zephyr_publisher signed by the dev CA, and
#                      their `xxd -i` bytes (ca_cert.der.inc, client_cert.der.inc,
#                      client_key.der.inc) for the image; nothing of it is committed
#   ${P}c-fair-sim     native_sim/native/64 (with mbedtls-heap.conf, as bench/run's C image)
#   ${P}c-fair-k64f    frdm_k64f (the same picolibc fix as bench/run's C image: ${P}c-libc-fix)
#   ${P}c-fair-compact-k64f  the same with our COMPACT profile (bench/conf/c-fair-compact.conf)

C_FAIR_CERTS=${P}c-fair-certs
if [[ ! -f $C_FAIR_CERTS/client_key.der.inc ]]; then
  dev=$BENCH/../certs/dev-only-insecure
  mkdir -p "$C_FAIR_CERTS"
  cp "$dev/ca.crt.pem" "$dev/broker.crt.pem" "$dev/broker.key.pem" "$C_FAIR_CERTS/"
  openssl ecparam -name prime256v1 -genkey -noout -out "$C_FAIR_CERTS/client.key.pem"
  openssl req -new -key "$C_FAIR_CERTS/client.key.pem" -subj /CN=zephyr_publisher \
    -out "$C_FAIR_CERTS/client.csr"
  openssl x509 -req -in "$C_FAIR_CERTS/client.csr" -CA "$dev/ca.crt.pem" -CAkey "$dev/ca.key.pem" \
    -CAcreateserial -CAserial "$C_FAIR_CERTS/ca.srl" -days 30 -sha256 \
    -out "$C_FAIR_CERTS/client.crt.pem" 2>/dev/null
  openssl x509 -in "$C_FAIR_CERTS/client.crt.pem" -outform DER -out "$C_FAIR_CERTS/client.crt.der"
  openssl pkey -in "$C_FAIR_CERTS/client.key.pem" -outform DER -out "$C_FAIR_CERTS/client.key.der"
  xxd -i <"$dev/ca.crt.der" >"$C_FAIR_CERTS/ca_cert.der.inc"
  xxd -i <"$C_FAIR_CERTS/client.crt.der" >"$C_FAIR_CERTS/client_cert.der.inc"
  xxd -i <"$C_FAIR_CERTS/client.key.der" >"$C_FAIR_CERTS/client_key.der.inc"
  # Throwaway test keys; Mosquitto reads them after dropping root for its own user.
  chmod 0755 "$C_FAIR_CERTS"; chmod 0644 "$C_FAIR_CERTS"/*
fi

C_FAIR_MODULE=$BENCH/c-peer
if want sim; then
  ZEPHYR_TOOLCHAIN_VARIANT=host build c-fair-sim "${P}c-fair-sim" -b native_sim/native/64 "$SAMPLE" -- \
    "-DEXTRA_CONF_FILE=overlay-tls.conf;$BENCH/conf/c-sample-native_sim.conf;$BENCH/conf/c-fair-tls.conf;$BENCH/conf/c-fair-native_sim.conf;$BENCH/conf/mbedtls-heap.conf" \
    "-DEXTRA_ZEPHYR_MODULES=$C_FAIR_MODULE" "-DEXTRA_CFLAGS=-I$C_FAIR_CERTS"
fi
if want footprint; then
  # ${P}c-libc-fix/sys/signal.h: written by bench/run's footprint part for the stock sample.
  ZEPHYR_TOOLCHAIN_VARIANT=${K64F_TOOLCHAIN_VARIANT:-gnuarmemb} \
    GNUARMEMB_TOOLCHAIN_PATH=${GNUARMEMB_TOOLCHAIN_PATH:-/usr} \
    build c-fair-k64f "${P}c-fair-k64f" -b frdm_k64f "$SAMPLE" -- -DTOOLCHAIN_HAS_PICOLIBC=ON \
    "-DEXTRA_CONF_FILE=overlay-tls.conf;$BENCH/conf/c-fair-tls.conf" \
    "-DEXTRA_ZEPHYR_MODULES=$C_FAIR_MODULE" "-DEXTRA_CFLAGS=-I${P}c-libc-fix -I$C_FAIR_CERTS"
  ZEPHYR_TOOLCHAIN_VARIANT=${K64F_TOOLCHAIN_VARIANT:-gnuarmemb} \
    GNUARMEMB_TOOLCHAIN_PATH=${GNUARMEMB_TOOLCHAIN_PATH:-/usr} \
    build c-fair-compact-k64f "${P}c-fair-compact-k64f" -b frdm_k64f "$SAMPLE" -- \
    -DTOOLCHAIN_HAS_PICOLIBC=ON \
    "-DEXTRA_CONF_FILE=overlay-tls.conf;$BENCH/conf/c-fair-tls.conf;$BENCH/conf/c-fair-compact.conf" \
    "-DEXTRA_ZEPHYR_MODULES=$C_FAIR_MODULE" "-DEXTRA_CFLAGS=-I${P}c-libc-fix -I$C_FAIR_CERTS"
fi
