"""The drill's real-table verifier: `edge verify` through the workspace stand-in gives the drill's sink view."""

from __future__ import annotations

import sys

from ops.composectl import Emulator
from ops.drill import EmulatorVerifier, TableVerifier

from .conftest import write_config
from .test_table_and_verify import push


def test_table_verifier_agrees_with_the_emulator_verifier(tmp_path, emu, workspace):
    seqs = [s for s in range(1, 301) if not 100 <= s <= 109 and not 201 <= s <= 205]
    push(emu, "plant-dbx", seqs + list(range(290, 301)), markers={200: 205})
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url,
                       warehouse_id=workspace.warehouse_id)
    table = TableVerifier([sys.executable, "-m", "edge.cli"], str(cfg), None, emu.table).view("plant-dbx")
    sink = EmulatorVerifier(Emulator(emu.http_url), emu.table).view("plant-dbx")
    assert (table.min_seq, table.max_seq) == (sink.min_seq, sink.max_seq) == (1, 300)
    assert table.missing == sink.missing == [(100, 109), (201, 205)]
    assert table.unexplained == sink.unexplained == [(100, 109)]
    assert table.duplicates == 11
    assert TableVerifier([sys.executable, "-m", "edge.cli"], str(cfg), None, emu.table).progress("plant-dbx") == 300
