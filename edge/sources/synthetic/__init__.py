"""Made-up readings at a fixed rate, for demos, load tests and drills."""

from .collector import Source
from .config import Config

__all__ = ["Config", "Source"]
