"""The watermark only moves over a contiguous prefix of acked batches, across several streams.

Here the SDK is replaced at the outermost edge by a scripted one, so that one stream
can be held while another acks everything: the order of acks across streams is
otherwise not controllable from the emulator.
"""

from __future__ import annotations

import threading
import time

from edge.config import ZerobusConfig
from edge.configtypes import Duration
from edge.forward import Forwarder
from tests.forwarder.conftest import APP, Rig


class ScriptedStream:
    def __init__(self, sdk, index, callback):
        self.sdk, self.index, self.cb = sdk, index, callback
        self.offsets: list[tuple[int, list[bytes]]] = []
        self.next = 0

    def ingest_records_offset(self, records):
        off = self.next
        self.next += 1
        self.offsets.append((off, records))
        self.sdk.sent.append((self.index, off, len(records)))
        if not self.sdk.held(self.index):
            self.cb.on_ack(off)
        return off

    def release(self):
        for off, _ in self.offsets:
            self.cb.on_ack(off)

    def flush(self):
        return None

    def close(self):
        return None


class ScriptedSdk:
    def __init__(self, hold: set[int]):
        self.hold = set(hold)
        self.streams: list[ScriptedStream] = []
        self.sent: list = []
        self.lock = threading.Lock()

    def held(self, index):
        return index in self.hold

    def create_stream(self, *, client_id, client_secret, table_properties, options):
        with self.lock:
            s = ScriptedStream(self, len(self.streams), options.ack_callback)
            self.streams.append(s)
            return s


class RecordingWriter:
    """The real writer; records every ack the forwarder asks for."""

    def __init__(self, writer):
        self._w = writer
        self.acks: list[int] = []

    def ack(self, seq):
        self.acks.append(seq)
        return self._w.ack(seq)

    def __getattr__(self, name):
        return getattr(self._w, name)


def test_watermark_waits_for_the_slowest_stream(tmp_path):
    rig = Rig(tmp_path, emu=None)
    try:
        res = rig.append(2000)
        sdk = ScriptedSdk(hold={0})
        writer = RecordingWriter(rig.writer)
        cfg = ZerobusConfig(streams=2, batch_max_records=100, max_inflight_batches=3, ack_timeout=Duration(30))
        fwd = Forwarder(cfg, appliance_id=APP, spool_path=str(rig.path), writer=writer, sdk_factory=lambda c: sdk)
        fwd.pace.streams = 2  # both from the start (the pace would open the second only when quota-bound)
        fwd.start()
        deadline = time.monotonic() + 10
        while len(sdk.sent) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        # Stream 1 acked its batches (2nd, 4th, 6th); stream 0 holds the 1st: nothing may be acked.
        assert len(sdk.sent) == 6  # the window (2 streams x 3) is full and no more is sent
        assert [s[0] for s in sdk.sent] == [0, 1, 0, 1, 0, 1]  # round-robin by seq range
        assert writer.acks == []
        assert rig.watermark() == res.first_seq - 1
        st = fwd.state()
        assert st["batches_in_flight"] == 6 and st["state"] == "streaming"
        sdk.hold.clear()
        sdk.streams[0].release()
        rig.wait_delivered(res.last_seq)
        # Strictly increasing, always on a batch boundary (acks may be coalesced), ending at the last seq.
        assert writer.acks == sorted(set(writer.acks))
        assert all((a - (res.first_seq - 1)) % 100 == 0 for a in writer.acks), writer.acks
        assert writer.acks[-1] == res.last_seq
        assert fwd.stop(5)
    finally:
        rig.fwd = None
        rig.close()


def test_rows_are_protected_before_they_are_read_and_sent(tmp_path):
    """drop_oldest must not be able to touch a row between our peek and its ack."""
    from edge.encode import decode

    rig = Rig(tmp_path, emu=None)
    try:
        res = rig.append(1000)
        applied: list[int] = []  # bounds the writer has applied, in order
        violations: list = []

        class W(RecordingWriter):
            def set_protected(self, seq):
                fut = self._w.set_protected(seq)
                fut.add_done_callback(lambda f: applied.append(seq))
                return fut

        sdk = ScriptedSdk(hold=set())
        real_ingest = ScriptedStream.ingest_records_offset

        def checked_ingest(stream, records):
            last = decode(records[-1]).seq
            if not applied or applied[-1] < last:
                violations.append((last, list(applied)))
            return real_ingest(stream, records)

        ScriptedStream.ingest_records_offset = checked_ingest
        try:
            writer = W(rig.writer)
            cfg = ZerobusConfig(streams=1, batch_max_records=100, max_inflight_batches=4, ack_timeout=Duration(30))
            fwd = Forwarder(cfg, appliance_id=APP, spool_path=str(rig.path), writer=writer, sdk_factory=lambda c: sdk)
            fwd.start()
            rig.wait_delivered(res.last_seq)
            assert fwd.stop(5)
        finally:
            ScriptedStream.ingest_records_offset = real_ingest
        assert len(sdk.sent) == 10
        assert violations == []
        # The bound runs at most about one batch ahead of what was read.
        assert max(applied) <= res.last_seq + 2 * 100
    finally:
        rig.fwd = None
        rig.close()
