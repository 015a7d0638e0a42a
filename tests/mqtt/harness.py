"""Helpers for the MQTT tests: an in-process collector on the real spool writer, certificates,
the simulator as a subprocess, and reading back what the spool holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge.config import parse
from edge.encode import decode
from edge.runner import open_spool
from edge.sources import mqtt as mqtt_source
from edge.sources.base import SourceContext, SourceStatus
from edge.spool import SpoolReader
from edge.writer import SpoolWriter
from tests.mqtt.broker import ROOT, Broker

JSON_SUB = {"topic": "plant/#", "json": {"value": "$", "timestamp": "ts", "timestamp_format": "epoch_ms"}}
SPARKPLUG_SUB = {"topic": "spBv1.0/#", "format": "sparkplug"}


def wait_until(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def edge_config(data_dir: Path, broker: Broker, *, password: str | None = None, subs=(JSON_SUB, SPARKPLUG_SUB),
                spool_max: str = "1GiB", url: str | None = None, **source: Any) -> Any:
    return parse({
        "appliance_id": "edge-test",
        "data_dir": str(data_dir),
        "spool": {"path": str(data_dir / "spool.db"), "max_bytes": spool_max, "when_full": "block", "min_free_bytes": 0},
        "sources": [{
            "name": "mqtt1", "type": "mqtt", "url": url or f"mqtt://127.0.0.1:{broker.port}", "username": "edge",
            "password": broker.password("edge") if password is None else password,
            "subscriptions": list(subs), "reconnect_initial": 0.2, "reconnect_max": 1.0, **source,
        }],
    }, env={})


class InProcessEdge:
    """The real SpoolWriter + the MQTT Source on an event loop in a thread (no forwarder)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.spool_path = cfg.spool.path
        self.writer = SpoolWriter(open_spool(cfg))
        src_cfg = cfg.sources[0]
        data_dir = Path(cfg.data_dir) / "sources" / src_cfg.name
        data_dir.mkdir(parents=True, exist_ok=True)
        self.status = SourceStatus(src_cfg.name, "mqtt", self.writer.put_state)
        self.ctx = SourceContext(
            appliance_id=cfg.appliance_id, data_dir=data_dir, emit=self.writer.emit, submit=self.writer.submit,
            quarantine=self.writer.quarantine, wait_for_space=self.writer.wait_for_space_async, status=self.status,
            log=logging.getLogger("tests.mqtt"),
        )
        self.source = mqtt_source.Source(src_cfg, self.ctx)
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.source.run())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # the test asserts on it
            self.error = exc

    def state(self) -> dict:
        return self.status.snapshot()

    def wait_state(self, state: str, timeout: float = 15.0) -> dict:
        wait_until(lambda: self.state()["state"] == state, timeout, f"source state {state} (now {self.state()})")
        return self.state()

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(15)
        self.writer.close()
        assert self.error is None, f"the source crashed: {self.error!r}"


def spool_readings(spool_path: str) -> list[Any]:
    r = SpoolReader(spool_path)
    try:
        rows = r.peek(r.watermark(), 10_000_000, None)
    finally:
        close = getattr(r, "close", None)
        if close:
            close()
    return [decode(body) for _, body in rows]


def seqs_by_publisher(readings: list[Any]) -> dict[str, list[int]]:
    """Per-publisher sequence numbers carried by the readings (JSON `seq`, Sparkplug `msg_seq`)."""
    out: dict[str, list[int]] = {}
    for r in readings:
        if r.kind != "reading":
            continue
        parts = r.point.split("/")
        if r.point.startswith("plant/") and r.HasField("value_json"):
            out.setdefault(parts[1], []).append(json.loads(r.value_json)["seq"])
        elif parts[-1] == "msg_seq":
            out.setdefault(parts[1], []).append(r.value_int)
    return out


def acked_seqs(counters: dict) -> set[int]:
    return {s for a, b in counters["acked_ranges"] for s in range(a, b + 1)}


def run_simulator(broker: Broker, publisher: str, *, count: int, rate: float = 2000, flavour: str = "json",
                  port: int | None = None, extra: tuple = (), timeout: float = 60) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "simulators.mqtt", "--port", str(port or broker.port), "--publisher-id", publisher,
         "--password-file", str(broker.password_file(publisher)), "--rate", str(rate), "--count", str(count),
         "--flavour", flavour, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_simulator(broker: Broker, publisher: str, counters_file: Path, *, count: int, rate: float = 2000,
                    flavour: str = "json") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "simulators.mqtt", "--port", str(broker.port), "--publisher-id", publisher,
         "--password-file", str(broker.password_file(publisher)), "--rate", str(rate), "--count", str(count),
         "--flavour", flavour, "--counters-file", str(counters_file), "--drain-timeout", "120"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def make_certs(hostname: str = "localhost") -> dict[str, bytes]:
    """A CA and a server certificate for ``hostname`` and 127.0.0.1 (cryptography), PEM bytes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def cert(subject: str, key, issuer_name, issuer_key, ca: bool, san=None):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def pem_key(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = cert("test CA", ca_key, ca_name, ca_key, True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = cert(hostname, srv_key, ca_name, ca_key, False,
               [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = cert("edge", client_key, ca_name, ca_key, False)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other CA")])
    other = cert("other CA", other_key, other_name, other_key, True)
    pem = serialization.Encoding.PEM
    return {
        "ca.crt": ca.public_bytes(pem), "server.crt": srv.public_bytes(pem), "server.key": pem_key(srv_key),
        "other-ca.crt": other.public_bytes(pem),
        "client.crt": client.public_bytes(pem), "client.key": pem_key(client_key),
    }
