"""The one secret scrubber (edge/redact.py) and the one proxy-variable list (edge/egress.py)."""

from __future__ import annotations

import ast
import base64
from pathlib import Path

from edge import egress
from edge.control import preflight
from edge.redact import Scrubber, redact_url, redact_urls

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-Value-Long"


def test_scrubber_removes_secrets_derived_forms_and_credential_shapes():
    s = Scrubber("edge-app", SECRET, also=["tok-abcd", "tok-abcd-longer"])
    pair = base64.b64encode(f"edge-app:{SECRET}".encode()).decode()
    url_pair = base64.urlsafe_b64encode(f"edge-app:{SECRET}".encode()).decode()
    text = s(f"{SECRET} {pair} {url_pair} Bearer eyJ.x Basic QWxhZGRpbjpvcGVu http://u:pw@h:1/p "
             f"password=hunter2&client_secret=zz tok-abcd-longer tok-abcd")
    for leaked in (SECRET, pair, url_pair, "eyJ.x", "QWxhZGRpbjpvcGVu", "u:pw", "hunter2", "zz", "tok-abcd"):
        assert leaked not in text, leaked
    assert text.split()[-2:] == ["***", "***"]  # the longer secret goes whole, not as "***-longer"
    assert Scrubber()(None) == "" and Scrubber()("plain text") == "plain text"


def test_redact_url_and_urls():
    assert redact_url("mqtts://user:pw@broker:8883/x?password=p&a=1") == "mqtts://***@broker:8883/x?password=***&a=***"
    assert redact_url("http://proxy:3128") == "http://proxy:3128"
    assert redact_urls("bad http://a:b@h/ and https://h/?t=1 end") == "bad http://***@h/ and https://h/?t=*** end"


def test_a_password_holding_an_at_sign_is_hidden_whole():
    """User info runs to the authority's last "@", as URL parsers read it (the first "@" left half shown)."""
    assert redact_url("http://user:p@ss@w0rd@host:80/x") == "http://***@host:80/x"
    assert redact_urls("see mqtt://u:a@b@broker/t now") == "see mqtt://***@broker/t now"
    assert Scrubber()("failed: https://u:hun@ter2@proxy:3128 refused") == "failed: https://***@proxy:3128 refused"
    # an "@" after the authority (a path or a query) is not user info
    assert redact_url("http://host/a@b") == "http://host/a@b"
    assert Scrubber()("http://host/p?x=@y") == "http://host/p?x=@y"


def test_the_preflight_record_is_scrubbed_like_the_forwarder_errors():
    """Before the scrubbers were one, the stored preflight record only replaced the exact secret values."""
    checks = [{"name": "proxy", "ok": False, "detail": "via http://alice:hunter2@proxy:3128 got Bearer eyJhbG.c",
               "hint": f"client_secret={SECRET}"}]
    rec = preflight.record(checks, started_ts=0, finished_ts=1, secrets=[])
    row = rec["checks"][0]
    assert "hunter2" not in row["detail"] and "eyJhbG" not in row["detail"] and SECRET not in row["hint"]


def test_no_proxy_lists_follow_the_sdk_and_urllib():
    env = {"no_grpc_proxy": "g.example", "NO_PROXY": "n.example", "no_proxy": "l.example"}
    assert egress.no_proxy(env, purpose="grpc") == "g.example"
    assert egress.no_proxy(env, purpose="https") == "l.example"
    assert egress.no_proxy({"NO_PROXY": "n.example"}, purpose="https") == "n.example"
    assert egress.proxy_for("https://api.g.example", {"HTTPS_PROXY": "http://p:1", **env}, purpose="grpc") is None
    assert egress.proxy_for("https://api.g.example", {"HTTPS_PROXY": "http://p:1", **env}, purpose="https") == "http://p:1"


PROXY_NAMES = {"grpc_proxy", "GRPC_PROXY", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY",
               "no_proxy", "NO_PROXY", "no_grpc_proxy"}


def _edge_trees():
    for path in sorted((ROOT / "edge").rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def test_one_scrubber_in_edge():
    """Three scrubbers existed (forwarder, config errors, preflight record) and a fourth for proxy URLs."""
    found = [f"{rel}:{node.name}" for rel, tree in _edge_trees() for node in tree.body
             if isinstance(node, (ast.ClassDef, ast.FunctionDef))
             and any(w in node.name.lower() for w in ("scrub", "redact"))]
    assert found and all(f.startswith("edge/redact.py:") for f in found), found


def test_one_proxy_variable_list_in_edge():
    """Two lists of proxy variables existed (edge/egress.py and the forwarder's own)."""
    found = sorted({rel for rel, tree in _edge_trees() for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and node.value in PROXY_NAMES})
    assert found == ["edge/egress.py"]
