"""A real HTTP CONNECT proxy (Debian's tinyproxy) on loopback, for egress tests.

    with ConnectProxy(allow_ports=[emu.grpc_port, emu.http_port]) as proxy:
        env = {"https_proxy": proxy.url}
        ...
        proxy.connects()   # "host:port" of every CONNECT it tunnelled

``allow_ports`` limits CONNECT like a corporate proxy's allow list; a CONNECT to
another port is refused with 403.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from simulators.kit.ports import free_port as _free_port


class ConnectProxy:
    def __init__(self, allow_ports: list[int]):
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        if not Path(binary).exists():
            raise RuntimeError("tinyproxy is not installed: ops/test.sh installs it (apt-get install tinyproxy)")
        self.binary = binary
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="proxy-"))
        self.log = self.dir / "tinyproxy.log"
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 60", f'LogFile "{self.log}"', "LogLevel Connect",
                 "MaxClients 100", "Allow 127.0.0.1"]
        lines += [f"ConnectPort {p}" for p in allow_ports]
        (self.dir / "tinyproxy.conf").write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ConnectProxy":
        self.proc = subprocess.Popen([self.binary, "-d", "-c", str(self.dir / "tinyproxy.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("tinyproxy did not start")

    def connects(self) -> list[str]:
        text = self.log.read_text() if self.log.exists() else ""
        return re.findall(r"CONNECT ([^ ]+) HTTP", text)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "ConnectProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
