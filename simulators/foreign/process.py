"""A foreign OPC-UA test server as a child process: start, kill, restart on the same port, and its tick log.

Both servers (open62541_server.c, pyopcua_server.py) take ``PORT TICKLOG [options]`` and append
"k <SourceTimestamp in 100 ns ticks since 1601>" to TICKLOG at every tick; ``ticks()`` turns that
into {SourceTimestamp in microseconds since the Unix epoch: k}, which is how a test finds out what
the server set for a value that landed in the spool (see simulators/foreign/values.py).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from simulators.kit import procs
from simulators.kit.broker import free_port
from simulators.kit.wait import wait_until

EPOCH_1601_TO_1970_US = 11_644_473_600_000_000


class ForeignServer:
    def __init__(self, command: list[str], workdir: Path, options: list[str] = (), env: dict | None = None):
        self.command, self.options, self.env = list(command), list(options), env
        self.port = free_port()
        self.ticklog = workdir / "ticks.log"
        self.out = workdir / "server.out"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    def start(self, options: list[str] | None = None) -> "ForeignServer":
        """Start (again, on the same port); returns once it accepts connections and has ticked once."""
        if options is not None:
            self.options = list(options)
        before = len(self.ticks_raw())
        with open(self.out, "a") as out:
            self.proc = subprocess.Popen(self.command + [str(self.port), str(self.ticklog)] + self.options,
                                         stdout=out, stderr=subprocess.STDOUT, env=self.env)
        wait_until(lambda: self._listening() and len(self.ticks_raw()) > before, 30, "foreign OPC-UA server up")
        return self

    def _listening(self) -> bool:
        assert self.proc.poll() is None, f"server exited {self.proc.returncode}: {self.out.read_text()[-3000:]}"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        procs.kill(self.proc)

    def stop(self) -> None:
        procs.stop(self.proc, 10)

    def ticks_raw(self) -> list[tuple[int, int]]:
        if not self.ticklog.exists():
            return []
        lines = self.ticklog.read_text().splitlines()
        return [(int(k), int(t)) for k, t in (ln.split() for ln in lines if ln.count(" ") == 1)]

    def ticks(self) -> dict[int, int]:
        """{SourceTimestamp (us since 1970): tick k} of every tick the server has written so far."""
        return {t // 10 - EPOCH_1601_TO_1970_US: k for k, t in self.ticks_raw()}
