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
