"""How the appliance reaches the cloud: proxy selection and TLS failure hints (pure).

The rules follow what the ZeroBus SDK does (see the README's *Egress*): gRPC
takes the first of ``grpc_proxy, GRPC_PROXY, https_proxy, HTTPS_PROXY,
http_proxy, HTTP_PROXY`` whatever the URL scheme and honours
``no_grpc_proxy``/``NO_PROXY``; HTTPS calls (the OAuth token, the workspace
REST API) take ``https_proxy``/``HTTPS_PROXY`` for https:// URLs and
``http_proxy``/``HTTP_PROXY`` for http:// and honour ``NO_PROXY``. NO_PROXY
entries are host names or domain suffixes (``.example.com`` or
``example.com``), or ``*``; no CIDR.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

# The one list of proxy variables, in the order they are read (the forwarder's summary uses it too).
GRPC_PROXY_VARS = ("grpc_proxy", "GRPC_PROXY", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")
NO_PROXY_VARS = {"grpc": ("no_grpc_proxy", "NO_PROXY", "no_proxy"), "https": ("no_proxy", "NO_PROXY")}


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def target(url: str) -> Target:
    u = urlsplit(url if "://" in url else f"https://{url}")
    if not u.hostname:
        raise ValueError(f"no host in {url!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    return Target(u.scheme, u.hostname, port)


def _bypassed(host: str, no_proxy: str | None) -> bool:
    if not no_proxy:
        return False
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split(":", 1)[0] if entry.count(":") == 1 else entry
        suffix = entry.lstrip(".")
        if host == suffix or host.endswith("." + suffix):
            return True
    return False


def no_proxy(env: dict[str, str], *, purpose: str) -> str | None:
    """The bypass list in force for ``purpose`` (``grpc`` or ``https``), as the SDK and urllib read it."""
    names = NO_PROXY_VARS[purpose]
    return next((env[n] for n in names if env.get(n)), None)


def proxy_for(url: str, env: dict[str, str], *, purpose: str) -> str | None:
    """The proxy URL a connection to ``url`` goes through, or None (direct).

    ``purpose``: ``grpc`` (the ZeroBus stream) or ``https`` (token fetch, REST).
    """
    t = target(url)
    if purpose == "grpc":
        names: tuple[str, ...] = GRPC_PROXY_VARS
    else:
        names = ("https_proxy", "HTTPS_PROXY") if t.tls else ("http_proxy", "HTTP_PROXY")
    proxy = next((env[n] for n in names if env.get(n)), None)
    if proxy is None or _bypassed(t.host, no_proxy(env, purpose=purpose)):
        return None
    return proxy


# OpenSSL verify codes -> what an engineer on a DMZ host should do about them.
_VERIFY_HINTS = {
    2: "the issuer certificate is unknown: add the CA that signed it to the bundle named by SSL_CERT_FILE",
    10: "the server certificate has expired (or this host's clock is wrong: check NTP)",
    9: "the server certificate is not yet valid (this host's clock may be behind: check NTP)",
    18: "the server presents a self-signed certificate: a TLS-inspecting proxy or a wrong endpoint",
    19: "a self-signed CA is in the chain: a TLS-inspecting proxy re-signs traffic; append its CA to the "
        "system bundle and point SSL_CERT_FILE at the result",
    20: "the issuing CA is not trusted here: if a TLS-inspecting proxy sits on the path, append its CA to the "
        "system bundle and point SSL_CERT_FILE at the result",
    21: "the chain is incomplete: the server does not send its intermediate CA",
    62: "the certificate does not name this host: with Private Link use the host name the certificate "
        "names (or the workspace's privatelink alias), not an IP address",
    64: "the certificate does not name this IP address: connect by host name",
}


def tls_hint(verify_code: int | None, message: str) -> str:
    if verify_code in _VERIFY_HINTS:
        return _VERIFY_HINTS[verify_code]
    low = message.lower()
    if "wrong version number" in low or "unknown protocol" in low:
        return "the peer does not speak TLS on this port (http:// endpoint, or a proxy that is not CONNECT)"
    if "hostname mismatch" in low:
        return _VERIFY_HINTS[62]
    return "TLS failed; verification stays on: fix the trust chain rather than disabling it"
