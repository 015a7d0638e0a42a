"""The admin page: a Flask app served by gunicorn, reading the spool read-only.

``create_app()`` is the gunicorn entry point (config path from ``EDGE_CONFIG``);
``serve(config_path, bind)`` runs gunicorn for ``edge admin``. Flask is imported
only when the app is built, so ``edge.config`` can load ``edge.admin.settings``
cheaply.
"""

from __future__ import annotations

from typing import Any


def create_app(config: Any = None, *, env: dict[str, str] | None = None):
    from edge.admin.app import create_app as _create

    return _create(config, env=env)


def serve(config_path: str, bind: str | None = None) -> None:
    from edge.admin.server import serve as _serve

    _serve(config_path, bind)
