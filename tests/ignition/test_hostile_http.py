"""Hostile and broken clients against a real `edge run` http source: bounded, answered, nothing half-stored."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from edge.spool import SpoolReader
from edge.tlsgen import ensure_tls

from .catalogue import joined
from .conftest import TOKEN
from .test_http_source import event, spooled

BATCH = "/system/zerobus/ingest/batch"


def raw_request(port: int, data: bytes, *, timeout: float = 10.0, shut_write: bool = False):
    """Send bytes as they are; the response (status, body) or None when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        return read_response(s)


def read_response(s: socket.socket):
    resp = http.client.HTTPResponse(s)
    try:
        resp.begin()
    except (http.client.RemoteDisconnected, ConnectionError):
        return None
    body = resp.read()
    return resp.status, json.loads(body) if body else None, resp


def head(length: str | list[str] | None, *, token: str | None = TOKEN) -> bytes:
    lines = [f"POST {BATCH} HTTP/1.1", "Host: edge", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    for v in ([length] if isinstance(length, str) else length or []):
        lines.append(f"Content-Length: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def quarantined(path) -> list:
    with SpoolReader(path) as r:
        return r.quarantined(100)


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))


# --- JSON nesting

def test_deeply_nested_body_is_quarantined_with_a_status(edge_http):
    edge = edge_http()
    status, body, _ = edge.post_batch(b"[" * 1000 + b"]" * 1000)
    assert status == 200 and body["quarantined"] == 1 and body["accepted"] == 0
    assert "nested too deeply" in body["errors"][0]["reason"]
    assert "Traceback" not in edge.log_tail(20000)
    assert "nested too deeply" in quarantined(edge.spool_path)[0]["reason"]


@pytest.mark.parametrize("depth", [1000, 5000])
def test_valid_events_of_a_batch_with_a_poisoned_element_are_committed(edge_http, depth):
    edge = edge_http()
    deep = "[" * depth + "]" * depth
    raw = f'[{json.dumps(event(0))}, {deep}, {json.dumps(event(2))}, {json.dumps(event(3, value=[[[[1]]]]))}]'.encode()
    status, body, _ = edge.post_batch(raw)
    assert status == 200, body
    assert (body["accepted"], body["quarantined"]) == (3, 1)
    assert body["errors"] == [{"index": 1, "reason": "JSON nested too deeply to parse"}]
    assert sorted(r.value_int for r in spooled(edge.spool_path) if r.HasField("value_int")) == [0, 2]
    assert quarantined(edge.spool_path)[0]["raw"].startswith(b"[[[[")


