"""TLS with a private CA via SSL_CERT_FILE, as the SDK honours it; verification stays on."""

from __future__ import annotations

import logging

import pytest

from tests.forwarder.conftest import Rig
from simulators.kit.emulator import Emulator


@pytest.fixture
def tls_emulator():
    emu = Emulator(tls=True)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def test_drains_over_tls_trusting_the_emulator_ca(tmp_path, tls_emulator, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="edge.forwarder")
    assert tls_emulator.grpc_endpoint.startswith("https://")
    monkeypatch.setenv("SSL_CERT_FILE", tls_emulator.ca_bundle)
    rig = Rig(tmp_path, tls_emulator)
    try:
        res = rig.append(500)
        rig.start(streams=2)
        rig.wait_delivered(res.last_seq)
        led = rig.ledger()
        assert (led["min_seq"], led["max_seq"], led["missing_count"]) == (res.first_seq, res.last_seq, 0)
        assert f"SSL_CERT_FILE=set ({tls_emulator.ca_bundle})" in caplog.text
    finally:
        rig.close()


def test_without_the_ca_the_connection_is_refused_not_downgraded(tmp_path, tls_emulator, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    rig = Rig(tmp_path, tls_emulator)
    try:
        res = rig.append(50)
        fwd = rig.start()
        import time

        deadline = time.monotonic() + 20
        while fwd.state()["failures_total"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        st = fwd.state()
        assert st["failures_total"] >= 2 and st["acked_total"] == 0
        assert rig.watermark() == res.first_seq - 1
        assert tls_emulator.table_stats()["rows"] == 0
    finally:
        rig.close()
