"""Zerobus Edge: store-and-forward from OT protocols to Databricks ZeroBus."""

__version__ = "0.1.0"
