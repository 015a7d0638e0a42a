"""The real ZeroBus SDK (1.10.0) against the emulator: happy paths, recovery, every failure class."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from edge.pb.reading_pb2 import Reading
from tests.emulator.sdk_helpers import json_stream, marker, options, proto_stream, readings, sdk_for
from simulators.kit.emulator import Emulator
from zerobus.sdk.aio import ZerobusSdk as AsyncSdk
from zerobus.sdk.shared import NonRetriableException, TableProperties, ZerobusException

F = descriptor_pb2.FieldDescriptorProto


def wait_rows(emu: Emulator, app: str, n: int, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        a = emu.table_stats()["appliances"].get(app)
        if (a and a["max_seq"] is not None and a["max_seq"] >= n - 1) or time.monotonic() > deadline:
            return a
        time.sleep(0.05)


def test_sync_proto_batches_land_with_continuous_offsets(emu, appliance_id):
    before = emu.table_stats()["rows"]
    s = proto_stream(emu)
    offsets = [s.ingest_records_offset(readings(appliance_id, range(k * 100, k * 100 + 100))) for k in range(10)]
    assert offsets == list(range(10))  # one offset per ingest call, continuous
    s.wait_for_offset(offsets[-1])
    s.close()
    st = emu.table_stats()
    assert st["rows"] - before == 1000
    app = st["appliances"][appliance_id]
    assert (app["min_seq"], app["max_seq"], app["missing"]) == (0, 999, [])
    rows = emu.rows(appliance_id=appliance_id, from_seq=500, limit=3)
    assert [r["seq"] for r in rows] == [500, 501, 502]
    assert rows[0]["value_double"] == 500.0 and rows[0]["point"] == "ns=2;s=Line1.Temp" and rows[0]["unit"] is None
    assert rows[0]["_meta"]["record_type"] == "proto"


def test_async_sdk_proto(emu, appliance_id):
    async def main() -> int:
        sdk = AsyncSdk(emu.grpc_endpoint, emu.workspace_url)
        s = await sdk.create_stream(client_id=emu.client_id, client_secret=emu.client_secret,
                                    table_properties=TableProperties(emu.table, Reading.DESCRIPTOR), options=options())
        last = None
        for k in range(5):
            last = await s.ingest_records_offset(readings(appliance_id, range(k * 50, k * 50 + 50)))
        await s.wait_for_offset(last)
        await s.close()
        return last

    assert asyncio.run(main()) == 4
    assert emu.table_stats()["appliances"][appliance_id]["max_seq"] == 249


def test_json_records_land_and_bad_json_record_is_rejected(emu, appliance_id):
    s = json_stream(emu)
    recs = [json.dumps({"appliance_id": appliance_id, "seq": i, "kind": "reading", "value_int": i, "source_ts": 1_790_000_000_000_000})
            for i in range(20)]
    s.wait_for_offset(s.ingest_records_offset(recs))
    s.close()
    rows = emu.rows(appliance_id=appliance_id, limit=50)
    assert [r["seq"] for r in rows] == list(range(20)) and rows[3]["value_int"] == 3
    assert rows[0]["_meta"]["record_type"] == "json"
    s = json_stream(emu)
    s.ingest_records_offset([json.dumps({"appliance_id": appliance_id, "seq": 99, "kind": "reading", "nope": 1})])
    with pytest.raises(NonRetriableException, match="index 0.*unknown column"):
        s.flush()


def test_mid_stream_unavailable_recovers_with_duplicates(emu, appliance_id):
    emu.set_faults({"fail_after_records": {"records": 1000, "code": "UNAVAILABLE"}})
    before = emu.table_stats()
    s = proto_stream(emu)
    for k in range(5):
        s.ingest_records_offset(readings(appliance_id, range(k * 500, k * 500 + 500)))
    s.flush()  # the SDK reconnected and resent: invisible to the caller
    s.close()
    st = emu.table_stats()
    app = st["appliances"][appliance_id]
    assert (app["min_seq"], app["max_seq"], app["missing"]) == (0, 2499, [])
    assert st["unique"] - before["unique"] == 2500
    assert st["duplicates"] - before["duplicates"] >= 500  # the batch that tripped the fault was stored, not acked
    assert st["streams_opened"] - before["streams_opened"] == 2
    assert emu.faults()["fired"]["fail_after_records"] == 1


def test_close_stream_signal_reconnects_without_duplicates(emu, appliance_id):
    emu.set_faults({"close_after_records": {"records": 1000, "duration_ms": 200}})
    before = emu.table_stats()
    s = proto_stream(emu)
    for k in range(2):  # the second batch reaches 1000 records: the signal follows its ack
        s.ingest_records_offset(readings(appliance_id, range(k * 500, k * 500 + 500)))
    s.flush()
    time.sleep(0.4)  # past the signal's duration: the emulator has ended that RPC
    for k in range(2, 6):
        s.ingest_records_offset(readings(appliance_id, range(k * 500, k * 500 + 500)))
    s.flush()
    s.close()
    assert emu.faults()["fired"] == {"close_after_records": 1}
    st = emu.table_stats()
    assert st["rows"] - before["rows"] == 3000
    assert st["duplicates"] == before["duplicates"]
    assert st["streams_opened"] - before["streams_opened"] >= 2
    assert emu.table_stats()["appliances"][appliance_id]["missing"] == []


@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "OUT_OF_RANGE", "UNIMPLEMENTED", "NOT_FOUND"])
def test_non_retriable_codes_at_creation(emu, code):
    emu.set_faults({"create_error": {"code": code, "message": f"drill {code}"}})
    with pytest.raises(NonRetriableException, match=f"drill {code}"):
        proto_stream(emu)


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL"])
def test_retriable_codes_at_creation_are_retried(emu, code, appliance_id):
    emu.set_faults({"create_error": {"code": code, "times": 2}})
    s = proto_stream(emu)  # two refusals, then the SDK's third attempt succeeds
    s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(3))))
    s.close()
    assert emu.faults()["fired"]["create_error"] == 2
    emu.set_faults({"create_error": {"code": code}})
    with pytest.raises(ZerobusException) as exc:
        proto_stream(emu)
    assert not isinstance(exc.value, NonRetriableException)


@pytest.mark.parametrize("code,retriable", [("INVALID_ARGUMENT", False), ("PERMISSION_DENIED", False), ("RESOURCE_EXHAUSTED", True), ("INTERNAL", True)])
def test_mid_stream_codes(emu, appliance_id, code, retriable):
    emu.set_faults({"fail_after_records": {"records": 200, "code": code, "message": f"mid {code}"}})
    s = proto_stream(emu)
    for k in range(4):
        try:
            s.ingest_records_offset(readings(appliance_id, range(k * 100, k * 100 + 100)))
        except ZerobusException:
            assert not retriable  # "Stream is closed" after a non-retriable failure
            break
    if retriable:
        s.flush()
        assert wait_rows(emu, appliance_id, 400)["missing"] == []
    else:
        with pytest.raises(NonRetriableException, match=f"mid {code}"):
            s.flush()
        assert len(list(s.get_unacked_records())) >= 100


def test_token_errors(emu):
    for status in (400, 401, 403):
        emu.set_faults({"token_error": {"status": status}})
        with pytest.raises(NonRetriableException):
            proto_stream(emu)
    for status in (500, 503):
        emu.set_faults({"token_error": {"status": status}})
        with pytest.raises(ZerobusException) as exc:
            proto_stream(emu)
        assert not isinstance(exc.value, NonRetriableException)


def test_enforced_client_credentials(appliance_id):
    with Emulator(client_id="plant-7", client_secret="s3cret") as emu:
        with pytest.raises(NonRetriableException):
            proto_stream(emu, client_secret="wrong")
        s = proto_stream(emu)  # the harness hands out the enforced pair
        s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(5))))
        s.close()
        assert "s3cret" not in emu.log_path.read_text()  # secrets never logged
        assert emu.table_stats()["rows"] == 5


def _message_class(mutate) -> type:
    d = descriptor_pb2.DescriptorProto()
    Reading.DESCRIPTOR.CopyToProto(d)
    mutate(d)
    fdp = descriptor_pb2.FileDescriptorProto(name="wrong.proto", package="wrong", syntax="proto2")
    fdp.message_type.add().CopyFrom(d)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("wrong.Reading"))


def test_schema_mismatch_is_rejected_with_every_difference(emu):
    def mutate(d):
        fields = {f.name: f for f in d.field}
        fields["seq"].type = F.TYPE_INT32
        fields["kind"].label = F.LABEL_OPTIONAL
        d.field.remove(fields["loss_reason"])

    wrong = _message_class(mutate)
    with pytest.raises(NonRetriableException) as exc:
        proto_stream(emu, descriptor=wrong.DESCRIPTOR)
    msg = str(exc.value)
    assert "field 'seq' is int32, column 'seq' is BIGINT (needs int64)" in msg
    assert "field 'kind' is optional, column 'kind' is NOT NULL (needs required)" in msg
    assert "column 'loss_reason' (STRING) has no field in the message" in msg
    assert "20 fields, the table has 21 columns" in msg


def test_unknown_table_is_not_found(emu):
    with pytest.raises(NonRetriableException, match="not found"):
        proto_stream(emu, table="main.edge.nope")


def test_oversized_record_rejected_and_big_batch_accepted(emu, appliance_id):
    # A batch over grpcio's default 4 MiB receive limit is fine...
    pre = readings(appliance_id, range(2500), point="p" * 2100)
    assert sum(map(len, pre)) > 5 * 1024 * 1024
    s = proto_stream(emu)
    s.wait_for_offset(s.ingest_records_offset(pre))
    s.close()
    assert emu.table_stats()["appliances"][appliance_id]["max_seq"] == 2499
    # ...a single record over the 4 MiB per-record limit is not.
    huge = readings(appliance_id, [2500], point="x" * (4 * 1024 * 1024 + 10))
    s = proto_stream(emu)
    s.ingest_records_offset(readings(appliance_id, [2501]) + huge)
    with pytest.raises(NonRetriableException, match="offset_id 0, index 1.*per-record limit"):
        s.flush()


def test_record_missing_not_null_column_is_named(emu, appliance_id):
    s = proto_stream(emu)
    s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(10))))
    bad = Reading(appliance_id=appliance_id, seq=10).SerializePartialToString()  # no kind
    s.ingest_records_offset(readings(appliance_id, range(10, 12)) + [bad])
    with pytest.raises(NonRetriableException, match=r"offset_id 1, index 2 in the batch: missing NOT NULL column\(s\) kind"):
        s.flush()
    assert emu.table_stats()["appliances"][appliance_id]["max_seq"] == 9  # the bad batch stored nothing


def test_reject_records_rule(emu, appliance_id):
    emu.set_faults({"reject_records": {"point": "bad/.*"}})
    s = proto_stream(emu)
    s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(5))))
    s.ingest_records_offset(readings(appliance_id, range(5, 8)) + readings(appliance_id, [8], point="bad/sensor"))
    with pytest.raises(NonRetriableException, match="offset_id 1, index 3.*reject_records"):
        s.flush()
    emu.set_faults({"reject_records": {"seq": [2]}, "create_error": None})
    s = proto_stream(emu)
    s.ingest_records_offset(readings(appliance_id, [1, 2]))
    with pytest.raises(NonRetriableException, match="index 1"):
        s.flush()


def test_ack_delay_and_never_ack(emu, appliance_id):
    emu.set_faults({"ack_delay_ms": 400})
    s = proto_stream(emu)
    t0 = time.monotonic()
    s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(5))))
    assert time.monotonic() - t0 >= 0.35
    s.close()
    emu.set_faults({"ack_delay_ms": None, "never_ack": True})
    s = proto_stream(emu, flush_timeout_ms=1500)
    s.ingest_records_offset(readings(appliance_id, range(5, 10)))
    with pytest.raises(ZerobusException):
        s.flush()
    assert wait_rows(emu, appliance_id, 10)["max_seq"] == 9  # stored, just never acknowledged


def test_down_refuses_connections_until_cleared(emu, appliance_id):
    import socket

    emu.set_faults({"down": True})
    assert emu.http("GET", "/healthz")["grpc"] == "down"
    emu.http("POST", "/oidc/v1/token", {}, expect=(503,))  # the whole cloud is down, OAuth included
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", emu.grpc_port), timeout=2).close()
    with pytest.raises(ZerobusException):
        proto_stream(emu, recovery_retries=1)
    emu.clear_faults()
    s = proto_stream(emu)
    s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(3))))
    s.close()


def test_stats_missing_and_loss_markers(emu, appliance_id):
    s = proto_stream(emu)
    batch = readings(appliance_id, range(0, 10)) + readings(appliance_id, range(20, 30))  # gap 10..19
    batch += [marker(appliance_id, 30, 39)] + readings(appliance_id, range(40, 50))  # marker explains 31..39
    batch += readings(appliance_id, range(45, 50))  # duplicates
    s.wait_for_offset(s.ingest_records_offset(batch))
    s.close()
    app = emu.table_stats()["appliances"][appliance_id]
    assert (app["min_seq"], app["max_seq"]) == (0, 49)
    assert app["missing"] == [[10, 19], [31, 39]]
    assert app["unexplained_missing"] == [[10, 19]]
    assert app["loss_markers"] == 1
    rows = emu.rows(appliance_id=appliance_id, from_seq=30, limit=1)
    assert rows[0]["kind"] == "loss" and (rows[0]["loss_from_seq"], rows[0]["loss_to_seq"]) == (30, 39)


def test_single_record_calls_use_their_own_offsets(emu, appliance_id):
    s = proto_stream(emu)
    offsets = [s.ingest_record_offset(r) for r in readings(appliance_id, range(5))]
    assert offsets == [0, 1, 2, 3, 4]
    s.wait_for_offset(offsets[-1])
    s.close()
    assert [r["seq"] for r in emu.rows(appliance_id=appliance_id)] == [0, 1, 2, 3, 4]


def test_store_none_acks_without_storing(appliance_id):
    with Emulator(store="none") as emu:
        s = proto_stream(emu)
        s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(100))))
        s.close()
        assert emu.table_stats()["rows"] == 0
        assert not emu.store_path.exists()
        emu.http("GET", f"/tables/{emu.table}/rows", expect=(404,))


def test_expired_tokens_are_refetched(appliance_id):
    with Emulator(extra_args=["--token-ttl", "1"]) as emu:
        sdk = sdk_for(emu)
        s = proto_stream(emu, sdk=sdk)
        s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(3))))
        s.close()
        time.sleep(1.5)
        s = proto_stream(emu, sdk=sdk)  # the cached token has expired: the SDK must fetch a new one
        s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(3, 6))))
        s.close()
        assert emu.table_stats()["rows"] == 6
        assert emu.log_path.read_text().count('"event":"token_issued"') >= 2
