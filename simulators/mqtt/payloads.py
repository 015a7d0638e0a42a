"""Pure payload builders for the MQTT simulator (no sockets, no clock).

JSON flavour: one message per signal sample on ``plant/<publisher>/<line>/<machine>/<signal>``::

    {"ts": 1764000000123, "value": 65.2, "quality": "GOOD", "unit": "degC", "seq": 17}

Sparkplug flavour: the publisher is an edge node ``spBv1.0/<group>/.../<publisher>``,
each machine a device (``line1-press1``). NBIRTH/DBIRTH define every metric
with an alias; DDATA carries metrics by alias only. Every message, BIRTHs
included, carries a ``msg_seq`` metric: the per-publisher sequence number a
test reconciles against.
"""

from __future__ import annotations

import json
import math

from edge.pb.sparkplug_b_pb2 import Payload
from edge.sources.mqtt.sparkplug import T

SEQ_METRIC = "msg_seq"
_DT = {"float": T["Double"], "int": T["Int64"], "bool": T["Boolean"], "string": T["String"]}


def json_topic(publisher: str, path: str) -> str:
    return f"plant/{publisher}/{path}"


def json_payload(value: object, ts_ms: int, seq: int, unit: str) -> bytes:
    quality = "GOOD"
    if isinstance(value, float) and not math.isfinite(value):
        value, quality = None, "BAD"
    doc = {"ts": ts_ms, "value": value, "quality": quality, "unit": unit, "seq": seq}
    return json.dumps(doc, separators=(",", ":")).encode()


def device_id(machine: str) -> str:
    return machine.replace("/", "-")


def sp_topic(group: str, mtype: str, node: str, device: str | None = None) -> str:
    return f"spBv1.0/{group}/{mtype}/{node}" + (f"/{device}" if device else "")


def _set_value(m: Payload.Metric, dtype: int, value: object) -> None:
    if value is None:
        m.is_null = True
    elif dtype == T["Double"]:
        m.double_value = float(value)
    elif dtype == T["Int64"]:
        m.long_value = int(value) & ((1 << 64) - 1)
    elif dtype == T["UInt64"]:
        m.long_value = int(value)
    elif dtype == T["Boolean"]:
        m.boolean_value = bool(value)
    else:
        m.string_value = str(value)


class SparkplugNode:
    """Alias table and Sparkplug payload seq of one simulated edge node."""

    def __init__(self, group: str, node: str, signals: list):
        self.group, self.node = group, node
        self.signals = signals  # plant.Signal objects
        self.alias = {s.path: i + 1 for i, s in enumerate(signals)}
        self.seq_alias: dict[str | None, int] = {}
        next_alias = len(signals) + 1
        for dev in [None] + sorted({device_id(s.machine) for s in signals}):
            self.seq_alias[dev] = next_alias
            next_alias += 1
        self.sp_seq = 0
        self.bd_seq = 0

    def _payload(self, ts_ms: int) -> Payload:
        p = Payload(timestamp=ts_ms, seq=self.sp_seq)
        self.sp_seq = (self.sp_seq + 1) % 256
        return p

    def _seq_metric(self, p: Payload, dev: str | None, msg_seq: int, birth: bool) -> None:
        m = p.metrics.add()
        if birth:
            m.name = SEQ_METRIC
            m.datatype = T["UInt64"]
        m.alias = self.seq_alias[dev]
        m.long_value = msg_seq

    def death(self) -> tuple[str, bytes]:
        p = Payload(timestamp=0)
        m = p.metrics.add(name="bdSeq", datatype=T["UInt64"])
        m.long_value = self.bd_seq
        return sp_topic(self.group, "NDEATH", self.node), p.SerializeToString()

    def nbirth(self, ts_ms: int, msg_seq: int) -> tuple[str, bytes]:
        self.sp_seq = 0
        p = self._payload(ts_ms)
        m = p.metrics.add(name="bdSeq", datatype=T["UInt64"])
        m.long_value = self.bd_seq
        m = p.metrics.add(name="Node Control/Rebirth", datatype=T["Boolean"])
        m.boolean_value = False
        self._seq_metric(p, None, msg_seq, True)
        return sp_topic(self.group, "NBIRTH", self.node), p.SerializeToString()

    def dbirth(self, machine: str, values: dict, ts_ms: int, msg_seq: int) -> tuple[str, bytes]:
        dev = device_id(machine)
        p = self._payload(ts_ms)
        for s in self.signals:
            if s.machine != machine:
                continue
            dtype = _DT[s.data_type]
            m = p.metrics.add(name=s.name, alias=self.alias[s.path], datatype=dtype)
            _set_value(m, dtype, values.get(s.path))
            if s.unit:
                m.properties.keys.append("engUnit")
                m.properties.values.add(type=T["String"], string_value=s.unit)
        self._seq_metric(p, dev, msg_seq, True)
        return sp_topic(self.group, "DBIRTH", self.node, dev), p.SerializeToString()

    def ddata(self, sig, value: object, ts_ms: int, msg_seq: int) -> tuple[str, bytes]:
        dev = device_id(sig.machine)
        p = self._payload(ts_ms)
        m = p.metrics.add(alias=self.alias[sig.path], timestamp=ts_ms)
        _set_value(m, _DT[sig.data_type], value)
        self._seq_metric(p, dev, msg_seq, False)
        return sp_topic(self.group, "DDATA", self.node, dev), p.SerializeToString()
