"""Free TCP ports for test servers, chosen below the kernel's ephemeral range.

A server that a test stops and starts again on the same port (a broker or emulator
restart) must find that port free. A port the kernel handed out for ``bind(0)`` lies
in the ephemeral range, where any client's outgoing connection may take it as its
source port while the server is down ("Address already in use" on restart, seen on
a busy machine). Ports below that range are never handed out implicitly.
"""

from __future__ import annotations

import random
import socket

_FLOOR = 20000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default when the file cannot be read


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now and outside the ephemeral range where possible."""
    high = _ephemeral_low() - 1
    if high > _FLOOR:
        for _ in range(200):
            port = random.randint(_FLOOR, high)
            if _bindable(port, host):
                return port
    with socket.socket() as s:  # no room below the ephemeral range: let the kernel choose
        s.bind((host, 0))
        return s.getsockname()[1]
