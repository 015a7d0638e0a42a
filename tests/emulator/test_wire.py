"""Wire-level conformance with a raw gRPC client (our own stubs): what the SDK hides from its caller."""

from __future__ import annotations

import base64
import json
import queue
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest
from google.protobuf import descriptor_pb2

from edge.pb.reading_pb2 import Reading
from simulators.zerobus import wire_pb2 as pb
from simulators.zerobus import wire_pb2_grpc
from tests.emulator.sdk_helpers import readings
from simulators.kit.emulator import Emulator

TIMEOUT_S = 10


def sdk_form(tables: list[str], workspace: str = "127") -> dict:
    """The token request form exactly as the SDK builds it (default_token_factory.rs)."""
    details = []
    for t in tables:
        cat, sch, _ = t.split(".")
        details += [
            {"type": "unity_catalog_privileges", "privileges": ["USE CATALOG"], "object_type": "CATALOG", "object_full_path": cat},
            {"type": "unity_catalog_privileges", "privileges": ["USE SCHEMA"], "object_type": "SCHEMA", "object_full_path": f"{cat}.{sch}"},
            {"type": "unity_catalog_privileges", "privileges": ["SELECT", "MODIFY"], "object_type": "TABLE", "object_full_path": t},
        ]
    return {"grant_type": "client_credentials", "scope": "all-apis",
            "resource": f"api://databricks/workspaces/{workspace}/zerobusDirectWriteApi",
            "authorization_details": json.dumps(details)}


def token(emu: Emulator, tables: list[str] | None = None, status: int = 200, creds: str | None = None,
          form: dict | None = None) -> dict:
    form = form or sdk_form(tables or [emu.table])
    req = urllib.request.Request(emu.workspace_url + "/oidc/v1/token", data=urllib.parse.urlencode(form).encode(), method="POST")
    basic = base64.b64encode((creds or f"{emu.client_id}:{emu.client_secret}").encode()).decode()
    req.add_header("Authorization", f"Basic {basic}")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            got, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        got, body = exc.code, exc.read()
    assert got == status, body
    return json.loads(body)


class RawStream:
    """A bidirectional EphemeralStream driven by hand: put() requests, get() responses."""

    def __init__(self, emu: Emulator, access_token: str | None, table: str):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{emu.grpc_port}")
        self.requests: queue.Queue = queue.Queue()
        md = [("x-databricks-zerobus-table-name", table)]
        if access_token:
            md.append(("authorization", f"Bearer {access_token}"))
        stub = wire_pb2_grpc.ZerobusStub(self.channel)
        self.responses = stub.EphemeralStream(iter(self.requests.get, None), metadata=md, timeout=TIMEOUT_S)

    def put(self, msg: pb.EphemeralStreamRequest | None) -> None:
        self.requests.put(msg)

    def get(self) -> pb.EphemeralStreamResponse:
        return next(self.responses)

    def close(self) -> None:
        self.requests.put(None)
        self.channel.close()


def create(table: str, descriptor: bool = True) -> pb.EphemeralStreamRequest:
    d = descriptor_pb2.DescriptorProto()
    Reading.DESCRIPTOR.CopyToProto(d)
    cs = pb.CreateIngestStreamRequest(table_name=table, record_type=pb.PROTO if descriptor else pb.JSON)
    if descriptor:
        cs.descriptor_proto = d.SerializeToString()
    return pb.EphemeralStreamRequest(create_stream=cs)


def batch(offset: int, records: list[bytes]) -> pb.EphemeralStreamRequest:
    req = pb.EphemeralStreamRequest()
    req.ingest_record_batch.offset_id = offset
    req.ingest_record_batch.proto_encoded_batch.records.extend(records)
    return req


def test_create_then_cumulative_acks_and_offsets_restart_at_zero(shared_emulator, appliance_id):
    emu = shared_emulator
    tok = token(emu, [emu.table])
    assert tok["expires_in"] > 0 and tok["access_token"]
    for rpc in range(2):  # every RPC numbers its offsets from 0
        s = RawStream(emu, tok["access_token"], emu.table)
        s.put(create(emu.table))
        first = s.get()
        assert first.WhichOneof("payload") == "create_stream_response" and first.create_stream_response.stream_id
        for off in range(5):
            s.put(batch(off, readings(appliance_id, range(rpc * 500 + off * 100, rpc * 500 + off * 100 + 100))))
        acked = -1
        while acked < 4:
            r = s.get()
            assert r.WhichOneof("payload") == "ingest_record_response"
            nxt = r.ingest_record_response.durability_ack_up_to_offset
            assert acked < nxt <= 4  # cumulative: never backwards, never past what was sent
            acked = nxt
        s.close()
    app = emu.table_stats()["appliances"][appliance_id]
    assert (app["max_seq"], app["missing"]) == (999, [])


