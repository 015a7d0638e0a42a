"""A request body -> JSON, without ever letting a hostile body escape as an exception (pure).

``json.loads`` is used as is (fast, C); what it cannot take becomes a
``BodyError`` with a reason the caller quarantines the body under. One case is
recovered instead of refused: a batch array in which some element is nested
too deeply for the parser (``RecursionError``). The array is then read element
by element, the deep ones kept as ``Unparsed`` (its raw text and a reason), so
the valid events of the same batch are still committed and a gateway does not
resend one poisoned batch forever.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
# The characters that decide where a nested value ends: brackets, and quotes/backslashes of strings.
_SPECIAL = re.compile(r'[\[\]{}"\\]')
TOO_DEEP = "JSON nested too deeply to parse"


class BodyError(ValueError):
    """The body as a whole is not a usable JSON document; str() is the reason."""


@dataclass(frozen=True)
class Unparsed:
    """A batch element the parser could not take; ``raw`` is its text."""

    reason: str
    raw: str


def load(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:  # nested too deep for the C parser: the bounded parser below decides
        pass
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer over the digit limit
        raise BodyError(f"body is not valid JSON: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None
    start = _WS.match(text).end()
    if not text.startswith("[", start):
        raise BodyError(TOO_DEEP)
    return _elements(text, start + 1)


def _elements(text: str, i: int) -> list:
    dec = json.JSONDecoder()
    out: list = []
    i = _WS.match(text, i).end()
    if text.startswith("]", i):
        return _end(text, i + 1, out)
    while True:
        try:
            value, i = dec.raw_decode(text, i)
        except RecursionError:
            end = _skip_nested(text, i)
            value, i = Unparsed(TOO_DEEP, text[i:end]), end
        except ValueError as exc:
            raise BodyError(f"body is not valid JSON: {exc}") from None
        out.append(value)
        i = _WS.match(text, i).end()
        if text.startswith(",", i):
            i = _WS.match(text, i + 1).end()
        elif text.startswith("]", i):
            return _end(text, i + 1, out)
        else:
            raise BodyError(f"body is not valid JSON: expected ',' or ']' at char {i}")


def _end(text: str, i: int, out: list) -> list:
    if _WS.match(text, i).end() != len(text):
        raise BodyError(f"body is not valid JSON: extra data at char {i}")
    return out


def _skip_nested(text: str, i: int) -> int:
    """Index just past the array/object starting at ``i`` (brackets inside strings do not count).

    One pass over the special characters only: linear even for a body of stray quotes and backslashes.
    """
    depth, in_string, escaped_at = 0, False, -1
    for m in _SPECIAL.finditer(text, i):
        p = m.start()
        if p == escaped_at:
            continue
        c = text[p]
        if in_string:
            if c == "\\":
                escaped_at = p + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return p + 1
    raise BodyError("body is not valid JSON: unbalanced brackets")

