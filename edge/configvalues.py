"""The config's value types and value checks: sizes, durations, secrets, endpoints, listen addresses.

Pure: no file or network access. Each type tells pydantic how to validate it
(and what to put in its JSON Schema); ``ConfigError`` is the one error type of
the config layer, and never carries a URL's credentials or query values.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from pydantic_core import PydanticCustomError, core_schema

from edge.redact import redact_urls


# value -> variable name, of every value a ${VAR} gave in the file being parsed (see ``hiding``).
_HIDDEN: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("edge_config_hidden", default={})


@contextlib.contextmanager
def hiding(values: dict[str, str]) -> Iterator[None]:
    """While parsing: every ConfigError made replaces these values (value -> VAR) by ``${VAR}``.

    At birth, before URL redaction: a secret with an ``@``, ``&`` or ``#`` in it would
    otherwise be split by the redaction and half of it left in the message.
    """
    token = _HIDDEN.set(values)
    try:
        yield
    finally:
        _HIDDEN.reset(token)


def _escaped(value: str, quote: str) -> str:
    """``value`` as it appears inside a repr() quoted with ``quote`` (backslashes, tabs, ... escaped)."""
    return "".join("\\" + ch if ch in ("\\", quote) else ch if ch.isprintable() else repr(ch)[1:-1]
                   for ch in value)


def hide_values(message: str, values: dict[str, str]) -> str:
    """``message`` with each value (longest first) replaced by its ``${VAR}``, quoted or bare, as
    written or as a repr() escapes it. A bare value shorter than 4 characters is left alone (it
    would mangle the words around it); a quoted one is always replaced."""
    for value in sorted(values, key=len, reverse=True):
        ref = f"${{{values[value]}}}"
        for quote in ("'", '"'):
            message = message.replace(quote + _escaped(value, quote) + quote, ref)
        if len(value) >= 4:
            for form in dict.fromkeys((value, _escaped(value, "'"), _escaped(value, '"'))):
                message = message.replace(form, ref)
    return message


class ConfigError(ValueError):
    """A config value is wrong; ``path`` names the field, e.g. ``sources[1].port``."""

    def __init__(self, path: str, message: str):
        self.path = path or "<root>"
        self.message = redact_urls(hide_values(message, _HIDDEN.get()))
        super().__init__(f"{self.path}: {self.message}")


class ByteSize(int):
    """Bytes; accepts ints or strings like ``512MiB``, ``10 GB``, ``4k``."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(_pydantic(parse_size))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {"anyOf": [{"type": "integer", "minimum": 0},
                          {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT][iI]?[bB]?|[bB])?\s*$"}],
                "description": "bytes, or a size like 512MiB, 10GB, 4k"}


class Duration(float):
    """Seconds; accepts numbers or strings like ``250ms``, ``30s``, ``5m``, ``2h``, ``7d``."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(_pydantic(parse_duration))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {"anyOf": [{"type": "number", "minimum": 0},
                          {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([mM][sS]|[sS]|[mM]([iI][nN])?|[hH]|[dD])?\s*$"}],
                "description": "seconds, or a duration like 250ms, 30s, 5m, 2h, 7d"}


class Secret(str):
    """A string that never shows itself in a repr, a log line or an error message."""

    withheld = False

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(_secret)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        return {"type": "string", "writeOnly": True,
                "description": "a secret: best given as ${VAR} (or VAR_FILE, e.g. a Docker secret)"}


class Withheld(Secret):
    """A secret of another service's section, deliberately not read (see ``edge.config.load``'s ``section``)."""

    withheld = True

    def __new__(cls) -> "Withheld":
        return super().__new__(cls, "")

    def __repr__(self) -> str:
        return "Secret(<not loaded>)"


def _secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise PydanticCustomError("secret", "expected a string (value not shown: it is a secret; quote an all-digit one)")


def _pydantic(parse: Callable[[Any, str], Any]) -> Callable[[Any], Any]:
    def validate(value: Any) -> Any:
        try:
            return parse(value, "")
        except ConfigError as exc:
            raise PydanticCustomError("config", exc.message) from None
    return validate


_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any, path: str = "") -> ByteSize:
    if isinstance(value, bool):
        raise ConfigError(path, f"expected a size like 512MiB, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and (m := _QUANTITY.match(value)) and m.group(2).lower() in _SIZE_UNITS:
        x = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
        if not math.isfinite(x):  # "9" * 400 overflows to inf
            raise ConfigError(path, "is too large")  # not even part of it: it may have come from a secret
        n = int(x)
    else:
        raise ConfigError(path, f"expected a size like 512MiB or 10GB, got {value!r}")
    if n < 0:
        raise ConfigError(path, "must not be negative")
    return ByteSize(n)


def parse_duration(value: Any, path: str = "") -> Duration:
    if isinstance(value, bool):
        raise ConfigError(path, f"expected a duration like 30s, got {value!r}")
    if isinstance(value, (int, float)):
        s = float(value)
    elif isinstance(value, str) and (m := _QUANTITY.match(value)) and m.group(2).lower() in _DURATION_UNITS:
        s = float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    else:
        raise ConfigError(path, f"expected a duration like 250ms, 30s, 5m or 2h, got {value!r}")
    if not math.isfinite(s):  # YAML .inf / .nan, or digits past a float
        raise ConfigError(path, "must be a finite duration")
    if s < 0:
        raise ConfigError(path, "must not be negative")
    return Duration(s)


def check_url(url: str, path: str, schemes: tuple[str, ...], *, path_ok: bool = False) -> tuple[str, str, int | None]:
    """(scheme, host, port or None) of an endpoint URL; refuses credentials, bad ports, a query,
    and (unless ``path_ok``) a path."""
    u = urlsplit(url.strip())
    if u.scheme.lower() not in schemes:
        raise ConfigError(path, f"must start with {' or '.join(s + '://' for s in schemes)}, got {url!r}")
    if "@" in u.netloc:
        raise ConfigError(path, "put credentials in their own keys, not in the URL")
    if not u.hostname:
        raise ConfigError(path, f"no host in {url!r}")
    try:
        port = u.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(path, f"port must be 1..65535, in {url!r}")
    if u.query or u.fragment or (u.path not in ("", "/") and not path_ok):
        raise ConfigError(path, f"unexpected {'path' if u.path not in ('', '/') else 'query'} in {url!r}")
    return u.scheme.lower(), u.hostname, port


def check_listen(value: str, path: str) -> tuple[str, int]:
    """(host, port) of a ``host:port`` to listen on; an empty host or ``0.0.0.0`` means every address."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in host):
        raise ConfigError(path, f"expected host:port with a port 1..65535, got {value!r}")
    return host, int(port)
