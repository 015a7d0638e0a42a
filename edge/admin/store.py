"""The admin page's own state: server-side sessions and failed logins, one SQLite file for every worker.

The file lives in ``admin.state_dir`` (default ``<data_dir>/admin-state``; never the spool,
which the page only reads). Every gunicorn worker and thread opens it, so a limit or a
logout holds across workers and worker restarts. This module owns the admin's SQL.

- ``sessions``: keyed by SHA-256 of the random cookie value (a copy of this file does not
  give a usable cookie); the role, a tag of the role's current password (scrypt salted with a
  random key kept here, so a password change ends the role's sessions; nothing password-derived
  goes into the cookie, and a reader of this file gets a slow password hash, not a fast
  oracle to test guesses against), creation time and the session data (CSRF token, flashes) as JSON.
  Bounded: anonymous sessions (a visit to the login page) expire after an hour and are capped,
  signed-in sessions are capped per role (oldest go first).
- ``failures``: one row per failed login (client address, role named, time), trimmed to the
  window. Bounded without forgetting anyone: once MAX_TRACKED_ROWS rows are in the window,
  an address not yet counted is counted in one shared bucket (OVERFLOW) for its role, so a
  spray of addresses costs bounded space, earns its senders no more guesses than one address
  would, and resets no one's count (rows leave only when their window ends).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, role TEXT, tag TEXT, created REAL NOT NULL,
                                    data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_role ON sessions(role, created);
CREATE TABLE IF NOT EXISTS failures(client TEXT NOT NULL, role TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_key ON failures(client, role, ts);
CREATE INDEX IF NOT EXISTS failures_ts ON failures(ts);
"""
ANON_TTL_S = 3600.0
MAX_ANON_SESSIONS = 5000
MAX_SESSIONS_PER_ROLE = 200
MAX_TRACKED_ROWS = 10_000  # rows in the window before new addresses share the OVERFLOW bucket
# A backstop only: an address counted adds at most login_attempts rows before it is refused,
# so the table stays near MAX_TRACKED_ROWS x login_attempts at most; beyond this, oldest go.
MAX_FAILURE_ROWS = 200_000
TAG_SCRYPT_N = 2**14  # 16 MiB, ~0.1 s: the cost of one offline guess against a stored tag
OVERFLOW = "*"  # the shared client key (no remote address looks like it)


def _sid_key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


@dataclass
class Session:
    role: str | None
    tag: str | None
    created: float
    data: dict


class AdminStore:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / "admin-state.db"
        self._local = threading.local()
        self._conn().executescript(SCHEMA)  # IF NOT EXISTS: every worker may run it
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO meta(k, v) VALUES ('tag_key', ?)", (secrets.token_hex(32),))
        os.chmod(self.path, 0o600)
        self._key = bytes.fromhex(self._conn().execute("SELECT v FROM meta WHERE k = 'tag_key'").fetchone()[0])

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                self.c = store._conn()
                self.c.execute("BEGIN IMMEDIATE")
                return self.c

            def __exit__(self, exc_type, *_):
                self.c.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    # ------------------------------------------------------------ sessions

    def tag(self, role: str, password: str) -> str:
        """What a session remembers of its role's password: changes when the password does.

        scrypt, salted with the store's random key: whoever reads this file (the key is in it)
        faces a password hash costing ~0.1 s a guess, not a fast HMAC to test guesses against.
        Computed once per role when the app starts.
        """
        return hashlib.scrypt(f"{role}\0{password}".encode(), salt=self._key, n=TAG_SCRYPT_N, r=8, p=1,
                              dklen=32).hex()

    def load(self, sid: str) -> Session | None:
        row = self._conn().execute("SELECT role, tag, created, data FROM sessions WHERE id = ?",
                                   (_sid_key(sid),)).fetchone()
        if row is None:
            return None
        return Session(row[0], row[1], row[2], json.loads(row[3]))

    def save(self, sid: str, role: str | None, tag: str | None, created: float, data: dict) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO sessions(id, role, tag, created, data) VALUES (?, ?, ?, ?, ?)",
                      (_sid_key(sid), role, tag, created, json.dumps(data)))
            if role is None:
                c.execute("DELETE FROM sessions WHERE role IS NULL AND created < ?", (now - ANON_TTL_S,))
                c.execute("DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE role IS NULL "
                          "ORDER BY created DESC LIMIT -1 OFFSET ?)", (MAX_ANON_SESSIONS,))
            else:
                c.execute("DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE role = ? "
                          "ORDER BY created DESC LIMIT -1 OFFSET ?)", (role, MAX_SESSIONS_PER_ROLE))

    def delete(self, sid: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM sessions WHERE id = ?", (_sid_key(sid),))

    def prune(self, tags: dict[str, str], lifetime_s: float) -> int:
        """Drop expired sessions and those opened with a password that is no longer the role's."""
        now = time.time()
        with self._tx() as c:
            n = c.execute("DELETE FROM sessions WHERE role IS NOT NULL AND created < ?", (now - lifetime_s,)).rowcount
            rows = c.execute("SELECT id, role, tag FROM sessions WHERE role IS NOT NULL").fetchall()
            stale = [(i,) for i, role, tag in rows if tags.get(role) != tag]
            c.executemany("DELETE FROM sessions WHERE id = ?", stale)
        return n + len(stale)

    def count_sessions(self) -> int:
        return self._conn().execute("SELECT count(*) FROM sessions").fetchone()[0]

    # ------------------------------------------------------------ failed logins

    def bucket(self, client: str, role: str, since: float) -> str:
        """The key ``client``'s failures count under: its own while it has some or there is room, else OVERFLOW."""
        c = self._conn()
        if c.execute("SELECT 1 FROM failures WHERE client = ? AND role = ? AND ts > ? LIMIT 1",
                     (client, role, since)).fetchone():
            return client
        rows = c.execute("SELECT count(*) FROM failures WHERE ts > ?", (since,)).fetchone()[0]
        return client if rows < MAX_TRACKED_ROWS else OVERFLOW

    def failures(self, client: str, role: str, since: float) -> list[float]:
        rows = self._conn().execute("SELECT ts FROM failures WHERE client = ? AND role = ? AND ts > ? ORDER BY ts",
                                    (client, role, since)).fetchall()
        return [r[0] for r in rows]

    def add_failure(self, client: str, role: str, now: float, window_s: float) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO failures(client, role, ts) VALUES (?, ?, ?)", (client, role, now))
            c.execute("DELETE FROM failures WHERE ts <= ?", (now - window_s,))
            c.execute("DELETE FROM failures WHERE rowid IN (SELECT rowid FROM failures ORDER BY ts DESC "
                      "LIMIT -1 OFFSET ?)", (MAX_FAILURE_ROWS,))

    def clear_failures(self, client: str, role: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM failures WHERE client = ? AND role = ?", (client, role))

    def count_failure_rows(self) -> int:
        return self._conn().execute("SELECT count(*) FROM failures").fetchone()[0]
