"""Fixtures for the admin page: a real spool written by the real writer, and passwords per role."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.config import parse
from edge.encode import encode_reading
from edge.spool import Spool
from edge.writer import SpoolWriter

PASSWORDS = {"admin": "admin-pass-123", "operator": "operator-pass-123", "viewer": "viewer-pass-123"}
TOKEN = "metrics-token-123"
ENV = {"EDGE_ADMIN_PASSWORD": PASSWORDS["admin"], "EDGE_OPERATOR_PASSWORD": PASSWORDS["operator"],
       "EDGE_VIEWER_PASSWORD": PASSWORDS["viewer"]}


def make_config(tmp: Path, **admin):
    doc = {
        "appliance_id": "plant-7-edge",
        "data_dir": str(tmp),
        "spool": {"path": str(tmp / "spool.db"), "max_bytes": "64MiB"},
        "zerobus": {"endpoint": "https://zb.example.test:443", "table": "main.edge.readings",
                    "client_secret": "s3cret-never-shown"},
        "admin": {"secure_cookies": False, **admin},
    }
    return parse(doc, env={})


def items(n: int, source: str = "line1", start_ts: int | None = None) -> list[tuple[int, bytes]]:
    ts = start_ts or time.time_ns() // 1000
    return [(ts + i, encode_reading(source=source, protocol="synthetic", point=f"p/{i % 10}", value=float(i),
                                    source_ts=ts + i, collected_ts=ts + i)) for i in range(n)]


def forwarder_state(**over) -> dict:
    now = time.time()
    rec = {
        "state": "backing_off", "reason": "UNAVAILABLE: connection refused", "since": now - 95,
        "updated_ts": now, "endpoint": "https://zb.example.test:443", "workspace_url": "https://ws.example.test",
        "table": "main.edge.readings", "streams": 1, "last_ack_ts": now - 100, "last_ack_seq": 40,
        "acked_seq": 40, "sent_seq": 40, "acked_total": 40, "sent_total": 45, "resent_total": 5,
        "batches_in_flight": 0, "failures_total": 3, "backoff_attempt": 3,
        "recent_errors": [{"ts": now - 20, "phase": "connect", "kind": "Retry",
                           "reason": "UNAVAILABLE: connection refused"}],
        "ack_latency_buckets": [[0.005, 0], [0.01, 2], [0.025, 5], [0.05, 8], [0.1, 9], [0.25, 9], [0.5, 9],
                                [1.0, 9], [2.5, 9], [5.0, 9], [10.0, 9], [30.0, 9], [60.0, 9], ["+Inf", 9]],
        "ack_latency_sum": 0.21, "ack_latency_count": 9, "egress_cuts_total": 2,
        "drain": {"binding": "quota-bound", "rtt_ms": 180.0, "min_rtt_ms": 150.0, "records_per_s": 98000.0,
                  "bytes_per_s": 6.1e6, "window_bytes": 2_200_000, "inflight_bytes": 2_000_000, "streams_open": 2,
                  "cpu": 0.4},
        "egress_cuts": [
            {"started_ts": now - 3000, "recovered_ts": now - 2940, "drained_ts": now - 2900, "outage_s": 60,
             "drain_s": 40, "backlog_start": 3, "backlog_peak": 1200, "errors": 4},
            {"started_ts": now - 95, "recovered_ts": None, "drained_ts": None, "backlog_start": 0,
             "backlog_peak": 50, "errors": 3, "open": True},
        ],
    }
    rec.update(over)
    return rec


def source_state(name: str, **over) -> dict:
    now = time.time()
    rec = {"type": "mqtt", "state": "connected", "detail": "", "readings_total": 1234, "errors_total": 2,
           "quarantined_total": 1, "last_reading_ts": now - 1, "last_error": "bad json on topic plant/x",
           "last_error_ts": now - 60, "devices_offline": [], "since_ts": now - 500}
    rec.update(over)
    return rec


@pytest.fixture
def spool_dir(tmp_path: Path):
    """A spool with 100 readings (40 delivered), a dead letter, a quarantined payload and state records."""
    cfg = make_config(tmp_path)
    spool = Spool.open(cfg.spool.path, appliance_id=cfg.appliance_id, max_bytes=int(cfg.spool.max_bytes))
    w = SpoolWriter(spool, sample_interval_s=0.2)
    try:
        w.submit(items(100)).result(10)
        w.ack(40).result(10)
        w.dead_letter(50, "INVALID_ARGUMENT: record rejected <script>alert(1)</script>").result(10)
        w.quarantine("mqtt1", "not JSON", b"\x00\x01<b>bold</b>\xff" + b"x" * 5000, {"topic": "plant/x"}).result(10)
        w.put_state("forwarder", "main", forwarder_state()).result(10)
        w.put_state("source", "mqtt1", source_state("mqtt1")).result(10)
        w.put_state("source", "modbus1", source_state(
            "modbus1", type="modbus", state="degraded", devices_offline=["plc-3"], readings_total=99)).result(10)
        w.sample().result(10)
    finally:
        w.close()
    return tmp_path


@pytest.fixture
def cfg(spool_dir: Path):
    return make_config(spool_dir)


@pytest.fixture
def app(cfg):
    from edge.admin import create_app

    a = create_app(cfg, env=ENV)
    a.testing = True
    return a


def login(client, role: str):
    client.get("/login")
    with client.session_transaction() as s:
        tok = s["csrf"]
    r = client.post("/login", data={"user": role, "password": PASSWORDS[role], "csrf": tok, "next": "/"})
    assert r.status_code == 302, r.data[:300]
    return client


@pytest.fixture
def as_role(app):
    def make(role: str):
        return login(app.test_client(), role)

    return make
