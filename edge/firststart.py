"""First-start credentials for a Compose deployment that was started without any.

`docker compose up` on a fresh host must work with no `.env`, and still ship no
shared default password. A one-shot service runs `edge init-secrets`: for each
credential it writes a file into the `secrets` volume - the value given in the
environment when there is one (so `.env` always wins, also after a change), or a
random one generated once and kept. The broker, the edge, the admin page and
the simulators all read the same file (``*_FILE`` variables), so they agree.
Values are never printed; `README.md` says how to read the admin password.

Each service mounts only what it needs: the master copies stay in ``--dir``
(mounted by the init service alone), and SHARES copies each file into the
subdirectory of every service that uses it, under ``EDGE_SECRET_SHARES``
(default: ``--dir`` itself; in Compose /shares, one volume per service mounted there: the edge never sees the admin password, nor the admin
page the MQTT ones). The admin page's own state (server-side sessions, the key
that tags them) lives in a volume of its own (docker-compose.yml: admin-state),
not in the spool volume the edge can read.

The demo world (``EDGE_DEMO_TLS_HOSTNAMES`` set, e.g. ``zerobus``) also gets a
private CA and a server certificate for the ZeroBus emulator, and for the edge
a CA bundle (the image's system CAs + that CA) to point ``SSL_CERT_FILE`` at:
the emulator is then trusted exactly as a TLS-inspecting proxy's CA would be.
The CA key stays in the master directory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from edge.fsutil import write_atomic

# file name -> (the environment variable that may supply the value, its minimum length:
# the admin page's and the broker's own rules, so a value refused here is one they would refuse)
CREDENTIALS = {
    "admin_password": ("EDGE_ADMIN_PASSWORD", 8),
    "mqtt_edge_password": ("MQTT_PASSWORD_EDGE", 12),
    "mqtt_sim1_password": ("MQTT_PASSWORD_SIM1", 12),
}
DEMO_CA, DEMO_CERT, DEMO_KEY, DEMO_BUNDLE = "zerobus-ca.pem", "zerobus-server.pem", "zerobus-server.key", "ca-bundle.pem"
# service subdirectory -> the files it gets (docker-compose.yml mounts one volume on each)
SHARES = {
    "broker": ("mqtt_edge_password", "mqtt_sim1_password"),
    "edge": ("mqtt_edge_password", DEMO_BUNDLE),
    "admin": ("admin_password",),
    "sim-mqtt": ("mqtt_sim1_password",),
    "zerobus": (DEMO_CA, DEMO_CERT, DEMO_KEY),
}


def ensure(directory: str | os.PathLike, env: dict[str, str] | None = None) -> dict[str, str]:
    """Make every credential file exist; returns name -> "given" | "generated" | "kept" (never values)."""
    env = dict(os.environ) if env is None else env
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (var, min_len) in CREDENTIALS.items():
        path = d / name
        given = env.get(var, "")
        if given:
            if len(given) < min_len:
                raise ValueError(f"{var} must be at least {min_len} characters")
            value, how = given, "given"
        elif path.exists() and path.read_text().strip():
            out[name] = "kept"
            continue
        else:
            value, how = secrets.token_urlsafe(18), "generated"
        _write(path, value)
        out[name] = how
    hostnames = [h.strip() for h in env.get("EDGE_DEMO_TLS_HOSTNAMES", "").split(",") if h.strip()]
    if hostnames:
        out["demo_tls"] = demo_tls(d, hostnames)
    share(d, Path(env.get("EDGE_SECRET_SHARES") or d))
    return out


def demo_tls(d: Path, hostnames: list[str]) -> str:
    """The emulator's CA (kept) and a server certificate for ``hostnames`` (re-issued each start).

    The demo world's certificates come from the emulator's own generator, which
    ships in the same image; a production start (no demo host names) never imports it.
    """
    from edge.tlsgen import ensure_tls

    files = ensure_tls(str(d / "demo-ca"), hostnames)
    for src, name in ((files.ca_cert, DEMO_CA), (files.server_cert, DEMO_CERT), (files.server_key, DEMO_KEY),
                      (files.bundle, DEMO_BUNDLE)):
        write_atomic(d / name, Path(src).read_bytes(), mode=0o600 if name == DEMO_KEY else 0o644)
    return f"CA + certificate for {', '.join(hostnames)}"


def share(d: Path, shares: Path) -> None:
    """Copy each file into the share of every service that needs it; a file absent here is absent there."""
    for service, names in SHARES.items():
        for name in names:
            src, dst = d / name, shares / service / name
            if src.exists():
                write_atomic(dst, src.read_bytes(), mode=src.stat().st_mode & 0o777)
            else:
                dst.unlink(missing_ok=True)


def _write(path: Path, value: str) -> None:
    write_atomic(path, value.encode(), mode=0o600)
