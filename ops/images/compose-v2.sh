#!/usr/bin/env bash
# Installs `docker compose` (Compose v2, the CLI plugin) on a Debian bookworm host
# whose own archive only has docker-compose 1.29 (Python), without replacing it.
#
# Debian trixie ships Compose v2 as its `docker-compose` package (a static Go
# binary; Depends: libc6 only). Installing that package would replace bookworm's
# 1.29 (same package name), so this script only downloads it, from an apt
# configuration of its own (trixie alone, in a private state directory: the
# host's sources, lists and pins are untouched), checks it through apt's signed
# index, and unpacks the plugin binary into /usr/local/lib/docker/cli-plugins,
# one of the directories the docker CLI searches for plugins.
#
# Idempotent: does nothing when `docker compose version` already answers.
#   bash ops/images/compose-v2.sh
set -euo pipefail

PLUGIN_DIR=${COMPOSE_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
state=${COMPOSE_APT_STATE:-/var/cache/zerobus-edge/apt-trixie}

say() { printf 'compose-v2: %s\n' "$*"; }

if docker compose version >/dev/null 2>&1; then
  say "ok      $(docker compose version --short 2>/dev/null || docker compose version)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "compose-v2: need root to install the docker compose plugin into $PLUGIN_DIR" >&2; exit 1; }

mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/deb"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" >"$state/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o APT::Sandbox::User=root)
say "fetching trixie's docker-compose package index"
apt-get "${apt_opts[@]}" update -qq
rm -f "$state"/deb/*.deb
(cd "$state/deb" && apt-get "${apt_opts[@]}" download -qq docker-compose)
deb=$(ls "$state"/deb/docker-compose_2.*_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "compose-v2: trixie's docker-compose is not a 2.x package" >&2; exit 1; }
rm -rf "$state/x"; dpkg-deb -x "$deb" "$state/x"
install -D -m 0755 "$state/x/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN_DIR/docker-compose"
rm -rf "$state/x"
say "installed $(basename "$deb") -> $PLUGIN_DIR/docker-compose ($(docker compose version --short))"
