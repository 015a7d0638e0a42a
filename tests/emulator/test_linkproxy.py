"""ops/linkproxy.py, the bench's thin WAN link: it counts every byte, holds the rate and the delay."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

from ops.linkproxy import LinkProxy


class _Sink(socketserver.BaseRequestHandler):
    """Reads ``n`` bytes announced in an 8-byte header, then answers b"ok"."""

    def handle(self) -> None:
        want = int.from_bytes(self._exactly(8), "big")
        self._exactly(want)
        self.request.sendall(b"ok")

    def _exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.request.recv(min(65536, n - len(buf)))
            if not chunk:
                raise ConnectionError("closed early")
            buf += chunk
        return bytes(buf)


def _send_through(port: int, payload: bytes) -> float:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(len(payload).to_bytes(8, "big") + payload)
        assert s.recv(2) == b"ok"
    return time.monotonic() - t0


def test_link_counts_bytes_and_holds_rate_and_delay():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with LinkProxy("127.0.0.1", server.server_address[1], up_delay_ms=200) as link:
            assert _send_through(link.port, b"x") >= 0.2  # the one-way delay on the uplink
            assert (link.bytes_up, link.bytes_down) == (9, 2)
        payload = bytes(400_000)
        with LinkProxy("127.0.0.1", server.server_address[1], rate_bps=4e6, up_delay_ms=50) as link:
            elapsed = _send_through(link.port, payload)
            assert link.bytes_up == 8 + len(payload) and link.bytes_down == 2
        assert elapsed >= (8 + len(payload)) * 8 / 4e6 + 0.05  # 0.85 s: every byte serialised at 4 Mbit/s, then delayed
    finally:
        server.shutdown()
        server.server_close()
