"""Modbus register <-> value conversion: pure, no I/O, the same code for the collector and the simulator.

A Modbus register is 16 bits, sent high byte first. Values wider than one
register are spread over consecutive registers, and devices disagree on how:
``order`` names where the bytes of the big-endian value ``A B C D`` (``A`` most
significant) end up:

========  ======================  ================================================
order     32-bit in two registers  meaning
========  ======================  ================================================
ABCD      [AB, CD]                big-endian words, high word first (Modbus "standard")
CDAB      [CD, AB]                low word first ("word swap"; many PLCs)
BADC      [BA, DC]                bytes swapped inside each word, high word first
DCBA      [DC, BA]                fully little-endian
========  ======================  ================================================

The rule generalises to 64-bit values (CDAB = words in reverse order, bytes
not swapped: ``[GH, EF, CD, AB]``) and to 16-bit values (only the byte swap of
BADC/DCBA matters). Strings are ``length`` registers of characters, two per
register, first character in the high byte (ABCD) or in the low byte (BADC);
word-reversing orders make no sense for text and are refused at config time.
Trailing NUL bytes are stripped; bytes are decoded as Latin-1, so every byte
sequence decodes to something and nothing is lost silently.

``bool`` is a coil / discrete input bit, or with ``bit`` (0 = least
significant) one bit of a holding/input register.
"""

from __future__ import annotations

import decimal
import functools
import math
import struct
from typing import Sequence

ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")
TYPES = ("bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string")
STRING_ORDERS = ("ABCD", "BADC")

