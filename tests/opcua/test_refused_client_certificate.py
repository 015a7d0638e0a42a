"""A server that refuses our client certificate (open62541 answers BadSecurityChecksFailed) is
reported as tls_error with the file to trust on the server, by its real path."""

from __future__ import annotations

from asyncua import ua
from asyncua.ua.uaerrors import BadSecurityChecksFailed

from edge.configtypes import build
from edge.sources.opcua.config import Config
from edge.sources.opcua.connect import classify
from edge.sources.opcua.diagnose import explain_connect_error
from edge.sources.opcua.security import Pki
from edge.sources.states import State


def config(mode: str) -> Config:
    return build(Config, {"name": "plc", "type": "opcua", "endpoint": "opc.tcp://plc:4840",
                          "groups": [{"name": "g", "nodes": ["ns=2;s=x"]}], "security": {"mode": mode}},
                 "sources[0]")


def test_the_refusal_names_our_certificate_file_to_trust_on_the_server():
    exc = BadSecurityChecksFailed()
    assert isinstance(exc, ua.UaStatusCodeError)
    text = explain_connect_error(exc, "Basic256Sha256", "SignAndEncrypt", own_cert="/var/lib/edge/pki/own/cert.der")
    assert text == ("the server refused our client certificate (BadSecurityChecksFailed): trust "
                    "/var/lib/edge/pki/own/cert.der on the server (copy it into the server's trusted certificates)")


def test_without_a_certificate_in_use_the_plain_status_is_kept():
    text = explain_connect_error(BadSecurityChecksFailed(), "None", "None")
    assert "BadSecurityChecksFailed" in text and "client certificate" not in text


def test_the_collector_state_is_tls_error_with_the_real_path(tmp_path):
    pki = Pki(tmp_path / "pki")
    failure = classify(BadSecurityChecksFailed(), "connect", config("SignAndEncrypt"), pki)
    assert failure.state is State.TLS_ERROR
    assert f"trust {pki.own_cert} on the server" in failure.detail
    assert "refused our client certificate" in failure.detail
