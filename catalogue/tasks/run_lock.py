"""The run lock: one run of the pipeline at a time per project (a second one would pay twice).

An exclusive, non-blocking flock on `.doit.lock` next to dodo.py, released by the OS on a crash.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from ..core.paths import LOCK_FILE


class RunLock:
    """An exclusive, non-blocking flock held for the whole run (released by the OS on a crash)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def regenerate(folder: str) -> int:
    """Run `doit generate:<folder>` now (after a re-roll or a retouch was recorded). Refuses when
    another run holds the lock: its doit would exit 0 without building, and the caller would then
    report an old image as the new one."""
    lock = RunLock(Path(os.getcwd()) / LOCK_FILE)
    if not lock.acquire():
        print(f"Une autre exécution est en cours (PID {lock.holder()}) : la vue sera refaite par la "
              f"prochaine exécution (ou relancez doit generate:{folder} après elle).", flush=True)
        return 1
    lock.release()
    return subprocess.call([sys.executable, "-m", "doit", f"generate:{folder}"])
