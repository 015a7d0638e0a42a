"""The client secret never appears in the state, the logs, the persisted state or stored errors."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from edge.forward import Forwarder, Scrubber, proxy_summary
from edge.spool import SpoolReader
from tests.forwarder.conftest import APP, Rig, make_cfg
from simulators.kit.emulator import Emulator

SECRET = "Sup3r-S3cret-xyzzy-4711"
WRONG = "Wr0ng-S3cret-plugh-0815"


def _needles(client_id: str, secret: str) -> list[str]:
    pair = f"{client_id}:{secret}".encode()
    return [secret, base64.b64encode(pair).decode()]


def _assert_clean(text: str, client_id: str, secret: str) -> None:
    for needle in _needles(client_id, secret):
        assert needle not in text


@pytest.fixture
def strict_emulator():
    emu = Emulator(client_id="edge-app", client_secret=SECRET)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def _texts_after_run(tmp_path, emu, secret, capfd, caplog, run) -> list[str]:
    """Run a forwarder with ``secret``; ``run(rig)`` drives it and returns its state. Every text it left."""
    caplog.set_level(logging.DEBUG)
    rig = Rig(tmp_path, emu)
    try:
        rig.fwd = Forwarder(make_cfg(emu, client_secret=secret), appliance_id=APP,
                            spool_path=str(rig.path), writer=rig.writer)
        st = run(rig)
        rig.fwd.stop(10)
        rig.fwd = None
        with SpoolReader(rig.path) as r:
            persisted = json.dumps(r.states("forwarder"))
        out, err = capfd.readouterr()
        return [json.dumps(st), persisted, caplog.text, out, err, repr(make_cfg(emu, client_secret=secret))]
    finally:
        rig.close()


def test_wrong_secret_blocks_without_leaking_it(tmp_path, strict_emulator, caplog, capfd):
    def run(rig):
        rig.append(10)
        rig.fwd.start()
        st = rig.wait_state("blocked")
        assert "401" in st["reason"] or "credential" in st["reason"].lower()
        return st

    for text in _texts_after_run(tmp_path, strict_emulator, WRONG, capfd, caplog, run):
        _assert_clean(text, "edge-app", WRONG)


def test_right_secret_with_token_faults_never_leaks(tmp_path, strict_emulator, caplog, capfd):
    def run(rig):
        res = rig.append(200)
        strict_emulator.set_faults({"token_error": {"status": 503, "times": 2},
                                    "fail_after_records": {"records": 50, "times": 1}})
        rig.fwd.start()
        rig.wait_delivered(res.last_seq)
        st = rig.fwd.state()
        assert st["failures_total"] >= 2
        return st

    for text in _texts_after_run(tmp_path, strict_emulator, SECRET, capfd, caplog, run):
        _assert_clean(text, "edge-app", SECRET)


def test_scrubber_removes_secret_and_derived_forms():
    s = Scrubber("edge-app", SECRET)
    pair = base64.b64encode(f"edge-app:{SECRET}".encode()).decode()
    text = s(f"boom {SECRET} Authorization: Basic {pair} Bearer eyJabc.def client_secret={SECRET}&x=1 "
             f"http://user:pw@proxy:3128")
    assert SECRET not in text and pair not in text and "eyJabc" not in text and "pw@" not in text
    assert "Bearer ***" in text and "://***@proxy:3128" in text


def test_proxy_summary_names_the_variable_in_effect_without_credentials():
    env = {"HTTPS_PROXY": "http://alice:hunter2@proxy.plant:3128", "http_proxy": "http://other:1",
           "NO_PROXY": "127.0.0.1,localhost", "SSL_CERT_FILE": "/etc/ssl/bundle.pem"}
    text = proxy_summary(env)
    assert "HTTPS_PROXY=http://***@proxy.plant:3128" in text and "hunter2" not in text and "alice" not in text
    assert "http_proxy" not in text  # the SDK takes the first one set, in its own order
    assert "NO_PROXY=127.0.0.1,localhost" in text and "/etc/ssl/bundle.pem" in text
    assert "grpc_proxy=http://g:1" in proxy_summary({"grpc_proxy": "http://g:1", "HTTPS_PROXY": "http://h:2"})
    assert "unset" in proxy_summary({})