_STRUCT = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}
_WIDTH = {k: struct.calcsize(v) // 2 for k, v in _STRUCT.items()}
_INT_RANGE = {
    "int16": (-(1 << 15), (1 << 15) - 1), "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1), "uint64": (0, (1 << 64) - 1),
}


class DecodeError(ValueError):
    """The registers cannot hold a value of the requested type (wrong count, bad value)."""


def register_count(dtype: str, length: int | None = None) -> int:
    """How many registers (or bits, for ``bool`` on a bit table) a value occupies."""
    if dtype == "bool":
        return 1
    if dtype == "string":
        if not length or length < 1:
            raise DecodeError("string needs a length (registers) >= 1")
        return length
    try:
        return _WIDTH[dtype]
    except KeyError:
        raise DecodeError(f"unknown type {dtype!r}") from None


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise DecodeError(f"unknown order {order!r} (one of {', '.join(ORDERS)})")


def registers_to_bytes(regs: Sequence[int], order: str) -> bytes:
    """Registers as received -> the value's big-endian bytes (A B C D ...)."""
    _check_order(order)
    words = list(regs)
    if order in ("CDAB", "DCBA"):
        words.reverse()
    try:
        raw = struct.pack(f">{len(words)}H", *words)
    except struct.error:
        raise DecodeError(f"register values must be 0..65535, got {words}") from None
    if order in ("BADC", "DCBA"):
        b = bytearray(raw)
        b[0::2], b[1::2] = raw[1::2], raw[0::2]
        raw = bytes(b)
    return raw


def bytes_to_registers(raw: bytes, order: str) -> list[int]:
    """The value's big-endian bytes -> registers as a device with ``order`` sends them."""
    _check_order(order)
    if len(raw) % 2:
        raise DecodeError("byte string must have an even length")
    if order in ("BADC", "DCBA"):
        b = bytearray(raw)
        b[0::2], b[1::2] = raw[1::2], raw[0::2]
        raw = bytes(b)
    words = list(struct.unpack(f">{len(raw) // 2}H", raw))
    if order in ("CDAB", "DCBA"):
        words.reverse()
    return words


def decode(regs: Sequence[int], dtype: str, order: str = "ABCD", *, bit: int | None = None) -> bool | int | float | str:
    """Registers (exactly as many as the type needs) -> raw value (before scale/offset)."""
    if dtype == "bool":
        if len(regs) != 1:
            raise DecodeError(f"bool needs 1 register, got {len(regs)}")
        if bit is None:
            return bool(regs[0])
        word = struct.unpack(">H", registers_to_bytes(regs, order))[0]
        return bool((word >> bit) & 1)
    if dtype == "string":
        if order not in STRING_ORDERS:
            raise DecodeError(f"strings support order ABCD or BADC, not {order}")
        return registers_to_bytes(regs, order).rstrip(b"\x00").decode("latin-1")
    fmt = _STRUCT.get(dtype)
    if fmt is None:
        raise DecodeError(f"unknown type {dtype!r}")
    if len(regs) != _WIDTH[dtype]:
        raise DecodeError(f"{dtype} needs {_WIDTH[dtype]} registers, got {len(regs)}")
    return struct.unpack(">" + fmt, registers_to_bytes(regs, order))[0]


def encode(value: bool | int | float | str, dtype: str, order: str = "ABCD", *, length: int | None = None, bit: int | None = None) -> list[int]:
    """Raw value -> registers, the inverse of ``decode`` (the simulator and tests use it).

    Integers out of the type's range and strings longer than ``length`` registers
    raise DecodeError: an encoder that wrapped around would hide a wrong map.
    """
    if dtype == "bool":
        if bit is None:
            return [1 if value else 0]
        return bytes_to_registers(struct.pack(">H", (1 << bit) if value else 0), order)
    if dtype == "string":
        if order not in STRING_ORDERS:
            raise DecodeError(f"strings support order ABCD or BADC, not {order}")
        n = register_count("string", length)
        raw = str(value).encode("latin-1", errors="replace")
        if len(raw) > 2 * n:
            raise DecodeError(f"string of {len(raw)} bytes does not fit in {n} registers")
        return bytes_to_registers(raw.ljust(2 * n, b"\x00"), order)
    fmt = _STRUCT.get(dtype)
    if fmt is None:
        raise DecodeError(f"unknown type {dtype!r}")
    if dtype in _INT_RANGE:
        lo, hi = _INT_RANGE[dtype]
        if isinstance(value, float):
            if not math.isfinite(value):
                raise DecodeError(f"{value} does not fit {dtype}")
            value = int(round(value))
        if not lo <= value <= hi:
            raise DecodeError(f"{value} out of range for {dtype} ({lo}..{hi})")
    try:
        packed = struct.pack(">" + fmt, value)
    except OverflowError:  # a float past float32's range (3.4e38)
        raise DecodeError(f"{value} does not fit {dtype}") from None
    return bytes_to_registers(packed, order)


def int_range(dtype: str) -> tuple[int, int] | None:
    return _INT_RANGE.get(dtype)


@functools.lru_cache(maxsize=1024)
def resolution_digits(scale: float, offset: float) -> int | None:
    """Decimal places of ``scale`` and ``offset`` as written (0.1 -> 1, 0.025 -> 3, 2.5 -> 1, 10 -> 0).

    That is the resolution of an integer register after scaling: ``raw * 0.1`` can only
    take values with one decimal, so more digits are binary floating-point noise
    (32767 x 0.1 = 3276.7000000000003). None for NaN/Inf or more digits than a double holds.
    """
    digits = 0
    for number in (scale, offset):
        if not math.isfinite(number):
            return None
        exponent = decimal.Decimal(repr(float(number))).as_tuple().exponent
        digits = max(digits, -int(exponent))
    return digits if digits <= 15 else None


def scale_value(raw: bool | int | float | str, scale: float, offset: float) -> bool | int | float | str:
    """Engineering value = raw * scale + offset; an unscaled value is returned unchanged.

    A scaled integer register is rounded to the resolution of scale/offset
    (``resolution_digits``), so 32767 x 0.1 reads 3276.7. A float register is not
    rounded: its resolution is its own, not the scale's.
    """
    if isinstance(raw, (bool, str)) or (scale == 1.0 and offset == 0.0):
        return raw
    value = raw * scale + offset
    if isinstance(raw, int):
        digits = resolution_digits(scale, offset)
        if digits is not None and math.isfinite(value):
            value = round(value, digits)
    return value


def unscale_value(value: float, scale: float, offset: float) -> float:
    """The raw value a device must hold to read as ``value`` (the simulator's direction)."""
    return (value - offset) / scale


__all__ = [
    "DecodeError", "ORDERS", "STRING_ORDERS", "TYPES", "bytes_to_registers", "decode", "encode",
    "int_range", "register_count", "registers_to_bytes", "resolution_digits", "scale_value", "unscale_value",
]
