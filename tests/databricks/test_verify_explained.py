"""`edge verify` lists what explains the missing seqs (loss markers with their reasons) and the
intervals sources lost (rows of kind ``gap``), not only counts.

The table reader is the outermost edge: a SQL warehouse stood in for by SQLite over a table with
the real schema's columns (edge/schema.py), holding the records the appliance frames; the
statements are the ones ``edge verify`` sends."""

from __future__ import annotations

import re
import sqlite3

import pytest

from edge.databricks import WorkspaceError
from edge.encode import appliance_prefix, decode, encode_gap_marker, encode_loss_marker, encode_reading, frame
from edge.schema import columns
from edge.verify import table_report, verify_summary

TABLE = "main.edge.readings"
COLS = [name for name, _type, _req in columns()]


class SqliteWarehouse:
    """Runs ``Sql.run``'s statements on SQLite; a statement SQLite refuses fails as the API's do."""

    def __init__(self, cols=COLS):
        self.conn = sqlite3.connect(":memory:")
        self.cols = cols
        self.conn.execute(f"CREATE TABLE readings ({', '.join(cols)})")
        self.statements: list[str] = []

    def land(self, appliance: str, seq: int, body: bytes, times: int = 1) -> None:
        msg = decode(frame(appliance_prefix(appliance), seq, body))
        row = [getattr(msg, c) if msg.HasField(c) else None for c in self.cols]
        for _ in range(times):
            self.conn.execute(f"INSERT INTO readings VALUES ({', '.join('?' * len(self.cols))})", row)

    def run(self, statement: str, params=None):
        self.statements.append(statement)
        sql = statement.replace(TABLE, "readings")
        try:
            cur = self.conn.execute(sql, {k: v for k, (v, _t) in (params or {}).items()})
        except sqlite3.Error as exc:
            raise WorkspaceError(f"statement FAILED: {exc}") from None
        return [[None if v is None else str(v) for v in row] for row in cur.fetchall()]


def reading(seq: int) -> bytes:
    return encode_reading(source="line1", protocol="synthetic", point=f"p{seq % 3}", value=float(seq))


@pytest.fixture
def table():
    wh = SqliteWarehouse()
    for seq in range(1, 101):
        if 20 <= seq <= 29 or 41 <= seq <= 49 or 70 <= seq <= 74:
            continue
        wh.land("plant-a", seq, reading(seq))
    wh.land("plant-a", 41, encode_loss_marker(41, 49, "spool_lost"))  # a WAL lost after kill -9
    wh.land("plant-a", 70, encode_loss_marker(70, 72, "drop_oldest"))  # 73..74 stay unexplained
    gap = encode_gap_marker(source="ua", protocol="opcua", point="ns=2;s=Temp", start_us=1_700_000_000_000_000,
                            end_us=1_700_000_030_000_000, reason="history_empty")
    wh.land("plant-a", 101, gap, times=2)  # delivered twice (at least once): one gap
    wh.land("plant-a", 102, encode_gap_marker(source="ua", protocol="opcua", point="ns=2;s=Flow",
                                              start_us=1_700_000_000_000_000, end_us=1_700_000_005_000_000,
                                              reason="history_unsupported"))
    wh.land("other", 20, encode_loss_marker(20, 29, "spool_corrupt"))  # another appliance's rows stay out
    return wh


def test_verify_lists_loss_markers_and_source_gaps(table):
    rep = table_report(table, TABLE, "plant-a")
    assert rep["missing"] == [[20, 29], [42, 49], [71, 74]]
    assert rep["unexplained_missing"] == [[20, 29], [73, 74]]
    assert rep["explained"] == [
        {"from_seq": 41, "to_seq": 49, "seqs": 9, "reason": "spool_lost"},
        {"from_seq": 70, "to_seq": 72, "seqs": 3, "reason": "drop_oldest"},
    ]
    assert rep["explained_by_reason"] == {"spool_lost": 9, "drop_oldest": 3}
    assert rep["source_gaps_count"] == 2 and rep["details_error"] is None
    assert rep["source_gaps_by_reason"] == {"history_empty": 1, "history_unsupported": 1}
    first, second = rep["source_gaps"]
    assert first == {"seq": 101, "source": "ua", "point": "ns=2;s=Temp", "reason": "history_empty",
                     "from_us": 1_700_000_000_000_000, "to_us": 1_700_000_030_000_000, "seconds": 30.0}
    assert second["point"] == "ns=2;s=Flow" and second["seconds"] == 5.0


def test_a_seq_range_lists_only_what_lies_in_it(table):
    rep = table_report(table, TABLE, "plant-a", from_seq=60, to_seq=100)
    assert [m["reason"] for m in rep["explained"]] == ["drop_oldest"]
    assert rep["source_gaps"] == [] and rep["source_gaps_count"] == 0


def test_a_table_without_the_detail_columns_still_gets_its_accounting():
    """The accounting needs seq, kind and the marker range only; the listing says why it is short."""
    wh = SqliteWarehouse(cols=["appliance_id", "seq", "kind", "loss_from_seq", "loss_to_seq"])
    for seq in (1, 2, 6):
        wh.land("plant-a", seq, reading(seq))
    wh.land("plant-a", 3, encode_loss_marker(3, 5, "spool_corrupt"))
    rep = table_report(wh, TABLE, "plant-a")
    assert rep["unexplained_missing"] == [] and rep["missing"] == [[4, 5]]
    assert rep["explained"] == [{"from_seq": 3, "to_seq": 5, "seqs": 3, "reason": None}]
    assert rep["source_gaps_count"] is None and "loss_reason" in rep["details_error"]


def test_the_detail_queries_are_bounded(table):
    table_report(table, TABLE, "plant-a")
    gap_rows = [s for s in table.statements if "kind = 'gap'" in s and "value_json" in s]
    assert gap_rows and all(re.search(r"LIMIT \d+", s) for s in gap_rows)


def test_the_summary_names_the_reasons_and_the_unexplained_ranges(table):
    text = verify_summary("plant-a", table_report(table, TABLE, "plant-a"))
    assert "20..29, 73..74" in text and "22 seqs missing, 12 unexplained" in text
    assert "drop_oldest 3, spool_lost 9" in text and "history_empty 1, history_unsupported 1" in text
