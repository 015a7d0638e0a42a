"""Several OPC-UA sources sharing one pki dir generate our certificate at the same moment.

Every caller, thread or process, must come away with a certificate that matches its key (else
every secure connect fails, and the pair is never regenerated) and without an exception. A pair
that does not match (left by an older race or an interrupted write) is replaced, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import queue
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from edge.sources.opcua.security import Pki

pytestmark = pytest.mark.timeout(180)

URI = "urn:zerobus-edge:test"
SPKI = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _pair(root: Path) -> tuple[str, bool]:
    """(digest of the certificate, does it match the key) as a reader finds them on disk."""
    pki = Pki(root)
    cert = x509.load_der_x509_certificate(pki.own_cert.read_bytes())
    key = load_pem_private_key(pki.own_key.read_bytes(), password=None)
    return (hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
            cert.public_key().public_bytes(*SPKI) == key.public_key().public_bytes(*SPKI))


def _rounds(roots: list[str], barrier, out, who: str) -> None:
    """For each round: wait for everyone, generate on that round's folder, report what is on disk."""
    for i, root in enumerate(roots):
        try:
            barrier.wait(timeout=60)
            Pki(Path(root)).ensure_own_certificate(URI, "edge-host", 30)
            out.put((i, who, *_pair(Path(root)), None))
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            out.put((i, who, "", False, repr(exc)))


def _process(roots: list[str], barrier, out, threads: int, name: str) -> None:
    workers = [threading.Thread(target=_rounds, args=(roots, barrier, out, f"{name}.{t}")) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _check(results: list[tuple], rounds: int, callers: int) -> None:
    assert len(results) == rounds * callers, f"{len(results)} results, expected {rounds * callers}"
    errors = [(i, who, err) for i, who, _, _, err in results if err]
    assert not errors, f"{len(errors)} callers failed, e.g. {errors[:3]}"
    mismatched = [(i, who) for i, who, _, ok, _ in results if not ok]
    assert not mismatched, f"certificate does not match its key for {mismatched[:5]}"
    for i in range(rounds):
        certs = {digest for j, _, digest, _, _ in results if j == i}
        assert len(certs) == 1, f"round {i}: the callers came away with {len(certs)} different certificates"


def test_threads_sharing_a_pki_dir_all_get_one_matching_pair(tmp_path):
    rounds, threads = 20, 4
    roots = [str(tmp_path / f"pki{i}") for i in range(rounds)]
    barrier, out = threading.Barrier(threads), queue.Queue()
    _process(roots, barrier, out, threads, "main")
    _check([out.get_nowait() for _ in range(out.qsize())], rounds, threads)


def test_processes_sharing_a_pki_dir_all_get_one_matching_pair(tmp_path):
    rounds, procs, threads = 8, 3, 2
    roots = [str(tmp_path / f"pki{i}") for i in range(rounds)]
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(procs * threads), ctx.Queue()
    children = [ctx.Process(target=_process, args=(roots, barrier, out, threads, f"p{n}")) for n in range(procs)]
    for c in children:
        c.start()
    results = [out.get(timeout=120) for _ in range(rounds * procs * threads)]
    for c in children:
        c.join(timeout=30)
        assert c.exitcode == 0
    _check(results, rounds, procs * threads)


def test_a_certificate_that_does_not_match_its_key_is_replaced_with_a_warning(tmp_path, caplog):
    a, b = Pki(tmp_path / "a"), Pki(tmp_path / "b")
    assert a.ensure_own_certificate(URI, "edge-host", 30)
    assert b.ensure_own_certificate(URI, "edge-host", 30)
    a.own_cert.write_bytes(b.own_cert.read_bytes())  # a's key with b's certificate
    assert not _pair(a.root)[1]
    with caplog.at_level(logging.WARNING, logger="edge.sources.opcua"):
        assert a.ensure_own_certificate(URI, "edge-host", 30) is True
    assert _pair(a.root)[1]
    assert any("does not match the key" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # A matching pair is kept as it is: servers trust it.
    before = a.own_cert.read_bytes()
    assert a.ensure_own_certificate(URI, "edge-host", 30) is False
    assert a.own_cert.read_bytes() == before
