"""What the foreign test servers set at tick k, one formula per OPC-UA built-in type.

open62541_server.c computes the same formula in C; pyopcua_server.py imports it. A test
compares what landed in the spool with these values, so an encoding mistake of either stack
or of our collector shows up as a mismatch.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone

TYPES = ("Boolean", "SByte", "Int16", "Int32", "Int64", "Byte", "UInt16", "UInt32", "UInt64", "Float", "Double",
         "String", "DateTime")
DATETIME_BASE = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
EU_DISPLAY = "\u00b0C"  # EngineeringUnits of Double


def float32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def value(type_name: str, k: int):
    """The value of variable ``type_name`` at tick ``k``."""
    return {
        "Boolean": lambda: k % 2 == 1,
        "SByte": lambda: -128 + k % 256,
        "Int16": lambda: -(1 << 15) + k,
        "Int32": lambda: -(1 << 31) + k,
        "Int64": lambda: -(1 << 63) + k,
        "Byte": lambda: 255 - k % 256,
        "UInt16": lambda: 0xFFFF - k,
        "UInt32": lambda: 0xFFFFFFFF - k,
        "UInt64": lambda: (1 << 64) - 1 - k,
        "Float": lambda: float32(0.5 + 0.1 * k),
        "Double": lambda: k / 3.0 - 1000.0,
        "String": lambda: f"tick-{k}-\u00e9",
        "DateTime": lambda: DATETIME_BASE + timedelta(seconds=k),
    }[type_name]()
