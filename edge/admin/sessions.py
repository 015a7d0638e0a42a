"""Server-side sessions for Flask: the cookie carries a random id and nothing else.

The session's content (role, CSRF token, flashes) lives in the admin store (store.py),
so logging out deletes it for good (a copied cookie stops working), a password change
ends the role's sessions (each row remembers a tag of the password it was opened with),
and the cookie holds nothing derived from a password. ``session.regenerate()`` (at login)
issues a new id so a session id planted before login is useless after it.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable

from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from edge.admin.store import AdminStore


class ServerSession(CallbackDict, SessionMixin):
    def __init__(self, initial: dict | None = None, sid: str | None = None, created: float | None = None):
        def on_update(_self):
            _self.modified = True

        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.created = created if created is not None else time.time()
        self.modified = False
        self.rotate = False

    def regenerate(self) -> None:
        self.rotate = True
        self.created = time.time()
        self.modified = True


class StoreSessionInterface(SessionInterface):
    def __init__(self, store: AdminStore, lifetime_s: float, tag_for: Callable[[str], str | None]):
        self.store = store
        self.lifetime_s = lifetime_s
        self.tag_for = tag_for  # role -> tag of its current password (None: the role cannot log in)

    def open_session(self, app, request) -> ServerSession:
        sid = request.cookies.get(self.get_cookie_name(app))
        if sid and len(sid) <= 100:
            rec = self.store.load(sid)
            if rec is not None and self._valid(rec):
                return ServerSession(rec.data, sid=sid, created=rec.created)
            if rec is not None:
                self.store.delete(sid)
        return ServerSession()

    def _valid(self, rec) -> bool:
        if rec.role is None:
            return True
        # Absolute lifetime: the page's auto-refresh would otherwise keep a session alive forever.
        return time.time() - rec.created < self.lifetime_s and rec.tag is not None and rec.tag == self.tag_for(rec.role)

    def save_session(self, app, session: ServerSession, response) -> None:
        name = self.get_cookie_name(app)
        domain, path = self.get_cookie_domain(app), self.get_cookie_path(app)
        if not session:
            if session.sid:
                self.store.delete(session.sid)
                response.delete_cookie(name, domain=domain, path=path)
            return
        if not session.modified and session.sid:
            return
        if session.rotate or not session.sid:
            if session.sid:
                self.store.delete(session.sid)
            session.sid = secrets.token_urlsafe(32)
        role = session.get("role")
        self.store.save(session.sid, role, self.tag_for(role) if role else None, session.created, dict(session))
        response.set_cookie(name, session.sid, expires=self.get_expiration_time(app, session),
                            httponly=self.get_cookie_httponly(app), domain=domain, path=path,
                            secure=self.get_cookie_secure(app), samesite=self.get_cookie_samesite(app))
