"""MQTT collector (paho-mqtt): QoS 1, PUBACK after commit, JSON / plain / Sparkplug B. See README.md."""

from .collector import Source
from .config import Config

__all__ = ["Config", "Source"]
