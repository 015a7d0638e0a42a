"""Fault injection state, set at run time through ``POST /faults``. Pure; the server consults it.

Every fault is documented in README.md. ``times`` says how often a fault fires
before it clears itself (null = until ``DELETE /faults``). Record counters of the
``*_after_records`` faults count records received on any stream since the fault
was set.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any, Callable

import grpc

from .realism import OVERRIDABLE, check

CODES = {c.name: c for c in grpc.StatusCode if c is not grpc.StatusCode.OK}

_DEFAULT_TIMES = {
    "create_error": None,
    "fail_after_records": 1,
    "close_after_records": 1,
    "token_error": None,
    "reject_records": None,
}
KNOWN = ("create_error", "fail_after_records", "close_after_records", "ack_delay_ms", "never_ack", "token_error",
         "reject_records", "down") + OVERRIDABLE


class FaultError(ValueError):
    pass


def _code(spec: dict, default: str) -> str:
    code = str(spec.get("code", default)).upper()
    if code not in CODES:
        raise FaultError(f"unknown gRPC status code {code!r}; one of {', '.join(CODES)}")
    return code


def _times(spec: dict, key: str) -> int | None:
    t = spec.get("times", _DEFAULT_TIMES[key])
    if t is not None and (not isinstance(t, int) or t < 1):
        raise FaultError(f"{key}.times must be a positive integer or null")
    return t


def _records(spec: dict, key: str) -> int:
    n = spec.get("records")
    if not isinstance(n, int) or n < 0:
        raise FaultError(f"{key}.records must be a non-negative integer")
    return n


def _validate(key: str, value: Any) -> Any:
    if key in ("never_ack", "down"):
        if not isinstance(value, bool):
            raise FaultError(f"{key} must be true or false")
        return value
    if key == "ack_delay_ms":
        if not isinstance(value, (int, float)) or value < 0:
            raise FaultError("ack_delay_ms must be a non-negative number")
        return value
    if key in OVERRIDABLE:  # per-test override of a --profile / flag setting
        try:
            return check(key, value)
        except ValueError as exc:
            raise FaultError(str(exc)) from None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise FaultError(f"{key} must be an object")
    v = dict(value)
    if key == "create_error":
        return {"code": _code(v, "UNAVAILABLE"), "message": str(v.get("message", "injected fault at stream creation")), "times": _times(v, key)}
    if key == "fail_after_records":
        return {
            "records": _records(v, key),
            "code": _code(v, "UNAVAILABLE"),
            "message": str(v.get("message", "injected mid-stream fault")),
            "times": _times(v, key),
            "seen": 0,
        }
    if key == "close_after_records":
        dur = v.get("duration_ms", 1000)
        if not isinstance(dur, int) or dur < 0:
            raise FaultError("close_after_records.duration_ms must be a non-negative integer")
        return {"records": _records(v, key), "duration_ms": dur, "times": _times(v, key), "seen": 0}
    if key == "token_error":
        status = v.get("status", 503)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultError("token_error.status must be an HTTP status 400..599")
        return {"status": status, "times": _times(v, key)}
    if key == "reject_records":
        rules = {}
        for col, pattern in v.items():
            if col in ("code", "times", "message"):
                continue
            if isinstance(pattern, list):
                rules[col] = [p for p in pattern]
            elif isinstance(pattern, str):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise FaultError(f"reject_records.{col}: bad regular expression: {exc}") from None
                rules[col] = pattern
            else:
                raise FaultError(f"reject_records.{col} must be a regex string or a list of values")
        if not rules:
            raise FaultError("reject_records needs at least one column rule, e.g. {\"point\": \"bad/.*\"}")
        return {"rules": rules, "code": _code(v, "INVALID_ARGUMENT"), "times": _times(v, key)}
    raise FaultError(f"unknown fault {key!r}; known: {', '.join(KNOWN)}")


def _matches(rules: dict, get: Callable[[str], Any]) -> bool:
    for col, pattern in rules.items():
        value = get(col)
        if isinstance(pattern, list):
            if value not in pattern:
                return False
        elif value is None or not re.fullmatch(pattern, str(value)):
            return False
    return True


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self.fired: dict[str, int] = {}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"active": copy.deepcopy(self._state), "fired": dict(self.fired)}

    def update(self, patch: Any) -> dict[str, Any]:
        """Merge ``patch`` (a fault set to null or false is removed). Validates everything before changing anything."""
        if not isinstance(patch, dict):
            raise FaultError("the fault document must be a JSON object")
        checked = {}
        for key, value in patch.items():
            if key not in KNOWN:
                raise FaultError(f"unknown fault {key!r}; known: {', '.join(KNOWN)}")
            checked[key] = None if value is None or value is False else _validate(key, value)
        with self._lock:
            for key, value in checked.items():
                if value is None:
                    self._state.pop(key, None)
                else:
                    self._state[key] = value
        return self.snapshot()

    def clear(self) -> None:
        with self._lock:
            self._state.clear()
            self.fired.clear()

    def get(self, key: str) -> Any:
        return self._state.get(key)

    @property
    def down(self) -> bool:
        return bool(self._state.get("down"))

    @property
    def never_ack(self) -> bool:
        return bool(self._state.get("never_ack"))

    def overrides(self) -> dict[str, Any]:
        """Profile settings set through the fault API; ``ack_delay_ms`` is the older name of ``ack_latency_ms``."""
        state = self._state
        out = {k: state[k] for k in OVERRIDABLE if k in state}
        if "ack_delay_ms" in state and "ack_latency_ms" not in out:
            out["ack_latency_ms"] = float(state["ack_delay_ms"])
            out.setdefault("ack_jitter_ms", 0.0)
        return out

    def _fire(self, key: str) -> dict | None:
        """Caller holds the lock. Counts one firing and retires the fault when its times run out."""
        spec = self._state.get(key)
        if spec is None:
            return None
        self.fired[key] = self.fired.get(key, 0) + 1
        if spec.get("times") is not None:
            spec["times"] -= 1
            if spec["times"] <= 0:
                del self._state[key]
        return spec

    def take_create_error(self) -> tuple[str, str] | None:
        with self._lock:
            spec = self._fire("create_error")
            return (spec["code"], spec["message"]) if spec else None

    def take_token_error(self) -> int | None:
        with self._lock:
            spec = self._fire("token_error")
            return spec["status"] if spec else None

    def count_records(self, n: int) -> tuple[tuple[str, str] | None, int | None]:
        """Feed ``n`` received records; returns (fail (code, message) or None, close duration_ms or None)."""
        fail = close = None
        with self._lock:
            for key in ("fail_after_records", "close_after_records"):
                spec = self._state.get(key)
                if spec is None:
                    continue
                spec["seen"] += n
                if spec["seen"] >= spec["records"]:
                    spec["seen"] = 0
                    self._fire(key)
                    if key == "fail_after_records":
                        fail = (spec["code"], spec["message"])
                    else:
                        close = spec["duration_ms"]
        return fail, close

    def reject(self, messages: list[Any], get: Callable[[Any, str], Any]) -> tuple[int, str, str] | None:
        """(index, code, reason) of the first record a reject_records rule matches."""
        spec = self._state.get("reject_records")
        if spec is None:
            return None
        for i, msg in enumerate(messages):
            if _matches(spec["rules"], lambda col: get(msg, col)):
                with self._lock:
                    self._fire("reject_records")
                return i, spec["code"], f"record matches the injected reject_records rule {spec['rules']}"
        return None
