# One image for every Python service of the appliance: `edge` (run, admin,
# healthcheck, ...) and the simulators (`python -m simulators.<name>`).
#
#   docker compose build                       # upstream base, wheels from PyPI
#   docker build --build-arg BASE_IMAGE=zerobus-edge-local/bookworm-python:3.11 .
#                                              # offline: local base + ops/images/wheelhouse
#
# BASE_IMAGE must be a Debian bookworm image with python3 3.11 and its venv
# module; the test stand-in is built by ops/images/bootstrap.sh.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Marks the legacy builder's leftover build-stage images so they can be pruned selectively.
LABEL org.zerobus-edge.stage=build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
# A wheelhouse with wheels in it makes the build strictly offline (--no-index):
# a missing wheel then fails the build instead of quietly reaching PyPI.
COPY ops/images/wheelhouse/ /wheels/
# Every package the image installs, pinned with its hashes (bash ops/images/lock.sh
# refreshes it): a package not in the lock, or a file that does not match, fails the build.
COPY ops/images/requirements.lock /src/requirements.lock
# Dependencies first, from the lock alone, so a source change reuses this layer.
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then echo "pip: offline, /wheels"; echo "--no-index --find-links /wheels" >/opt/pip-source; \
    else echo "pip: PyPI"; : >/opt/pip-source; fi; \
    /opt/venv/bin/pip install -q $(cat /opt/pip-source) --require-hashes -r /src/requirements.lock
COPY pyproject.toml /src/pyproject.toml
COPY edge/ /src/edge/
COPY simulators/ /src/simulators/
# The project itself: no dependency and no build backend from anywhere but the lock.
# Then the image holds exactly the lock: every installed distribution (the project aside) pinned
# there at that version, and nothing in the lock missing.
RUN /opt/venv/bin/pip install -q --no-index --no-deps --no-build-isolation /src \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -c 'import edge, simulators' \
    && /opt/venv/bin/python -c 'import re, sys, importlib.metadata as md; \
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower(); \
lock = {norm(a): b for a, b in re.findall(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;]+) ", open("/src/requirements.lock").read())}; \
got = {norm(d.metadata["Name"]): d.version for d in md.distributions()}; got.pop("zerobus-edge"); \
diff = sorted(set(got.items()) ^ set(lock.items())); \
print(f"lock: {len(got)} installed = {len(lock)} locked"); \
sys.exit(f"installed and locked differ: {diff}" if diff else 0)'

FROM ${BASE_IMAGE}
# Fixed ids: the spool volume is shared by `edge` (writer) and `admin` (reader),
# and a host directory mounted instead of a volume needs a known owner.
ARG EDGE_UID=10001
ARG EDGE_GID=10001
# /shares/<service>: where the init service mounts each service's secrets volume
# (edge/firststart.py SHARES); a new volume takes the owner of the directory it is mounted on.
RUN groupadd -g "${EDGE_GID}" edge \
    && useradd -u "${EDGE_UID}" -g edge -d /var/lib/edge -M -s /usr/sbin/nologin edge \
    && mkdir -p /var/lib/edge/admin-state /etc/edge /data /secrets /shares/broker /shares/edge /shares/admin /shares/sim-mqtt /shares/zerobus \
    && chown edge:edge /var/lib/edge /var/lib/edge/admin-state /data /secrets \
    && chown -R edge:edge /shares \
    && chmod 0700 /secrets /shares/* /var/lib/edge/admin-state
COPY --from=build /opt/venv /opt/venv
# The schema files (the emulator serves the table readings.sql describes: --ddl).
COPY proto/ /opt/zerobus-edge/proto/
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8
USER ${EDGE_UID}:${EDGE_GID}
WORKDIR /var/lib/edge
# No ENTRYPOINT: Compose runs `edge <subcommand>` or `python -m simulators.<name>` per service.
CMD ["edge", "run", "--config", "/etc/edge/config.yaml"]
