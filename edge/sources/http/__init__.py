"""Ignition gateway HTTP source: the gateway scripts POST JSON batches here; 200 only after the commit."""

from .collector import Source
from .config import Config

__all__ = ["Config", "Source"]
