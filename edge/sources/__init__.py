"""Collectors, one module per protocol. See edge/sources/base.py for the contract."""
