"""The Modbus register decoder/encoder: a value or DecodeError, and what encode writes decodes back."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from edge.sources.modbus.decode import ORDERS, TYPES, DecodeError, decode, encode, register_count, scale_value

from .profile import fuzz

_dtypes = st.one_of(st.sampled_from(TYPES), st.text(max_size=6))
_orders = st.one_of(st.sampled_from(ORDERS), st.text(max_size=5))
_regs = st.lists(st.one_of(st.integers(0, 0xFFFF), st.integers(-(2**20), 2**20)), max_size=6)


@fuzz
@given(_regs, _dtypes, _orders, st.one_of(st.none(), st.integers(-3, 40)))
@example([0x7FF0, 0, 0, 0], "float64", "ABCD", None)  # +inf
@example([0xFFFF, 0xFFFF], "float32", "CDAB", None)  # NaN
@example([70000], "uint16", "ABCD", None)
@example([1], "bool", "ABCD", 99)
def test_registers_decode_or_refuse(regs, dtype, order, bit):
    try:
        value = decode(regs, dtype, order, bit=bit)
    except DecodeError as exc:
        assert str(exc)
    else:
        assert isinstance(value, (bool, int, float, str))


@fuzz
@given(st.one_of(st.booleans(), st.integers(), st.floats()), st.sampled_from(TYPES),
       st.sampled_from(ORDERS), st.one_of(st.none(), st.integers(-2, 8)), st.one_of(st.none(), st.integers(0, 15)))
@example(2**64, "uint64", "ABCD", None, None)
@example(float("nan"), "int32", "ABCD", None, None)
@example(float("inf"), "float32", "ABCD", None, None)
@example(3.4028235677973366e38, "float32", "ABCD", None, None)  # found by the long run: OverflowError from struct
def test_values_encode_or_refuse_and_round_trip(value, dtype, order, length, bit):
    """encode is the simulator's direction: its domain is numbers and the bits config allows (0..15)."""
    try:
        regs = encode(value, dtype, order, length=length, bit=bit)
    except DecodeError as exc:
        assert str(exc)
        return
    assert all(0 <= r <= 0xFFFF for r in regs)
    if dtype != "string":
        assert len(regs) == register_count(dtype, length)
    back = decode(regs, dtype, order, bit=bit)
    if dtype in ("float32", "float64") and isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)


@fuzz
@given(st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=4)), st.floats(), st.floats())
def test_scaling_never_raises(raw, scale, offset):
    scale_value(raw, scale, offset)
