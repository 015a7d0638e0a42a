"""The seam between a source and the spool writer carries plain data only (a source could move to a worker process)."""

from __future__ import annotations

import asyncio
import pickle

from edge.config import parse
from edge.runner import open_spool
from edge.sources.context import SourceContext
from edge.sources.mqtt.convert import Converter
from edge.sources.mqtt.pipeline import Msg
from edge.sources.sink import Sink
from edge.sources.status import SourceStatus
from edge.writer import SpoolWriter


def test_the_writer_is_a_sink_and_everything_crossing_it_pickles(tmp_path):
    cfg = parse({"appliance_id": "a", "data_dir": str(tmp_path), "spool": {"path": str(tmp_path / "spool.db")},
                 "sources": [{"name": "m", "type": "mqtt", "subscriptions": [{"topic": "plant/#", "format": "number"}]}]},
                env={})
    writer = SpoolWriter(open_spool(cfg))
    try:
        assert isinstance(writer, Sink)
        status = SourceStatus("m", "mqtt", writer.put_state)
        ctx = SourceContext.for_sink(writer, status, appliance_id="a", data_dir=tmp_path)
        items, quarantines = Converter(cfg.sources[0], ctx).convert([
            Msg(1, 1, 1, b"plant/a", b"1.5", False, 1), Msg(1, 2, 1, b"plant/b", b"not a number", False, 2)])
        assert len(items) == 1 and len(quarantines) == 1
        for sent in (items, *quarantines):  # what a worker process would send over its pipe
            assert pickle.loads(pickle.dumps(sent)) == sent
        result = asyncio.run(ctx.emit(items))
        assert pickle.loads(pickle.dumps(result)) == result  # and what comes back
        ctx.quarantine(*quarantines[0]).result(10)  # stored, or this raises
    finally:
        writer.close()
