"""The gRPC side: ``databricks.zerobus.Zerobus/EphemeralStream`` as the SDK expects it.

Requests arrive as raw bytes (no deserializer on the method) so a proto batch
can be re-wrapped and validated in one C parse. One task per stream sends
cumulative acks, each only after the batches it covers were committed and their
ack time (arrival + a latency sample, later if over quota: realism.py) has come,
so latencies overlap as on a network instead of adding up.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
import uuid
from typing import Any, Callable

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from . import wire_pb2 as pb
from .faults import CODES, Faults
from .ledger import Ledger
from .realism import Pacer, Profile, ack_latency_s
from .records import DEFAULT_MAX_RECORD_BYTES, JsonCodec, ProtoCodec, RecordRejected
from .schema import Column, compare_descriptor
from .store import Store
from .tokens import TokenInvalid, TokenIssuer

SERVICE = "databricks.zerobus.Zerobus"
TABLE_HEADER = "x-databricks-zerobus-table-name"
_END = object()
_CREATE_TIMEOUT_S = 30.0
_PROFILE_RECHECK_S = 1.0


class StreamFailed(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, ack_pending: bool = False):
        super().__init__(details)
        self.code, self.details, self.ack_pending = code, details, ack_pending


def _ack(offset: int) -> pb.EphemeralStreamResponse:
    return pb.EphemeralStreamResponse(ingest_record_response=pb.IngestRecordResponse(durability_ack_up_to_offset=offset))


def _close_signal(duration_ms: int) -> pb.EphemeralStreamResponse:
    msg = pb.EphemeralStreamResponse()
    msg.close_stream_signal.duration.FromMilliseconds(duration_ms)
    return msg


class ZerobusService:
    def __init__(
        self,
        tables: dict[str, list[Column]],
        issuer: TokenIssuer,
        store: Store | None,
        ledger: Ledger,
        faults: Faults,
        log: Callable[..., None],
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        profile: Profile | None = None,
    ):
        self.tables = tables
        self.issuer = issuer
        self.store = store
        self.ledger = ledger
        self.faults = faults
        self.log = log
        self.max_record_bytes = max_record_bytes
        self.profile = profile or Profile()
        self.rng = random.Random()
        self.open_streams: dict[str, Any] = {}
        self.decode_s = 0.0  # event-loop time spent validating records, for /stats "perf"
        # For /stats "service": what the realistic behaviours did, and the bytes received.
        self.counters = {"messages": 0, "message_bytes": 0, "acks": 0, "close_signals": 0, "rotations": 0,
                         "throttled_batches": 0, "throttled_s": 0.0, "quota_rejections": 0}
        self.user_agents: collections.Counter = collections.Counter()

    def effective_profile(self) -> Profile:
        """The startup profile with the fault API's per-test overrides applied."""
        return self.profile.with_overrides(self.faults.overrides())

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.stream_stream_rpc_method_handler(
            self.ephemeral_stream,
            request_deserializer=None,  # raw bytes; see module docstring
            response_serializer=pb.EphemeralStreamResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"EphemeralStream": method})

    # -- the RPC -------------------------------------------------------------------
    async def ephemeral_stream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        # The SDK waits for response headers before it sends create_stream.
        await context.send_initial_metadata(())
        try:
            stream_id, table, codec, user_agent = await self._create(context)
        except StreamFailed as exc:
            self.log("stream_refused", code=exc.code.name, reason=exc.details, peer=context.peer())
            await context.abort(exc.code, exc.details)
            return
        st = {"id": stream_id, "table": table, "records": 0, "batches": 0, "acked": -1, "opened": time.time(),
              "opened_m": time.monotonic(), "user_agent": user_agent}
        self.open_streams[stream_id] = st
        try:
            await self._ingest_loop(context, st, table, codec)
            self.log("stream_closed", stream_id=stream_id, table=table, records=st["records"], batches=st["batches"])
        except StreamFailed as exc:
            self.log("stream_failed", stream_id=stream_id, table=table, code=exc.code.name, reason=exc.details,
                     records=st["records"], batches=st["batches"])
            await context.abort(exc.code, exc.details)
        finally:
            self.open_streams.pop(stream_id, None)

    async def _create(self, context: grpc.aio.ServicerContext) -> tuple[str, str, Any, str]:
        md = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        auth = md.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise StreamFailed(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata")
        try:
            claims = self.issuer.verify(auth[7:].strip())
        except TokenInvalid as exc:
            raise StreamFailed(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        try:
            raw = await asyncio.wait_for(context.read(), _CREATE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise StreamFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "no create_stream request within 30 s") from None
        if raw is grpc.aio.EOF:
            raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, "stream closed before create_stream")
        req = _parse(raw)
        if req.WhichOneof("payload") != "create_stream":
            raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, "the first request must be create_stream")
        cs = req.create_stream
        header_table = md.get(TABLE_HEADER)
        table = cs.table_name or header_table or ""
        if header_table and cs.table_name and header_table != cs.table_name:
            raise StreamFailed(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"table_name {cs.table_name!r} differs from the {TABLE_HEADER} header {header_table!r}",
            )
        injected = self.faults.take_create_error()
        if injected:
            raise StreamFailed(CODES[injected[0]], injected[1])
        columns = self.tables.get(table)
        if columns is None:
            raise StreamFailed(grpc.StatusCode.NOT_FOUND, f"table {table!r} not found (this emulator serves: {', '.join(sorted(self.tables))})")
        if not claims.grants(table):
            raise StreamFailed(grpc.StatusCode.PERMISSION_DENIED, f"token of client {claims.client_id!r} grants no write on {table!r}")
        codec, record_type, descriptor = self._codec(cs, table, columns)
        stream_id = uuid.uuid4().hex
        if self.store is not None:
            await asyncio.wrap_future(self.store.add_stream(stream_id, table, record_type, descriptor, context.peer()))
        self.ledger.stream_opened(table)
        await context.write(pb.EphemeralStreamResponse(create_stream_response=pb.CreateIngestStreamResponse(stream_id=stream_id)))
        user_agent = md.get("user-agent", "")
        self.user_agents[user_agent] += 1
        self.log("stream_opened", stream_id=stream_id, table=table, record_type=record_type, client=claims.client_id,
                 peer=context.peer(), user_agent=user_agent)
        return stream_id, table, codec, user_agent

    def _codec(self, cs: pb.CreateIngestStreamRequest, table: str, columns: list[Column]) -> tuple[Any, str, bytes | None]:
        rtype = cs.record_type
        if rtype == pb.RECORD_TYPE_UNSPECIFIED:
            rtype = pb.PROTO if cs.descriptor_proto else pb.JSON
        if rtype == pb.JSON:
            return JsonCodec(columns, self.max_record_bytes), "json", None
        if rtype != pb.PROTO:
            raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, f"record_type {rtype} is not supported")
        if not cs.descriptor_proto:
            raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, "a PROTO stream needs descriptor_proto")
        try:
            desc = descriptor_pb2.DescriptorProto.FromString(cs.descriptor_proto)
        except DecodeError:
            raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, "descriptor_proto is not a serialized DescriptorProto") from None
        diffs = compare_descriptor(columns, desc)
        if diffs:
            raise StreamFailed(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"schema of message {desc.name!r} does not match table {table!r}: " + "; ".join(diffs),
            )
        try:
            codec = ProtoCodec(cs.descriptor_proto, columns, self.max_record_bytes)
        except Exception as exc:  # e.g. proto3-only features in a proto2 file
            raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, f"descriptor_proto cannot be loaded: {exc}") from None
        return codec, "proto", cs.descriptor_proto

    async def _ingest_loop(self, context: grpc.aio.ServicerContext, st: dict, table: str, codec: Any) -> None:
        pending: collections.deque = collections.deque()
        wake = asyncio.Event()
        acker = asyncio.ensure_future(self._acker(context, pending, wake, st))
        expected = 0
        close_deadline: float | None = None
        pacer = Pacer()
        last_due = 0.0
        read = None
        counters = self.counters
        try:
            while True:
                profile = self.effective_profile()
                now = time.monotonic()
                rotate_at = None
                if close_deadline is None and profile.stream_lifetime_s > 0:
                    rotate_at = st["opened_m"] + profile.stream_lifetime_s
                    if now >= rotate_at:  # the server ends streams on its own schedule
                        pending.append(("close", profile.close_grace_ms))
                        close_deadline = now + profile.close_grace_ms / 1000.0
                        counters["rotations"] += 1
                        self.log("stream_rotating", stream_id=st["id"], lifetime_s=profile.stream_lifetime_s,
                                 duration_ms=profile.close_grace_ms)
                        wake.set()
                        rotate_at = None
                if read is None:
                    read = asyncio.ensure_future(context.read())
                # Wake at least every second on an idle stream, so a lifetime set through /faults applies to it.
                timeout = min([t - now for t in (close_deadline, rotate_at) if t is not None] + [_PROFILE_RECHECK_S])
                done, _ = await asyncio.wait({read, acker}, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
                if acker in done:
                    read.cancel()
                    exc = acker.exception()
                    if exc is None:
                        return
                    # A failed commit is the server's problem: retriable, the SDK resends.
                    raise StreamFailed(grpc.StatusCode.INTERNAL, f"store commit failed: {exc}")
                if not done:
                    if close_deadline is not None and time.monotonic() >= close_deadline:
                        read.cancel()  # the close_stream_signal grace period ran out
                        break
                    continue  # time to rotate, or to look at the profile again: the top of the loop
                raw = read.result()
                read = None
                if raw is grpc.aio.EOF:
                    break
                offset, records, batch_bytes = self._unpack(raw, codec)
                if offset != expected:
                    raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, f"offset_id {offset} out of order (expected {expected})")
                expected = offset + 1
                counters["messages"] += 1
                counters["message_bytes"] += len(raw)
                t0 = time.perf_counter()
                try:
                    decoded = codec.decode(records, batch_bytes)
                except RecordRejected as rej:
                    raise StreamFailed(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"record rejected at offset_id {offset}, index {rej.index} in the batch: {rej.reason}",
                        ack_pending=True,
                    ) from None
                self.decode_s += time.perf_counter() - t0
                injected = self.faults.reject(decoded.messages, codec.value)
                if injected:
                    idx, code, reason = injected
                    raise StreamFailed(CODES[code], f"record rejected at offset_id {offset}, index {idx} in the batch: {reason}", ack_pending=True)
                arrival = time.monotonic()
                accept = pacer.admit(profile, len(records), len(raw), arrival)
                if accept > arrival and profile.quota_action == "reject":
                    counters["quota_rejections"] += 1
                    raise StreamFailed(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"stream over its quota ({profile.quota_records_per_s:g} records/s, {profile.quota_bytes_per_s:g} bytes/s) "
                        f"at offset_id {offset}",
                        ack_pending=True,
                    )
                fail, close_ms = self.faults.count_records(len(records))
                st["records"] += len(records)
                st["batches"] += 1
                fut = None
                if self.store is not None and records:
                    fut = asyncio.wrap_future(self.store.add_batch(table, st["id"], offset, decoded))
                if fail:
                    if fut is not None:
                        try:
                            await asyncio.shield(fut)  # stored, never acked: the SDK will resend it
                        except Exception as exc:
                            self.log("store_error", stream_id=st["id"], error=repr(exc))
                    raise StreamFailed(CODES[fail[0]], fail[1])
                # Acks stay cumulative and in offset order: a batch is never acked before the one ahead of it.
                last_due = max(last_due, accept + ack_latency_s(profile, self.rng))
                pending.append((offset, fut, last_due))
                if close_ms is not None and close_deadline is None:
                    pending.append(("close", close_ms))
                    close_deadline = time.monotonic() + close_ms / 1000.0
                wake.set()
                if accept > arrival:
                    # Over quota: read nothing more until the stream is back under it. The client's
                    # sends then stall on HTTP/2 flow control, and its acks come late.
                    counters["throttled_batches"] += 1
                    counters["throttled_s"] += accept - arrival
                    await asyncio.sleep(accept - time.monotonic())
            pending.append(_END)
            wake.set()
            await acker
        except StreamFailed as exc:
            if read is not None:
                read.cancel()
            if exc.ack_pending and not acker.done():
                pending.append(_END)
                wake.set()
                try:
                    await acker
                except Exception:
                    pass
            raise
        finally:
            if not acker.done():
                acker.cancel()

    @staticmethod
    def _unpack(raw: bytes, codec: Any) -> tuple[int, list, bytes | None]:
        req = _parse(raw)
        kind = req.WhichOneof("payload")
        want = "proto" if isinstance(codec, ProtoCodec) else "json"
        if kind == "ingest_record_batch":
            b = req.ingest_record_batch
            which = b.WhichOneof("batch")
            if which == "proto_encoded_batch" and want == "proto":
                return b.offset_id, list(b.proto_encoded_batch.records), b.proto_encoded_batch.SerializeToString()
            if which == "json_batch" and want == "json":
                return b.offset_id, list(b.json_batch.records), None
            raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, f"a {want} stream got a {which or 'empty'} batch")
        if kind == "ingest_record":
            r = req.ingest_record
            which = r.WhichOneof("record")
            if which == "proto_encoded_record" and want == "proto":
                return r.offset_id, [r.proto_encoded_record], None
            if which == "json_record" and want == "json":
                return r.offset_id, [r.json_record], None
            raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, f"a {want} stream got a {which or 'empty'} record")
        raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, f"unexpected {kind or 'empty'} request after create_stream")

    async def _acker(self, context: grpc.aio.ServicerContext, pending: collections.deque, wake: asyncio.Event, st: dict) -> None:
        counters = self.counters
        while True:
            if not pending:
                wake.clear()
                await wake.wait()
                continue
            head = pending[0]
            if head is _END:
                return
            if head[0] == "close":
                pending.popleft()
                await context.write(_close_signal(head[1]))
                counters["close_signals"] += 1
                self.log("close_stream_signal", stream_id=st["id"], duration_ms=head[1])
                continue
            offset, fut, due = head
            if fut is not None:
                await asyncio.shield(fut)
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pending.popleft()
            last = offset
            # Coalesce every batch that is committed and due into one cumulative ack.
            now = time.monotonic()
            while pending and pending[0] is not _END and pending[0][0] != "close" and pending[0][2] <= now \
                    and (pending[0][1] is None or pending[0][1].done()):
                off, f, _ = pending.popleft()
                if f is not None:
                    f.result()
                last = off
            if self.faults.never_ack:
                continue
            await context.write(_ack(last))
            counters["acks"] += 1
            st["acked"] = last


def _parse(raw: bytes) -> pb.EphemeralStreamRequest:
    try:
        return pb.EphemeralStreamRequest.FromString(raw)
    except DecodeError:
        raise StreamFailed(grpc.StatusCode.INVALID_ARGUMENT, "request does not parse as EphemeralStreamRequest") from None