def test_deeply_nested_single_event_is_quarantined_as_it_came(edge_http):
    edge = edge_http()
    raw = b"[" * 3000 + b"]" * 3000
    status, body, _ = edge.request("POST", "/system/zerobus/ingest", raw,
                                   {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status == 200 and body["quarantined"] == 1 and "nested too deeply" in body["errors"][0]["reason"]
    assert quarantined(edge.spool_path)[0]["raw"] == raw


def test_event_value_nested_past_the_limit_is_quarantined(edge_http):
    edge = edge_http(http={"max_json_depth": 8})
    nested: list = [1]
    for _ in range(20):
        nested = [nested]
    status, body, _ = edge.post_batch([event(0), event(1, value=nested, dataType="Dataset")])
    assert status == 200 and (body["accepted"], body["quarantined"]) == (1, 1)
    assert "nested deeper than 8 levels" in body["errors"][0]["reason"]


def test_integer_past_the_digit_limit_is_quarantined(edge_http):
    edge = edge_http()
    status, body, _ = edge.post_batch(b'[{"tagPath": "a", "value": ' + b"9" * 5000 + b"}]")
    assert status == 200 and body["quarantined"] == 1 and "not valid JSON" in body["errors"][0]["reason"]


def test_an_unparseable_body_is_quarantined_whole_however_large(edge_http):
    edge = edge_http()
    events = [event(i, tagPath=f"Line1/Keep{i}/" + "x" * 200) for i in range(8000)]  # about 3 MB
    raw = json.dumps(events).encode()[:-1] + b", oops]"  # not JSON: the gateway forgets it after the 200
    status, body, _ = edge.post_batch(raw)
    assert status == 200 and body["quarantined"] == 1 and "not valid JSON" in body["errors"][0]["reason"]
    with SpoolReader(edge.spool_path) as r:
        rows = r.quarantined(100)
    assert len(rows) == rows[0]["meta"]["parts"] > 1 and all(q["meta"]["length"] == len(raw) for q in rows)
    assert joined(rows) == [raw]


# --- Content-Length

def test_negative_content_length_is_refused_and_nothing_stored(edge_http):
    edge = edge_http(http={"max_body_bytes": 4096})
    payload = json.dumps([event(i, tagPath="Line1/" + "x" * 200) for i in range(100)]).encode()  # > max_body_bytes
    status, body, _ = raw_request(edge.port, head("-1") + payload, shut_write=True)
    assert status == 400 and "Content-Length" in body["error"]
    assert spooled(edge.spool_path) == []


def test_duplicate_or_non_numeric_content_length_is_refused(edge_http):
    edge = edge_http()
    payload = json.dumps([event(1)]).encode()
    n = str(len(payload))
    for lengths in ([n, n], [n, "5"], ["12abc"], [f"{n}, {n}"], ["+" + n], ["0x10"]):
        status, body, _ = raw_request(edge.port, head(lengths) + payload)
        assert status == 400, (lengths, status)
    assert spooled(edge.spool_path) == []


def test_content_length_larger_than_the_body_times_out_and_commits_nothing(edge_http):
    edge = edge_http(http={"body_timeout": "1s"})
    payload = json.dumps([event(1)]).encode()
    t0 = time.monotonic()
    status, body, _ = raw_request(edge.port, head(str(len(payload) + 10)) + payload, timeout=15)
    assert status == 408 and time.monotonic() - t0 < 10
    # The client gives up and closes its side: the short body is not taken either.
    status, body, _ = raw_request(edge.port, head(str(len(payload) + 10)) + payload, shut_write=True)
    assert status == 400
    assert spooled(edge.spool_path) == []


def test_unauthenticated_post_announcing_a_large_body_is_answered_at_once(edge_http):
    edge = edge_http()
    t0 = time.monotonic()
    status, body, resp = raw_request(edge.port, head("8000000", token=None), timeout=5)
    assert status == 401 and time.monotonic() - t0 < 5
    assert resp.getheader("Connection") == "close"


def test_authenticated_post_announcing_a_body_and_sending_nothing_times_out(edge_http):
    edge = edge_http(http={"body_timeout": "1s"})
    with socket.create_connection(("127.0.0.1", edge.port), timeout=15) as s:
        t0 = time.monotonic()
        s.sendall(head("8000000"))  # under max_body_bytes (8 MiB): the body is awaited, for body_timeout
        status, body, _ = read_response(s)
    assert status == 408 and "Content-Length" in body["error"] and time.monotonic() - t0 < 8
    assert edge.post_batch([event(1)])[0] == 200
    assert len(spooled(edge.spool_path)) == 1


# --- timeouts and the connection cap

def test_a_connection_that_never_sends_is_closed_after_the_idle_timeout(edge_http):
    edge = edge_http(http={"idle_timeout": "1s"})
    with socket.create_connection(("127.0.0.1", edge.port), timeout=15) as s:
        t0 = time.monotonic()
        try:
            closed = s.recv(1) == b""
        except ConnectionError:
            closed = True
        assert closed and time.monotonic() - t0 < 8


def test_headers_sent_a_byte_a_second_are_cut_off(edge_http):
    edge = edge_http(http={"header_timeout": "1s"})
    data = head("2")
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as s:
        t0 = time.monotonic()
        answer = b""
        for b in data:
            try:
                s.sendall(bytes([b]))
            except OSError:
                break
            s.settimeout(0.25)
            try:
                answer = s.recv(4096)
            except TimeoutError:
                continue
            break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - t0 < 6


def test_idle_connections_hold_no_threads_and_do_not_lock_out_a_gateway(edge_http):
    edge = edge_http(http={"max_connections": 20})
    before = threads_of(edge.proc.pid)
    idle = [socket.create_connection(("127.0.0.1", edge.port), timeout=10) for _ in range(200)]
    try:
        assert edge.post_batch([event(1)])[0] == 200  # the longest-idle connection made room
        assert threads_of(edge.proc.pid) <= before + 4
    finally:
        for s in idle:
            s.close()
    assert len(spooled(edge.spool_path)) == 1


def test_connections_busy_in_a_request_are_not_evicted_and_excess_gets_503(edge_http):
    edge = edge_http(http={"max_connections": 3})
    busy: list[socket.socket] = []

    def keep_three_busy() -> None:
        for s in list(busy):  # a connection the server closed was still idle when a probe came: replace it
            s.setblocking(False)
            try:
                gone = s.recv(1) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            s.setblocking(True)
            if gone:
                busy.remove(s)
                s.close()
        while len(busy) < 3:
            s = socket.create_connection(("127.0.0.1", edge.port), timeout=10)
            s.sendall(b"POST ")  # a request head under way: not idle, not evictable
            busy.append(s)

    try:
        deadline = time.monotonic() + 15
        answer = None
        while time.monotonic() < deadline:
            keep_three_busy()
            answer = raw_request(edge.port, b"GET /system/zerobus/health HTTP/1.1\r\nHost: x\r\n\r\n")
            if answer and answer[0] == 503:
                break
        assert answer is not None and answer[0] == 503 and "too many connections" in answer[1]["error"]
    finally:
        for s in busy:
            s.close()


# --- TLS

def test_an_idle_tcp_connection_does_not_block_https(edge_http, tmp_path):
    files = ensure_tls(str(tmp_path / "tls"), ["localhost", "127.0.0.1"])
    edge = edge_http(http={"tls_cert": files.server_cert, "tls_key": files.server_key}, tls_ca=files.ca_cert)
    silent = socket.create_connection(("127.0.0.1", edge.port), timeout=10)  # never sends a ClientHello
    try:
        t0 = time.monotonic()
        status, body, _ = edge.post_batch([event(1)])
        assert status == 200 and body["accepted"] == 1 and time.monotonic() - t0 < 5
    finally:
        silent.close()
    assert len(spooled(edge.spool_path)) == 1


# --- tokens

def test_failed_tokens_are_logged_without_the_token_and_throttled(edge_http):
    edge = edge_http(http={"auth_max_failures": 3, "auth_lockout": "30s"})
    guess = "guess-XYZZY-0123456789"
    statuses = [edge.post_batch([event(i)], token=guess)[0] for i in range(3)]
    assert statuses == [401, 401, 401]
    status, body, resp = edge.post_batch([event(9)], token=guess)
    assert status == 429 and int(resp.getheader("Retry-After")) > 0
    status, _, _ = edge.post_batch([event(10)])  # the right token from a blocked address waits too
    assert status == 429
    assert edge.post_batch([event(11)], token=None)[0] == 429
    log = edge.log_tail(50000)
    # one line for an address's first failure, then a count at most once a minute (test_http_limits.py)
    assert log.count("wrong token in Authorization: Bearer") == 1 and "127.0.0.1" in log
    assert "blocked for 30 s after 3 failed token attempts" in log
    assert guess not in log and TOKEN not in log
    assert spooled(edge.spool_path) == []
