"""What the forwarder may say about credentials: the secret scrubber and the proxy summary."""

from __future__ import annotations

import base64
import os
import re

from edge.egress import GRPC_PROXY_VARS


class Scrubber:
    """Removes the client secret (and anything derived from it) from text we keep or log."""

    def __init__(self, client_id: str, secret: str):
        self._needles = []
        if secret:
            self._needles.append(secret)
            pair = f"{client_id}:{secret}".encode()
            self._needles.append(base64.b64encode(pair).decode())
            self._needles.append(base64.urlsafe_b64encode(pair).decode())
        self._auth = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
        self._userinfo = re.compile(r"(://)[^/@\s]+@")
        self._param = re.compile(r"(?i)(client_secret|access_token|password)=([^&\s\"']+)")

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, "***")
        text = self._auth.sub(lambda m: f"{m.group(1)} ***", text)
        text = self._userinfo.sub(r"\1***@", text)
        return self._param.sub(r"\1=***", text)


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
    no_proxy = env.get("no_grpc_proxy") or env.get("NO_PROXY") or env.get("no_proxy")
    if no_proxy:
        parts.append(f"NO_PROXY={no_proxy}")
    parts.append(f"SSL_CERT_FILE={'set (' + env['SSL_CERT_FILE'] + ')' if env.get('SSL_CERT_FILE') else 'unset (system trust store)'}")
    return ", ".join(parts)
