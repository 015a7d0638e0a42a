"""The admin container's healthcheck: GET /readyz on the page's own listener, over HTTPS when it has one.

    python -m edge.admin.probe [--port 8080]      # exit 0: ready; 1: not (one line on stderr why)

Plain HTTP when ``ADMIN_TLS_CERT`` is empty. With a certificate the probe speaks TLS to
127.0.0.1 with full verification, pinned: the only trust anchor is the page's own
certificate file (accepted as an anchor even when a CA issued it), and the name checked is
one the certificate carries (its first DNS name, else its first IP address), sent as SNI to
the loopback. So only a listener holding that certificate's key passes, and nothing
here turns verification off. Kept to the standard library and ``cryptography`` (already in
the image for OPC-UA security): a probe every 15 s must stay cheap.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import sys

TIMEOUT_S = 3.0


def certificate_name(pem: bytes) -> str:
    """A name the certificate is valid for: its first DNS SAN, else its first IP SAN, else its CN."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for kind in (x509.DNSName, x509.IPAddress):
            values = san.get_values_for_type(kind)
            if values:
                return str(values[0])
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        return str(cns[0].value)
    raise ValueError("the certificate names no host (no subject alternative name, no common name)")


def pinned_context(cert_path: str) -> tuple[ssl.SSLContext, str]:
    """Verification on, against exactly this certificate; and the name to check it for."""
    with open(cert_path, "rb") as f:
        pem = f.read()
    ctx = ssl.create_default_context(cadata=pem.decode("ascii"))
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the page's leaf is the anchor, whoever issued it
    return ctx, certificate_name(pem)


class _LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1, verified for ``server_name`` (SNI and hostname check)."""

    def __init__(self, port: int, context: ssl.SSLContext, server_name: str):
        super().__init__("127.0.0.1", port, timeout=TIMEOUT_S, context=context)
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)


def ready(port: int, cert_path: str | None) -> tuple[bool, str]:
    try:
        if cert_path:
            ctx, name = pinned_context(cert_path)
            conn: http.client.HTTPConnection = _LoopbackHTTPS(port, ctx, name)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        try:
            conn.request("GET", "/readyz")
            status = conn.getresponse().status
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return status == 200, f"/readyz answered {status}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.admin.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    ok, why = ready(args.port, os.environ.get("ADMIN_TLS_CERT") or None)
    if not ok:
        print(f"admin page not ready: {why}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
