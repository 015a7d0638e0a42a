"""docker-compose.yml read as a file (no Docker): each service mounts only the secrets it uses,
and the admin page's state (sessions, the key that tags them) is not in the spool volume.

Before, the whole ``secrets`` volume (admin password included) was mounted into the broker, the
MQTT simulator, the edge and the admin page, and the page's signing key sat in the spool volume
the edge reads. tests/compose/test_appliance.py checks the same on a running stack.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.firststart import SHARES

ROOT = Path(__file__).resolve().parents[2]
# The services' secrets volumes and the share (edge/firststart.py SHARES) each is filled from.
SHARE_OF = {"secrets-broker": "broker", "secrets-edge": "edge", "secrets-admin": "admin",
            "secrets-sim": "sim-mqtt", "secrets-zerobus": "zerobus"}
VOLUME_OF = {"mosquitto": "secrets-broker", "edge": "secrets-edge", "admin": "secrets-admin",
             "sim-mqtt": "secrets-sim", "zerobus": "secrets-zerobus"}


def _compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _mounts(service: dict) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume entry."""
    out = []
    for v in service.get("volumes", []):
        assert isinstance(v, str), f"long volume syntax is not checked here: {v!r}"
        # A source may be a ${VAR:-default} (its own colon): split after it.
        head, rest = (v[:v.index("}") + 1], v[v.index("}") + 2:]) if v.startswith("${") else v.split(":", 1)
        parts = [head, *rest.split(":")]
        out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


def test_each_service_mounts_only_its_own_secrets_read_only():
    services = _compose("docker-compose.yml")["services"]
    for name, service in services.items():
        secret_mounts = [(src, mode) for src, _, mode in _mounts(service) if src.startswith("secrets")]
        if name == "init":
            continue
        want = VOLUME_OF.get(name)
        assert [src for src, _ in secret_mounts] == ([want] if want else []), name
        assert all(mode == "ro" for _, mode in secret_mounts), name
    # Only the init service sees the master copies; it fills each service's volume from its share.
    init = {src: dst for src, dst, _ in _mounts(services["init"]) if src.startswith("secrets")}
    assert init.pop("secrets") == "/secrets"
    assert init == {vol: f"/shares/{share}" for vol, share in SHARE_OF.items()}
    assert set(SHARE_OF.values()) == set(SHARES)
    assert "admin_password" in SHARES["admin"]
    assert not any("admin" in f for share, files in SHARES.items() if share != "admin" for f in files)
    # The admin password reaches no other service through its environment either.
    for name, service in services.items():
        env = service.get("environment") or {}
        if name not in ("admin", "init"):
            assert not any(k.startswith("EDGE_ADMIN_PASSWORD") for k in env), name


def test_the_admin_state_is_its_own_volume_never_the_spool():
    services = _compose("docker-compose.yml")["services"]
    admin = services["admin"]
    state_dir = admin["environment"]["EDGE_ADMIN_STATE_DIR"]
    mounts = {dst: src for src, dst, _ in _mounts(admin)}
    assert mounts.get(state_dir) == "admin-state"
    spool_target = next(dst for dst, src in mounts.items() if src == "spool")
    assert not state_dir.startswith(spool_target.rstrip("/") + "/")
    for name, service in services.items():
        sources = {src for src, _, _ in _mounts(service)}
        assert name == "admin" or "admin-state" not in sources, name
        assert name in ("admin", "init") or "secrets-admin" not in sources, name


def test_the_overrides_add_no_secret_mount():
    for override in ("docker-compose.production.yml", "docker-compose.test.yml"):
        for name, service in (_compose(override).get("services") or {}).items():
            for src, _, _ in _mounts(service):
                assert not src.startswith(("secrets", "admin-state", "spool")), (override, name, src)


def test_the_page_is_published_on_the_loopback_unless_asked():
    """The page speaks plain HTTP unless admin.tls_cert is set: by default Compose publishes it on 127.0.0.1 only."""
    services = _compose("docker-compose.yml")["services"]
    published = {name: s.get("ports") or [] for name, s in services.items() if s.get("ports")}
    assert published["admin"] == ["${ADMIN_BIND:-127.0.0.1}:${ADMIN_PORT:-8080}:8080"]
    for name, ports in published.items():
        assert all(p.startswith(("127.0.0.1:", "${ADMIN_BIND:-127.0.0.1}:")) for p in ports), name


def test_the_pages_tls_directory_is_mounted_read_only_in_the_admin_service_alone():
    """ADMIN_TLS_DIR holds the page's private key: only the admin service sees it, and cannot write it."""
    services = _compose("docker-compose.yml")["services"]
    tls = {name: [(dst, mode) for src, dst, mode in _mounts(s) if src.startswith("${ADMIN_TLS_DIR")]
           for name, s in services.items()}
    assert tls.pop("admin") == [("/etc/edge/admin-tls", "ro")]
    assert not any(tls.values()), tls
    for override in ("docker-compose.production.yml", "docker-compose.test.yml"):
        for name, service in (_compose(override).get("services") or {}).items():
            assert not any("ADMIN_TLS" in src for src, _, _ in _mounts(service)), (override, name)
