"""Failed token attempts per client address: counted, and blocked for a while past a limit (pure).

``max_failures`` wrong or missing tokens from one address within ``window``
seconds block that address for ``lockout`` seconds (answered 429 without
looking at the token). A success does not clear the count: it expires with its
window, so a client that also holds the token cannot keep guessing.

Memory is bounded: at most ``max_addresses`` entries. When the table is full,
entries whose window and lockout are over go first; if none has, new addresses
share one overflow entry, so spraying from many addresses ends up blocked
together instead of pushing known offenders out of the table. The addresses
that last presented the right token (at most ``max_known``) are not new: a
spray does not lock the gateway out (its own failures still count).

What is logged of the failures is decided here too, per entry (so per address,
and once for the overflow entry), and bounded the same way: the first failure
of an address gets a line of its own (``log_due``), the failures after it are
counted and summarised in at most one line per address every ``every`` seconds
(``log_due`` on a later failure, ``summaries_due`` when none follows). The
throttle itself does not change with it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

OVERFLOW = "*overflow*"


@dataclass
class _Entry:
    start: float
    failures: int = 0
    blocked_until: float = 0.0
    logged_at: float | None = None  # when a line about this entry was last written
    unlogged: int = 0  # failures since that line


class AuthThrottle:
    def __init__(self, *, max_failures: int = 10, window: float = 60.0, lockout: float = 60.0,
                 max_addresses: int = 4096, max_known: int = 256):
        self.max_failures, self.window, self.lockout = max_failures, window, lockout
        self.max_addresses, self.max_known = max_addresses, max_known
        self._table: OrderedDict[str, _Entry] = OrderedDict()
        self._known: OrderedDict[str, None] = OrderedDict()  # right token seen from these, most recent last
        self._expired_at = float("-inf")

    def __len__(self) -> int:
        return len(self._table)

    def blocked_for(self, addr: str, now: float) -> float:
        """Seconds this address stays blocked (0: it may try)."""
        e = self._table.get(addr)
        if e is None and len(self._table) >= self.max_addresses and addr not in self._known:
            e = self._table.get(OVERFLOW)
        return max(0.0, e.blocked_until - now) if e else 0.0

    def succeeded(self, addr: str) -> None:
        """The right token came from ``addr``: it is not a newcomer to the overflow entry any more."""
        self._known[addr] = None
        self._known.move_to_end(addr)
        if len(self._known) > self.max_known:
            self._known.popitem(last=False)

    def failed(self, addr: str, now: float) -> tuple[int, bool]:
        """Count one failure; returns (failures in the window, whether this one started a block)."""
        e = self._entry(addr, now)
        if now - e.start >= self.window and now >= e.blocked_until:
            e.start, e.failures = now, 0
        e.failures += 1
        if e.failures >= self.max_failures and now >= e.blocked_until:
            e.blocked_until = now + self.lockout
            return e.failures, True
        return e.failures, False

    def log_due(self, addr: str, now: float, every: float = 60.0) -> tuple[str, int] | None:
        """What to log of the failure ``failed(addr, now)`` just counted: ``(who, 0)`` to log it in full
        (the first of its entry, or the first after a quiet ``every`` seconds), ``(who, n)`` for one
        summary line of the ``n`` failures since the last line when that line is ``every`` seconds old,
        None to only count it. ``who`` is ``addr``, or OVERFLOW when it shares that entry."""
        who = addr if addr in self._table else OVERFLOW
        e = self._table.get(who)
        if e is None:
            return None
        if e.logged_at is None or (e.unlogged == 0 and now - e.logged_at >= every):
            e.logged_at = now
            return who, 0
        e.unlogged += 1
        if now - e.logged_at < every:
            return None
        n, e.unlogged, e.logged_at = e.unlogged, 0, now
        return who, n

    def summaries_due(self, now: float, every: float = 60.0) -> list[tuple[str, int]]:
        """``(who, n)`` for each entry whose ``n`` failures since its last line are not logged yet and
        whose last line is ``every`` seconds old: the summary line no later failure will bring."""
        out = []
        for who, e in self._table.items():
            if e.unlogged and e.logged_at is not None and now - e.logged_at >= every:
                out.append((who, e.unlogged))
                e.unlogged, e.logged_at = 0, now
        return out

    def _entry(self, addr: str, now: float) -> _Entry:
        e = self._table.get(addr)
        if e is not None:
            self._table.move_to_end(addr)
            return e
        if len(self._table) >= self.max_addresses and now - self._expired_at >= 1.0:
            self._expire(now)  # a sweep a second at most: a spray of new addresses costs no more
        if len(self._table) >= self.max_addresses and addr in self._known:
            # a known address keeps its own count (it is not blocked with the spray), in place of the oldest
            self._table.pop(next((k for k in self._table if k != OVERFLOW), None), None)
        elif len(self._table) >= self.max_addresses:
            addr = OVERFLOW
            if addr in self._table:
                return self._table[addr]
            self._table.popitem(last=False)  # room for the overflow entry itself
        e = self._table[addr] = _Entry(start=now)
        return e

    def _expire(self, now: float) -> None:
        self._expired_at = now
        for key in [k for k, e in self._table.items()
                    if now - e.start >= self.window and now >= e.blocked_until and k != OVERFLOW]:
            del self._table[key]
