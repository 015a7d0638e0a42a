"""A thin WAN link in-process: a TCP proxy with a rate limit, a one-way delay and byte counters.

    with LinkProxy("127.0.0.1", emu.grpc_port, rate_bps=20e6, up_delay_ms=50) as link:
        sdk = ZerobusSdk(f"http://127.0.0.1:{link.port}", emu.workspace_url)
        ...
        link.bytes_up, link.bytes_down        # every byte that crossed, gRPC and HTTP/2 framing included

Models what ``tc`` (tbf + netem) does to a plant's uplink without root and without touching
anyone else's loopback traffic: each direction serialises bytes at ``rate_bps`` through a
bounded queue (``queue_ms`` of data, as a router buffer; when it is full the proxy stops
reading and TCP pushes back on the sender), then holds them for the direction's delay.
A ``tc netem delay 50ms`` on the edge's egress is ``up_delay_ms=50, down_delay_ms=0``.
Runs its own event loop in a daemon thread; the caller's code stays synchronous.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

CHUNK = 64 * 1024


class _Direction:
    def __init__(self, rate_bps: float, delay_s: float, queue_s: float):
        self.rate = rate_bps / 8.0 if rate_bps > 0 else 0.0  # bytes/s, 0 = unlimited
        self.delay_s = delay_s
        self.queue_s = queue_s
        self.next_free = 0.0  # when the link finishes serialising what it holds
        self.bytes = 0


class LinkProxy:
    def __init__(self, target_host: str, target_port: int, rate_bps: float = 0.0, up_delay_ms: float = 0.0,
                 down_delay_ms: float = 0.0, queue_ms: float = 100.0, listen_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        # One shared link per direction, as one uplink carries every connection.
        self.up = _Direction(rate_bps, up_delay_ms / 1000.0, queue_ms / 1000.0)
        self.down = _Direction(rate_bps, down_delay_ms / 1000.0, queue_ms / 1000.0)
        self.port = 0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def bytes_up(self) -> int:
        return self.up.bytes

    @property
    def bytes_down(self) -> int:
        return self.down.bytes

    def __enter__(self) -> "LinkProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "LinkProxy":
        self._thread = threading.Thread(target=self._run, name="linkproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("link proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._accept, self.listen_host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.close()
            return
        try:
            await asyncio.gather(self._pump(c_reader, s_writer, self.up), self._pump(s_reader, c_writer, self.down),
                                 return_exceptions=True)
        except asyncio.CancelledError:
            pass  # stop(): asyncio's stream callback would log a cancelled accept task as an error

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, d: _Direction) -> None:
        line: collections.deque = collections.deque()  # (deliver_at, bytes) in order
        arrived = asyncio.Event()
        done = False

        async def deliver() -> None:
            while line or not done:
                if not line:
                    arrived.clear()
                    await arrived.wait()
                    continue
                at, data = line[0]
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                line.popleft()
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                if d.rate:
                    backlog = d.next_free - time.monotonic()
                    if backlog > d.queue_s:  # the router queue is full: stop reading, TCP pushes back
                        await asyncio.sleep(backlog - d.queue_s)
                data = await reader.read(CHUNK)
                if not data:
                    break
                d.bytes += len(data)
                now = time.monotonic()
                if d.rate:
                    d.next_free = max(d.next_free, now) + len(data) / d.rate
                    out = d.next_free
                else:
                    out = now
                line.append((out + d.delay_s, data))
                arrived.set()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            done = True
            arrived.set()
            try:
                await sender
            except (ConnectionError, OSError, asyncio.CancelledError):
                sender.cancel()
            writer.close()
