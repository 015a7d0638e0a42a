#!/usr/bin/env bash
# Builds, without any container registry, the local stand-ins for the upstream
# images that the user-facing Dockerfile and docker-compose.yml name:
#
#   zerobus-edge-local/bookworm-python:3.11   for  python:3.11-slim-bookworm
#       a Debian bookworm minbase rootfs (debootstrap) with python3 3.11 and
#       python3-venv, `docker import`ed.
#   zerobus-edge-local/mosquitto:2            for  eclipse-mosquitto:2
#       the same rootfs plus Debian's mosquitto package, laid out like the
#       upstream image (/mosquitto/{config,data,log}, user mosquitto uid 1883).
#   ops/images/wheelhouse/*.whl               for  PyPI at image build time
#       every package of ops/images/requirements.lock (pinned, hash-checked)
#       for CPython 3.11 manylinux x86_64, so `docker build` needs no network.
#
# The stand-ins get their own names on purpose: tagging them `python:...` or
# `eclipse-mosquitto:2` would silently shadow the real images on a developer's
# machine that has them. docker-compose.test.yml points the services at these
# names; the user-facing files keep the upstream ones.
#
# Idempotent: every product records the hash of its inputs; a product whose
# inputs did not change is kept (a second run takes about a second).
#   bash ops/images/bootstrap.sh            # build what is missing or stale
#   FORCE=1 bash ops/images/bootstrap.sh    # rebuild everything
set -euo pipefail
cd "$(dirname "$0")/../.."
# Any Python 3.11+ (tomllib) reads pyproject.toml; the project's venv when there is one.
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python

BASE_TAG=${EDGE_TEST_BASE_IMAGE:-zerobus-edge-local/bookworm-python:3.11}
MOSQ_TAG=${EDGE_TEST_MOSQUITTO_IMAGE:-zerobus-edge-local/mosquitto:2}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=python3,python3-venv,ca-certificates
MOSQ_UID=1883  # the uid the upstream eclipse-mosquitto image uses
cache=${EDGE_IMAGE_CACHE:-ops/images/.cache}
wheelhouse=ops/images/wheelhouse
mkdir -p "$cache"

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: ERROR: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum | cut -c1-16; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (docker info failed)"

# A product is fresh when its stamp holds the current input hash and, for an
# image, the image the stamp names still exists under its tag.
fresh_image() { # name key tag
  local stamp="$cache/$1.stamp" id
  [ -z "${FORCE:-}" ] && [ -f "$stamp" ] || return 1
  id=$(docker image inspect -f '{{.Id}}' "$3" 2>/dev/null) || return 1
  [ "$(cat "$stamp")" = "$2 $id" ]
}
stamp_image() { # name key tag
  echo "$2 $(docker image inspect -f '{{.Id}}' "$3")" >"$cache/$1.stamp"
}

# ---------------------------------------------------------------- rootfs
# Bump ROOTFS_RECIPE when the recipe below changes in a way the package list does not show.
ROOTFS_RECIPE=4
rootfs_key=$(printf '%s\n' "$ROOTFS_RECIPE" "$SUITE" "$BASE_PACKAGES" "$MOSQ_UID" | sha)
base_tar="$cache/rootfs-base-$rootfs_key.tar"
mosq_tar="$cache/rootfs-mosquitto-$rootfs_key.tar"

slim_rootfs() { # dir: what a container never needs
  rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb \
    "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/var/log/*.log \
    "$1"/usr/sbin/policy-rc.d
  find "$1"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
  find "$1"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
  : >"$1"/etc/resolv.conf
}

# debootstrap mounts /proc (and sometimes /sys, /dev/pts) inside the tree and does not
# always unmount them when it ends: a copy or tar of the tree would then read the
# host's /proc (kcore alone is tens of GB). Unmount whatever is under a tree, deepest first.
unmount_under() { # dir
  local top; top=$(realpath "$1")
  findmnt -rn -o TARGET | awk -v t="$top/" 'index($0, t) == 1' | sort -r | while read -r m; do umount -l "$m" || true; done
}

