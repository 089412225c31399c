"""The run lock: one run of the pipeline at a time per project (a second one would pay twice).

An exclusive, non-blocking flock on the project folder itself (the folder of dodo.py), released
by the OS on a crash. Locking the folder, not a file in it, means the lock holds on what is open:
deleting `.doit.lock` (which only shows the holder's PID) cannot let a second run in.

It is taken by the pipeline itself, whatever the working folder and the doit command: by the
`run` command (politely, before anything runs), by dodo.py when the graph loads for a command
that runs tasks, and by every view and upload action (`hold_run_lock`). Once per process, the
holder reconciles the calls a kill -9 cut (`core.in_flight.reconcile`).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

from ..core.in_flight import reconcile
from ..core.paths import LOCK_FILE, answers_dir, ledger_path, lock_path

# doit commands that run no task of the pipeline (or run it in a child process): no lock.
NON_RUNNING_COMMANDS = frozenset({"list", "info", "help", "plan", "dumpdb", "forget", "ignore", "reset-dep",
                                  "tabcompletion", "reroll", "adjust"})


class RunLock:
    """An exclusive, non-blocking flock on the folder of `path` (`<root>/.doit.lock`), held for
    the whole run; the PID of the holder is written in `path` for the messages."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = None

    def acquire(self) -> bool:
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            pid_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(pid_fd, f"{os.getpid()}\n".encode())
            os.close(pid_fd)
        except OSError:
            pass  # the PID is for messages only
        self._fd = fd
        return True

    def probe(self) -> str | None:
        """The holder's PID (text) when another process holds the lock, else None; takes nothing."""
        try:
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None  # cannot even open the folder: let doit say why
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.holder()
        finally:
            os.close(fd)  # closing the descriptor releases the probe
        return None

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


# --- held by this process --------------------------------------------------------------------------

_held: dict[Path, RunLock] = {}
_held_lock = threading.Lock()


def hold_run_lock(settings) -> RunLock | None:
    """Take the project's run lock for this process (once; later calls return it). None when
    another process holds it. The first time, reconcile what a kill -9 left in the ledger."""
    root = Path(settings.root)
    with _held_lock:
        lock = _held.get(root)
        if lock is not None:
            return lock
        lock = lock_of(settings)
        if not lock.acquire():
            return None
        _held[root] = lock
    try:
        reconcile(ledger_path(settings), answers_dir(settings))
    except OSError:
        pass  # an unwritable ledger is reported by the first paid call
    return lock


def lock_of(settings) -> RunLock:
    return RunLock(lock_path(settings))


def holds_run_lock(root: Path) -> bool:
    with _held_lock:
        return Path(root).resolve() in _held


def busy_message(lock: RunLock) -> str:
    return (f"Une autre exécution est déjà en cours (PID {lock.holder()}, verrou {lock.path}) : "
            f"celle-ci s'arrête sans rien faire pour ne rien payer deux fois.")


def command_runs_tasks(argv: list[str]) -> bool:
    """True when `doit <argv>` runs tasks in this process (doit: the first argument names the
    command when it is one, else the command is `run`)."""
    return not argv or argv[0] not in NON_RUNNING_COMMANDS


def regenerate(folder: str) -> int:
    """Run `doit generate:<folder>` now (after a re-roll or a retouch was recorded). Refuses when
    another run holds the lock: its doit would exit 0 without building, and the caller would then
    report an old image as the new one."""
    holder = RunLock(Path(os.getcwd()) / LOCK_FILE).probe()
    if holder is not None:
        print(f"Une autre exécution est en cours (PID {holder}) : la vue sera refaite par la "
              f"prochaine exécution (ou relancez doit generate:{folder} après elle).", flush=True)
        return 1
    # mode=interactive: the person who asked waits for the image (GEMINI_MODE=batch would queue it)
    return subprocess.call([sys.executable, "-m", "doit", f"generate:{folder}", "mode=interactive"])
