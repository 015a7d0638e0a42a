"""The states a source reports, and how bad each one is (the admin page's badge colours).

One enum for every collector: ``SourceStatus.set_state`` refuses any other
name, and ``edge.admin.model.SEVERITY`` is built from ``SEVERITY`` here, so a
new state cannot appear on the page without a severity (tests/mqtt/test_states.py).

Severities: ``ok`` (collecting), ``warn`` (transient: on its way up, or
retrying), ``bad`` (an operator must act: credentials, certificates, ACL,
device gone, spool full), ``idle`` (not running by design).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    # on its way up
    STARTING = "starting"
    CONNECTING = "connecting"
    SUBSCRIBING = "subscribing"
    BACKFILLING = "backfilling"
    # collecting
    CONNECTED = "connected"  # a session source (MQTT) with its subscriptions
    RUNNING = "running"  # polling / subscribed / generating
    LISTENING = "listening"  # a server source (HTTP) waiting for requests
    DEGRADED = "degraded"  # running, some devices or nodes are not
    # the supervisor between two attempts
    RECONNECTING = "reconnecting"  # the connection ended; the next attempt follows the backoff
    RESTARTING = "restarting"  # the collector itself failed (a bug or an unexpected error)
    # refused or unreachable: each one names what an operator has to fix
    CONNECT_FAILED = "connect_failed"  # refused, unreachable, name does not resolve, timed out
    AUTH_FAILED = "auth_failed"  # the peer refused our credentials (long wait: retrying will not help)
    TLS_ERROR = "tls_error"  # handshake or certificate files
    SUBSCRIBE_FAILED = "subscribe_failed"  # the broker refused a subscription (ACL)
    DISCONNECTED = "disconnected"  # every device / the server is unreachable
    BLOCKED = "blocked"  # the spool is full under when_full: block; nothing is acknowledged
    DISK_FULL = "disk_full"  # the spool's disk is full (or under min_free_bytes); nothing is acknowledged
    ERROR = "error"  # cannot run as configured (e.g. cannot listen)
    # not running
    STOPPED = "stopped"


SEVERITY: dict[State, str] = {
    State.STARTING: "warn",
    State.CONNECTING: "warn",
    State.SUBSCRIBING: "warn",
    State.BACKFILLING: "ok",
    State.CONNECTED: "ok",
    State.RUNNING: "ok",
    State.LISTENING: "ok",
    State.DEGRADED: "warn",
    State.RECONNECTING: "warn",
    State.RESTARTING: "warn",
    State.CONNECT_FAILED: "bad",
    State.AUTH_FAILED: "bad",
    State.TLS_ERROR: "bad",
    State.SUBSCRIBE_FAILED: "bad",
    State.DISCONNECTED: "bad",
    State.BLOCKED: "bad",
    State.DISK_FULL: "bad",
    State.ERROR: "bad",
    State.STOPPED: "idle",
}


def refused_state(exc: BaseException) -> State:
    """The state of a source whose readings the spool refused: the disk, or the budget."""
    return State.DISK_FULL if getattr(exc, "cause", None) in ("disk_full", "disk_low") else State.BLOCKED
