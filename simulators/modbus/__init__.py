"""Modbus TCP simulator serving a register map driven by ``simulators.plant`` (``python -m simulators.modbus``)."""
