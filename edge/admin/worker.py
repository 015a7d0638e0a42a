"""gunicorn's threaded worker with a deadline on reading each request.

gthread hands a connection that sends nothing back to its poller after 5 s, but once a
byte arrives a thread reads the request head on a blocking socket with no time limit:
a client trickling a header byte a second keeps that thread for good, and eight such
clients per worker (16 connections with the default two workers) took the page down.
Here each request must arrive whole (TLS handshake, request line, headers and a body of
up to 64 KiB, read before the app runs) within
READ_DEADLINE_S of being queued for a thread (accepted, or readable again on a kept-alive
connection); past that, the worker's main loop (once a
second) shuts the socket down, the reading thread sees the end of the stream and is
free again. The application's own time (rendering, the spool read) is not limited here:
the deadline ends when the request has been read.

A deadline alone still lets one address queue enough connections to keep every thread
busy one deadline after another. So one client address may have at most
MAX_READING_PER_CLIENT requests queued or being read in a worker at once (a browser sends
its few parallel requests in milliseconds); a connection beyond that is closed at once.
"""

from __future__ import annotations

import io
import socket
import threading
import time

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

READ_DEADLINE_S = 10.0
MAX_BUFFERED_BODY = 64 * 1024  # the app's MAX_CONTENT_LENGTH: larger bodies are refused unread
MAX_READING_PER_CLIENT = 8  # of the worker's threads (edge/admin/server.py THREADS), the rest for others


class Worker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reading: dict[int, tuple[float, object]] = {}  # id(conn) -> (deadline, conn)
        self._reading_lock = threading.Lock()

    def enqueue_req(self, conn):
        # From the moment the connection (or its next request) is queued for a thread.
        peer = _peer(conn)
        with self._reading_lock:
            crowded = id(conn) not in self._reading and sum(
                1 for _, c in self._reading.values() if _peer(c) == peer) >= MAX_READING_PER_CLIENT
            if not crowded:
                self._reading.setdefault(id(conn), (time.monotonic() + READ_DEADLINE_S, conn))
        if crowded:
            self.log.info("closing a connection of %s: %d requests of it already waiting to be read",
                          peer, MAX_READING_PER_CLIENT)
            _cut(conn)  # its thread reads the end of the stream at once
        super().enqueue_req(conn)

    def handle(self, conn):
        try:
            return super().handle(conn)
        finally:
            self._parsed(conn)  # done, closed, or handed back to the poller (silent): no thread held

    def handle_request(self, req, conn):
        try:
            _buffer_body(req)  # still under the deadline: a body that trickles is cut like a head
        finally:
            self._parsed(conn)
        return super().handle_request(req, conn)

    def handle_http2(self, conn):
        self._parsed(conn)  # a multiplexed connection: its streams are not one request head
        return super().handle_http2(conn)

    def _parsed(self, conn) -> None:
        with self._reading_lock:
            self._reading.pop(id(conn), None)

    def murder_keepalived(self, force=False):
        super().murder_keepalived(force)
        self._cut_late_readers()

    def _cut_late_readers(self) -> None:
        now = time.monotonic()
        with self._reading_lock:
            late = [(k, conn) for k, (deadline, conn) in self._reading.items() if deadline < now]
            for k, _ in late:
                del self._reading[k]
        for _, conn in late:
            self.log.info("closing the connection of %s: no complete request within %.0fs",
                          _peer(conn), READ_DEADLINE_S)
            _cut(conn)


def _buffer_body(req) -> None:
    """Read a body of announced length up to MAX_BUFFERED_BODY before the app runs; a short one never reaches it."""
    length = next((v for k, v in req.headers if k == "CONTENT-LENGTH"), None)
    if length is None or not length.isdigit() or not 0 < int(length) <= MAX_BUFFERED_BODY:
        return  # none, chunked (the app reads it), or too long (the app answers 413 without reading it)
    data = req.body.read()
    if len(data) != int(length):
        raise NoMoreData(b"")  # cut or closed mid-body: dropped, the app never sees it (nor a log the bytes)
    req.body = io.BytesIO(data)


def _cut(conn) -> None:
    try:
        # The plain socket's shutdown, also under TLS: the SSL object stays with the reading thread,
        # which sees the end of the stream and lets go.
        socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its thread


def _peer(conn) -> str:
    client = getattr(conn, "client", None)
    return client[0] if isinstance(client, tuple) and client else "?"
