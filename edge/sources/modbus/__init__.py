"""Modbus TCP collector (pymodbus): planned block reads, every type and byte/word order. See README.md."""

from .collector import Source
from .config import Config

__all__ = ["Config", "Source"]
