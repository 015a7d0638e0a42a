"""``edge admin``: run the app under gunicorn with settings fit for a management network.

The config and the credentials are checked here, before gunicorn starts, so a
missing password stops ``edge admin`` with one clear line instead of a worker
boot loop. The access log carries method, path (never the query string), status,
size and duration: no headers, so no cookies or Authorization values.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
# Threads per worker: a connection that sends nothing holds no thread for more than 5 s (gthread hands it
# back to its poller), one that trickles its request holds one thread for at most READ_DEADLINE_S
# (edge/admin/worker.py), never a whole sync worker: a few slow or half-open clients cannot take the page
# down for everyone.
THREADS = 16
WORKER_CONNECTIONS = 200  # open connections per worker, kept-alive ones included


def gunicorn_argv(config_path: str, bind: str, *, workers: int, timeout: float, threads: int = THREADS,
                  certfile: str | None = None, keyfile: str | None = None) -> list[str]:
    argv = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(workers),
        "--worker-class", "edge.admin.worker.Worker",  # gthread with a deadline on reading a request
        "--threads", str(threads),
        "--worker-connections", str(WORKER_CONNECTIONS),
        "--bind", bind,
        "--timeout", str(int(timeout)),
        "--graceful-timeout", "10",
        "--keep-alive", "5",
        # Bound what a client can make a worker hold: the page needs nothing big.
        "--limit-request-line", "4094",
        "--limit-request-fields", "50",
        "--limit-request-field_size", "8190",
        "--access-logfile", "-",
        "--access-logformat", ACCESS_LOG_FORMAT,
        "--error-logfile", "-",
        "--name", "edge-admin",
        # gunicorn 27's control socket defaults to one path under $HOME: two instances would fight over it.
        "--no-control-socket",
    ]
    if certfile:
        # TLS on the page's own listener; the app sends HSTS on every answer over it.
        argv += ["--certfile", certfile, "--keyfile", keyfile or certfile]
    if Path("/dev/shm").is_dir():
        # Worker heartbeats on tmpfs: a slow disk (the spool's) must not make gunicorn kill workers.
        argv += ["--worker-tmp-dir", "/dev/shm"]
    argv.append("edge.admin:create_app()")
    return argv


def serve(config_path: str, bind: str | None = None, *, exec_: bool = True) -> list[str]:
    """Validate, then replace this process with gunicorn (``exec_=False`` returns the argv instead)."""
    from edge.admin.settings import AdminConfig, credentials, metrics_token
    from edge.config import load

    cfg = load(config_path, section="admin")
    admin = cfg.admin if cfg.admin is not None else AdminConfig()
    credentials(admin)
    metrics_token(admin)
    path = str(Path(config_path).resolve())
    argv = gunicorn_argv(path, bind or admin.bind, workers=admin.workers, timeout=float(admin.timeout),
                         certfile=admin.tls_cert or None, keyfile=admin.tls_key or None)
    if not exec_:
        return argv
    os.environ["EDGE_CONFIG"] = path
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return argv  # pragma: no cover - execv does not return
