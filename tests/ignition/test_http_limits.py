"""The pure parts of the http source's limits: request heads, JSON bodies, the token throttle."""

from __future__ import annotations

import json

import pytest

from edge.sources.http.body import TOO_DEEP, BodyError, Unparsed, load
from edge.sources.http.ignition import too_deep
from edge.sources.http.throttle import OVERFLOW, AuthThrottle
from edge.sources.http.wire import HttpError, parse_head


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_a_plain_request_head():
    req = parse_head(head("POST /a/b?x=1 HTTP/1.1", "Host: e", "Content-Length: 12", "X-Edge-Token:  t  "))
    assert (req.method, req.path, req.content_length, req.keep_alive) == ("POST", "/a/b", 12, True)
    assert req.headers["x-edge-token"] == "t"
    assert parse_head(head("GET / HTTP/1.0")).keep_alive is False
    assert parse_head(head("GET / HTTP/1.1", "Connection: close")).keep_alive is False


@pytest.mark.parametrize("lines,status", [
    (("POST / HTTP/1.1", "Content-Length: -1"), 400),
    (("POST / HTTP/1.1", "Content-Length: 1", "Content-Length: 1"), 400),
    (("POST / HTTP/1.1", "Content-Length: 1, 1"), 400),
    (("POST / HTTP/1.1", "Content-Length: 1e3"), 400),
    (("POST / HTTP/1.1", "Content-Length: 9999999999999999999"), 400),
    (("POST / HTTP/1.1", "Transfer-Encoding: chunked"), 411),
    (("POST / HTTP/1.1", "Authorization: a", "Authorization: b"), 400),
    (("POST / HTTP/1.1", "Host: a", " folded"), 400),
    (("POST / HTTP/1.1", "Bad Name: x"), 400),
    (("POST / HTTP/1.1", "X: a\x00b"), 400),
    (("POST / HTTP/2.0",), 505),
    (("POST  / HTTP/1.1",), 400),
    (("POST http://x/ HTTP/1.1",), 400),
    (("GET / HTTP/1.1",) + tuple(f"X-{i}: v" for i in range(101)), 431),
])
def test_ambiguous_heads_are_refused(lines, status):
    with pytest.raises(HttpError) as err:
        parse_head(head(*lines))
    assert err.value.status == status


def test_body_loads_plain_json_and_refuses_the_rest_with_a_reason():
    assert load(b'[{"a": 1}]') == [{"a": 1}]
    for bad in (b"", b"[1,,]", b"\xff", b"[" * 100_000, b"{" + b'"a":{' * 3000 + b"}" * 3000, b"[" + b"9" * 5000 + b"]"):
        with pytest.raises(BodyError):
            load(bad)


def test_a_too_deep_element_is_kept_apart_and_the_rest_parsed():
    deep = "[" * 3000 + '"]"' + "]" * 3000
    doc = load(f' [ {{"a": 1}} , {deep} , "x\\"[" ] '.encode())
    assert doc[0] == {"a": 1} and doc[2] == 'x"['
    assert doc[1] == Unparsed(TOO_DEEP, deep)
    for bad in (f"[{deep}", f"[{deep} 1]", f"[{deep}] x", "[" + "[" * 3000):
        with pytest.raises(BodyError):
            load(bad.encode())


def test_too_deep_counts_nesting_levels():
    assert not too_deep([[1]], 2) and too_deep([[[1]]], 2)
    assert too_deep({"a": [{"b": [1]}]}, 3) and not too_deep({"a": [{"b": 1}]}, 3)
    nested: list = []
    for _ in range(100_000):  # iterative: no RecursionError however deep
        nested = [nested]
    assert too_deep(nested, 32)


def test_throttle_blocks_after_the_limit_and_lets_go_after_the_lockout():
    t = AuthThrottle(max_failures=3, window=60, lockout=30)
    assert [t.failed("a", 0)[1] for _ in range(3)] == [False, False, True]
    assert t.blocked_for("a", 1) == 29 and t.blocked_for("b", 1) == 0
    assert t.blocked_for("a", 31) == 0


