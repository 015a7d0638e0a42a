"""Collectors, one folder per protocol. See edge/sources/context.py for the contract."""
