"""Restart, crash, rebuild of /stats, the query tools, TLS with the generated CA, custom tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.emulator.sdk_helpers import json_stream, marker, proto_stream, readings
from simulators.kit.emulator import ROOT, Emulator


def events(emu: Emulator, name: str) -> list[dict]:
    out = []
    for line in emu.log_path.read_text().splitlines():
        if line.startswith("{") and f'"event":"{name}"' in line:
            out.append(json.loads(line))
    return out


def test_restart_keeps_store_stats_and_tokens(appliance_id):
    with Emulator() as emu:
        s = proto_stream(emu, recovery_backoff_ms=500, recovery_retries=10)  # bridges the restart
        s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(0, 100)) + [marker(appliance_id, 150, 159)]))
        s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(90, 100))))  # 10 duplicates
        before = emu.table_stats()
        emu.restart()
        assert events(emu, "stopped")  # SIGTERM: a clean shutdown, the store closed
        assert emu.table_stats() == {**before, "streams_opened": before["streams_opened"]}  # rebuilt from the store
        # The same SDK stream recovers onto the restarted emulator with its cached token.
        s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(100, 150))))
        s.close()
        assert len(events(emu, "token_issued")) == 1
        app = emu.table_stats()["appliances"][appliance_id]
        assert (app["min_seq"], app["max_seq"], app["missing"], app["unexplained_missing"]) == (0, 150, [], [])
        st = emu.table_stats()
        assert (st["rows"], st["unique"], st["duplicates"]) == (161, 151, 10)


def test_sigkill_keeps_committed_rows_and_query_clis(appliance_id):
    with Emulator() as emu:
        s = proto_stream(emu)
        s.wait_for_offset(s.ingest_records_offset(readings(appliance_id, range(500))))
        s.close()
        emu.kill()
        out = subprocess.run(
            [sys.executable, "-m", "simulators.zerobus", "query", "--data-dir", str(emu.data_dir),
             "--appliance-id", appliance_id, "--from-seq", "10", "--limit", "3"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        )
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["seq"] for r in rows] == [10, 11, 12] and rows[0]["value_double"] == 10.0
        out = subprocess.run([sys.executable, "-m", "simulators.zerobus", "stats", "--data-dir", str(emu.data_dir)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(out.stdout)["tables"]["main.edge.readings"]["appliances"][appliance_id]["max_seq"] == 499
        emu.start()
        assert emu.table_stats()["rows"] == 500


def test_custom_ddl_and_several_tables(tmp_path, appliance_id):
    ddl = tmp_path / "t.sql"
    ddl.write_text("CREATE TABLE {table} (appliance_id STRING NOT NULL, seq BIGINT NOT NULL, kind STRING NOT NULL, v DOUBLE)")
    with Emulator(tables=["c.s.a", "c.s.b"], extra_args=["--ddl", str(ddl)]) as emu:
        with pytest.raises(Exception, match="has 21 fields, the table has 4 columns"):
            proto_stream(emu, table="c.s.b")
        s = json_stream(emu)  # emu.table is c.s.a
        s.wait_for_offset(s.ingest_records_offset([json.dumps({"appliance_id": appliance_id, "seq": i, "kind": "reading", "v": 0.5}) for i in range(4)]))
        s.close()
        st = emu.stats()["tables"]
        assert st["c.s.a"]["rows"] == 4 and st["c.s.b"]["rows"] == 0


SDK_SCRIPT = """
import sys
from edge.pb.reading_pb2 import Reading
from tests.emulator.sdk_helpers import readings, options
from zerobus.sdk.sync import ZerobusSdk
from zerobus.sdk.shared import TableProperties
host, ws, table = sys.argv[1:4]
try:
    sdk = ZerobusSdk(host, ws)
    s = sdk.create_stream(client_id="c", client_secret="s", table_properties=TableProperties(table, Reading.DESCRIPTOR),
                          options=options(recovery_retries=1))
    s.wait_for_offset(s.ingest_records_offset(readings("tls-app", range(7))))
    s.close()
    print("RESULT ok")
except Exception as exc:
    print("RESULT", type(exc).__name__, exc)
"""


def run_sdk(emu: Emulator, env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SDK_SCRIPT, emu.grpc_endpoint, emu.workspace_url, emu.table],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    return next((line for line in out.stdout.splitlines() if line.startswith("RESULT")), out.stdout + out.stderr)


def test_tls_with_generated_ca():
    from cryptography import x509

    with Emulator(tls=True, extra_args=["--tls-hostname", "zerobus-emulator"]) as emu:
        assert emu.grpc_endpoint.startswith("https://127.0.0.1:")
        cert = x509.load_pem_x509_certificate((emu.data_dir / "tls" / "server.pem").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", "zerobus-emulator"} <= set(san.get_values_for_type(x509.DNSName))
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        with open(emu.ca_path, "rb") as fh:
            ca = fh.read()
        assert emu.http("GET", "/healthz")["tls"] is True  # verified against the CA by the harness
        import ssl

        ctx = ssl.create_default_context(cafile=emu.ca_path)
        with urllib.request.urlopen(emu.http_url + "/ca.pem", timeout=10, context=ctx) as resp:
            assert resp.read() == ca
        with open(emu.ca_bundle, "rb") as fh:
            assert ca in fh.read()
        assert run_sdk(emu, emu.sdk_env()) == "RESULT ok"
        assert emu.table_stats()["appliances"]["tls-app"]["max_seq"] == 6
        refused = run_sdk(emu, {})  # system trust store only: our CA is unknown
        assert refused.startswith("RESULT ZerobusException") and "Token fetch failed" in refused
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(emu.http_url + "/healthz", timeout=10, context=ssl.create_default_context())
        assert emu.table_stats()["rows"] == 7
        ca_before = ca
        emu.restart()  # the CA survives restarts, so clients keep trusting it
        with open(emu.ca_path, "rb") as fh:
            assert fh.read() == ca_before


def test_tls_with_given_certificate_files(tmp_path):
    """How Compose runs it: an init service makes the CA and the server certificate, the emulator serves them."""
    from edge.tlsgen import ensure_tls

    files = ensure_tls(str(tmp_path / "secrets"), ["zerobus-emulator"])
    args = ["--tls-cert", files.server_cert, "--tls-key", files.server_key, "--tls-ca", files.ca_cert]
    with Emulator(tls=True, extra_args=args) as emu:
        assert emu.ca_path == files.ca_cert
        assert not (emu.data_dir / "tls").exists()  # nothing generated: the given files are served
        assert run_sdk(emu, {"SSL_CERT_FILE": files.bundle}) == "RESULT ok"
        assert emu.table_stats()["appliances"]["tls-app"]["max_seq"] == 6
