"""Hypothesis state machine: append / peek / ack / dead_letter / reopen against a plain model."""

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.encode import decode
from edge.spool import Spool

from .conftest import BASE_TS, accounting, body


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-sm-"))
        self.path = self.dir / "spool.db"
        self.spool = self._open()
        self.next_seq = 1
        self.delivered = 0
        self.rows: dict[int, tuple] = {}  # seq -> ("r", body) | ("m", to_seq, reason)
        self.counter = 0

    def _open(self):
        return Spool.open(self.path, appliance_id="sm", max_bytes=1 << 30, min_free_bytes=0)

    def teardown(self):
        self.spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(n=st.integers(1, 40))
    def append(self, n):
        batch = []
        for _ in range(n):
            batch.append((BASE_TS + self.counter, body(self.counter)))
            self.counter += 1
        r = self.spool.append(batch)
        assert (r.first_seq, r.last_seq) == (self.next_seq, self.next_seq + n - 1)
        for i, (_ts, b) in enumerate(batch):
            self.rows[self.next_seq + i] = ("r", b)
        self.next_seq += n

    @rule(after=st.integers(-5, 400), n=st.integers(1, 50))
    def peek(self, after, n):
        got = self.spool.peek(after, n)
        want = sorted(s for s in self.rows if s > after)[:n]
        assert [s for s, _ in got] == want
        for seq, raw in got:
            row = self.rows[seq]
            if row[0] == "r":
                assert raw == row[1]
            else:
                msg = decode(raw)
                assert (msg.kind, msg.loss_from_seq, msg.loss_to_seq, msg.loss_reason) == ("loss", seq, *row[1:])

    @rule(data=st.data())
    def ack(self, data):
        upto = data.draw(st.integers(0, self.next_seq - 1))
        self.spool.ack(upto)
        if upto > self.delivered:
            new = upto
            for seq in [s for s in self.rows if s <= upto]:
                if self.rows[seq][0] == "m":
                    new = max(new, self.rows[seq][1])
                del self.rows[seq]
            self.delivered = new

    @precondition(lambda self: self.rows)
    @rule(data=st.data())
    def dead_letter(self, data):
        seq = data.draw(st.sampled_from(sorted(self.rows)))
        self.spool.dead_letter(seq, "rejected")
        if self.rows[seq][0] == "r":
            self.rows[seq] = ("m", seq, "dead_letter")
        else:
            del self.rows[seq]  # a rejected marker leaves (with an alarm)

    @rule()
    def reopen(self):
        self.spool.close()
        self.spool = self._open()

    @invariant()
    def counters_match(self):
        st_ = self.spool.stats()
        assert (st_["next_seq"], st_["delivered_seq"], st_["depth_rows"]) == (
            self.next_seq, self.delivered, len(self.rows))
        if not self.spool.alarms():
            accounting(self.path)  # contiguous until a rejected marker punched a (reported) hole


SpoolMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestSpoolMachine = SpoolMachine.TestCase
