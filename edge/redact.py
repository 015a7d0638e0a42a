"""The one place secrets are taken out of text we log, store or show (pure).

- ``redact_url(url)``: ``scheme://user:pw@host/p?token=x`` -> ``scheme://***@host/p?token=***``
  (config errors, proxy URLs in the doctor's report).
- ``redact_urls(text)``: the same for every URL inside a text.
- ``Scrubber(client_id, secret, also=...)``: removes known secret values (the client secret,
  the base64 ``client_id:secret`` pairs an HTTP Basic header carries, any other value given in
  ``also``; longest first, so a secret containing a shorter one goes whole), ``Bearer``/``Basic``
  credentials, URL user info and ``client_secret=`` / ``access_token=`` / ``password=`` parameters
  (the forwarder's SDK errors, the stored preflight record).
"""

from __future__ import annotations

import base64
import re
from typing import Iterable

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
# User info runs to the authority's last "@" (a password may hold one), as URL parsers read it.
_URL_USERINFO = re.compile(r"^([^:]+://)[^/?#]*@")
_QUERY_VALUE = re.compile(r"([?&;][^=&#]*)=[^&#;]*")
_AUTH = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_USERINFO = re.compile(r"(://)[^/?#\s]+@")
_PARAM = re.compile(r"(?i)(client_secret|access_token|password)=([^&\s\"']+)")
MASK = "***"


def redact_url(url: str) -> str:
    """A URL without its user info and without its query values."""
    return _QUERY_VALUE.sub(rf"\1={MASK}", _URL_USERINFO.sub(rf"\1{MASK}@", url))


def redact_urls(text: str) -> str:
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


class Scrubber:
    """Removes given secrets (and what is derived from them) and credential-shaped text."""

    def __init__(self, client_id: str = "", secret: str = "", *, also: Iterable[object] = ()):
        needles = {str(s) for s in also if s}
        if secret:
            pair = f"{client_id}:{secret}".encode()
            needles |= {secret, base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()}
        self._needles = sorted(needles, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text or "")
        for needle in self._needles:
            out = out.replace(needle, MASK)
        out = _AUTH.sub(lambda m: f"{m.group(1)} {MASK}", out)
        out = _USERINFO.sub(rf"\1{MASK}@", out)
        return _PARAM.sub(rf"\1={MASK}", out)
