# shellcheck shell=bash
# The Debian/Ubuntu packages the project needs, in one place: scripts/setup installs them,
# scripts/test checks them, .ci/run goes through scripts/setup. Sourced, not run.

# shellcheck disable=SC2034 # used by the scripts that source this file
# Host tiers: a real broker and its clients, openssl for the certificate tooling, Python for
# the test helpers, paho-mqtt and cryptography for certs/signer and its test.
HOST_PACKAGES=(mosquitto mosquitto-clients openssl python3 python3-venv
  python3-paho-mqtt python3-cryptography)

# Firmware tiers: Debian's toolchains instead of the Zephyr SDK (README.md, "Toolchain on
# Debian without the Zephyr SDK"); git for west; the emulated board (mps2/an386 in QEMU) and
# its network (tap, DHCP and DNS).
FIRMWARE_PACKAGES=(git cmake ninja-build device-tree-compiler gcc-arm-none-eabi
  picolibc-arm-none-eabi gperf ccache libclang-dev gcc-multilib
  qemu-system-arm dnsmasq-base iproute2)
# Brokers other than Mosquitto: Aedes comes from npm (the tests install it, pinned, on first
# use), so Node.js, unless one is installed already some other way.
command -v npm >/dev/null || FIRMWARE_PACKAGES+=(nodejs npm)

# Prints the packages of "$@" that are not installed, one a line.
missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      printf '%s\n' "$p"
  done
}

# Runs "$@" as root: directly, or through sudo; fails with the command to run otherwise.
as_root() {
  if [[ $(id -u) == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    printf 'needs root: run as root: %s\n' "$*" >&2
    return 1
  fi
}
