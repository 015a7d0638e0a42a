"""Spool test helpers: real SQLite files in tmp dirs, bodies made by edge.encode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from edge.encode import decode, encode_reading
from edge.spool import Spool, SpoolReader

BASE_TS = 1_700_000_000_000_000


def body(i: int, pad: int = 0) -> bytes:
    return encode_reading(source="t", protocol="synthetic", point=f"p{i}", value=i, unit="x" * pad)


def items(n: int, start: int = 0, ts: int = BASE_TS, pad: int = 0) -> list[tuple[int, bytes]]:
    return [(ts + start + i, body(start + i, pad)) for i in range(n)]


def accounting(path: Path) -> dict:
    """Walk the undelivered table: every seq delivered_seq+1 .. next_seq-1 must be a reading or
    covered by exactly one marker stored at its first seq. Returns readings and markers found."""
    with SpoolReader(path) as r:
        st = r.stats()
        rows = r.peek(st["delivered_seq"], 10**9)
    expected = st["delivered_seq"] + 1
    readings, markers = {}, []
    for seq, raw in rows:
        assert seq == expected, f"gap: expected seq {expected}, found {seq}"
        msg = decode(raw)
        if msg.kind == "loss":
            assert msg.loss_from_seq == seq and msg.loss_to_seq >= seq
            markers.append((msg.loss_from_seq, msg.loss_to_seq, msg.loss_reason))
            expected = msg.loss_to_seq + 1
        else:
            assert msg.kind == "reading"
            readings[seq] = raw
            expected = seq + 1
    assert expected == st["next_seq"], f"table ends at {expected - 1}, next_seq is {st['next_seq']}"
    assert st["depth_rows"] == len(rows)
    return {"readings": readings, "markers": markers, "stats": st}


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool.db"


@pytest.fixture
def open_spool(spool_path: Path):
    opened: list[Spool] = []

    def _open(**kw) -> Spool:
        kw.setdefault("appliance_id", "app-1")
        kw.setdefault("max_bytes", 1 << 30)
        kw.setdefault("min_free_bytes", 0)
        s = Spool.open(kw.pop("path", spool_path), **kw)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        try:
            s.close()
        except Exception:
            pass


def run_crash_child(path: Path, run_id: int, wait: Callable[[subprocess.Popen], list[str]]) -> list[str]:
    """Run tests/spool/crash_child.py on ``path``, SIGKILL it when ``wait(child)`` returns (the
    lines it read), and return every complete line the child printed."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("crash_child.py")), str(path), str(run_id)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        lines = wait(child)
        child.send_signal(signal.SIGKILL)
        lines += child.stdout.read().splitlines(keepends=True)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    # A line cut by the kill has no newline: the child had not finished saying it, so it does not count.
    return [line for line in lines if line.endswith("\n")]
