"""Drive one Compose project of the appliance from Python (tests, the drill).

Works with whichever Compose is installed: the `docker compose` plugin (v2) when
`docker compose version` answers, else the standalone `docker-compose` (1.29).
`EDGE_COMPOSE=v1` (or `Compose(..., tool=COMPOSE_V1)`) picks 1.29 on a host that
has both; ops/images/compose-v2.sh installs v2 on Debian bookworm.
Every call has a timeout; failures raise ComposeError carrying the command's
output (the commands never see secrets: those stay in the env file).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent


class ComposeError(RuntimeError):
    pass


def _ok(cmd: Sequence[str], timeout: float = 20) -> bool:
    try:
        return subprocess.run(list(cmd), capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_available() -> bool:
    """True when the docker CLI exists and its daemon answers."""
    return shutil.which("docker") is not None and _ok(["docker", "info"])


COMPOSE_V2 = ("docker", "compose")
COMPOSE_V1 = ("docker-compose",)


@functools.lru_cache(maxsize=4)
def have(tool: tuple[str, ...]) -> bool:
    """True when this Compose answers `version` (v1's `docker-compose` may be the v2 binary: ask which)."""
    if not shutil.which(tool[0]):
        return False
    try:
        out = subprocess.run([*tool, "version", "--short"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    major = out.stdout.strip().lstrip("v").split(".")[0]
    return out.returncode == 0 and major == ("2" if tool == COMPOSE_V2 else "1")


def compose_command() -> tuple[str, ...] | None:
    order = (COMPOSE_V1, COMPOSE_V2) if os.environ.get("EDGE_COMPOSE") == "v1" else (COMPOSE_V2, COMPOSE_V1)
    return next((tool for tool in order if have(tool)), None)


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["docker", *args], timeout=timeout, check=check)


def _run(cmd: list[str], *, timeout: float, check: bool, env: dict | None = None, cwd: Path | None = None,
         input: str | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, input=input)
    except subprocess.TimeoutExpired as exc:
        raise ComposeError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise ComposeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


class Compose:
    """One project: `-p NAME -f FILE...` with a fixed env file and extra environment."""

    def __init__(self, project: str, files: Sequence[str | Path], *, env_file: str | Path | None = None,
                 env: dict[str, str] | None = None, cwd: Path = ROOT, tool: tuple[str, ...] | None = None):
        tool = tool or compose_command()
        if tool is None or not have(tool):
            raise ComposeError(f"{' '.join(tool or ('docker compose',))} does not work on this machine")
        self.tool = tool
        self.project = project
        self.cwd = cwd
        self.files = [str(f) for f in files]
        self.env_file = str(env_file) if env_file else None
        self.env = {**os.environ, **(env or {})}

    def base_cmd(self) -> list[str]:
        cmd = [*self.tool, "-p", self.project]
        for f in self.files:
            cmd += ["-f", f]
        if self.env_file:
            cmd += ["--env-file", self.env_file]
        return cmd

    def run(self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return _run(self.base_cmd() + list(args), timeout=timeout, check=check, env=self.env, cwd=self.cwd, input=input)

    # -- lifecycle
    def build(self, *services: str, timeout: float = 900) -> None:
        self.run("build", *services, timeout=timeout)

    def up(self, *services: str, timeout: float = 180) -> None:
        # --no-build: images are built beforehand, so `up` time is start time only.
        self.run("up", "-d", "--no-build", *services, timeout=timeout)

    def down(self, volumes: bool = True, timeout: float = 120) -> None:
        args = ["down", "--remove-orphans", "-t", "5"]
        if volumes:
            args.append("-v")
        self.run(*args, timeout=timeout, check=False)

    def stop(self, *services: str, timeout: float = 60) -> None:
        self.run("stop", "-t", "10", *services, timeout=timeout)

    def start(self, *services: str, timeout: float = 60) -> None:
        self.run("start", *services, timeout=timeout)

    def kill(self, service: str, signal: str = "KILL") -> None:
        docker("kill", "-s", signal, self.container(service))

    # -- inspection
    def container(self, service: str) -> str:
        ids = self.run("ps", "-q", service, timeout=30).stdout.split()
        if not ids:
            raise ComposeError(f"service {service} has no container in project {self.project}")
        return ids[0]

    def port(self, service: str, private_port: int) -> tuple[str, int]:
        out = self.run("port", service, str(private_port), timeout=30).stdout.strip().splitlines()
        if not out or ":" not in out[-1]:
            raise ComposeError(f"{service}:{private_port} is not published")
        host, _, port = out[-1].rpartition(":")
        return (host.strip("[]") if host not in ("0.0.0.0", "") else "127.0.0.1"), int(port)

    def network(self, name: str) -> str:
        return f"{self.project}_{name}"

    def health(self, service: str) -> str:
        out = docker("inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                     self.container(service), timeout=30).stdout
        return out.strip()

    def exec(self, service: str, *cmd: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("exec", "-T", service, *cmd, timeout=timeout, check=check)

    def logs(self, *services: str, tail: int = 200) -> str:
        proc = self.run("logs", "--no-color", "--tail", str(tail), *services, timeout=60, check=False)
        return proc.stdout + proc.stderr

    def wait_healthy(self, services: Sequence[str], timeout: float = 120) -> float:
        """Seconds until every service reports healthy; ComposeError naming the laggards otherwise."""
        t0 = time.monotonic()
        states: dict[str, str] = {}
        while time.monotonic() - t0 < timeout:
            states = {s: self.health(s) for s in services}
            if all(v == "healthy" for v in states.values()):
                return time.monotonic() - t0
            if any(v in ("exited", "dead") for v in states.values()):
                break
            time.sleep(1)
        raise ComposeError(f"not healthy after {time.monotonic() - t0:.0f}s: {states}")


def http_json(url: str, timeout: float = 5, cadata: str | None = None) -> dict:
    """GET a JSON document; https is verified against ``cadata`` (PEM) when given, else the system CAs."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    # The emulator and the admin page are on 127.0.0.1: a proxy from the environment must not see them.
    handlers: list = [urllib.request.ProxyHandler({})]
    if cadata:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cadata=cadata)))
    with urllib.request.build_opener(*handlers).open(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


class Emulator:
    """The demo ZeroBus emulator's HTTP side (GET /stats) as seen from the host.

    It serves TLS with the CA the init service generated: the CA is read from the
    emulator's container (its secrets volume), never skipped.
    """

    CA_PATH = "/secrets/zerobus-ca.pem"

    def __init__(self, url: str, cadata: str | None = None):
        self.url, self.cadata = url.rstrip("/"), cadata

    @classmethod
    def of(cls, compose: "Compose", service: str = "zerobus", port: int = 8090) -> "Emulator":
        host, hport = compose.port(service, port)
        ca = wait_for(lambda: compose.exec(service, "cat", cls.CA_PATH, timeout=30).stdout, timeout=60,
                      what=f"{service}'s CA certificate")
        return cls(f"https://{host}:{hport}", ca)

    def get(self, path: str, timeout: float = 5) -> dict:
        return http_json(self.url + path, timeout=timeout, cadata=self.cadata)

    def stats(self, timeout: float = 5) -> dict:
        return self.get("/stats", timeout=timeout)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll until predicate() returns something truthy; transient connection errors count as 'not yet'."""
    t0 = time.monotonic()
    last_exc: Exception | None = None
    while time.monotonic() - t0 < timeout:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError, ComposeError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f}s" + (f" (last error: {last_exc})" if last_exc else ""))


def emulator_rows(stats: dict, appliance_id: str | None = None) -> int:
    """Rows the emulator stored, over every table (or one appliance's distinct seqs)."""
    total = 0
    for table in (stats.get("tables") or {}).values():
        if appliance_id is None:
            total += int(table.get("rows") or 0)
        else:
            app = (table.get("appliances") or {}).get(appliance_id)
            if app and app.get("max_seq") is not None:
                total += int(app["max_seq"]) - int(app["min_seq"]) + 1 - int(app.get("missing_count") or 0)
    return total
