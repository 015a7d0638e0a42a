"""In-memory history for the simulator: what HistoryRead (raw) answers, and the truth tests reconcile against.

The simulator appends every value it writes here itself, instead of asyncua's
``historize_node_data_change`` which runs an internal subscription per node (too slow for
tens of thousands of nodes).
"""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.server.history import HistoryStorageInterface


class SimHistory(HistoryStorageInterface):
    def __init__(self, per_node: int = 1000, max_response: int = 10_000):
        super().__init__(max_response)
        self.per_node = per_node
        self.max_response = max_response
        self._ts: dict[ua.NodeId, list[datetime]] = {}
        self._dv: dict[ua.NodeId, list[ua.DataValue]] = {}

    async def init(self) -> None:
        pass

    async def new_historized_node(self, node_id: ua.NodeId, period: Any, count: int = 0) -> None:
        self._ts.setdefault(node_id, [])
        self._dv.setdefault(node_id, [])

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        self.append(node_id, datavalue)

    def append(self, node_id: ua.NodeId, dv: ua.DataValue) -> None:
        ts = self._ts.get(node_id)
        if ts is None:
            ts = self._ts[node_id] = []
            self._dv[node_id] = []
        dvs = self._dv[node_id]
        ts.append(dv.SourceTimestamp)
        dvs.append(dv)
        if self.per_node and len(ts) > 2 * self.per_node:  # amortised trim
            del ts[: len(ts) - self.per_node]
            del dvs[: len(dvs) - self.per_node]

    def values(self, node_id: ua.NodeId) -> list[ua.DataValue]:
        return list(self._dv.get(node_id, []))

    async def read_node_history(self, node_id, start, end, nb_values):
        ts = self._ts.get(node_id)
        if ts is None:
            return [], None
        dvs = self._dv[node_id]
        lo = 0 if start is None or start <= ua.get_win_epoch() else bisect.bisect_left(ts, start)
        hi = len(ts) if end is None or end <= ua.get_win_epoch() else bisect.bisect_right(ts, end)
        out = dvs[lo:hi]
        if nb_values and len(out) > nb_values:
            out = out[:nb_values]
        cont = None
        if len(out) > self.max_response:
            cont = out[self.max_response].SourceTimestamp
            out = out[: self.max_response]
        return out, cont

    async def new_historized_event(self, *a: Any, **k: Any) -> None:
        pass

    async def save_event(self, event: Any) -> None:
        pass

    async def read_event_history(self, *a: Any, **k: Any):
        return [], None

    async def stop(self) -> None:
        pass