def test_throttle_memory_is_bounded_and_a_spray_shares_one_entry():
    t = AuthThrottle(max_failures=3, window=60, lockout=30, max_addresses=100)
    for i in range(10_000):
        t.failed(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert len(t) <= 100
    assert t.blocked_for("192.0.2.1", 2.0) > 0  # a new address while full lands in the blocked overflow entry
    assert t.blocked_for(OVERFLOW, 2.0) > 0
    later = 200.0  # windows over: old entries make room again
    t.failed("192.0.2.7", later)
    assert t.blocked_for("192.0.2.7", later) == 0 and "192.0.2.7" in t._table


def test_a_spray_does_not_lock_out_an_address_that_presented_the_right_token():
    t = AuthThrottle(max_failures=3, window=60, lockout=30, max_addresses=100, max_known=2)
    t.succeeded("gateway")
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert t.blocked_for("newcomer", 2.0) > 0 and t.blocked_for("gateway", 2.0) == 0
    for _ in range(3):  # its own failures still count
        t.failed("gateway", 3.0)
    assert t.blocked_for("gateway", 3.0) > 0
    t.succeeded("a")
    t.succeeded("b")  # the known set is bounded: the oldest goes
    assert "gateway" not in t._known and len(t._known) == 2


def test_rejected_event_bytes_never_raise():
    from edge.sources.http.collector import _event_bytes

    nested: list = []
    for _ in range(5000):
        nested = [nested]
    assert _event_bytes(nested).startswith(b"<event could not")
    assert _event_bytes(Unparsed("r", "[[[")) == b"[[["
    assert json.loads(_event_bytes({"a": 1})) == {"a": 1}


def test_unusable_tls_files_are_reported_as_tls_error(tmp_path):
    import asyncio
    import ssl

    from edge.sources.base import SourceContext, SourceStatus
    from edge.sources.http.collector import Source
    from edge.sources.http.config import Config

    bad = tmp_path / "edge.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    cfg = Config(name="gw", type="http", token="t" * 20, listen="127.0.0.1:0", tls_cert=str(bad), tls_key=str(bad))
    status = SourceStatus("gw", "http", None)
    ctx = SourceContext(appliance_id="a", data_dir=tmp_path, emit=None, submit=None, quarantine=None,
                        wait_for_space=None, status=status)
    with pytest.raises(ssl.SSLError):
        asyncio.run(Source(cfg, ctx).run())
    snap = status.snapshot()
    assert snap["state"] == "tls_error" and "TLS certificate/key unusable" in snap["detail"]


def _source_logging_to(records: list, **cfg):
    import logging

    from edge.sources.base import SourceContext, SourceStatus
    from edge.sources.http.collector import Source
    from edge.sources.http.config import Config

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger("tests.ignition.failed_tokens")
    log.handlers[:] = [Keep()]
    log.propagate = False
    ctx = SourceContext(appliance_id="a", data_dir=".", emit=None, submit=None, quarantine=None,
                        wait_for_space=None, status=SourceStatus("gw", "http", None), log=log)
    return Source(Config(name="gw", type="http", token="right-token-0123456789", **cfg), ctx)


def _attempt(source, peer: str, token: str | None):
    import asyncio

    from edge.sources.http.wire import Request

    headers = {} if token is None else {"x-edge-token": token}
    return asyncio.run(source.app(Request("POST", "/system/zerobus/ingest/batch", "HTTP/1.1", headers, 2,
                                          peer=peer), None))


def test_a_spray_of_failed_tokens_logs_one_line_per_address_then_a_count_a_minute():
    """Every failed token attempt wrote a line (4,200 wrong tokens: 4,200 lines). Now: an address's first
    failure gets its line, the rest of them one summary line with the count per address and minute."""
    import re

    records: list[str] = []
    source = _source_logging_to(records, auth_max_failures=10_000)  # never blocked: every attempt is checked
    peers, guess = ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "guess-XYZZY-0123456789"
    clock = [1000.0]
    source.clock = lambda: clock[0]
    for i in range(200):  # 200 failures from 3 addresses over 150 s
        clock[0] = 1000.0 + i * 0.75
        assert _attempt(source, peers[i % 3], guess if i % 2 else None).status == 401
    assert len(records) <= 3 * (1 + 3), records  # a first line, then at most one line a minute, per address
    for peer in peers:
        assert sum(peer in r and "refused" in r for r in records) == 1, records
    clock[0] += 60
    source.log_summaries()  # what no later failure brought
    assert source.log_summaries() is None and len(records) <= 3 * (1 + 4)
    counted = sum(int(m.group(1)) for r in records if (m := re.search(r"(\d+) more failed token attempts", r)))
    assert counted + 3 == 200, records  # every failure is in a line or a count
    assert not any(guess in r or "right-token" in r for r in records)


def test_fewer_log_lines_do_not_weaken_the_throttle():
    records: list[str] = []
    source = _source_logging_to(records, auth_max_failures=3, auth_lockout=30.0)
    clock = [50.0]
    source.clock = lambda: clock[0]
    assert [_attempt(source, "10.0.0.9", "wrong-0123456789abcdef").status for _ in range(4)] == [401, 401, 401, 429]
    assert _attempt(source, "10.0.0.9", "right-token-0123456789").status == 429  # blocked: not even checked
    assert sum("refused" in r for r in records) == 1
    assert any("10.0.0.9 blocked for 30 s after 3 failed token attempts" in r for r in records)
    clock[0] += 31
    assert source.throttle.blocked_for("10.0.0.9", clock[0]) == 0  # the lockout is over, as before
