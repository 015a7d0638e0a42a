"""A real Mosquitto for the MQTT tests, configured from the shipped mosquitto/ directory.

The shipped init.sh builds the password file and the effective config (so the
test exercises it too); the only adaptations are ports (loopback, free) and
paths (a temp dir instead of /mosquitto).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from simulators.kit import procs
from simulators.kit.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mosquitto"
MOSQUITTO = "/usr/sbin/mosquitto"


class Broker:
    def __init__(self, publishers: tuple[str, ...] = ("sim1", "sim2", "sim3", "sim4"), certs: dict | None = None,
                 overrides: dict[str, str] | None = None):
        # Not under pytest's 0700 tmp: the broker drops to user mosquitto and must reach its dirs.
        self.dir = Path(tempfile.mkdtemp(prefix="mqtt-broker-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.tls_port = free_port() if certs else None
        self.publishers = publishers
        self.proc: subprocess.Popen | None = None
        shutil.copytree(SHIPPED, self.dir / "config")
        if certs:
            (self.dir / "certs").mkdir()
            for name, data in certs.items():
                (self.dir / "certs" / name).write_bytes(data)
            shutil.chown(self.dir / "certs" / "server.key", "mosquitto", "mosquitto")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MOSQUITTO_DIR": str(self.dir), "INIT_ONLY": "1",
            "MQTT_PUBLISHERS": " ".join(publishers), "MQTT_SECRETS_DIR": str(self.dir / "secrets"),
        }
        out = subprocess.run(["sh", str(self.dir / "config" / "init.sh")], env=env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"init.sh failed: {out.stderr}")
        self.init_log = out.stderr
        conf = (self.dir / "data" / "run" / "mosquitto.conf").read_text()
        conf = conf.replace("\nlistener 1883\n", f"\nlistener {self.port} 127.0.0.1\n")
        if certs:
            conf = conf.replace("\nlistener 8883\n", f"\nlistener {self.tls_port} 127.0.0.1\n")
        conf = conf.replace("\nlog_dest stdout\n", "\n")
        for key, value in (overrides or {}).items():
            lines = [ln for ln in conf.splitlines() if not ln.startswith(key + " ")]
            conf = "\n".join(lines) + f"\n{key} {value}\n"
        self.conf = self.dir / "data" / "run" / "test.conf"
        self.conf.write_text(conf)
        shutil.chown(self.conf, "mosquitto", "mosquitto")

    def password(self, user: str) -> str:
        return (self.dir / "data" / "auth" / "generated" / user).read_text().strip()

    def password_file(self, user: str) -> Path:
        return self.dir / "data" / "auth" / "generated" / user

    @property
    def log(self) -> str:
        p = self.dir / "log" / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def start(self, timeout: float = 10.0) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode(errors='replace')}\n{self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def kill(self) -> None:
        procs.kill(self.proc)

    def stop(self) -> None:
        procs.stop(self.proc, 10)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
