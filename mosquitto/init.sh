#!/bin/sh
# Zerobus Edge: first-start setup of the Mosquitto container, then the broker.
#
# compose:  entrypoint: ["/bin/sh", "/mosquitto/config/init.sh"]
#
# 1. Users and passwords. The user "edge" (the collector) always exists; devices and
#    simulators are listed in MQTT_PUBLISHERS (space separated user names, which are
#    also their topic prefixes, see 2.). For each user the password comes from, in order:
#      - the file $MQTT_SECRETS_DIR/mqtt_<user>_password (Docker secrets; default /run/secrets)
#      - the environment variable MQTT_PASSWORD_<USER> (upper case, '-' and '.' as '_')
#      - a password generated at first start and kept in /mosquitto/data/auth/generated/<user>
#        (mode 0600; read it with `docker compose exec mosquitto cat ...`).
#    There is no default password. The password file is rebuilt at every start, so a
#    user removed from MQTT_PUBLISHERS can no longer log in.
# 2. Access control: the dynamic-security plugin's JSON, built from the same users (below).
# 3. The effective config /mosquitto/data/run/mosquitto.conf: mosquitto.conf, the plugin, plus
#    tls.conf when /mosquitto/certs/{ca.crt,server.crt,server.key} all exist.
#    MQTT_AUTOSAVE_CHANGES (a whole number >= 100) replaces autosave_interval: the
#    broker-crash loss window against publisher throughput, see mosquitto.conf.
# 4. Ownership: data and log directories belong to user mosquitto (the broker drops to it).
# 5. exec mosquitto (skipped with INIT_ONLY=1, used by the test suite).
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
  # "edge" is the collector's read-only login (2.): a device of that name could publish nothing.
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
  # -H sha512-pbkdf2: the "$7$" form the dynamic-security JSON takes over (2.0's default, named so a
  # newer mosquitto_passwd with another default still writes it).
  mosquitto_passwd -H sha512-pbkdf2 -b "$tmp" "$user" "$pw"
done
mv "$tmp" "$AUTH/passwd"

# 2. Access control: Mosquitto's dynamic-security plugin, which checks a SUBSCRIBE (a filter
#    outside a client's rules gets SUBACK 0x80 / MQTT 5 reason 0x87, the edge's
#    subscribe_failed state) as well as what is published and delivered. The acl_file it
#    replaces granted every SUBSCRIBE and only filtered delivery (eclipse-mosquitto/mosquitto
#    issue #2042), so a filter outside it received nothing, silently. Its JSON is rebuilt at
#    every start from the password file: mosquitto_passwd's "$7$" entries are the plugin's own
#    hash (PBKDF2-SHA512, salt and hash in base64, the iteration count), taken over as they are.
#      user edge:  subscribe to and receive plant/# and spBv1.0/#; publish nothing.
#      a device:   publish only under plant/<user>/... and spBv1.0/<group>/<type>/<user>[/...];
#                  subscribe to nothing.
DYNSEC_PLUGIN=""
for p in /usr/lib/mosquitto_dynamic_security.so /usr/lib/*/mosquitto_dynamic_security.so; do
  if [ -n "$p" ] && [ -f "$p" ]; then DYNSEC_PLUGIN=$p; break; fi
done
if [ -z "$DYNSEC_PLUGIN" ]; then
  echo "init.sh: mosquitto_dynamic_security.so not found (it ships with Mosquitto 2.0); refusing to start without access control" >&2
  exit 2
fi
acl() { printf '{"acltype": "%s", "topic": "%s", "priority": 0, "allow": true}' "$1" "$2"; }
dyn="$AUTH/dynamic-security.json"
{
  printf '{\n  "defaultACLAccess": {"publishClientSend": false, "publishClientReceive": false, "subscribe": false, "unsubscribe": true},\n'
  printf '  "groups": [],\n  "clients": ['
  sep=""
  while IFS= read -r line; do
    user=${line%%:*}
    hash=${line#*:}
    case "$hash" in
      '$7$'*) ;;
      *) echo "init.sh: mosquitto_passwd wrote an unexpected hash format for '$user' (want \$7\$)" >&2; exit 2 ;;
    esac
    rest=${hash#??}; rest=${rest#?}    # after "$7$"
    iterations=${rest%%\$*}; rest=${rest#*\$}
    salt=${rest%%\$*}; pw=${rest#*\$}
    if [ "$user" = edge ]; then role=edge-reader; else role="device-$user"; fi
    printf '%s\n    {"username": "%s", "password": "%s", "salt": "%s", "iterations": %s, "roles": [{"rolename": "%s"}]}' \
      "$sep" "$user" "$pw" "$salt" "$iterations" "$role"
    sep=","
  done < "$AUTH/passwd"
  printf '\n  ],\n  "roles": [\n    {"rolename": "edge-reader", "acls": [%s, %s, %s, %s]}' \
    "$(acl subscribePattern 'plant/#')" "$(acl subscribePattern 'spBv1.0/#')" \
    "$(acl publishClientReceive 'plant/#')" "$(acl publishClientReceive 'spBv1.0/#')"
  for user in ${MQTT_PUBLISHERS:-}; do
    printf ',\n    {"rolename": "device-%s", "acls": [%s, %s, %s]}' "$user" \
      "$(acl publishClientSend "plant/$user/#")" "$(acl publishClientSend "spBv1.0/+/+/$user")" \
      "$(acl publishClientSend "spBv1.0/+/+/$user/#")"
  done
  printf '\n  ]\n}\n'
} > "$dyn.tmp"
mv "$dyn.tmp" "$dyn"

run="$D/data/run/mosquitto.conf"
cp "$CONF/mosquitto.conf" "$run.tmp"
printf '\n# Access control (rendered by init.sh)\nplugin %s\nplugin_opt_config_file %s\n' "$DYNSEC_PLUGIN" "$dyn" >> "$run.tmp"
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
chmod 0600 "$AUTH/passwd" "$dyn"

if [ "${INIT_ONLY:-0}" = "1" ]; then
  exit 0
fi
exec mosquitto -c "$run"