def test_empty_batch_is_acked(shared_emulator, appliance_id):
    emu = shared_emulator
    s = RawStream(emu, token(emu)["access_token"], emu.table)
    s.put(create(emu.table))
    s.get()
    s.put(batch(0, []))
    s.put(batch(1, readings(appliance_id, range(2))))
    acked = -1
    while acked < 1:
        acked = s.get().ingest_record_response.durability_ack_up_to_offset
    s.close()
    assert emu.table_stats()["appliances"][appliance_id]["max_seq"] == 1


def test_offsets_out_of_order_are_invalid(shared_emulator, appliance_id):
    emu = shared_emulator
    s = RawStream(emu, token(emu)["access_token"], emu.table)
    s.put(create(emu.table))
    s.get()
    s.put(batch(1, readings(appliance_id, range(3))))
    with pytest.raises(grpc.RpcError) as exc:
        s.get()
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected 0" in exc.value.details()
    s.close()


@pytest.mark.parametrize(
    "case,code",
    [
        ("no_token", grpc.StatusCode.UNAUTHENTICATED),
        ("forged_token", grpc.StatusCode.UNAUTHENTICATED),
        ("other_table_grant", grpc.StatusCode.PERMISSION_DENIED),
        ("unknown_table", grpc.StatusCode.NOT_FOUND),
        ("ingest_first", grpc.StatusCode.INVALID_ARGUMENT),
        ("json_into_proto", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_refusals(shared_emulator, case, code):
    emu = shared_emulator
    table = "main.edge.missing" if case == "unknown_table" else emu.table
    tok = {
        "no_token": None,
        "forged_token": "zbemu.eyJzdWIiOiJ4In0.AAAA",
        "other_table_grant": token(emu, ["main.edge.other"])["access_token"],
    }.get(case, token(emu)["access_token"])
    s = RawStream(emu, tok, table)
    if case == "ingest_first":
        s.put(batch(0, []))
    else:
        s.put(create(table))
    if case == "json_into_proto":
        s.get()
        req = pb.EphemeralStreamRequest()
        req.ingest_record_batch.offset_id = 0
        req.ingest_record_batch.json_batch.records.append("{}")
        s.put(req)
    with pytest.raises(grpc.RpcError) as exc:
        s.get()
    assert exc.value.code() == code, exc.value.details()
    s.close()


def test_token_endpoint_contract(shared_emulator):
    emu = shared_emulator
    tok = token(emu, [emu.table])
    assert tok["token_type"] == "Bearer" and isinstance(tok["expires_in"], int)
    bad = urllib.request.Request(emu.workspace_url + "/oidc/v1/token", data=b"grant_type=password", method="POST")
    bad.add_header("Authorization", "Basic " + base64.b64encode(b"a:b").decode())
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(bad, timeout=TIMEOUT_S)
    assert exc.value.code == 400
    nobasic = urllib.request.Request(emu.workspace_url + "/oidc/v1/token", data=b"grant_type=client_credentials", method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(nobasic, timeout=TIMEOUT_S)
    assert exc.value.code == 401
    # The SDK uses the URL verbatim: a trailing slash in unity_catalog_url is a 404, as in the cloud.
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(urllib.request.Request(emu.workspace_url + "//oidc/v1/token", data=b"", method="POST"), timeout=TIMEOUT_S)
    assert exc.value.code == 404


def test_fault_document_errors_are_400(shared_emulator):
    emu = shared_emulator
    assert "unknown fault" in json.dumps(emu.http("POST", "/faults", {"explode": True}, expect=(400,)))
    assert "status code" in json.dumps(emu.http("POST", "/faults", {"create_error": {"code": "NOPE"}}, expect=(400,)))
    assert emu.faults()["active"] == {}
