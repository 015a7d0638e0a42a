"""`edge doctor` against the emulator and the workspace stand-in: every check can pass, and each can fail."""

from __future__ import annotations

import json

from simulators.kit.emulator import Emulator
from simulators.kit.proxy import ConnectProxy
from simulators.kit.workspace import Workspace

from .conftest import edge, write_config


def checks(result) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_all_checks_pass(tmp_path, emu, workspace):
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url)
    r = edge("doctor", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    c = checks(r)
    for name in ("dns workspace", "tcp workspace", "dns zerobus endpoint", "tcp zerobus endpoint", "oauth token",
                 "clock skew", "table exists", "table managed delta", "table schema", "zerobus write"):
        assert c[name]["ok"], c[name]
    assert emu.table_stats()["streams_opened"] >= 1  # the write check really opened a stream


def test_plain_output_and_exit_code(tmp_path, emu, workspace):
    cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url)
    r = edge("doctor", "--config", str(cfg), "--no-stream")
    assert r.returncode == 0
    assert "PASS  table schema" in r.stdout and "FAIL" not in r.stdout


def test_missing_table_fails_with_a_hint(tmp_path, emu):
    with Workspace(emu, tables=()) as ws:
        cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=ws.url)
        r = edge("doctor", "--config", str(cfg), "--no-stream")
    assert r.returncode == 1
    assert "FAIL  table exists" in r.stdout and "edge table create" in r.stdout


def test_schema_differences_are_all_listed(tmp_path, emu):
    with Workspace(emu, tables=()) as ws:
        ws.sql("CREATE TABLE main.edge.readings (appliance_id STRING NOT NULL, seq INT NOT NULL, kind STRING, "
               "source STRING, protocol STRING, point STRING, value_double DOUBLE, value_int BIGINT, value_bool BOOLEAN, "
               "value_string STRING, value_json VARIANT, quality STRING, status_code BIGINT, source_ts TIMESTAMP, "
               "server_ts TIMESTAMP, collected_ts TIMESTAMP, unit STRING, data_type STRING, loss_from_seq BIGINT, "
               "loss_to_seq BIGINT, extra STRING)")
        cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=ws.url)
        r = edge("doctor", "--config", str(cfg), "--json", "--no-stream")
    assert r.returncode == 1
    detail = checks(r)["table schema"]["detail"]
    assert "seq: table has type int" in detail
    assert "kind: table has it nullable" in detail
    assert "loss_reason" in detail and "missing" in detail
    assert "extra is in the table" in detail
    assert "3 difference" not in detail and "4 difference(s)" in detail


def test_external_table_is_refused(tmp_path, emu):
    with Workspace(emu, table_type="EXTERNAL") as ws:
        cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=ws.url)
        r = edge("doctor", "--config", str(cfg), "--json", "--no-stream")
    assert r.returncode == 1
    assert "EXTERNAL" in checks(r)["table managed delta"]["detail"]


def test_wrong_secret_fails_and_is_never_printed(tmp_path):
    with Emulator(client_id="test-client", client_secret="the-right-one") as emu, \
            Workspace(emu, client_id="test-client", client_secret="the-right-one") as ws:
        cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=ws.url,
                           secret="wrong-secret-value-123")
        r = edge("doctor", "--config", str(cfg))
    assert r.returncode == 1
    assert "FAIL  oauth token" in r.stdout and "HTTP 401" in r.stdout
    assert "wrong-secret-value-123" not in r.stdout + r.stderr


def test_unreachable_endpoint(tmp_path, workspace):
    cfg = write_config(tmp_path / "edge.yaml", endpoint="http://127.0.0.1:9", workspace_url=workspace.url)
    r = edge("doctor", "--config", str(cfg), "--json", "--timeout", "3")
    assert r.returncode == 1
    c = checks(r)["tcp zerobus endpoint"]
    assert not c["ok"] and "firewall" in c["hint"]
    assert not checks(r)["zerobus write"]["ok"]


def test_unknown_host_fails_dns(tmp_path, workspace):
    cfg = write_config(tmp_path / "edge.yaml", endpoint="https://no-such-host.invalid", workspace_url=workspace.url)
    r = edge("doctor", "--config", str(cfg), "--json", "--timeout", "3")
    assert r.returncode == 1
    assert not checks(r)["dns zerobus endpoint"]["ok"]


def test_tls_with_an_untrusted_ca_is_named_then_fixed_by_the_bundle(tmp_path):
    with Emulator(tls=True) as emu:
        cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=emu.workspace_url)
        bad = edge("doctor", "--config", str(cfg), "--json", "--no-stream", env={"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"})
        # The bundle for every HTTPS client: a REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE inherited from the host (this
        # machine's environment sets both) overrides SSL_CERT_FILE for the Databricks SDK (requests), which then
        # retried its TLS failure for the whole 10 s --timeout budget (twice here: 24 s) against the wrong CAs.
        bundle = emu.sdk_env()["SSL_CERT_FILE"]
        good = edge("doctor", "--config", str(cfg), "--json", "--no-stream",
                    env={**emu.sdk_env(), "REQUESTS_CA_BUNDLE": bundle, "CURL_CA_BUNDLE": bundle})
    tls = checks(bad)["tls zerobus endpoint"]
    assert not tls["ok"] and "not trusted" in tls["detail"] and "SSL_CERT_FILE" in tls["hint"]
    assert checks(good)["tls zerobus endpoint"]["ok"] and checks(good)["tls workspace"]["ok"]


def test_reachability_through_a_connect_proxy(tmp_path, emu, workspace):
    with ConnectProxy(allow_ports=[emu.grpc_port]) as proxy:
        cfg = write_config(tmp_path / "edge.yaml", endpoint=emu.grpc_endpoint, workspace_url=workspace.url)
        env = {"https_proxy": proxy.url, "http_proxy": proxy.url, "NO_PROXY": ""}
        r = edge("doctor", "--config", str(cfg), "--json", "--no-stream", env=env)
        c = checks(r)
        assert c["tcp zerobus endpoint"]["ok"] and "via CONNECT proxy" in c["tcp zerobus endpoint"]["detail"]
        # The workspace port is not on the proxy's allow list: refused, and said so.
        assert not c["tcp workspace"]["ok"] and "403" in c["tcp workspace"]["detail"]
        assert f"127.0.0.1:{emu.grpc_port}" in " ".join(proxy.connects())
