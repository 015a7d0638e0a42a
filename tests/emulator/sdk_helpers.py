"""Small helpers shared by the emulator tests: records and SDK streams."""

from __future__ import annotations

from edge.encode import appliance_prefix, encode_loss_marker, encode_reading, frame
from edge.pb.reading_pb2 import Reading
from simulators.kit.emulator import Emulator
from zerobus.sdk.shared import StreamConfigurationOptions, TableProperties
from zerobus.sdk.sync import ZerobusSdk

# Fast retries so failure paths stay within seconds.
FAST = dict(recovery_backoff_ms=100, recovery_timeout_ms=5000, recovery_retries=3, flush_timeout_ms=30000)


def readings(appliance_id: str, seqs, point: str = "ns=2;s=Line1.Temp") -> list[bytes]:
    pre = appliance_prefix(appliance_id)
    return [frame(pre, s, encode_reading(source="s1", protocol="opcua", point=point, value=float(s), collected_ts=1_790_000_000_000_000 + s)) for s in seqs]


def marker(appliance_id: str, lo: int, hi: int, reason: str = "drop_oldest") -> bytes:
    return frame(appliance_prefix(appliance_id), lo, encode_loss_marker(lo, hi, reason))


def options(**kw) -> StreamConfigurationOptions:
    return StreamConfigurationOptions(**{**FAST, **kw})


def sdk_for(emu: Emulator) -> ZerobusSdk:
    return ZerobusSdk(emu.grpc_endpoint, emu.workspace_url)


def proto_stream(emu: Emulator, table: str | None = None, descriptor=Reading.DESCRIPTOR, sdk: ZerobusSdk | None = None,
                 client_id: str | None = None, client_secret: str | None = None, **opts):
    sdk = sdk or sdk_for(emu)
    return sdk.create_stream(
        client_id=client_id or emu.client_id,
        client_secret=client_secret or emu.client_secret,
        table_properties=TableProperties(table or emu.table, descriptor),
        options=options(**opts),
    )


def json_stream(emu: Emulator, **opts):
    return sdk_for(emu).create_stream(
        client_id=emu.client_id, client_secret=emu.client_secret,
        table_properties=TableProperties(emu.table), options=options(**opts),
    )
