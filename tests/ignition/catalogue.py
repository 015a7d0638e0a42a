"""Every hostile input the http source is known to face, fired at one running `edge run`, and counted.

    PYTHONPATH=. .venv/bin/python -m tests.ignition.catalogue [--fuzz N] [--seed S]

One `edge run` process (real spool) with two http sources, plain and TLS. The catalogue (each case of
the hostile-input review: nested JSON, Content-Length tricks, slow and silent clients, the connection
cap, TLS without a ClientHello, token guessing ...) and then N hypothesis-generated requests (raw heads
and bytes, and authenticated batches mixing tracked valid events with hostile elements) are sent one
after the other. After each input a gateway-like client sends a canary batch from another address,
resending the valid events of any request that was not answered 200, as an Ignition gateway keeps a
batch until it gets its 200. Counted:

- inputs tried (catalogue cases, connections they opened, fuzz inputs);
- crashes: the process exited, or the source did not take the canary within ``CANARY_DEADLINE``;
- valid readings lost without a marker: sent, yet at the end neither in the spool's readings nor in a
  quarantine row (whose reason is the marker); also duplicates and tracebacks/secrets in the log.

``run()`` is what ``tests/ignition/test_hostile_catalogue.py`` calls with a small fuzz budget.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import re
import socket
import ssl
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from edge.encode import appliance_prefix, decode, frame
from edge.spool import SpoolReader
from edge.tlsgen import ensure_tls
from simulators.kit.edgeproc import EdgeRun
from simulators.kit.ports import free_port
from tests.fuzz.strategies import json_texts, json_values, nested

TOKEN = "catalogue-token-0123456789abcdef"
GUESS = "guess-PLUGH-0123456789"
BATCH, SINGLE, HEALTH = "/system/zerobus/ingest/batch", "/system/zerobus/ingest", "/system/zerobus/health"
NOW_MS = 1_763_900_000_000
GATEWAY = "127.0.0.1"  # the canary's address: the attackers use others, so the throttle keeps it apart
CANARY_DEADLINE = 15.0
SPRAY = 4200  # past the throttle's table (4,096 addresses)
LIMITS = {"max_connections": 32, "idle_timeout": "2s", "header_timeout": "2s", "body_timeout": "2s",
          "auth_max_failures": 5, "auth_lockout": "60s", "max_batch_events": 200}  # max_body_bytes: 8 MiB
_TAG = re.compile(rb'Catalogue/v(\d+)"')  # in a quarantined body
_POINT = re.compile(r"Catalogue/v(\d+)")  # a stored reading's point


@dataclass
class Answer:
    status: int | None  # None: closed without a status line
    body: dict | None = None
    headers: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Tally:
    cases: int = 0
    connections: int = 0
    fuzz: int = 0
    bulk: int = 0  # requests or connections a case fires besides the one it is counted by
    unexpected: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    sent: set[int] = field(default_factory=set)  # ids of valid events sent in any request
    answered_200: set[int] = field(default_factory=set)


class Catalogue:
    def __init__(self, tmp: Path, verbose: bool = False):
        self.verbose = verbose
        tls = ensure_tls(str(tmp / "tls"), ["localhost", "127.0.0.1"])
        self.ca = tls.ca_cert
        self.port, self.tls_port = free_port(), free_port()
        common = {"type": "http", "token": "${GW_TOKEN}", **LIMITS}
        self.edge = EdgeRun(tmp, {
            "appliance_id": "plant-test",
            "spool": {"path": str(tmp / "spool.db"), "max_bytes": "256MiB"},
            "sources": [{"name": "gw", "listen": f"127.0.0.1:{self.port}", **common},
                        {"name": "gws", "listen": f"127.0.0.1:{self.tls_port}", "tls_cert": tls.server_cert,
                         "tls_key": tls.server_key, **common}],
            "logging": {"level": "info"},
        }, env={"GW_TOKEN": TOKEN}, forward=False)
        self.t = Tally()
        self._ids = itertools.count(1)
        self._addr = itertools.count(1)
        self.pending: list[int] = []  # valid events of requests not answered 200: the gateway resends them
        self.origin: dict[int, str] = {}  # id -> the input that first carried it (for the report)

    # --- clients
    def connect(self, *, src: str = GATEWAY, tls: bool = False, timeout: float = 10.0) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.tls_port if tls else self.port), timeout=timeout,
                                     source_address=(src, 0))
        self.t.connections += 1
        if tls:
            s = ssl.create_default_context(cafile=self.ca).wrap_socket(s, server_hostname="localhost")
        return s

    def attacker(self) -> str:
        """A fresh loopback address (127.2.x.y): each attacker has its own throttle entry."""
        n = next(self._addr)
        return f"127.2.{n // 250}.{n % 250 + 1}"

    def exchange(self, data: bytes, *, src: str | None = None, tls: bool = False, shut: bool = True,
                 timeout: float = 10.0) -> Answer:
        t0 = time.monotonic()
        with self.connect(src=src or self.attacker(), tls=tls, timeout=timeout) as s:
            try:
                s.sendall(data)
                if shut and not tls:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server answered and closed before taking it all: read that answer
            return read_answer(s, t0)

    def events(self, n: int) -> tuple[list[dict], list[int]]:
        ids = [next(self._ids) for _ in range(n)]
        self.t.sent.update(ids)
        return [valid_event(i) for i in ids], ids

    # --- the gateway: a canary after each input, resending what was not answered 200
    def canary(self, after: str, *, tls: bool = False) -> None:
        if self.edge.proc.poll() is not None:
            self.t.crashes.append(f"{after}: edge exited with {self.edge.proc.returncode}")
            self.edge.start()
            return
        pending, self.pending = list(dict.fromkeys(self.pending)), []
        events, ids = self.events(1)
        self.origin[ids[0]] = f"canary after {after}"
        batches = [[valid_event(i) for i in pending[k:k + 100]] for k in range(0, len(pending), 100)] + [events]
        for batch in batches:
            if not self._deliver(batch, [e["value"] for e in batch], tls=tls):
                self.t.crashes.append(f"{after}: the source took no canary within {CANARY_DEADLINE:g} s")
                self.pending.extend(e["value"] for b in batches for e in b)
                return

    def _deliver(self, batch: list[dict], ids: list[int], *, tls: bool) -> bool:
        body = json.dumps(batch).encode()
        deadline = time.monotonic() + CANARY_DEADLINE
        while time.monotonic() < deadline:
            try:
                a = self.exchange(request("POST", BATCH, body), src=GATEWAY, tls=tls)
            except OSError:
                a = Answer(None)
            if a.status == 200 and a.body and a.body.get("accepted") == len(batch):
                self.t.answered_200.update(ids)
                return True
            if self.edge.proc.poll() is not None:
                return False
            time.sleep(0.1)  # a gateway's retry interval (503: cap reached; 429 would be a throttle bug)
        return False

    # --- bookkeeping of one input
    def expect(self, name: str, answer: Answer, ok: Callable[[Answer], bool], ids: list[int] = ()) -> Answer:
        self.t.cases += 1
        for i in ids:
            self.origin.setdefault(i, f"{name} ({answer.status})")
        self.t.statuses[answer.status] += 1
        if answer.status == 200:
            self.t.answered_200.update(ids)
        else:
            self.pending.extend(ids)
        good = ok(answer)
        if not good:
            self.t.unexpected.append(f"{name}: {answer.status} {answer.body}")
        if self.verbose:
            print(f"  {'ok' if good else 'UNEXPECTED':10} {answer.status or 'closed'!s:6} {answer.seconds:5.2f} s  {name}")
        self.canary(name)
        return answer

    def account(self) -> dict:
        """Read the spool after a clean stop: where every valid event sent ended up."""
        with SpoolReader(self.edge.spool_path) as r:
            rows = r.peek(0, 10_000_000)
            quarantine = r.quarantined(10_000_000)
            stats = r.stats()
        prefix = appliance_prefix("plant-test")
        stored = Counter()
        for seq, body in rows:
            m = _POINT.fullmatch(decode(frame(prefix, seq, body)).point)
            if m:
                stored[int(m.group(1))] += 1
        marked = {int(i) for raw in joined(quarantine) for i in _TAG.findall(raw)}
        log = self.edge.log_path.read_text(errors="replace")
        return {
            "sent": len(self.t.sent),
            "stored": len(set(stored) & self.t.sent),
            "quarantined": len((marked - set(stored)) & self.t.sent),
            "lost": sorted(self.t.sent - set(stored) - marked),
            "duplicates": sorted(i for i, n in stored.items() if n > 1),
            "answered_200_missing": sorted(self.t.answered_200 - set(stored) - marked),
            "quarantine_rows": stats["quarantined"],
            "loss_markers": stats["loss_markers_written"],
            "dropped": stats["dropped_total"],
            "side_dropped": stats.get("side_dropped"),
            "tracebacks": log.count("Traceback"),
            "secrets_in_log": sum(log.count(s) for s in (TOKEN, GUESS)),
        }


def joined(quarantine: list[dict]) -> list[bytes]:
    """The quarantined raw bytes, a body kept in pieces (meta ``pieces_of``) joined again."""
    whole, pieces = [], {}
    for q in quarantine:
        key = q["meta"].get("pieces_of") if isinstance(q["meta"], dict) else None
        if key:
            pieces.setdefault(key, []).append(q)
        else:
            whole.append(q["raw"] or b"")
    return whole + [b"".join(q["raw"] for q in sorted(qs, key=lambda q: q["meta"]["offset"])) for qs in pieces.values()]


def valid_event(i: int) -> dict:
    return {"tagPath": f"Catalogue/v{i}", "value": i, "quality": "Good", "qualityCode": 192,
            "timestamp": NOW_MS + i, "dataType": "long"}


def request(method: str, path: str, body: bytes = b"", *, token: str | None = TOKEN, length: list[str] | None = None,
            extra: list[str] = ()) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: edge", "Content-Type: application/json", *extra]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    for v in ([str(len(body))] if length is None else length):
        lines.append(f"Content-Length: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_answer(s: socket.socket, t0: float) -> Answer:
    resp = http.client.HTTPResponse(s)
    try:
        resp.begin()
        raw = resp.read()
    except (http.client.HTTPException, OSError):
        return Answer(None, seconds=time.monotonic() - t0)
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = {"raw": raw[:200].decode("latin-1")}
    return Answer(resp.status, body, {k.lower(): v for k, v in resp.getheaders()}, time.monotonic() - t0)


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))


def _quarantined_with(reason: str) -> Callable[[Answer], bool]:
    return lambda a: a.status == 200 and a.body["quarantined"] >= 1 and any(
        reason in (e["reason"] or "") for e in a.body.get("errors", []))


def _status(*codes: int, within: float = 8.0) -> Callable[[Answer], bool]:
    return lambda a: a.status in codes and a.seconds < within


# --- the catalogue

def body_cases(c: Catalogue) -> None:
    c.expect("1,000-level nested JSON body", c.exchange(request("POST", BATCH, b"[" * 1000 + b"]" * 1000)),
             _quarantined_with("nested too deeply"))
    for depth in (1000, 5000, 50_000):
        events, ids = c.events(3)
        raw = f"[{json.dumps(events[0])}, {nested(depth)}, {json.dumps(events[1])}, {json.dumps(events[2])}]".encode()
        c.expect(f"batch with a {depth}-level element and 3 valid events", c.exchange(request("POST", BATCH, raw)),
                 lambda a: a.status == 200 and (a.body["accepted"], a.body["quarantined"]) == (3, 1), ids)
    events, ids = c.events(1)
    deep_obj = "{" + '"a":{' * 3000 + "}" * 3001
    c.expect("3,000-level nested object in a batch", c.exchange(
        request("POST", BATCH, f"[{json.dumps(events[0])}, {deep_obj}]".encode())),
        lambda a: a.status == 200 and a.body["accepted"] == 1, ids)
    events, ids = c.events(1)
    value = [1]
    for _ in range(40):
        value = [value]
    c.expect("event value nested past max_json_depth", c.exchange(
        request("POST", BATCH, json.dumps([events[0], {**valid_event(0), "value": value}]).encode())),
        lambda a: a.status == 200 and (a.body["accepted"], a.body["quarantined"]) == (1, 1), ids)
    for name, raw in (("integer of 5,000 digits", b'[{"tagPath": "a", "value": ' + b"9" * 5000 + b"}]"),
                      ("invalid UTF-8", b'[{"tagPath": "\xff\xfe"}]'), ("truncated JSON", b'[{"tagPath": "a", "val'),
                      ("object where a batch array belongs", b'{"tagPath": "a"}'), ("empty body", b""),
                      ("NaN and Infinity values", b'[{"tagPath": "a", "value": NaN, "timestamp": Infinity}]'),
                      ("stray quotes and backslashes", b'["' + b'\\"' * 20000)):
        c.expect(name, c.exchange(request("POST", BATCH, raw)), lambda a: a.status == 200 and a.body["accepted"] == 0)
    events, ids = c.events(LIMITS["max_batch_events"] + 1)
    c.expect("more events than max_batch_events", c.exchange(request("POST", BATCH, json.dumps(events).encode())),
             _status(413), ids)
    events, ids = c.events(1)
    for raw in (nested(3000), deep_obj):
        c.expect(f"single route, {raw[:2]}... nested 3,000 levels", c.exchange(request("POST", SINGLE, raw.encode())),
                 _quarantined_with("nested too deeply"))
    c.expect("single route, valid event", c.exchange(request("POST", SINGLE, json.dumps(events[0]).encode())),
             lambda a: a.status == 200 and a.body["accepted"] == 1, ids)


def length_cases(c: Catalogue) -> None:
    events, ids = c.events(50)
    big = json.dumps(events).encode() + b" " * (9 * 1024 * 1024)  # past max_body_bytes (the review's was 11.9 MB)
    c.expect("Content-Length: -1 with a 9 MB body (max_body_bytes 8 MiB)",
             c.exchange(request("POST", BATCH, big, length=["-1"])), _status(400, None), ids)

    def batch(n: int = 2) -> tuple[bytes, list[int]]:  # fresh events for each request: a resend is never a duplicate
        events, ids = c.events(n)
        return json.dumps(events).encode(), ids

    for form in ("{n}|{n}", "{n}|5", "{n}, {n}", "+{n}", "0x10", "12abc", "1e3", "9" * 19, " "):
        body, ids = batch()
        lengths = form.format(n=len(body)).split("|")
        c.expect(f"Content-Length {lengths}", c.exchange(request("POST", BATCH, body, length=lengths)), _status(400), ids)
    c.expect("Transfer-Encoding: chunked", c.exchange(
        request("POST", BATCH, b"5\r\n[1,2]\r\n0\r\n\r\n", length=[], extra=["Transfer-Encoding: chunked"])), _status(411))
    body, ids = batch()
    c.expect("Content-Length and Transfer-Encoding", c.exchange(
        request("POST", BATCH, body, extra=["Transfer-Encoding: chunked"])), _status(411), ids)
    body, ids = batch()
    c.expect("Content-Length larger than the body, then silence", c.exchange(
        request("POST", BATCH, body, length=[str(len(body) + 10)]), shut=False), _status(408), ids)
    body, ids = batch()
    c.expect("Content-Length larger than the body, then close", c.exchange(
        request("POST", BATCH, body, length=[str(len(body) + 10)])), _status(400), ids)
    c.expect("no Content-Length on a POST", c.exchange(request("POST", BATCH, b"", length=[])), _status(411))
    c.expect("unauthenticated, Content-Length: 8000000 then nothing", c.exchange(
        request("POST", BATCH, token=None, length=["8000000"]), shut=False),
        lambda a: a.status == 401 and a.seconds < 2 and a.headers.get("connection") == "close")
    c.expect("authenticated, Content-Length: 8000000 then nothing", c.exchange(
        request("POST", BATCH, length=["8000000"]), shut=False), _status(408))
    c.expect("authenticated, Content-Length past max_body_bytes, body unsent", c.exchange(
        request("POST", BATCH, length=["9000000"]), shut=False), lambda a: a.status == 413 and a.seconds < 2)
    body, ids = batch()
    c.expect("Content-Length shorter than the body", c.exchange(
        request("POST", BATCH, body, length=[str(len(body) - 5)])),
        lambda a: a.status == 200 and a.body["quarantined"] == 1, ids)


def head_cases(c: Catalogue) -> None:
    bad = {
        "control character in a header": (request("GET", HEALTH, extra=["X-A: a\x00b"]), 400),
        "folded header line": (request("GET", HEALTH, extra=["X-A: a", " folded"]), 400),
        "101 header lines": (request("GET", HEALTH, extra=[f"X-{i}: v" for i in range(101)]), 431),
        "a 70 KB head": (request("GET", HEALTH, extra=["X-Big: " + "a" * 70_000]), 431),
        "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\n\r\n", 505),
        "absolute-form target": (b"GET http://edge/ HTTP/1.1\r\n\r\n", 400),
        "lower-case method": (b"get / HTTP/1.1\r\n\r\n", 400),
        "two Authorization headers": (request("POST", BATCH, b"[]", extra=[f"Authorization: Bearer {TOKEN}"]), 400),
        "a head of NUL bytes": (b"\x00" * 2000 + b"\r\n\r\n", 400),
    }
    for name, (data, code) in bad.items():
        c.expect(name, c.exchange(data), _status(code))
    events, ids = c.events(2)
    c.expect("Expect: 100-continue", c.exchange(
        request("POST", BATCH, json.dumps(events).encode(), extra=["Expect: 100-continue"])),
        lambda a: a.status in (100, 200), ids)
    ev1, ids1 = c.events(1)
    ev2, ids2 = c.events(1)
    two = request("POST", BATCH, json.dumps(ev1).encode()) + request("POST", BATCH, json.dumps(ev2).encode())
    c.expect("two pipelined batches", c.exchange(two), _status(200), ids1 + ids2)


def drip(c: Catalogue, prefix: bytes, data: bytes) -> Answer:
    """The slowloris: ``prefix`` at once, then ``data`` one byte a second until the server answers or hangs up."""
    t0 = time.monotonic()
    got = b""
    with c.connect(src=c.attacker()) as s:
        s.sendall(prefix)
        for b in data:
            try:
                s.sendall(bytes([b]))
                s.settimeout(1.0)
                got = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            break
    return Answer(int(got[9:12]) if got.startswith(b"HTTP/1.1 ") else None, seconds=time.monotonic() - t0)


def slow_cases(c: Catalogue) -> None:
    c.expect("head sent a byte a second", drip(c, b"", request("POST", BATCH, b"[]")), _status(408, within=6))
    events, ids = c.events(2)
    body = json.dumps(events).encode()
    c.expect("body sent a byte a second", drip(c, request("POST", BATCH, body)[:-len(body)], body),
             _status(408, within=6), ids)
    t0 = time.monotonic()
    with c.connect(src=c.attacker()) as s:
        s.settimeout(10)
        try:
            closed = s.recv(1) == b""
        except OSError:
            closed = True
    c.expect("a connection that never sends", Answer(None, seconds=time.monotonic() - t0),
             lambda a: closed and a.seconds < 6)


def connection_cases(c: Catalogue) -> None:
    before = threads_of(c.edge.proc.pid)
    idle = [c.connect(src=c.attacker()) for _ in range(200)]
    c.t.bulk += 200
    try:
        events, ids = c.events(1)
        a = c.exchange(request("POST", BATCH, json.dumps(events).encode()), src=GATEWAY)
        grown = threads_of(c.edge.proc.pid) - before
    finally:
        for s in idle:
            s.close()
    c.expect(f"200 idle connections (cap {LIMITS['max_connections']}), then a batch",
             a, lambda a: a.status == 200 and grown <= 4, ids)
    busy: list[socket.socket] = []
    answer = Answer(None)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and answer.status != 503:
            busy = [s for s in busy if _open(s)]
            while len(busy) < LIMITS["max_connections"]:
                s = c.connect(src=c.attacker())
                s.sendall(b"POST ")  # a head under way: busy, not evictable
                busy.append(s)
            answer = c.exchange(request("GET", HEALTH, token=None, length=[]))
    finally:
        for s in busy:
            s.close()
    c.expect("every connection busy in a request, one more", answer,
             lambda a: a.status == 503 and "too many connections" in a.body["error"])


def _open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        alive = s.recv(1) != b""
    except BlockingIOError:
        alive = True
    except OSError:
        alive = False
    s.setblocking(True)
    if not alive:
        s.close()
    return alive


def tls_cases(c: Catalogue) -> None:
    silent = socket.create_connection(("127.0.0.1", c.tls_port), timeout=10, source_address=(c.attacker(), 0))
    c.t.connections += 1
    try:
        events, ids = c.events(1)
        a = c.exchange(request("POST", BATCH, json.dumps(events).encode()), src=GATEWAY, tls=True)
        c.expect("HTTPS batch while a TCP connection sends no ClientHello", a,
                 lambda a: a.status == 200 and a.seconds < 3, ids)
    finally:
        silent.close()
    with socket.create_connection(("127.0.0.1", c.tls_port), timeout=10, source_address=(c.attacker(), 0)) as s:
        c.t.connections += 1
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")  # plain HTTP to the TLS port
        try:
            s.recv(4096)
        except OSError:
            pass
        c.expect("plain HTTP to the TLS port", Answer(None, seconds=time.monotonic() - t0), lambda a: a.seconds < 6)
    events, ids = c.events(1)
    c.expect("HTTPS, Content-Length -1", c.exchange(
        request("POST", BATCH, json.dumps(events).encode(), length=["-1"]), tls=True), _status(400), ids)
    c.expect("HTTPS, 1,000-level nested JSON", c.exchange(
        request("POST", BATCH, b"[" * 1000 + b"]" * 1000), tls=True), _quarantined_with("nested too deeply"))
    c.canary("TLS cases", tls=True)


def token_cases(c: Catalogue) -> None:
    who = c.attacker()
    n = LIMITS["auth_max_failures"]
    for i in range(n):
        events, ids = c.events(1)
        c.expect(f"wrong token #{i + 1}", c.exchange(request("POST", BATCH, json.dumps(events).encode(), token=GUESS),
                                                       src=who), _status(401), ids)
    events, ids = c.events(1)
    c.expect("wrong token past the limit", c.exchange(request("POST", BATCH, json.dumps(events).encode(), token=GUESS),
                                                       src=who), _status(429), ids)
    events, ids = c.events(1)
    c.expect("the right token from the blocked address", c.exchange(
        request("POST", BATCH, json.dumps(events).encode()), src=who), _status(429), ids)
    other = c.attacker()
    events, ids = c.events(1)
    c.expect("wrong token in X-Edge-Token", c.exchange(
        request("POST", BATCH, json.dumps(events).encode(), token=None, extra=[f"X-Edge-Token: {GUESS}"]), src=other),
        _status(401), ids)
    c.expect("no token on diagnostics", c.exchange(request("GET", "/system/zerobus/diagnostics", token=None, length=[]),
                                                   src=other), _status(401))
    c.expect("Basic instead of Bearer", c.exchange(request("GET", "/system/zerobus/diagnostics", token=None, length=[],
                                                           extra=[f"Authorization: Basic {GUESS}"]), src=other),
             _status(401))


def spray_case(c: Catalogue) -> None:
    """Wrong tokens from more addresses than the throttle's table holds: newcomers are blocked together,
    the gateway (it presented the right token before) is not."""
    t0 = time.monotonic()
    answers = Counter(c.exchange(request("GET", "/system/zerobus/diagnostics", token=GUESS, length=[])).status
                      for _ in range(SPRAY))
    c.t.statuses.update(answers)
    c.t.bulk += SPRAY
    newcomer = c.exchange(request("GET", "/system/zerobus/diagnostics", length=[]))
    name = f"wrong tokens from {SPRAY} addresses, then the right one from a new address"
    c.expect(name, Answer(newcomer.status, newcomer.body, seconds=time.monotonic() - t0),
             lambda a: a.status == 429 and answers[429] > 0)


CASES = (body_cases, length_cases, head_cases, slow_cases, connection_cases, tls_cases, token_cases)


# --- the fuzz corpus

_LINES = st.lists(st.one_of(
    st.text(max_size=40),
    st.sampled_from(["Content-Length: -1", "Content-Length: 5", "Content-Length: 5, 5", "Content-Length: 99999999999999999999",
                     "Transfer-Encoding: chunked", " folded", "Host: a", "Connection: close", "Expect: 100-continue",
                     "Authorization: Bearer x", f"Authorization: Bearer {TOKEN}", f"X-Edge-Token: {TOKEN}"]),
), max_size=5)
_FIRST = st.sampled_from([f"POST {BATCH} HTTP/1.1", f"POST {SINGLE} HTTP/1.1", f"GET {HEALTH} HTTP/1.0",
                          "GET /system/zerobus/diagnostics HTTP/1.1", "BREW /pot HTCPCP/1.0", ""])
_RAW = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda first, lines, body: ("\r\n".join([first, *lines]) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body,
              _FIRST, _LINES, st.one_of(st.binary(max_size=60), json_texts())),
)
_ELEMENT = st.one_of(json_values.map(json.dumps), json_texts().map(lambda b: b.decode("utf-8", "replace")),
                     st.sampled_from([999, 1000, 5000]).map(nested), st.just("VALID"))


def fuzz(c: Catalogue, examples: int, seed: int | None) -> None:
    def fire_raw(data: bytes) -> None:
        c.t.fuzz += 1
        a = c.exchange(data)
        c.t.statuses[a.status] += 1
        if a.status == 500:  # any other status, or a close, is an answer; 500 is a bug caught by the server
            c.t.unexpected.append(f"fuzz raw {data[:80]!r}: {a.status} {a.body}")
        c.canary(f"fuzz raw {data[:80]!r}")

    def fire_batch(elements: list[str], single: bool) -> None:
        c.t.fuzz += 1
        parts, ids = [], []
        for e in elements[:1] if single else elements:
            if e == "VALID":
                events, new = c.events(1)
                parts.append(json.dumps(events[0]))
                ids += new
            else:
                parts.append(e)
        raw = (parts[0] if single else "[" + ", ".join(parts) + "]").encode()
        a = c.exchange(request("POST", SINGLE if single else BATCH, raw))
        c.t.statuses[a.status] += 1
        for i in ids:
            c.origin[i] = f"fuzz batch ({a.status} {a.body}): {raw[:400]!r}"
        if a.status == 200:
            c.t.answered_200.update(ids)
        else:
            c.pending.extend(ids)
            if a.status != 413:
                c.t.unexpected.append(f"fuzz batch {raw[:80]!r}: {a.status} {a.body}")
        c.canary(f"fuzz batch {raw[:80]!r}")

    budget = settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))

    @budget
    @given(st.one_of(_RAW.map(lambda d: ("raw", d)),
                     st.tuples(st.lists(_ELEMENT, min_size=1, max_size=6), st.booleans()).map(lambda x: ("batch", x))))
    def one(item) -> None:
        kind, arg = item
        if kind == "raw":
            fire_raw(arg)
        else:
            fire_batch(*arg)

    if seed is not None:
        one = __import__("hypothesis").seed(seed)(one)
    one()


def run(tmp: Path, *, fuzz_examples: int = 200, seed: int | None = None, out=sys.stdout, verbose: bool = False) -> dict:
    c = Catalogue(tmp, verbose)
    c.edge.start()
    t0 = time.monotonic()
    try:
        c.canary("start")
        for case in CASES:
            case(c)
        catalogue_s = time.monotonic() - t0
        fuzz(c, fuzz_examples, seed)
        spray_case(c)  # last: it leaves every new address blocked for auth_lockout
        if c.pending:
            c.canary("the end")
    finally:
        c.edge.stop()
    counts = c.account()
    counts["origin"] = {i: c.origin.get(i, "?") for i in counts["lost"] + counts["duplicates"]
                        + counts["answered_200_missing"]}
    counts.update(cases=c.t.cases, bulk=c.t.bulk, connections=c.t.connections, fuzz=c.t.fuzz, crashes=c.t.crashes,
                  unexpected=c.t.unexpected, statuses=dict(c.t.statuses), seconds=round(time.monotonic() - t0, 1),
                  catalogue_seconds=round(catalogue_s, 1))
    report(counts, out)
    return counts


def report(k: dict, out) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"hostile inputs tried: {k['cases'] + k['bulk'] + k['fuzz']} ({k['cases']} catalogue cases firing "
      f"{k['cases'] + k['bulk']} requests or connections, {k['fuzz']} fuzz inputs; {k['connections']} connections "
      f"opened in all, the canaries' included) in {k['seconds']} s")
    answers = sorted(k["statuses"].items(), key=lambda x: x[0] or 0)
    p("answers: " + ", ".join(f"{s or 'closed'}: {n}" for s, n in answers))
    p(f"crashes (process exited, or no canary taken within {CANARY_DEADLINE:g} s): {len(k['crashes'])}")
    for line in k["crashes"]:
        p(f"  {line}")
    p(f"unexpected answers: {len(k['unexpected'])}")
    for line in k["unexpected"]:
        p(f"  {line}")
    p(f"valid readings sent: {k['sent']}; in the spool: {k['stored']}; quarantined with a reason: {k['quarantined']}; "
      f"lost without a marker: {len(k['lost'])}; answered 200 but missing: {len(k['answered_200_missing'])}; "
      f"stored twice: {len(k['duplicates'])}")
    for what in ("lost", "answered_200_missing", "duplicates"):
        for i in k[what]:
            p(f"  {what}: reading {i}, sent by {k['origin'][i]}")
    p(f"spool: quarantine rows {k['quarantine_rows']}, loss markers {k['loss_markers']}, dropped {k['dropped']}, "
      f"side dropped {k['side_dropped']}")
    p(f"log: tracebacks {k['tracebacks']}, token or guessed token {k['secrets_in_log']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fuzz", type=int, default=1000, help="fuzz inputs after the catalogue (default 1000)")
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: derandomized, the same every run)")
    ap.add_argument("-v", "--verbose", action="store_true", help="a line per catalogue case")
    ap.add_argument("--keep", help="run in this directory and keep it (spool, log)")
    args = ap.parse_args(argv)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        k = run(Path(args.keep), fuzz_examples=args.fuzz, seed=args.seed, verbose=args.verbose)
    else:
        with tempfile.TemporaryDirectory(prefix="http-catalogue-") as tmp:
            k = run(Path(tmp), fuzz_examples=args.fuzz, seed=args.seed, verbose=args.verbose)
    bad = k["crashes"] or k["unexpected"] or k["lost"] or k["answered_200_missing"] or k["duplicates"] \
        or k["tracebacks"] or k["secrets_in_log"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
