"""asyncua's log lines about routine events, shortened to one line without a traceback.

asyncua logs a disconnect (``Publish iteration crashed`` with a ConnectionError), an untrusted
certificate (``create_session fault response``, and its trust store's ``Not trusted
certificate used`` with a traceback) and a closed connection at WARNING or ERROR. Our own
supervisor already reports each of these once, in words. ``install()`` puts a filter on every
asyncua logger that turns such a record into one INFO line (``<message>: <exception in one
line>``). A record whose exception is not routine (``diagnose.is_routine``) is left as it is:
a genuine bug keeps its traceback. With an asyncua logger at DEBUG the routine tracebacks are
kept too (demoted to INFO), for whoever is debugging the library.
"""

from __future__ import annotations

import logging

from .diagnose import ROUTINE_CODES, describe, is_routine

# asyncua messages without an exception that only say the connection is gone.
_CLOSED = ("connection is closed", "transport lost", "Connection lost")


class RoutineFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            if not is_routine(exc):
                return True  # a bug: the traceback stays
            if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                record.msg, record.args = f"{record.getMessage()}: {describe(exc)}", None
                record.exc_info, record.exc_text = None, None
            _demote(record)
            return True
        text = record.getMessage()
        if any(code in text for code in ROUTINE_CODES) or any(c in text for c in _CLOSED):
            _demote(record)
        return True


def _demote(record: logging.LogRecord) -> None:
    record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)


_FILTER = RoutineFilter()


def install() -> int:
    """Filter every asyncua logger that exists now (idempotent; call again after connecting, when
    asyncua has created its per-connection loggers). Returns how many loggers were filtered anew."""
    added = 0
    names = [n for n in logging.Logger.manager.loggerDict if n == "asyncua" or n.startswith("asyncua.")]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
            added += 1
    return added


__all__ = ["RoutineFilter", "install"]
