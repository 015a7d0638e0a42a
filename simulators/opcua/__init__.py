"""OPC-UA plant simulator: ``python -m simulators.opcua --help``; ``SimServer`` for in-process tests."""
