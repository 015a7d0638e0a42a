#!/usr/bin/env bash
# Builds rumqttd (a Rust MQTT broker we did not write) once per machine, for the interop test
# tests/interop/test_mqtt_rumqttd.py, from crates.io with cargo. Not --locked: the crate's own
# Cargo.lock pins metrics 0.22.1, which current rustc (1.95) refuses (E0521); without it cargo
# takes the newest semver-compatible dependencies, which build.
#
#   bash ops/images/rumqttd.sh      # prints the binary's path (builds it when missing)
#
# Result, reused by every later run: /var/cache/zerobus-edge/rumqttd-<version>/bin/rumqttd.
# The build takes about 5 minutes of 2 busy cores (measured: 283 s at nice 10 while other
# test suites ran). RUMQTTD_CACHE overrides /var/cache/zerobus-edge (a user without root).
set -euo pipefail
version=0.20.0
root=${RUMQTTD_CACHE:-/var/cache/zerobus-edge}/rumqttd-$version
bin=$root/bin/rumqttd
say() { echo "rumqttd.sh: $*" >&2; }

if [ -x "$bin" ] && "$bin" --version | grep -qx "rumqttd $version"; then
  echo "$bin"
  exit 0
fi
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: cannot build rumqttd $version; its interop test will fail"
  exit 1
fi
say "building rumqttd $version into $root (about 5 minutes)"
start=$(date +%s)
cargo install rumqttd --version "=$version" --root "$root" --quiet >&2
say "built in $(( $(date +%s) - start )) s"
echo "$bin"
