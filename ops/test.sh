#!/usr/bin/env bash
# The one test command: sets up everything the suite needs on a fresh machine
# (Debian packages, a virtualenv with the pinned packages, the local Docker base
# images) and runs the whole suite. Extra arguments go to pytest.
#
#   bash ops/test.sh            # everything
#   bash ops/test.sh -k spool   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '\n== %s\n' "$*"; }

# --- Debian packages: a real Mosquitto, headless Chromium, debootstrap for images.
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto mosquitto-clients)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || need+=(tinyproxy)
# docker-compose 1.29 (bookworm's) for the one smoke test that keeps the files 1.29-compatible.
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# tc (iproute2) and nsenter (util-linux) shape the drill's WAN link.
command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
# Foreign device stacks for the interop matrix: libmodbus (a C Modbus server the
# suite compiles) and the tools that build open62541 from Debian's source package.
[ -e /usr/include/modbus/modbus.h ] || need+=(libmodbus-dev)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  log "installing Debian packages: ${need[*]}"
  if [ "$(id -u)" != 0 ]; then echo "need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian packages enable a system-wide broker and proxy; the suite starts its own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now mosquitto tinyproxy >/dev/null 2>&1 || true; fi

# --- Python environment.
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$py" -m venv .venv
fi
# Exactly the lock (every package pinned with its hashes; bash ops/images/lock.sh refreshes
# it), then the project itself with no dependency and no build backend from elsewhere.
lock=ops/images/requirements-test.lock
stamp=.venv/.installed-$(cat pyproject.toml "$lock" | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  log "installing Python packages ($lock)"
  .venv/bin/pip install -q --require-hashes -r "$lock"
  .venv/bin/pip install -q --no-deps --no-build-isolation -e .
  touch "$stamp"
fi

# --- Docker images for the Compose end-to-end tests (built locally: no registry here).
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  if [ -f ops/images/bootstrap.sh ]; then
    log "building local images (idempotent)"
    bash ops/images/bootstrap.sh
  fi
  # The Compose tests run `docker compose` (v2), the command users type.
  bash ops/images/compose-v2.sh
else
  cat >&2 <<'MSG'

  !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
  !! No usable Docker Engine: the Compose end-to-end tests cannot run here.  !!
  !! They will be reported as skipped (and fail the run under CI=true).      !!
  !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
MSG
  if [ "${CI:-}" = true ]; then exit 1; fi
fi

# open62541 (a C OPC-UA stack) for tests/interop/test_opcua_open62541.py: built once per machine, then cached.
bash ops/images/open62541.sh >/dev/null || echo "ops/test.sh: open62541 build failed; its interop tests will fail" >&2
# rumqttd (a Rust MQTT broker) for tests/interop/test_mqtt_rumqttd.py: cargo install once per machine (~5 min), then cached.
bash ops/images/rumqttd.sh >/dev/null || echo "ops/test.sh: rumqttd build failed; its interop tests will fail" >&2

log "running the suite"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m pytest "$@"
