"""`edge doctor` masks secrets with the one scrubber (edge/redact.py) in every check's detail.

It used to replace the raw client secret in the stream check's error only: the Basic pair made
from it, a bearer token or a password in a URL went through, and other checks were not masked.
"""

from __future__ import annotations

import base64

from edge.config import parse
from edge.control.doctor import Doctor

SECRET = "dbx-secret-value-123"


def test_every_check_detail_passes_the_scrubber(tmp_path):
    cfg = parse({"appliance_id": "a", "data_dir": str(tmp_path),
                 "zerobus": {"endpoint": "https://1234.zerobus.example.com", "workspace_url": "https://ws.example.com",
                             "client_id": "edge-sp", "client_secret": "${DBX_SECRET}"}},
                env={"DBX_SECRET": SECRET})
    doctor = Doctor(cfg)
    pair = base64.b64encode(f"edge-sp:{SECRET}".encode()).decode()
    errors = [f"UNAUTHENTICATED: bad secret {SECRET}", f"sent Authorization: Basic {pair}",
              "token Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc rejected", "via http://user:hunter2@proxy:3128 failed"]
    for i, text in enumerate(errors):
        doctor._add(f"check {i}", False, text)
    shown = " ".join(c.detail for c in doctor.checks)
    for secret in (SECRET, pair, "eyJhbGciOiJIUzI1NiJ9", "hunter2"):
        assert secret not in shown, shown
    assert shown.count("***") == 4 and "UNAUTHENTICATED" in shown  # masked, not dropped
