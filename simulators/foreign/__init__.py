"""Servers on OPC-UA stacks we did not write, for tests/interop (open62541 in C, python-opcua)."""
