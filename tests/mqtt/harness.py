"""Helpers for the MQTT tests: certificates, the simulator as a subprocess, and reading back what the
spool holds. The in-process collector and ``edge run`` end to end are in the kit (simulators/kit/mqtt.py)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge.encode import decode
from edge.spool import SpoolReader
from simulators.kit.broker import ROOT, Broker


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
