"""Hypothesis state machine over a small budget: drops, markers, protection, expiry, dead letters, quarantine.

No model of which rows a drop picks; instead the invariants every policy must keep:
every seq is a reading with its original body or covered by a marker, the in-flight
window is never dropped, counters match the table, and every appended reading is
either still there, delivered, dead-lettered or counted as dropped.
"""

import shutil
import tempfile
import time
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from edge.budget import ROW_OVERHEAD
from edge.spool import Spool, SpoolFull

from .conftest import accounting, body

ROW = len(body(0)) + ROW_OVERHEAD


class PolicyMachine(RuleBasedStateMachine):
    @initialize(policy=st.sampled_from(["block", "drop_oldest", "drop_newest"]), rows=st.integers(5, 40))
    def setup(self, policy, rows):
        self.dir = Path(tempfile.mkdtemp(prefix="spool-pm-"))
        self.path = self.dir / "spool.db"
        self.kw = dict(appliance_id="pm", max_bytes=rows * ROW, when_full=policy, max_age_s=3600, min_free_bytes=0)
        self.spool = Spool.open(self.path, **self.kw)
        self.bodies: dict[int, bytes] = {}  # every reading ever stored, by seq
        self.must_keep: set[int] = set()
        self.protected = 0
        self.delivered_readings = 0
        self.dead = 0
        self.counter = 0

    def teardown(self):
        if hasattr(self, "spool"):
            self.spool.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def present(self) -> dict[int, bytes]:
        return accounting(self.path)["readings"]

    @rule(n=st.integers(1, 15), old=st.booleans())
    def append(self, n, old):
        now = time.time_ns() // 1000
        ts = now - 7200_000_000 if old else now
        batch = [(ts + i, body(self.counter + i)) for i in range(n)]
        self.counter += n
        try:
            r = self.spool.append(batch)
        except SpoolFull:
            assert self.kw["when_full"] == "block"
            return
        if r.stored:
            for i, (_ts, b) in enumerate(batch):
                self.bodies[r.first_seq + i] = b

    @rule(data=st.data())
    def ack(self, data):
        st_ = self.spool.stats()
        upto = data.draw(st.integers(st_["delivered_seq"], st_["next_seq"] - 1))
        if upto > st_["delivered_seq"]:
            self.delivered_readings += sum(1 for s in self.present() if s <= upto)
        self.spool.ack(upto)

    @rule(data=st.data())
    def protect(self, data):
        st_ = self.spool.stats()
        p = data.draw(st.integers(max(self.protected, st_["delivered_seq"]), st_["next_seq"] - 1))
        self.spool.set_protected(p)
        self.protected = p
        self.must_keep |= {s for s in self.present() if s <= p}

    @precondition(lambda self: hasattr(self, "spool"))
    @rule(data=st.data())
    def dead_letter(self, data):
        present = sorted(self.present())
        if not present:
            return
        seq = data.draw(st.sampled_from(present))
        self.spool.dead_letter(seq, "rejected")
        self.dead += 1
        self.must_keep.discard(seq)

    @precondition(lambda self: hasattr(self, "spool"))
    @rule(size=st.integers(0, 3000))
    def quarantine(self, size):
        self.spool.quarantine("src", "unparseable", bytes(size), {"bytes": size})

    @rule()
    def expire(self):
        self.spool.expire()

    @rule()
    def reopen(self):
        self.spool.close()
        self.spool = Spool.open(self.path, **self.kw)
        self.spool.set_protected(self.protected)  # the forwarder re-announces its window

    @invariant()
    def holds(self):
        if not hasattr(self, "spool"):
            return
        acc = accounting(self.path)
        present, stats = acc["readings"], acc["stats"]
        for seq, raw in present.items():
            assert raw == self.bodies[seq]
        kept = {s for s in self.must_keep if s > stats["delivered_seq"]}
        assert kept <= set(present), f"protected rows dropped: {sorted(kept - set(present))}"
        stored_readings = len(self.bodies)
        dropped_newest = stats["dropped"].get("drop_newest", 0)
        assert stats["appended_total"] == stored_readings + dropped_newest
        assert stored_readings == len(present) + self.delivered_readings + self.dead + (
            stats["dropped_total"] - dropped_newest)
        actual = self.spool._conn.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM readings").fetchone()
        assert stats["depth_bytes"] == actual[1] + actual[0] * ROW_OVERHEAD
        if self.kw["when_full"] == "block":
            assert stats["dropped_total"] == stats["dropped"].get("expired", 0)
        # quarantine and dead letters: counted exactly, within their own cap, never more than the budget
        side = self.spool._conn.execute(
            f"SELECT (SELECT coalesce(sum(length(raw)), 0) + {ROW_OVERHEAD} * count(*) FROM quarantine) + "
            f"(SELECT coalesce(sum(length(body)), 0) + {ROW_OVERHEAD} * count(*) FROM dead_letters)").fetchone()[0]
        assert stats["side_bytes"] == side <= stats["side_budget_bytes"] < self.kw["max_bytes"]


PolicyMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestPolicyMachine = PolicyMachine.TestCase
