"""The forwarder's batch framer is byte-identical to edge.encode.frame."""

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.encode import appliance_prefix, decode, encode_reading, frame
from edge.forward import Framer

PREFIX = appliance_prefix("plant-7/dmz")


def test_consecutive_runs_across_block_and_length_boundaries():
    body = encode_reading(source="s", protocol="p", point="x", value=1.5)
    for start in (0, 1, 100, 16_000, 2_097_100, (1 << 35) - 50, (1 << 62) - 10):
        rows = [(s, body) for s in range(start, start + 300)]
        assert Framer(PREFIX).frame_rows(rows) == [frame(PREFIX, s, b) for s, b in rows]
    msg = decode(Framer(PREFIX).frame_rows([(300, body)])[0])
    assert (msg.appliance_id, msg.seq, msg.point) == ("plant-7/dmz", 300, "x")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 62)), st.integers(1, 700))
def test_contiguous_runs_anywhere(start, n):
    body = b"\x22\x01x"
    rows = [(s, body + bytes([s & 0xFF])) for s in range(start, start + n)]
    assert Framer(PREFIX).frame_rows(rows) == [frame(PREFIX, s, b) for s, b in rows]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, (1 << 63) - 1), max_size=50, unique=True), st.binary(max_size=20))
def test_any_increasing_rows_with_gaps(seqs, body):
    rows = [(s, body) for s in sorted(seqs)]  # as the spool's peek returns them
    f = Framer(PREFIX)
    assert f.frame_rows([]) == []
    assert f.frame_rows(rows) == [frame(PREFIX, s, b) for s, b in rows]
    assert f.frame_rows(rows) == [frame(PREFIX, s, b) for s, b in rows]  # the cached block is reused correctly
