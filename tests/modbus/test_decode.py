"""The pure register decoder: golden folders, a table of known layouts, and round-trip properties."""

import math
import struct
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.configtypes import ConfigError, build
from edge.sources.modbus import decode as dec
from edge.sources.modbus.collector import Config, decode_point

CASES = sorted(p for p in (Path(__file__).parent / "testcases").iterdir() if p.is_dir())


def _config(point: dict) -> Config:
    return build(Config, {"name": "golden", "type": "modbus", "host": "127.0.0.1",
                          "devices": [{"device_id": 1, "points": [point]}]}, "sources[0]")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case):
    given_ = yaml.safe_load((case / "input.yaml").read_text())
    expected = yaml.safe_load((case / "expected.yaml").read_text())
    if "error" in expected:
        with pytest.raises(ConfigError) as info:
            _config(given_["point"])
        # the message names the field: sources[0].devices[0].points[0].<key>: ...
        assert str(info.value).startswith(f"sources[0].devices[0].{expected['error']}")
        return
    cfg = _config(given_["point"])
    (p,) = cfg.points
    value = decode_point(p, given_["registers"], p.address)
    if expected.get("approx"):
        assert value == pytest.approx(expected["value"])
    else:
        assert value == expected["value"] and type(value) is type(expected["value"])


def test_golden_folders_cover_every_type_and_order():
    seen_types, seen_orders = set(), set()
    for case in CASES:
        point = yaml.safe_load((case / "input.yaml").read_text())["point"]
        if "error" in yaml.safe_load((case / "expected.yaml").read_text()):
            continue
        seen_types.add(point.get("type", "bool"))
        seen_orders.add(point.get("order", "ABCD"))
    assert seen_types == set(dec.TYPES)
    assert seen_orders == set(dec.ORDERS)


# value, type, order, registers as the device sends them
TABLE = [
    (1.0, "float32", "ABCD", [0x3F80, 0x0000]),
    (1.0, "float32", "CDAB", [0x0000, 0x3F80]),
    (1.0, "float32", "BADC", [0x803F, 0x0000]),
    (1.0, "float32", "DCBA", [0x0000, 0x803F]),
    (-2.5, "float64", "ABCD", [0xC004, 0, 0, 0]),
    (-2.5, "float64", "CDAB", [0, 0, 0, 0xC004]),
    (-2.5, "float64", "BADC", [0x04C0, 0, 0, 0]),
    (-2.5, "float64", "DCBA", [0, 0, 0, 0x04C0]),
    (0x01020304, "uint32", "ABCD", [0x0102, 0x0304]),
    (0x01020304, "uint32", "CDAB", [0x0304, 0x0102]),
    (0x01020304, "uint32", "BADC", [0x0201, 0x0403]),
    (0x01020304, "uint32", "DCBA", [0x0403, 0x0201]),
    (0x0102030405060708, "int64", "CDAB", [0x0708, 0x0506, 0x0304, 0x0102]),
    (0x0102030405060708, "int64", "DCBA", [0x0807, 0x0605, 0x0403, 0x0201]),
    (-1, "int16", "ABCD", [0xFFFF]),
    (0x1234, "uint16", "CDAB", [0x1234]),  # word order means nothing for one register
    (0x1234, "uint16", "DCBA", [0x3412]),
    (-32768, "int16", "BADC", [0x0080]),
    ("AB", "string", "ABCD", [0x4142]),
    ("AB", "string", "BADC", [0x4241]),
]


@pytest.mark.parametrize("value,dtype,order,regs", TABLE)
def test_known_layouts(value, dtype, order, regs):
    length = len(regs) if dtype == "string" else None
    assert dec.decode(regs, dtype, order) == value
    assert dec.encode(value, dtype, order, length=length) == regs


def test_decode_errors_are_explicit():
    with pytest.raises(dec.DecodeError, match="float32 needs 2 registers, got 1"):
        dec.decode([1], "float32")
    with pytest.raises(dec.DecodeError, match="unknown order"):
        dec.decode([1, 2], "float32", "ABDC")
    with pytest.raises(dec.DecodeError, match="out of range for int16"):
        dec.encode(40000, "int16")
    with pytest.raises(dec.DecodeError, match="does not fit in 1 registers"):
        dec.encode("ABC", "string", length=1)
    with pytest.raises(dec.DecodeError, match="0..65535"):
        dec.registers_to_bytes([70000], "ABCD")


