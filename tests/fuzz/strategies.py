"""Hostile-input strategies shared by the fuzz targets."""

from __future__ import annotations

import json

from hypothesis import strategies as st

_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.sampled_from(["", "Good", "BAD", "1e999", "-0", "nan", "2025-01-01T00:00:00Z", "\x00"]),
)

KEYS = ["value", "tagPath", "timestamp", "quality", "metrics", "name", "type", "", "0"]

# JSON-like trees: what a JSON parser may hand on (NaN and infinities included: Python's json accepts them).
json_values = st.recursive(
    _scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=3),
                           st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=4)), kids, max_size=3)),
    max_leaves=8,
)


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def json_texts(draw) -> bytes:
    """Bytes that are often JSON, sometimes nearly: a serialised tree, cut, spliced, or nested very deeply."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200))
    text = json.dumps(draw(json_values))
    if kind == 1:
        cut = draw(st.integers(0, len(text)))
        return text[:cut].encode()
    if kind == 2:
        depth = draw(st.sampled_from([10, 100, 999, 1000, 1001, 5000, 50_000]))
        return f"[{text}, {nested(depth)}, {text}]".encode()
    if kind == 3:
        return ("9" * draw(st.integers(4000, 6000))).encode()  # past int's digit limit
    if kind == 4:
        junk = draw(st.text(alphabet='[]{}",:\\ 0e-.tfn', max_size=60))
        pos = draw(st.integers(0, len(text)))
        return (text[:pos] + junk + text[pos:]).encode()
    return text.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")
