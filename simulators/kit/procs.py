"""Stopping child processes in tests: SIGKILL (a crash) or SIGTERM with a bounded wait."""

from __future__ import annotations

import signal
import subprocess


def kill(proc: subprocess.Popen | None) -> None:
    """SIGKILL, as a crash or a power cut looks to the process."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def stop(proc: subprocess.Popen | None, timeout: float = 30.0) -> None:
    """SIGTERM (a clean stop); SIGKILL if it has not exited within ``timeout``."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
