"""The durable spool: the only package that speaks SQL to ``spool.db``.

One writer (``Spool``, driven by ``edge.writer.SpoolWriter``) and any number of
short-lived readers (``SpoolReader``) share a SQLite file in WAL mode with
``synchronous=FULL``. Contract points 2-5 of edge/DESIGN.md live here:

* seq is assigned inside the append transaction, contiguous, persisted in
  ``meta`` in the same transaction and never reused (sidecar ``<spool>.seq``
  reservation survives a corrupt or deleted spool file);
* ``ack(upto)`` moves ``meta.delivered_seq`` and deletes by range;
* the byte budget and its policy; every drop leaves a loss marker stored at the
  seq of the first dropped reading, and adjacent drops extend it;
* ``stats()`` is cheap: counters in ``meta``, oldest row by primary key, rates
  from ``stats_samples``.

Integrity at open: a file up to FULL_CHECK_MAX_BYTES gets a full ``PRAGMA
quick_check`` before use. A bigger one (a long outage's backlog, GBs on slow
eMMC) gets the small tables checked fully plus both ends of ``readings``
(catches "not a database", a broken schema or root page) and the full check
runs on a read-only connection in a background thread; damage it finds raises
an alarm and makes the next open run the full check synchronously, which moves
the file aside. So a restart with a big backlog is fast, and damage inside the
backlog is still found, reported and handled. A corrupt file is never deleted:
it moves to ``<name>.corrupt-<UTC>`` (with its -wal/-shm) and a fresh spool
starts above the seq reservation.
"""

from __future__ import annotations

from edge.spool.common import (
    WAL_CHECKPOINT_BYTES,
    WAL_TRUNCATE_BYTES,
    WHEN_FULL,
    AppendResult,
    BadRequest,
    SpoolError,
    SpoolFull,
)
from edge.spool.core import Spool
from edge.spool.integrity import FULL_CHECK_MAX_BYTES
from edge.spool.log import INSERT_ROWS
from edge.spool.reader import SpoolReader
from edge.spool.schema import SCHEMA_VERSION, migrate
from edge.spool.seqfile import SEQ_BLOCK, SeqReservation
from edge.spool.sidetables import DEAD_LETTER_KEEP, QUARANTINE_KEEP, QUARANTINE_RAW_MAX

__all__ = [
    "DEAD_LETTER_KEEP", "FULL_CHECK_MAX_BYTES", "INSERT_ROWS", "QUARANTINE_KEEP", "QUARANTINE_RAW_MAX",
    "SCHEMA_VERSION", "SEQ_BLOCK", "WAL_CHECKPOINT_BYTES", "WAL_TRUNCATE_BYTES", "WHEN_FULL",
    "AppendResult", "BadRequest", "SeqReservation", "Spool", "SpoolError", "SpoolFull", "SpoolReader", "migrate",
]