def test_nan_and_string_edge_cases():
    nan = dec.decode([0x7FC0, 0x0000], "float32")
    assert math.isnan(nan)
    assert dec.decode([0x4100, 0x0000], "string") == "A"  # trailing NULs stripped
    assert dec.decode([0xFFFE], "string") == "\xff\xfe"  # any byte decodes (Latin-1), nothing dropped


def test_scale_keeps_unscaled_integers_integral():
    assert dec.scale_value(7, 1.0, 0.0) == 7 and isinstance(dec.scale_value(7, 1.0, 0.0), int)
    assert dec.scale_value(7, 0.5, 1.0) == 4.5
    assert dec.scale_value(True, 2.0, 1.0) is True
    assert dec.unscale_value(dec.scale_value(123, 0.1, -5.0), 0.1, -5.0) == pytest.approx(123)


@pytest.mark.parametrize("regs,dtype,scale,offset,expected", [
    ([0x7FFF], "int16", 0.1, 0.0, 3276.7),  # a real device's full-scale reading: 3276.7000000000003 before
    ([0xFFFF], "uint16", 0.01, 0.0, 655.35),
    ([0x8000], "int16", 0.1, 0.0, -3276.8),
    ([0x007B], "uint16", 0.1, -5.0, 7.3),  # 7.300000000000001 unrounded
    ([0x0007], "uint16", 0.025, 0.0, 0.175),  # 0.17500000000000002 unrounded
    ([0x0000, 0x0021], "uint32", 0.1, 0.0, 3.3),  # 3.3000000000000003 unrounded
])
def test_scaled_integer_registers_are_rounded_to_the_scale_resolution(regs, dtype, scale, offset, expected):
    value = dec.scale_value(dec.decode(regs, dtype), scale, offset)
    assert value == expected and repr(value) == repr(expected)


def test_rounding_never_touches_unscaled_or_float_registers():
    raw = dec.decode(dec.encode(1.1, "float32"), "float32")  # 1.100000023841858 as the device sent it
    assert dec.scale_value(raw, 1.0, 0.0) == raw
    assert dec.scale_value(raw, 0.1, 0.0) == raw * 0.1  # a float's resolution is its own, not the scale's
    assert dec.scale_value(32767, 1.0, 0.0) == 32767 and isinstance(dec.scale_value(32767, 1.0, 0.0), int)
    assert dec.resolution_digits(1 / 3, 0.0) is None
    assert dec.scale_value(3, 1 / 3, 0.0) == 3 * (1 / 3)  # no finite decimal resolution: left as computed
    assert dec.resolution_digits(1e-05, 0.0) == 5 and dec.resolution_digits(2.5, -40.0) == 1
    assert dec.resolution_digits(float("nan"), 0.0) is None


_INT_TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_INT_TYPES), st.sampled_from(dec.ORDERS), st.data())
def test_roundtrip_integers(dtype, order, data):
    lo, hi = dec.int_range(dtype)
    value = data.draw(st.integers(lo, hi))
    regs = dec.encode(value, dtype, order)
    assert len(regs) == dec.register_count(dtype) and all(0 <= r <= 0xFFFF for r in regs)
    assert dec.decode(regs, dtype, order) == value


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(dec.ORDERS), st.floats(width=32, allow_nan=False))
def test_roundtrip_float32(order, value):
    assert dec.decode(dec.encode(value, "float32", order), "float32", order) == value


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(dec.ORDERS), st.floats(allow_nan=False))
def test_roundtrip_float64(order, value):
    assert dec.decode(dec.encode(value, "float64", order), "float64", order) == value


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(dec.STRING_ORDERS), st.integers(1, 20), st.data())
def test_roundtrip_strings(order, length, data):
    text = data.draw(st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=2 * length))
    assert dec.decode(dec.encode(text, "string", order, length=length), "string", order) == text


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(dec.ORDERS), st.integers(0, 15), st.booleans())
def test_roundtrip_register_bits(order, bit, value):
    regs = dec.encode(value, "bool", order, bit=bit)
    assert dec.decode(regs, "bool", order, bit=bit) is value
    assert dec.decode(regs, "uint16", order) == ((1 << bit) if value else 0)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(dec.ORDERS), st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4).filter(lambda r: len(r) in (1, 2, 4)))
def test_orders_are_permutations_of_the_big_endian_bytes(order, regs):
    raw = dec.registers_to_bytes(regs, order)
    assert sorted(raw) == sorted(struct.pack(f">{len(regs)}H", *regs))
    assert dec.bytes_to_registers(raw, order) == regs
