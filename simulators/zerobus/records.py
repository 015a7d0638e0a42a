"""Record codecs: validate a stream's records and pull out the key columns cheaply.

Pure (no I/O). A proto batch is parsed in ONE C call by wrapping the stream's
message type in ``Batch { repeated <Message> records = 1; }``: that wrapper is
wire-identical to the request's ``repeated bytes records = 1``. Only when the
batch is invalid do we fall back to one record at a time, to name the culprit.
"""

from __future__ import annotations

import functools
import json
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from . import wire_pb2
from .schema import Column, check_json_record

DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024
_KEYS = operator.attrgetter("appliance_id", "seq", "kind")


class RecordRejected(Exception):
    def __init__(self, index: int, reason: str):
        super().__init__(reason)
        self.index = index
        self.reason = reason


@dataclass
class Decoded:
    """A validated batch: raw record bytes plus the key columns (None where the table has none)."""

    records: list[bytes]
    apps: list[Any]
    seqs: list[Any]
    kinds: list[Any]
    # index -> (loss_from_seq, loss_to_seq) for rows whose kind is not "reading"
    extra: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    messages: list[Any] | None = None  # parsed records, for fault rules

    def __len__(self) -> int:
        return len(self.records)


@functools.lru_cache(maxsize=64)
def message_classes(descriptor_bytes: bytes) -> tuple[type, type]:
    """(record class, batch wrapper class) for a serialized DescriptorProto."""
    desc = descriptor_pb2.DescriptorProto.FromString(descriptor_bytes)
    fdp = descriptor_pb2.FileDescriptorProto(name="zerobus_emulator_stream.proto", package="zbemu", syntax="proto2")
    fdp.message_type.add().CopyFrom(desc)
    batch = fdp.message_type.add(name="EmulatorBatch" if desc.name != "EmulatorBatch" else "EmulatorBatch2")
    batch.field.add(
        name="records",
        number=1,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=f".zbemu.{desc.name}",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    rec_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"zbemu.{desc.name}"))
    batch_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"zbemu.{batch.name}"))
    return rec_cls, batch_cls


def _key_flags(columns: list[Column]) -> tuple[bool, bool]:
    names = {c.name for c in columns}
    return {"appliance_id", "seq"} <= names, "kind" in names


def _too_big(records: list, max_bytes: int) -> None:
    if records and max(map(len, records)) > max_bytes:
        for i, r in enumerate(records):
            if len(r) > max_bytes:
                raise RecordRejected(i, f"record is {len(r)} bytes, over the {max_bytes}-byte per-record limit")


class ProtoCodec:
    record_type = "proto"

    def __init__(self, descriptor_bytes: bytes, columns: list[Column], max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        self.rec_cls, self.batch_cls = message_classes(descriptor_bytes)
        self.max_record_bytes = max_record_bytes
        self.has_keys, self.has_kind = _key_flags(columns)
        self._presence = {f.name: f.has_presence for f in self.rec_cls.DESCRIPTOR.fields}

    def decode(self, records: list[bytes], batch_bytes: bytes | None = None) -> Decoded:
        """Validate ``records``; ``batch_bytes`` is the serialized ``repeated bytes records = 1`` holding them."""
        _too_big(records, self.max_record_bytes)
        if batch_bytes is None:
            batch_bytes = wire_pb2.ProtoEncodedBatch(records=records).SerializeToString()
        try:
            batch = self.batch_cls.FromString(batch_bytes)
            ok = batch.IsInitialized()  # one C call checks every record's required fields
        except DecodeError:
            ok = False
        if not ok:
            self._find_culprit(records)
        msgs = batch.records
        out = Decoded(records, [None] * len(records), [None] * len(records), [None] * len(records), messages=msgs)
        if self.has_keys and self.has_kind and msgs:
            # One pass through C-level getters: each access to msgs[i] builds a wrapper object.
            out.apps, out.seqs, out.kinds = map(list, zip(*map(_KEYS, msgs)))
        elif self.has_keys:
            out.apps = [m.appliance_id for m in msgs]
            out.seqs = [m.seq for m in msgs]
        elif self.has_kind:
            out.kinds = [m.kind for m in msgs]
        if self.has_kind:
            kinds = out.kinds
            if kinds.count("reading") != len(kinds):
                for i, k in enumerate(kinds):
                    if k != "reading":
                        m = msgs[i]
                        out.extra[i] = (self._get(m, "loss_from_seq"), self._get(m, "loss_to_seq"))
        return out

    def _get(self, msg: Any, name: str) -> Any:
        if name not in self._presence:
            return None
        if self._presence[name] and not msg.HasField(name):
            return None
        return getattr(msg, name)

    def value(self, msg: Any, name: str) -> Any:
        return self._get(msg, name)

    def _find_culprit(self, records: list[bytes]) -> None:
        for i, raw in enumerate(records):
            msg = self.rec_cls()
            try:
                msg.MergeFromString(raw)
            except DecodeError:
                raise RecordRejected(i, f"record does not parse as {self.rec_cls.DESCRIPTOR.name}") from None
            missing = msg.FindInitializationErrors()
            if missing:
                raise RecordRejected(i, f"missing NOT NULL column(s) {', '.join(missing)}")
        raise RecordRejected(0, "batch does not parse")

    def to_dict(self, raw: bytes) -> dict:
        msg = self.rec_cls()
        msg.MergeFromString(raw)
        out = {}
        for f in self.rec_cls.DESCRIPTOR.fields:
            out[f.name] = list(getattr(msg, f.name)) if f.is_repeated else self._get(msg, f.name)
        return out


class JsonCodec:
    record_type = "json"

    def __init__(self, columns: list[Column], max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES):
        self.columns = columns
        self.max_record_bytes = max_record_bytes
        self.has_keys, self.has_kind = _key_flags(columns)

    def decode(self, records: list[str], batch_bytes: bytes | None = None) -> Decoded:
        raws = [r.encode("utf-8") for r in records]
        _too_big(raws, self.max_record_bytes)
        objs = []
        for i, text in enumerate(records):
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise RecordRejected(i, f"record is not valid JSON: {exc}") from None
            why = check_json_record(self.columns, obj)
            if why:
                raise RecordRejected(i, why)
            objs.append(obj)
        n = len(objs)
        out = Decoded(raws, [None] * n, [None] * n, [None] * n, messages=objs)
        if self.has_keys:
            out.apps = [o["appliance_id"] for o in objs]
            out.seqs = [int(o["seq"]) for o in objs]
        if self.has_kind:
            out.kinds = [o.get("kind") for o in objs]
            for i, k in enumerate(out.kinds):
                if k != "reading":
                    out.extra[i] = (_int_or_none(objs[i].get("loss_from_seq")), _int_or_none(objs[i].get("loss_to_seq")))
        return out

    @staticmethod
    def value(obj: dict, name: str) -> Any:
        return obj.get(name)

    @staticmethod
    def to_dict(raw: bytes) -> dict:
        return json.loads(raw)


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)



def display_decoder(record_type: str, descriptor_bytes: bytes | None, columns: list[Column]) -> Callable[[bytes], dict]:
    if record_type == "proto" and descriptor_bytes:
        return ProtoCodec(descriptor_bytes, columns).to_dict
    return JsonCodec.to_dict
