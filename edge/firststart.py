"""First-start credentials for a Compose deployment that was started without any.

`docker compose up` on a fresh host must work with no `.env`, and still ship no
shared default password. A one-shot service runs `edge init-secrets`: for each
credential it writes a file into the `secrets` volume - the value given in the
environment when there is one (so `.env` always wins, also after a change), or a
random one generated once and kept. The broker, the edge, the admin page and
the simulators all read the same file (``*_FILE`` variables), so they agree.
Values are never printed; `README.md` says how to read the admin password.
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
    return out


def _write(path: Path, value: str) -> None:
    write_atomic(path, value.encode(), mode=0o600)
