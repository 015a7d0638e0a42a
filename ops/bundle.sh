#!/usr/bin/env bash
# Offline bundle for an air-gapped host: the images (`docker save`), the Compose
# files, the config, .env.example, the drill tool and install.sh, in one tarball.
#
#   docker compose build                  # or: the images already exist locally
#   bash ops/bundle.sh                    # -> dist/zerobus-edge-<version>-bundle.tar
#
# On the target host (Docker Engine + Compose, no registry needed):
#   tar -xf zerobus-edge-<version>-bundle.tar && cd zerobus-edge-<version>
#   ./install.sh                          # verifies checksums, docker load, creates .env
#   docker compose up -d                  # (or docker-compose up -d)
#
# Environment:
#   EDGE_IMAGE       image of edge/admin/simulators   (default zerobus-edge:<version>)
#   MOSQUITTO_IMAGE  broker image                     (default eclipse-mosquitto:2)
#   BUNDLE_OUT       output directory                 (default dist)
#   BUNDLE_GZIP      gzip level of the image archive  (default 6)
# The image names saved are written to images.env, which install.sh appends to
# .env, so the Compose files run exactly the images the bundle carries.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python

version=$("$py" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
EDGE_IMAGE=${EDGE_IMAGE:-zerobus-edge:$version}
MOSQUITTO_IMAGE=${MOSQUITTO_IMAGE:-eclipse-mosquitto:2}
out=${BUNDLE_OUT:-dist}
level=${BUNDLE_GZIP:-6}
name=zerobus-edge-$version

die() { printf 'bundle: ERROR: %s\n' "$*" >&2; exit 1; }
for img in "$EDGE_IMAGE" "$MOSQUITTO_IMAGE"; do
  docker image inspect "$img" >/dev/null 2>&1 \
    || die "image $img is not in the local Docker daemon (build it: docker compose build; or set EDGE_IMAGE / MOSQUITTO_IMAGE)"
done

mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/zbe-bundle.XXXXXX")
trap 'rm -rf "$stage"' EXIT
dir="$stage/$name"
mkdir -p "$dir/ops/compose" "$dir/ops/config"

cp docker-compose.yml docker-compose.production.yml .env.example "$dir/"
cp ops/compose/*.yaml "$dir/ops/compose/"
# Where the admin page's certificate goes (ADMIN_TLS_DIR's default): present, so Docker never creates it root-owned.
mkdir -p "$dir/ops/compose/admin-tls"
cp ops/compose/admin-tls/README.md "$dir/ops/compose/admin-tls/"
cp ops/config/example.yaml "$dir/ops/config/"
# The air-gap drill runs on the host itself (python3 + the docker CLI, nothing else).
cp ops/drill.py ops/drillcheck.py ops/drillsink.py ops/drainlimit.py ops/wan.py ops/linkproxy.py ops/composectl.py ops/drill.md "$dir/ops/"
[ -d mosquitto ] && cp -r mosquitto "$dir/mosquitto"

printf 'EDGE_IMAGE=%s\nMOSQUITTO_IMAGE=%s\n' "$EDGE_IMAGE" "$MOSQUITTO_IMAGE" >"$dir/images.env"
echo "bundle: saving $EDGE_IMAGE and $MOSQUITTO_IMAGE"
docker save "$EDGE_IMAGE" "$MOSQUITTO_IMAGE" | gzip -"$level" >"$dir/images.tar.gz"

cat >"$dir/install.sh" <<'SH'
#!/bin/sh
# Loads the bundled images into the local Docker Engine and prepares .env.
set -eu
cd "$(dirname "$0")"
sha256sum -c --quiet SHA256SUMS || { echo "install: checksum mismatch: the bundle is damaged" >&2; exit 1; }
docker load -i images.tar.gz
if [ ! -f .env ]; then
  cp .env.example .env
  chmod 600 .env
  echo "install: created .env from .env.example: set EDGE_ADMIN_PASSWORD and the ZeroBus credentials"
fi
# Pin the Compose files to the images this bundle carries.
while IFS='=' read -r key value; do
  if grep -q "^$key=" .env; then
    sed -i "s|^$key=.*|$key=$value|" .env
  else
    printf '%s=%s\n' "$key" "$value" >>.env
  fi
done <images.env
echo "install: done. Next:  docker compose up -d   (docker-compose up -d with Compose 1.x)"
echo "         production:  docker compose -f docker-compose.yml -f docker-compose.production.yml up -d"
SH
chmod 0755 "$dir/install.sh"

(cd "$dir" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)
tar -C "$stage" -cf "$out/$name-bundle.tar.tmp" "$name"
mv "$out/$name-bundle.tar.tmp" "$out/$name-bundle.tar"
echo "bundle: wrote $out/$name-bundle.tar ($(du -h "$out/$name-bundle.tar" | cut -f1))"
