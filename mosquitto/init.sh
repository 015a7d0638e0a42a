#!/bin/sh
# Zerobus Edge: first-start setup of the Mosquitto container, then the broker.
#
# compose:  entrypoint: ["/bin/sh", "/mosquitto/config/init.sh"]
#
# 1. Users and passwords. The user "edge" (the collector) always exists; devices and
#    simulators are listed in MQTT_PUBLISHERS (space separated user names, which are
#    also their topic prefixes, see acl). For each user the password comes from, in order:
#      - the file $MQTT_SECRETS_DIR/mqtt_<user>_password (Docker secrets; default /run/secrets)
#      - the environment variable MQTT_PASSWORD_<USER> (upper case, '-' and '.' as '_')
#      - a password generated at first start and kept in /mosquitto/data/auth/generated/<user>
#        (mode 0600; read it with `docker compose exec mosquitto cat ...`).
#    There is no default password. The password file is rebuilt at every start, so a
#    user removed from MQTT_PUBLISHERS can no longer log in.
# 2. The effective config /mosquitto/data/run/mosquitto.conf: mosquitto.conf, plus
#    tls.conf when /mosquitto/certs/{ca.crt,server.crt,server.key} all exist.
#    MQTT_AUTOSAVE_CHANGES (a whole number >= 100) replaces autosave_interval: the
#    broker-crash loss window against publisher throughput, see mosquitto.conf.
# 3. Ownership: data and log directories belong to user mosquitto (the broker drops to it).
# 4. exec mosquitto (skipped with INIT_ONLY=1, used by the test suite).
#
# MOSQUITTO_DIR (default /mosquitto) relocates everything: the paths in the rendered
# config are rewritten to match, for installs outside the container and for tests.
set -eu

D=${MOSQUITTO_DIR:-/mosquitto}
CONF=${MOSQUITTO_CONF_DIR:-$D/config}
SECRETS=${MQTT_SECRETS_DIR:-/run/secrets}
AUTH=$D/data/auth
umask 077

mkdir -p "$AUTH/generated" "$D/data/run" "$D/log"

password_for() {
  user=$1
  if [ -s "$SECRETS/mqtt_${user}_password" ]; then
    head -n 1 "$SECRETS/mqtt_${user}_password" | tr -d '\r\n'
    return
  fi
  var="MQTT_PASSWORD_$(printf '%s' "$user" | tr 'a-z.-' 'A-Z__')"
  val=$(eval "printf '%s' \"\${$var:-}\"")
  if [ -n "$val" ]; then
    printf '%s' "$val"
    return
  fi
  gen="$AUTH/generated/$user"
  if [ ! -s "$gen" ]; then
    # 24 random bytes, base64 without the characters that upset shells and URLs.
    head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$gen.tmp"
    mv "$gen.tmp" "$gen"
    echo "init.sh: generated a password for MQTT user '$user' in $gen" >&2
  fi
  cat "$gen"
}

for user in ${MQTT_PUBLISHERS:-}; do
  # "edge" is the collector's read-only login (acl): a device of that name could publish nothing.
  [ "$user" != edge ] || { echo "init.sh: 'edge' is the collector's read-only user, not a publisher (MQTT_PUBLISHERS)" >&2; exit 2; }
done

tmp="$AUTH/passwd.tmp"
rm -f "$tmp"
: > "$tmp"
for user in edge ${MQTT_PUBLISHERS:-}; do
  case "$user" in
    *[!A-Za-z0-9_.-]*|"") echo "init.sh: invalid MQTT user name '$user' (letters, digits, _ . - only)" >&2; exit 2 ;;
  esac
  pw=$(password_for "$user")
  if [ ${#pw} -lt 12 ]; then
    echo "init.sh: the password of MQTT user '$user' is shorter than 12 characters; refusing to start" >&2
    exit 2
  fi
  # -b takes the password as an argument: visible only inside this container, for milliseconds.
  mosquitto_passwd -b "$tmp" "$user" "$pw"
done
mv "$tmp" "$AUTH/passwd"

run="$D/data/run/mosquitto.conf"
cp "$CONF/mosquitto.conf" "$run.tmp"
if [ -f "$D/certs/ca.crt" ] && [ -f "$D/certs/server.crt" ] && [ -f "$D/certs/server.key" ]; then
  cat "$CONF/tls.conf" >> "$run.tmp"
  echo "init.sh: TLS listener enabled (certificates found in $D/certs)" >&2
fi
if [ -n "${MQTT_AUTOSAVE_CHANGES:-}" ]; then
  case "$MQTT_AUTOSAVE_CHANGES" in
    *[!0-9]*) echo "init.sh: MQTT_AUTOSAVE_CHANGES must be a whole number, got '$MQTT_AUTOSAVE_CHANGES'" >&2; exit 2 ;;
  esac
  if [ "$MQTT_AUTOSAVE_CHANGES" -lt 100 ]; then
    echo "init.sh: MQTT_AUTOSAVE_CHANGES must be at least 100, got $MQTT_AUTOSAVE_CHANGES" >&2; exit 2
  fi
  sed -i "s/^autosave_interval .*/autosave_interval $MQTT_AUTOSAVE_CHANGES/" "$run.tmp"
  echo "init.sh: autosave_interval $MQTT_AUTOSAVE_CHANGES (MQTT_AUTOSAVE_CHANGES)" >&2
fi
if [ "$D" != "/mosquitto" ]; then
  sed -i "s#/mosquitto/#$D/#g" "$run.tmp"
fi
mv "$run.tmp" "$run"

if id mosquitto >/dev/null 2>&1; then
  chown -R mosquitto:mosquitto "$D/data" "$D/log"
fi
chmod 0700 "$AUTH/generated"
chmod 0600 "$AUTH/passwd"

if [ "${INIT_ONLY:-0}" = "1" ]; then
  exit 0
fi
exec mosquitto -c "$run"
