"""What the forwarder may say about credentials: the proxy summary (the scrubber is edge/redact.py, re-exported)."""

from __future__ import annotations

import os

from edge.egress import GRPC_PROXY_VARS, no_proxy
from edge.redact import Scrubber

__all__ = ["Scrubber", "proxy_summary"]


def proxy_summary(env: dict[str, str] | None = None) -> str:
    """Which proxy variable gRPC will use (the first set, as the SDK picks it), without credentials."""
    env = dict(os.environ) if env is None else env
    scrub = Scrubber("", "")
    parts = []
    for var in GRPC_PROXY_VARS:
        if env.get(var):
            parts.append(f"{var}={scrub(env[var])}")
            break
    else:
        parts.append("no proxy variable set")
    bypass = no_proxy(env, purpose="grpc")
    if bypass:
        parts.append(f"NO_PROXY={bypass}")
    parts.append(f"SSL_CERT_FILE={'set (' + env['SSL_CERT_FILE'] + ')' if env.get('SSL_CERT_FILE') else 'unset (system trust store)'}")
    return ", ".join(parts)
