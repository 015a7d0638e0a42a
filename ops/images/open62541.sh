#!/usr/bin/env bash
# Builds open62541 (a C OPC-UA stack we did not write) once per machine, for the interop tests
# (tests/interop/test_opcua_open62541.py), from Debian's source package: bookworm has no
# open62541 package, trixie has source package open62541 (1.4.x). The .orig tarball comes from
# deb.debian.org, checked against the sha256 of trixie's Sources index.
#
#   bash ops/images/open62541.sh      # prints the cache directory (builds it when missing)
#
# Result, reused by every later run (rebuilt only when missing or incomplete):
#   /var/cache/zerobus-edge/open62541-<version>/open62541.h       single-file amalgamation header
#   /var/cache/zerobus-edge/open62541-<version>/libopen62541.a    static library
# Build: amalgamation, reduced namespace zero + Data Access (AnalogItemType, EUInformation),
# encryption with OpenSSL (Basic256Sha256 etc.), no examples, no history.
# OPEN62541_CACHE overrides /var/cache/zerobus-edge (a user without root).
set -euo pipefail
version=1.4.11.1
sha256=2979c0f09b766fd6470bdf06c8500c90ed51327aae1c22af132641a44178b722
pool=http://deb.debian.org/debian/pool/main/o/open62541
cache_root=${OPEN62541_CACHE:-/var/cache/zerobus-edge}
say() { echo "open62541.sh: $*" >&2; }

resolve_from_index() { # the version trixie carries now, when the pinned one left the pool
  local sources
  curl -fsS --max-time 300 -o "$work/Sources.xz" http://deb.debian.org/debian/dists/trixie/main/source/Sources.xz
  sources=$(xz -dc "$work/Sources.xz" | awk '/^Package: open62541$/{p=1} /^$/{p=0} p')
  version=$(awk '/^Version:/{print $2}' <<<"$sources" | sed 's/-[^-]*$//')
  sha256=$(awk -v f="open62541_${version}.orig.tar.gz" '$3==f && length($1)==64{print $1; exit}' <<<"$sources")
  [ -n "$version" ] && [ -n "$sha256" ] || { say "open62541 not found in trixie's Sources index"; exit 1; }
}

# No link-time optimisation (open62541 turns it on for Release): with it, every program linked
# against the library spends ~30 s compiling it again.
flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF
  -DUA_ENABLE_AMALGAMATION=ON -DUA_NAMESPACE_ZERO=REDUCED -DUA_ENABLE_DA=ON
  -DUA_ENABLE_ENCRYPTION=OPENSSL -DUA_ENABLE_HISTORIZING=OFF -DUA_ENABLE_DISCOVERY=OFF
  -DUA_BUILD_EXAMPLES=OFF -DUA_BUILD_TOOLS=OFF)
cached() { # the cache is complete and built with these flags
  [ -s "$dir/libopen62541.a" ] && [ -s "$dir/open62541.h" ] && [ "$(cat "$dir/flags" 2>/dev/null)" = "${flags[*]}" ]
}

dir=$cache_root/open62541-$version
if cached; then echo "$dir"; exit 0; fi

# OpenSSL headers for the encrypted endpoints, and the download tools (Debian packages).
need=()
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then say "need root to apt-get install ${need[*]}"; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$work/open62541.orig.tar.gz
if ! curl -fsS --max-time 300 -o "$tarball" "$pool/open62541_${version}.orig.tar.gz"; then
  say "open62541 $version is no longer in the pool; taking trixie's current version"
  resolve_from_index
  dir=$cache_root/open62541-$version
  if cached; then echo "$dir"; exit 0; fi
  curl -fsS --max-time 300 -o "$tarball" "$pool/open62541_${version}.orig.tar.gz"
fi
echo "$sha256  $tarball" | sha256sum -c --quiet - || { say "checksum mismatch for open62541 $version"; exit 1; }

say "building open62541 $version into $dir (once per machine)"
start=$SECONDS
tar xzf "$tarball" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'open62541*' | head -1)
cmake -S "$src" -B "$work/build" "${flags[@]}" >"$work/cmake.log" 2>&1 || { tail -30 "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" -j"$(nproc)" >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
mkdir -p "$dir.tmp"
cp "$work/build/open62541.h" "$work/build/bin/libopen62541.a" "$dir.tmp/"
echo "${flags[*]}" >"$dir.tmp/flags"
rm -rf "$dir" && mv "$dir.tmp" "$dir"  # complete or absent, never half-written
say "built in $((SECONDS - start)) s"
echo "$dir"
