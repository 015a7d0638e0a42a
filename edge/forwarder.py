"""Kept for callers of the old module path: the forwarder lives in the edge.forward package."""

from edge.forward import Forwarder, Framer, Scrubber, proxy_summary

__all__ = ["Forwarder", "Framer", "Scrubber", "proxy_summary"]
