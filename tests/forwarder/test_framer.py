"""The forwarder's batch framer is byte-identical to edge.encode.frame."""

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.encode import appliance_prefix, decode, encode_reading, frame
from edge.forwarder import Framer

PREFIX = appliance_prefix("plant-7/dmz")


def test_consecutive_runs_across_block_and_length_boundaries():
    body = encode_reading(source="s", protocol="p", point="x", value=1.5)
    for start in (0, 1, 100, 16_000, 2_097_100, (1 << 35) - 50, (1 << 62) - 10):
        rows = [(s, body) for s in range(start, start + 300)]
        assert Framer(PREFIX).frame_rows(rows) == [frame(PREFIX, s, b) for s, b in rows]
    msg = decode(Framer(PREFIX).frame_rows([(300, body)])[0])
    assert (msg.appliance_id, msg.seq, msg.point) == ("plant-7/dmz", 300, "x")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, (1 << 63) - 1), st.binary(max_size=20)), max_size=50))
def test_any_rows_any_order(rows):
    f = Framer(PREFIX)
    assert f.frame_rows(rows) == [frame(PREFIX, s, b) for s, b in rows]
    assert f.frame_rows(rows) == [frame(PREFIX, s, b) for s, b in rows]  # the cached block is reused correctly
