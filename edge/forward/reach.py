"""Can the uplink be reached? A TCP connection to the ZeroBus endpoint, or to the proxy the stream goes through.

The forwarder's backoff asks it (as a source's supervisor asks ``tcp_probe``): probed once when a
wait begins, an endpoint that answers already means the failure was not about reaching it (a
refused token, a certificate, the service), and the whole jittered delay is waited; one that does
not answer is probed about once a second, and the next attempt starts as soon as it answers: after
a long cut the drain starts within about a second of the link's return, not up to
``reconnect_max`` later. The connection is opened in a helper thread and given ``timeout`` in all,
name resolution included, so a resolver that hangs cannot hold the forwarder's loop.
"""

from __future__ import annotations

import os
import socket
import threading

from edge import egress

TIMEOUT_S = 1.0


def uplink_target(endpoint: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    """Where the stream's TCP connection goes: the gRPC proxy when one applies, else the endpoint."""
    env = dict(os.environ) if env is None else env
    proxy = egress.proxy_for(endpoint, env, purpose="grpc")
    t = egress.target(proxy or endpoint)
    return t.host, t.port


def tcp_answers(host: str, port: int, timeout: float = TIMEOUT_S) -> bool:
    """True if a TCP connection to host:port opens within ``timeout`` (resolution included)."""
    done = threading.Event()
    answer = [False]

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer[0] = True
        except OSError:
            answer[0] = False
        finally:
            done.set()

    threading.Thread(target=attempt, name="uplink-probe", daemon=True).start()
    return done.wait(timeout + 0.5) and answer[0]


class Reach:
    """``probe()`` for the forwarder's backoff: does the uplink answer now?"""

    def __init__(self, endpoint: str, env: dict[str, str] | None = None):
        try:
            self.host, self.port = uplink_target(endpoint, env)
        except ValueError:  # an endpoint without a host fails the session with its own error
            self.host, self.port = "", 0

    def probe(self) -> bool | None:
        """True / False; None when there is nothing to probe."""
        if not self.host:
            return None
        return tcp_answers(self.host, self.port)
