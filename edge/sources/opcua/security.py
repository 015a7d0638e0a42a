"""The appliance's OPC-UA application certificate and the trust list for server certificates.

Layout under ``<data_dir>/<security.pki_dir>``::

    own/cert.der  own/key.pem   our application instance certificate (generated on first start;
                                 own/.lock serializes generation between sources and processes)
    trusted/*.der|*.pem          server (or CA) certificates we accept
    rejected/<sha1>.der          server certificates we refused for want of trust: review, then move to trusted/

A refused certificate is explained (``diagnose.explain_certificate``): no SAN URI, a SAN URI
that is not the server's ApplicationUri, expired, not yet valid, untrusted. Only a certificate
that is not in trusted/ is filed under rejected/ with the hint to move it.

asyncua's client checks nothing about the server certificate unless a
``certificate_validator`` is set; we always set one for Sign / SignAndEncrypt, so
an unknown server is refused (BadCertificateUntrusted) until an operator trusts it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import tempfile
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from .diagnose import explain_certificate

log = logging.getLogger("edge.sources.opcua")

# Time range, application URI in the SAN, trust (direct or via a trusted CA) and CRLs. The
# key-usage checks are left out: many vendor certificates lack content_commitment and would be
# refused for a reason an operator cannot fix.
_OPTIONS = (
    CertificateValidatorOptions.TIME_RANGE
    | CertificateValidatorOptions.URI
    | CertificateValidatorOptions.TRUSTED
    | CertificateValidatorOptions.REVOKED
)


class Pki:
    def __init__(self, root: Path):
        self.root = root
        self.own_cert = root / "own" / "cert.der"
        self.own_key = root / "own" / "key.pem"
        self.trusted = root / "trusted"
        self.rejected = root / "rejected"
        self.last_rejected: str | None = None

    def ensure_dirs(self) -> None:
        for d in (self.own_cert.parent, self.trusted, self.rejected):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.own_key.parent, 0o700)

    def ensure_own_certificate(self, application_uri: str, host: str | None, days: int) -> bool:
        """Generate key + self-signed certificate if either is absent or they do not match; True when generated.

        Safe when several sources (threads or processes) share one pki dir: the check and the
        generation run under an exclusive ``flock`` on ``own/.lock``, and each file is written to
        a temporary name and ``os.replace``d, so no one reads a half-written file. A matching pair
        is never regenerated (servers have trusted it); an expired one is reported by the caller,
        not silently replaced. A certificate that does not match its key (left by an interrupted
        generation) can never open a secure session: it is replaced, with a warning.
        """
        self.ensure_dirs()
        with _flocked(self.own_cert.parent / ".lock"):
            if self.own_cert.is_file() and self.own_key.is_file():
                problem = self._pair_problem()
                if problem is None:
                    return False
                log.warning("our OPC-UA certificate %s: %s; generating a new key and certificate "
                            "(trust the new one on the servers)", self.own_cert, problem)
            self._generate(application_uri, host or socket.gethostname(), days)
        log.info("generated the OPC-UA application certificate %s for %s", self.own_cert, application_uri)
        return True

    def _pair_problem(self) -> str | None:
        """Why own/cert.der and own/key.pem are not a usable pair, or None."""
        try:
            cert = x509.load_der_x509_certificate(self.own_cert.read_bytes())
            key = load_pem_private_key(self.own_key.read_bytes(), password=None)
        except ValueError as exc:
            return f"unreadable ({exc})"
        except TypeError:  # an encrypted key: we never write one, and asyncua cannot use it
            return f"{self.own_key} is encrypted"
        spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
            return f"it does not match the key {self.own_key}"
        return None

    def _generate(self, application_uri: str, host: str, days: int) -> None:
        key = cert_gen.generate_private_key()
        cert = cert_gen.generate_self_signed_app_certificate(
            key, application_uri, {"organizationName": "Zerobus Edge"},
            [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host)],
            extended=[ExtendedKeyUsageOID.CLIENT_AUTH], days=days,
        )
        _write_replace(self.own_key, cert_gen.dump_private_key_as_pem(key), 0o600)
        _write_replace(self.own_cert, cert.public_bytes(Encoding.DER), 0o644)

    def own_certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.own_cert.read_bytes())

    async def validator(self):
        """A certificate_validator for asyncua's Client that also files refused certificates."""
        inner = None
        if any(p.suffix.lower() in (".der", ".pem") for p in self.trusted.glob("*.*")):
            store = TrustStore([self.trusted], [])
            await store.load()
            inner = CertificateValidator(_OPTIONS, store)
        # Without a trust store asyncua's validator skips the trust check: an empty list must refuse all.
        rejected = self.rejected
        self.last_rejected = None
        listed = self._trusted_ders()

        async def validate(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
            try:
                if inner is None:
                    raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
                await inner.validate(cert, app)
            except ServiceError as exc:
                der = cert.public_bytes(Encoding.DER)
                trusted = der in listed or (inner is not None and _chain_trusted(inner, cert))
                target = None
                if not trusted:
                    name = hashlib.sha1(der).hexdigest()  # noqa: S324 - a file name (OPC-UA thumbprint), not security
                    target = rejected / f"{name}.der"
                    try:
                        rejected.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(der)
                    except OSError as err:
                        log.warning("could not file the rejected certificate %s: %s", target, err.strerror)
                why = explain_certificate(cert, app.ApplicationUri, trusted=trusted,
                                          rejected_file=str(target) if target else None, trusted_dir=str(self.trusted))
                self.last_rejected = (f"refused server certificate {cert.subject.rfc4514_string()} "
                                      f"({app.ApplicationUri}, {ua.StatusCode(exc.code).name}): {why}")
                # One line, by the supervisor (it reports the failure): nothing more here.
                log.debug("%s", self.last_rejected)
                raise

        return validate

    def _trusted_ders(self) -> set[bytes]:
        """The certificates in trusted/ as DER, to tell "already trusted" from "move it there"."""
        out = set()
        for p in self.trusted.glob("*.*"):
            try:
                raw = p.read_bytes()
                if p.suffix.lower() == ".pem":
                    out.add(x509.load_pem_x509_certificate(raw).public_bytes(Encoding.DER))
                elif p.suffix.lower() == ".der":
                    out.add(x509.load_der_x509_certificate(raw).public_bytes(Encoding.DER))
            except (OSError, ValueError) as exc:
                log.warning("trusted certificate %s cannot be read: %s", p, exc)
        return out


@contextlib.contextmanager
def _flocked(path: Path):
    """An exclusive lock between threads and processes (each open() is its own flock holder)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_replace(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path`` (atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chain_trusted(validator: CertificateValidator, cert: x509.Certificate) -> bool:
    """Trusted through a CA in trusted/ (asyncua's trust store logs a traceback when not; filtered)."""
    store = getattr(validator, "_trust_store", None)
    try:
        return bool(store is not None and store.is_trusted(cert))
    except Exception:  # noqa: BLE001 - only for the wording of the refusal; "not trusted" is the safe reading
        return False
