"""Ignition HTTP source: request heads, JSON bodies, event mapping, and a live server fed raw bytes."""

from __future__ import annotations

import asyncio
import json

from hypothesis import example, given
from hypothesis import strategies as st

from edge.sources.http.body import BodyError, load
from edge.sources.http.collector import Source
from edge.sources.http.config import Config
from edge.sources.http.ignition import map_events
from edge.sources.http.server import Limits, Reply, Server
from edge.sources.http.wire import HttpError, parse_head

from .profile import fuzz
from .strategies import json_texts, json_values, nested

_events = st.lists(st.one_of(
    json_values,
    st.fixed_dictionaries({"tagPath": st.text(max_size=30), "timestamp": st.one_of(st.integers(), st.floats())},
                          optional={"value": json_values, "dataType": st.one_of(st.text(max_size=8), json_values),
                                    "quality": json_values, "qualityCode": json_values, "tagProvider": json_values}),
), max_size=5)

_head_lines = st.lists(st.one_of(
    st.text(max_size=40),
    st.sampled_from(["Content-Length: -1", "Content-Length: 5", "Content-Length: 5, 5", "Content-Length: 99999999999999999999",
                     "Transfer-Encoding: chunked", " folded", "Host: a", "Connection: close", "Expect: 100-continue",
                     "Authorization: Bearer x"]),
), max_size=5)


@fuzz
@given(_head_lines, st.sampled_from(["GET / HTTP/1.1", "POST /x HTTP/1.0", "GET / HTTP/2", "BREW /pot HTCPCP/1.0", ""]))
def test_request_heads_parse_or_refuse(lines, first):
    raw = ("\r\n".join([first, *lines]) + "\r\n\r\n").encode("utf-8", "surrogatepass")
    try:
        req = parse_head(raw)
    except HttpError as exc:
        assert 400 <= exc.status < 600 and exc.reason
    else:
        assert req.content_length is None or req.content_length >= 0


@fuzz
@given(st.binary(max_size=300))
def test_request_heads_from_raw_bytes(raw):
    try:
        parse_head(raw + b"\r\n\r\n")
    except HttpError:
        pass


@fuzz
@given(json_texts())
@example(b"[" * 1000 + b"]" * 1000)  # the nested-JSON probe that once crashed the source
@example(b"[" + b"{" * 3000 + b"}" * 3000 + b"]")
@example(b'[{"a": ' + b"9" * 5000 + b"}]")
@example(b"[" + b'"' + b'\\"' * 2000)
def test_bodies_load_or_refuse(raw):
    try:
        load(raw)
    except BodyError as exc:
        assert str(exc)


@fuzz
@given(_events)
def test_every_event_is_mapped_or_rejected(events):
    items, rejected = map_events(events, source="gw", collected_ts=1_700_000_000_000_000)
    assert len(items) + len(rejected) == len(events)
    assert all(r.reason for r in rejected)


_SOURCE = Source(Config(name="gw", type="http", token="fuzz-token-0123456789abcdef", max_batch_events=50), ctx=None)


@fuzz
@given(st.one_of(json_texts(), _events.map(lambda e: json.dumps(e).encode())), st.booleans())
@example(f"[{json.dumps({'tagPath': 'a', 'timestamp': 1763900000000})}, {nested(2000)}]".encode(), False)
def test_the_whole_body_path_answers(raw, single):
    """What the request handler does with a body: a mapping, a quarantine reason or a refusal; never an exception."""
    out = _SOURCE.parse(raw, single=single)
    if isinstance(out, tuple):
        items, rejected, n = out
        assert len(items) + len(rejected) == n
    else:
        assert isinstance(out, (str, Reply)) and out


# --- a live server fed raw bytes: each connection ends with a status line or a close, and the server lives on

async def _app(req, body):
    await body.read()
    return Reply(200, {"ok": True})


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        writer.write_eof()
    except OSError:
        pass
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        return b""
    finally:
        writer.close()


_REQUEST = st.one_of(
    st.binary(max_size=400),
    st.builds(lambda first, lines, body: ("\r\n".join([first, *lines]) + "\r\n\r\n").encode("utf-8", "surrogatepass") + body,
              st.sampled_from(["POST /x HTTP/1.1", "GET / HTTP/1.1", "GET / HTTP/1.0"]), _head_lines, st.binary(max_size=50)),
)


@fuzz
@given(st.lists(_REQUEST, min_size=1, max_size=4))
def test_a_live_server_answers_or_closes_and_survives(requests):
    async def main():
        server = Server(_app, Limits(max_connections=8, idle_timeout=2, header_timeout=1, body_timeout=1))
        port = await server.start("127.0.0.1", 0)
        try:
            for data in requests:
                answer = await _exchange(port, data)
                assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:80]
                assert not answer.startswith(b"HTTP/1.1 500")
            ok = await _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 ")
        finally:
            await server.close()

    asyncio.run(main())
