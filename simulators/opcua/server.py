"""A plant as an OPC-UA server (asyncua): the address space, value updates, faults, history, security.

Address space (namespace ``urn:zerobus-edge:opcua-sim``, index 2 on a fresh server)::

    Objects/Plant/line1/press1/temperature     ns=2;s=line1.press1.temperature  Double, EngineeringUnits degC
                        .../motor_current      Float
                        .../parts              Int32 (counter)
                        .../alarm, valve_open  Boolean
                        .../state              String (RUNNING / IDLE / FAULT / OFFLINE)
              line1/info/last_change           DateTime        (extras)
              line1/info/spectrum              Double[8]       (extras)
              line1/info/limits                Range structure (extras, an ExtensionObject)

Values come from ``simulators.plant.Plant`` (steps, drift, noise, faults) for up to
``plant_limit`` signals; beyond that a cheap random walk keeps tens of thousands of nodes
changing without spending the CPU the server needs for publishing. Faults show as
status: out of range -> UncertainEngineeringUnitsExceeded, machine offline -> BadNotConnected
(value null), stuck -> no change at all.

Every change written is counted per node (``produced``) and kept in ``history`` (HistoryRead).

Size: ~455 lines, on purpose: the address space, the tick loop, faults and history all drive one
asyncua server object; splitting them would spread its lifecycle over several files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto import cert_gen
from asyncua.server import monitored_item_service
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.plant import Plant

from . import encode
from .history import SimHistory
from simulators.kit.ports import free_port

NAMESPACE = "urn:zerobus-edge:opcua-sim:plant"
APP_URI = "urn:zerobus-edge:opcua-sim"
SIGNALS_PER_LINE = 27  # Plant's default layout
_VT = {"float": ua.VariantType.Double, "int": ua.VariantType.Int32, "bool": ua.VariantType.Boolean, "string": ua.VariantType.String}
_UNCERTAIN_RANGE = ua.StatusCode(ua.StatusCodes.UncertainEngineeringUnitsExceeded)
_BAD_OFFLINE = ua.StatusCode(ua.StatusCodes.BadNotConnected)
_GOOD = ua.StatusCode(ua.StatusCodes.Good)
_NULL = ua.VariantType.Null
_ONE_US = timedelta(microseconds=1)
SECURITY = {
    "none": [ua.SecurityPolicyType.NoSecurity],
    "sign": [ua.SecurityPolicyType.Basic256Sha256_Sign],
    "encrypt": [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
    "all": [ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
}

log = logging.getLogger("simulators.opcua")


@dataclass
class SimNode:
    nodeid: ua.NodeId
    path: str  # plant path line1/press1/temperature
    vtype: ua.VariantType
    plant_index: int | None  # index into Plant.signals when the plant model drives it
    lo: float = 0.0
    hi: float = 100.0
    value: Any = None
    status: ua.StatusCode = field(default_factory=lambda: _GOOD)
    key: str = ""  # nodeid.to_string(), computed once (the produced counters' key)


class _Users(UserManager):
    def __init__(self, users: dict[str, str]):
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole

        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


def ensure_server_certificate(cert_dir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert, key = cert_dir / "server-cert.der", cert_dir / "server-key.pem"
    if not (cert.is_file() and key.is_file()):
        k = cert_gen.generate_private_key()
        c = cert_gen.generate_self_signed_app_certificate(
            k, APP_URI, {"organizationName": "Zerobus Edge simulator"},
            [x509.UniformResourceIdentifier(APP_URI), x509.DNSName("localhost"), x509.DNSName(host)],
            extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], days=365,
        )
        key.write_bytes(cert_gen.dump_private_key_as_pem(k))
        cert.write_bytes(c.public_bytes(Encoding.DER))
    return cert, key


def _lean_datachange_path() -> None:
    """Two changes to asyncua's server-side data-change path, for this process only.

    Under load (py-spy, ops/bench_opcua.py) most of a simulator's CPU went to work whose
    result is thrown away:

    * ``MonitoredItemValues.set_current_datavalue`` deep-copies every DataValue "to prevent
      referencing the inner value", in case the writer mutates it later: 58% of the CPU.
      This process never mutates a DataValue after writing it (each write builds a new one,
      arrays included; values from the Write service are freshly decoded), so keeping the
      reference is equivalent.
    * ``MonitoredItemService.datachange_callback`` builds ``MonitoredItemNotification()``
      with its default Value, an empty DataValue whose Variant guesses its type through
      enum lookups, only to overwrite it on the next line: 28% of what remained. The
      replacement makes the same decisions (disabled item, trigger, deadband) and builds
      the notification with its real value.

    The collector is a client and never runs this code. asyncua is pinned (pyproject.toml);
    ``tests/opcua/test_simulator.py`` checks the hooks and the behaviour.
    """
    values_cls = monitored_item_service.MonitoredItemValues
    service_cls = monitored_item_service.MonitoredItemService
    if getattr(service_cls, "_zerobus_lean", False):
        return
    encode.install()  # and the notifications encoded without asyncua's generic encoder (encode.py)
    original_callback = service_cls.datachange_callback
    disabled = ua.MonitoringMode.Disabled
    status_value = ua.DataChangeTrigger.StatusValue
    notification = ua.MonitoredItemNotification

    def set_current_datavalue(self, cur_val: ua.DataValue) -> None:
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = cur_val

    async def datachange_callback(self, handle: int, value: ua.DataValue, error: ua.StatusCode | None = None) -> None:
        if error:
            return await original_callback(self, handle, value, error)
        mid = self._monitored_datachange[handle]
        mdata = self._monitored_items[mid]
        if mdata.mode == disabled:
            return
        mv = mdata.mvalue
        mv.set_current_datavalue(value)
        flt = mdata.filter
        if flt:
            if not (self._is_data_changed(mv, flt.Trigger) and self._is_deadband_exceeded(mv, flt)):
                return
        elif not self._is_data_changed(mv, status_value):
            return
        await self.isub.enqueue_datachange_event(mid, notification(mdata.client_handle, value), mdata.queue_size)

    values_cls.set_current_datavalue = set_current_datavalue
    service_cls.datachange_callback = datachange_callback
    service_cls._zerobus_lean = True


class SimServer:
    def __init__(
        self,
        *,
        port: int = 0,
        nodes: int = 100,
        rate: float = 100.0,
        security: str = "none",
        cert_dir: str | os.PathLike | None = None,
        users: dict[str, str] | None = None,
        history: int = 1000,
        history_enabled: bool = True,
        seed: int = 1,
        faults: bool = True,
        extras: bool = True,
        units: bool | None = None,
        plant_limit: int = 2000,
        tick: float = 0.05,
        hold: float = 0.0,
    ):
        if security not in SECURITY:
            raise ValueError(f"security must be one of {', '.join(SECURITY)}")
        self.port = port or free_port()
        self.n_nodes = nodes
        self.rate = rate
        self.security = security
        self.cert_dir = Path(cert_dir) if cert_dir else None
        self.users = users or {}
        self.history = SimHistory(per_node=history)
        self.history_enabled = history_enabled
        self.seed = seed
        self.faults = faults
        self.extras = extras
        self.units = units if units is not None else nodes <= 5000
        self.plant_limit = plant_limit
        self.tick = tick
        self.hold = hold  # seconds to serve initial values only (lets a collector subscribe first)
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/sim"
        self.nodes: list[SimNode] = []
        self.by_path: dict[str, SimNode] = {}
        self.produced: dict[str, int] = {}
        self.produced_total = 0
        self.cert_path: Path | None = None
        self.server: Server | None = None
        self._task: asyncio.Task | None = None
        self._paused = False
        self._rng = random.Random(seed)
        self._cursor = 0
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ building

    async def start(self) -> "SimServer":
        _lean_datachange_path()
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Zerobus Edge OPC-UA plant simulator")
        await server.set_application_uri(APP_URI)
        server.set_security_policy(SECURITY[self.security])
        if self.security != "none" or self.cert_dir:
            cert, key = ensure_server_certificate(self.cert_dir or Path(".opcua-sim-pki"))
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            self.cert_path = cert
        if self.users:
            server.iserver.user_manager = _Users(self.users)
            server.set_identity_tokens([ua.UserNameIdentityToken])
        server.iserver.history_manager.set_storage(self.history)
        if not self.history_enabled:
            _disable_history(server)
        self.server = server
        await self._build(server)
        await server.start()
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())
        return self

    async def _build(self, server: Server) -> None:
        ns = await server.register_namespace(NAMESPACE)
        lines = max(1, math.ceil(self.n_nodes / SIGNALS_PER_LINE))
        self.plant = Plant(lines=lines, seed=self.seed)
        if self.faults:
            self.plant.auto_faults(24 * 3600, every=120.0, duration=30.0)
        plant_folder = await server.nodes.objects.add_folder(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
        folders: dict[str, Any] = {}
        now = datetime.now(timezone.utc)
        for sig in self.plant.signals[: self.n_nodes]:
            parent = plant_folder
            for depth, part in enumerate(sig.path.split("/")[:-1]):
                key = "/".join(sig.path.split("/")[: depth + 1])
                if key not in folders:
                    folders[key] = await parent.add_object(ua.NodeId(key.replace("/", "."), ns), ua.QualifiedName(part, ns))
                parent = folders[key]
            vt = ua.VariantType.Float if sig.name == "motor_current" else _VT[sig.data_type]
            value = self._initial(sig.data_type)
            nid = ua.NodeId(sig.path.replace("/", "."), ns)
            var = await parent.add_variable(nid, ua.QualifiedName(sig.name, ns), ua.Variant(value, vt))
            node = SimNode(nid, sig.path, vt, sig.index if sig.index < self.plant_limit else None, sig.lo, sig.hi, value)
            self._add_node(node, var)
            if self.units and sig.unit:
                eu = ua.EUInformation(NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                                      DisplayName=ua.LocalizedText(sig.unit), Description=ua.LocalizedText(sig.unit))
                await var.add_property(ua.NodeId(f"{nid.Identifier}.EngineeringUnits", ns),
                                       ua.QualifiedName("EngineeringUnits", 0), eu)
        if self.extras:
            for ln in range(1, lines + 1):
                info = await folders[f"line{ln}"].add_object(ua.NodeId(f"line{ln}.info", ns), ua.QualifiedName("info", ns))
                for name, vt, val in (
                    ("last_change", ua.VariantType.DateTime, now),
                    ("spectrum", ua.VariantType.Double, [0.0] * 8),
                    ("limits", ua.VariantType.ExtensionObject, ua.Range(Low=0.0, High=100.0)),
                ):
                    nid = ua.NodeId(f"line{ln}.info.{name}", ns)
                    var = await info.add_variable(nid, ua.QualifiedName(name, ns), ua.Variant(val, vt))
                    self._add_node(SimNode(nid, f"line{ln}/info/{name}", vt, None, value=val), var)
        for node in self.nodes:
            # Historizing + HistoryRead access: what a client checks before asking for history.
            await server.write_attribute_value(node.nodeid, ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)),
                                               ua.AttributeIds.Historizing)
            await server.write_attribute_value(node.nodeid, ua.DataValue(ua.Variant(5, ua.VariantType.Byte)),
                                               ua.AttributeIds.AccessLevel)
            await server.write_attribute_value(node.nodeid, ua.DataValue(ua.Variant(5, ua.VariantType.Byte)),
                                               ua.AttributeIds.UserAccessLevel)
            # The initial value is a produced value too: a subscriber gets it first.
            await self._write(node, node.value, _GOOD)

    def _add_node(self, node: SimNode, var: Any) -> None:
        self.nodes.append(node)
        self.by_path[node.path] = node
        node.key = node.nodeid.to_string()
        self.produced[node.key] = 0

    def _initial(self, dtype: str) -> Any:
        return {"float": 0.0, "int": 0, "bool": False, "string": "IDLE"}[dtype]

    # ------------------------------------------------------------------ values

    async def _write(self, node: SimNode, value: Any, status: ua.StatusCode, ts: datetime | None = None) -> None:
        ts = ts or datetime.now(timezone.utc)
        bad = status.is_bad()
        variant = ua.Variant(None if bad else value, _NULL if bad else node.vtype)
        dv = ua.DataValue(variant, StatusCode=status, SourceTimestamp=ts, ServerTimestamp=ts)
        node.value, node.status = value, status
        await self.server.write_attribute_value(node.nodeid, dv)
        self.history.append(node.nodeid, dv)
        self.produced[node.key] += 1
        self.produced_total += 1

    async def set_value(self, path: str, value: Any, status: int = ua.StatusCodes.Good, ts: datetime | None = None) -> None:
        """Write one value now (tests): counted and historised like any other change."""
        await self._write(self.by_path[path], value, ua.StatusCode(status), ts)

    def _next(self, node: SimNode, t: float) -> tuple[Any, ua.StatusCode] | None:
        """The node's value at t, or None when it does not change (stuck sensor, steady state)."""
        if node.plant_index is not None:
            sig = self.plant.signals[node.plant_index]
            v = self.plant.value(sig.path, t)
            if v is None:
                status, v = _BAD_OFFLINE, None
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and not sig.lo <= v <= sig.hi:
                status = _UNCERTAIN_RANGE
            else:
                status = _GOOD
            if node.vtype == ua.VariantType.Float and v is not None:
                v = float(v)
        else:
            status = _GOOD
            vt = node.vtype
            cur = node.value
            if isinstance(cur, list):
                v = [round(self._rng.random(), 4) for _ in cur]
            elif vt in (ua.VariantType.Double, ua.VariantType.Float):
                span = (node.hi - node.lo) or 1.0
                v = min(max((cur or 0.0) + self._rng.gauss(0, 0.002 * span), node.lo), node.hi)
                v = round(v, 4)
            elif vt == ua.VariantType.Int32:
                v = (cur or 0) + 1
            elif vt == ua.VariantType.Boolean:
                v = not cur
            elif vt == ua.VariantType.String:
                v = "RUNNING" if cur != "RUNNING" else "IDLE"
            elif vt == ua.VariantType.DateTime:
                v = datetime.now(timezone.utc)
            else:
                return None
        if v == node.value and status == node.status:
            return None
        return v, status

    async def _run(self) -> None:
        if self.hold:
            await asyncio.sleep(self.hold)
        owed = 0.0
        last = due = time.monotonic()
        n = len(self.nodes)
        while True:
            # Ticks on a fixed schedule: the time spent writing counts towards the next tick
            # (sleeping a whole tick after each burst capped a busy process far below its rate).
            due += self.tick
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                await asyncio.sleep(0)
                due = max(due, now - self.tick)
            now = time.monotonic()
            owed += (now - last) * self.rate
            last = now
            if self._paused or n == 0:
                owed = 0.0
                continue
            # Behind schedule (CPU-starved): catch up at most half a second's worth, so a starved
            # process does not burst forever; the report shows the rate actually produced.
            owed = min(owed, self.rate * max(self.tick * 2, 0.5))
            k = int(owed)
            owed -= k
            t = now - self._t0
            ts = datetime.now(timezone.utc)
            made = tries = 0
            # Skip nodes that do not change right now, but never spin through the plant forever.
            while made < k and tries < 4 * k and not self._paused:
                if tries and tries % n == 0:  # a second round in one tick (few nodes, or catching up):
                    ts = max(datetime.now(timezone.utc), ts + _ONE_US)  # one value per node and source time
                node = self.nodes[self._cursor]
                self._cursor = (self._cursor + 1) % n
                tries += 1
                nxt = self._next(node, t)
                if nxt is None:
                    continue
                await self._write(node, nxt[0], nxt[1], ts)
                made += 1
                if made % 500 == 0:
                    await asyncio.sleep(0)  # let requests (subscribe, publish) through

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    # ------------------------------------------------------------------ lifecycle and reporting

    def report(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint, "nodes": len(self.nodes), "produced_total": self.produced_total,
            "per_node": dict(self.produced), "ts": time.time(),
        }

    def write_report(self, path: str | os.PathLike) -> None:
        tmp = Path(f"{path}.tmp")
        try:
            tmp.write_text(json.dumps(self.report()))
            os.replace(tmp, path)
        except OSError as exc:  # the reader may have removed the directory already
            log.warning("could not write report %s: %s", path, exc)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.server:
            await self.server.stop()
            self.server = None


def _disable_history(server: Server) -> None:
    """Answer HistoryRead like a server without history: BadHistoryOperationUnsupported per node."""
    hm = server.iserver.history_manager

    async def read_history(params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        return [ua.HistoryReadResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadHistoryOperationUnsupported))
                for _ in params.NodesToRead]

    hm.read_history = read_history
