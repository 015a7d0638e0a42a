"""A fast QoS 1 publisher for benchmarks: counts only what the broker acknowledged.

Why not ``mosquitto_pub -l``: the Debian bookworm build (2.0.11) sends DISCONNECT
while lines are still being published, so the broker drops the connection
(logged as "disconnected due to out of memory") and the tool still exits 0:
a benchmark built on it silently queued a third of what it claimed. And a
paho publisher in Python tops out at 10-16k msg/s.

This one speaks just enough MQTT 3.1.1 over a plain socket: CONNECT, then
pre-encoded QoS 1 PUBLISH packets written in large chunks with at most
``window`` unacknowledged, then DISCONNECT once every PUBACK arrived. The only
figure it reports is the number of PUBACKs, so "published N" means the broker
took responsibility for N messages.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path


class LoadError(RuntimeError):
    pass


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, username: str | None, password: str | None, keepalive: int = 0) -> bytes:
    flags = 0x02  # clean session: a publisher needs no session
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
    if password is not None:
        flags |= 0x40
        payload += _utf8(password)
    var = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body = var + payload
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: bytes, mid: int, payload: bytes) -> bytes:
    body = _utf8(topic) + struct.pack("!H", mid) + payload
    return b"\x32" + _remaining_length(len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise LoadError("broker closed the connection")
        buf += chunk
    return buf


def publish_all(host: str, port: int, username: str | None, password: str | None, topic: str,
                payloads: Iterable[bytes], *, client_id: str = "mqttload", window: int = 2000,
                chunk: int = 200, timeout: float = 60.0) -> int:
    """Publish every payload at QoS 1; returns the number of PUBACKs (== len(payloads) or raises)."""
    if not 1 <= window < 65535:
        raise ValueError("window must be between 1 and 65534")
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(client_id, username, password))
        connack = _recv_exact(sock, 4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise LoadError(f"CONNACK refused: {connack.hex()}")
        t = topic.encode()
        sent = acked = 0
        mid = 0
        pending = bytearray()  # PUBACK bytes not yet parsed
        batch: list[bytes] = []
        it = iter(payloads)
        exhausted = False
        while True:
            # write while the window allows
            while not exhausted and sent - acked < window:
                batch.clear()
                room = min(chunk, window - (sent - acked))
                for _ in range(room):
                    try:
                        p = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    mid = mid % 65535 + 1
                    batch.append(publish_packet(t, mid, p))
                if batch:
                    sock.sendall(b"".join(batch))
                    sent += len(batch)
            if exhausted and acked == sent:
                break
            try:
                data = sock.recv(65536)  # the socket timeout bounds each wait for PUBACKs
            except TimeoutError:
                raise LoadError(f"no PUBACK for {timeout}s: {acked} of {sent} sent acknowledged") from None
            if not data:
                raise LoadError(f"broker closed the connection after {acked} PUBACKs of {sent} sent")
            pending += data
            whole = len(pending) // 4 * 4
            for i in range(0, whole, 4):
                if pending[i] != 0x40 or pending[i + 1] != 2:
                    raise LoadError(f"unexpected packet from the broker: {bytes(pending[i:i + 4]).hex()}")
            acked += whole // 4
            del pending[:whole]
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        return acked
    finally:
        sock.close()


def bench_payloads(n: int, start: int = 0) -> list[bytes]:
    """~170-byte JSON readings like a plant gateway's, each with its own ``seq``."""
    ts = int(time.time() * 1000)
    out = []
    for i in range(start, start + n):
        doc = {"ts": ts + i, "value": round(50 + (i % 1000) / 37.0, 4), "quality": "GOOD", "unit": "degC", "seq": i,
               "site": "plant-a", "asset": f"line{i % 3 + 1}/press{i % 2 + 1}", "note": "x" * 48}
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="Publish --count QoS 1 JSON readings; prints the PUBACK count as JSON.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--username")
    ap.add_argument("--password-file", help="file holding the password (never on the command line)")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--start", type=int, default=0, help="first seq")
    ap.add_argument("--client-id", default=None)
    ap.add_argument("--window", type=int, default=2000)
    a = ap.parse_args()
    password = Path(a.password_file).read_text().strip() if a.password_file else None
    payloads = bench_payloads(a.count, a.start)
    t0 = time.perf_counter()
    acked = publish_all(a.host, a.port, a.username, password, a.topic, payloads,
                        client_id=a.client_id or f"mqttload-{os.getpid()}", window=a.window)
    print(json.dumps({"acked": acked, "seconds": round(time.perf_counter() - t0, 3)}))
    return 0 if acked == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