build_rootfs_tars() {
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  local work="$cache/work-$rootfs_key"
  [ -d "$work" ] && unmount_under "$work"
  rm -rf --one-file-system "$work"; mkdir -p "$work"
  say "debootstrap $SUITE minbase + $BASE_PACKAGES (a few minutes, once)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$work/base" "$MIRROR" \
    >"$cache/debootstrap.log" 2>&1 || { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }

  unmount_under "$work/base"
  say "adding mosquitto to a copy of the rootfs"
  cp -ax "$work/base" "$work/mosq"
  cp /etc/resolv.conf "$work/mosq/etc/resolv.conf"
  # No service may start inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$work/mosq/usr/sbin/policy-rc.d"; chmod +x "$work/mosq/usr/sbin/policy-rc.d"
  # Created before the package so its postinst keeps the upstream image's uid.
  chroot "$work/mosq" groupadd -g "$MOSQ_UID" mosquitto
  chroot "$work/mosq" useradd -u "$MOSQ_UID" -g mosquitto -M -d /var/empty -s /usr/sbin/nologin mosquitto
  { chroot "$work/mosq" apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive chroot "$work/mosq" apt-get install -y -q --no-install-recommends mosquitto mosquitto-clients; } \
    >"$cache/mosquitto-apt.log" 2>&1 || { tail -20 "$cache/mosquitto-apt.log" >&2; die "apt-get install mosquitto failed"; }
  mkdir -p "$work/mosq/mosquitto/config" "$work/mosq/mosquitto/data" "$work/mosq/mosquitto/log"
  # The upstream image's default config: a local-only listener until a config is mounted.
  cp "$work/mosq/usr/share/doc/mosquitto/examples/mosquitto.conf" "$work/mosq/mosquitto/config/mosquitto.conf" 2>/dev/null \
    || printf 'listener 1883 127.0.0.1\n' >"$work/mosq/mosquitto/config/mosquitto.conf"
  chown -R "$MOSQ_UID:$MOSQ_UID" "$work/mosq/mosquitto"
  cat >"$work/mosq/docker-entrypoint.sh" <<'SH'
#!/bin/sh
# Same contract as the upstream image's entrypoint: started as root, hand /mosquitto to the broker user.
set -e
if [ "$(id -u)" = 0 ] && [ -d /mosquitto ]; then chown -R mosquitto:mosquitto /mosquitto || true; fi
exec "$@"
SH
  chmod 0755 "$work/mosq/docker-entrypoint.sh"

  unmount_under "$work"
  slim_rootfs "$work/base"; slim_rootfs "$work/mosq"
  tar --one-file-system --numeric-owner -C "$work/base" -cf "$base_tar.tmp" . && mv "$base_tar.tmp" "$base_tar"
  tar --one-file-system --numeric-owner -C "$work/mosq" -cf "$mosq_tar.tmp" . && mv "$mosq_tar.tmp" "$mosq_tar"
  rm -rf --one-file-system "$work"
  # Older rootfs tarballs are dead weight.
  find "$cache" -maxdepth 1 -name 'rootfs-*.tar' ! -name "*-$rootfs_key.tar" -delete
}

base_fresh=1; mosq_fresh=1
fresh_image base "$rootfs_key" "$BASE_TAG" || base_fresh=0
fresh_image mosquitto "$rootfs_key" "$MOSQ_TAG" || mosq_fresh=0
if [ $base_fresh = 0 ] || [ $mosq_fresh = 0 ]; then
  if [ -n "${FORCE:-}" ] || [ ! -f "$base_tar" ] || [ ! -f "$mosq_tar" ]; then
    build_rootfs_tars
  else
    say "rootfs tarballs cached ($rootfs_key)"
  fi
fi

import_image() { # name tag tarball fresh(0/1) extra --change args...
  local name=$1 tag=$2 tar=$3 fresh=$4; shift 4
  if [ "$fresh" = 1 ]; then say "ok      $tag (inputs $rootfs_key unchanged)"; return; fi
  docker import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$@" "$tar" "$tag" >/dev/null
  stamp_image "$name" "$rootfs_key" "$tag"
  say "built   $tag from $tar"
}
import_image base "$BASE_TAG" "$base_tar" $base_fresh --change 'CMD ["python3"]'
import_image mosquitto "$MOSQ_TAG" "$mosq_tar" $mosq_fresh \
  --change 'EXPOSE 1883' \
  --change 'VOLUME ["/mosquitto/data", "/mosquitto/log"]' \
  --change 'ENTRYPOINT ["/docker-entrypoint.sh"]' \
  --change 'CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]'

# ------------------------------------------------------------- wheelhouse
# Exactly the lock: the runtime dependencies and the build backend, each file
# checked against its hash (bash ops/images/lock.sh refreshes the lock).
lock=ops/images/requirements.lock
[ -f "$lock" ] || die "$lock is missing (bash ops/images/lock.sh)"
wheel_key=$(sha <"$lock")
wheel_stamp="$wheelhouse/.inputs"
if [ -z "${FORCE:-}" ] && [ -f "$wheel_stamp" ] && [ "$(cat "$wheel_stamp")" = "$wheel_key" ]; then
  say "ok      $wheelhouse ($(ls "$wheelhouse"/*.whl | wc -l) wheels, inputs $wheel_key unchanged)"
else
  say "downloading wheels for CPython 3.11 manylinux x86_64 into $wheelhouse"
  rm -f "$wheelhouse"/*.whl "$wheel_stamp"
  # pip does not widen an explicit --platform to older glibc levels: list them
  # all up to bookworm's glibc 2.36.
  platforms=$(for v in $(seq 17 36); do printf -- '--platform manylinux_2_%s_x86_64 ' "$v"; done)
  # --platform needs --only-binary: a dependency without a wheel fails here,
  # loudly, instead of needing a compiler inside the image.
  # shellcheck disable=SC2086
  "$py" -m pip download -q --dest "$wheelhouse" --only-binary=:all: --no-deps --require-hashes \
    --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
    $platforms --platform manylinux2014_x86_64 --platform any \
    -r "$lock" || die "pip download failed"
  echo "$wheel_key" >"$wheel_stamp"
  say "built   $wheelhouse ($(ls "$wheelhouse"/*.whl | wc -l) wheels)"
fi

# The legacy builder keeps every build stage as a dangling image (~300 MB each);
# drop ours once they are an hour old (never another project's, never one in use).
pruned=$(docker image prune -f --filter label=org.zerobus-edge.stage=build --filter until=1h 2>/dev/null | tail -1)
case "$pruned" in *" 0B"|"") ;; *) say "pruned old build stages: $pruned" ;; esac
exit 0
