"""paho's Client, reading a backlog in bursts instead of one packet per wake-up.

paho 2.2's network thread reads one packet per turn of its loop (``loop_read``
reads ``len(out) + len(in)`` packets, and a QoS 1 subscriber has neither), and
``_packet_read`` asks the socket for each packet with three or four small
``recv`` calls. Every turn and every ``recv`` releases the GIL; with the spool
writer and the parsing worker in the same process, each release hands the GIL
to another thread and paho waits to get it back: the collector then spends more
time switching threads than reading.

Two changes keep paho's protocol handling, callbacks and thread model intact:

* ``BufferedSocket`` fills a userspace buffer with one large ``recv`` and serves
  paho's small reads from it. It reports the buffered bytes through
  ``pending()``, the same hook paho already uses for TLS sockets, so paho's
  ``select`` never waits while data is buffered.
* ``Client.loop_read`` keeps reading packets while the buffer holds more
  (bounded per call, so keepalive and writes still get their turn).

Uses paho's private ``_create_socket`` and ``_sock``: paho is pinned exactly
(pyproject.toml), and ``tests/mqtt/test_client_burst.py`` fails if either hook
changes.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt

RECV_BYTES = 256 * 1024  # one recv fills this much; ~1,000 typical PUBLISH packets
BURST_PACKETS = 2000  # packets read per loop_read at most, then paho's loop runs writes and keepalive


class BufferedSocket:
    """A socket (plain or TLS) whose reads come from a userspace buffer."""

    __slots__ = ("_sock", "_buf", "_pos")

    def __init__(self, sock: Any):
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._fill(max(n, RECV_BYTES))
            if not buf:
                return buf  # EOF
            self._buf, pos = buf, 0
        end = pos + n
        self._pos = end
        if pos == 0 and end >= len(buf):
            return buf
        return buf[pos:end]

    read = recv

    def _fill(self, want: int) -> bytes:
        sock = self._sock
        first = sock.recv(want)  # raises BlockingIOError / SSLWantReadError when empty, as before
        if not first or not hasattr(sock, "pending"):  # ssl.SSLSocket (or a wrapper of one)
            return first  # a plain socket returns everything that has arrived in one call
        # TLS returns one record per call, and Mosquitto sends one record per packet:
        # gather what has arrived so paho's select is not consulted per message.
        parts, size = [first], len(first)
        while size < want:
            try:
                more = sock.recv(want - size)
            except OSError:  # nothing more yet (want read/write), or a failure the next recv reports
                break  # either way the records already read are delivered first
            if not more:
                break  # EOF: the next recv reports it
            parts.append(more)
            size += len(more)
        return b"".join(parts)

    def pending(self) -> int:
        buffered = len(self._buf) - self._pos
        if buffered > 0:
            return buffered
        inner = getattr(self._sock, "pending", None)  # ssl.SSLSocket: decrypted bytes not yet read
        return inner() if inner is not None else 0

    def send(self, data: bytes | bytearray) -> int:
        return self._sock.send(data)

    write = send

    def __getattr__(self, name: str) -> Any:  # fileno, setblocking, close, getpeercert...
        return getattr(self._sock, name)


class Client(mqtt.Client):
    def _create_socket(self):  # type: ignore[override]
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        sock = self._sock
        n = 1
        while rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and n < BURST_PACKETS:
            if sock is None or sock is not self._sock or sock.pending() <= 0:
                break
            rc = super().loop_read(max_packets)
            n += 1
        return rc
