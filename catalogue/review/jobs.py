"""The review page's regenerations (re-roll, retouch): `doit generate:<folder>` runs, one at a time,
in the background; the page polls their progress.

The page never holds the run lock: each job takes it like any run. A job's step (a new seed in
`overrides.json`, a retouch in `adjustments.toml`) is recorded only when its regeneration can
start, and undone when it cannot:

1. while another run (cron) holds the run lock, the job waits, « en attente de l'exécution en
   cours », and looks again later (growing delays); nothing is written meanwhile;
2. the lock free, the job records its steps (the files' previous bytes kept) and starts doit;
3. when that doit says another run took the lock first, or fails before making the view with the
   step, the files are put back as they were (a later run must not pay for a step the person saw
   fail); the lock-held case goes back to waiting.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core.files import atomic_write_bytes
from ..core.paths import LOCK_FILE
from ..tasks.run_lock import RunLock

JOB_LOG_LINES = 40
# What a doit run prints when another run holds the lock (tasks.commands / run_lock).
LOCK_HELD = re.compile(r"Une autre exécution (est )?(déjà )?en cours")
WAITING = "en attente de l'exécution en cours"


@dataclass
class Step:
    """One thing a job makes: what it records before doit runs, and how to tell it was made."""

    kind: str                                  # "reroll" | "adjust"
    view: str
    record: Callable[[], str]                  # writes the step; returns a short French description
    made: Callable[[], bool]                   # after doit: the view was made with this step
    files: tuple[Path, ...]                    # the files `record` writes (restored on undo)
    description: str = ""


@dataclass
class Job:
    id: int
    folder: str
    steps: list[Step]
    state: str = "queued"                 # "queued" | "waiting" | "running" | "done" | "failed"
    lines: deque = field(default_factory=lambda: deque(maxlen=JOB_LOG_LINES))
    message: str = ""
    returncode: int | None = None
    attempts: int = 0
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def views(self) -> list[str]:
        return [s.view for s in self.steps]

    def to_json(self) -> dict:
        what = ", ".join(f"{'nouveau tirage' if s.kind == 'reroll' else 'ajustement'} {s.view}" for s in self.steps)
        return {"id": self.id, "folder": self.folder, "views": self.views, "what": what,
                "kinds": [s.kind for s in self.steps],
                "state": self.state, "message": self.message, "returncode": self.returncode,
                "last_line": self.lines[-1] if self.lines else "", "log": list(self.lines),
                "started_at": self.started_at, "ended_at": self.ended_at,
                "seconds": round((self.ended_at or time.time()) - self.started_at, 1) if self.started_at else None}


def lock_holder(root: Path) -> str | None:
    """The PID (text) of the run holding the run lock, or None when it is free."""
    return RunLock(Path(root) / LOCK_FILE).probe()


class JobRunner:
    """A FIFO of `doit generate:<folder>` runs, one at a time (see the module docstring).

    A request for a folder already waiting joins that job: one run rebuilds every stale view.
    `retry`: (first, longest) delay in seconds between two looks at a held lock.
    """

    def __init__(self, root: Path, env: dict | None = None, command=None, retry: tuple[float, float] = (1.0, 30.0)):
        self.root = Path(root)
        self.env = env
        # mode=interactive: the page waits for the new image (GEMINI_MODE=batch would queue it)
        self.command = command or (lambda folder: [sys.executable, "-m", "doit", f"generate:{folder}",
                                                   "mode=interactive"])
        self.retry = retry
        self._cond = threading.Condition()
        self._jobs: list[Job] = []
        self._next_id = 1
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="review-jobs", daemon=True)
        self._thread.start()

    def submit(self, folder: str, step: Step) -> Job:
        with self._cond:
            for job in self._jobs:
                if job.folder == folder and job.state in ("queued", "waiting"):
                    job.steps.append(step)
                    return job
            job = Job(self._next_id, folder, [step])
            self._next_id += 1
            self._jobs.append(job)
            del self._jobs[:-50]  # keep the recent history only
            self._cond.notify_all()
            return job

    def snapshot(self) -> list[dict]:
        with self._cond:
            return [j.to_json() for j in self._jobs]

    def busy(self) -> bool:
        with self._cond:
            return any(j.state in ("queued", "waiting", "running") for j in self._jobs)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(j.state in ("queued", "waiting", "running") for j in self._jobs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def wait_state(self, state: str, timeout: float) -> bool:
        """Until some job is in `state` (tests, and nothing else, wait on the runner)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(j.state == state for j in self._jobs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking jobs; a running generation gets SIGTERM (doit records it like Ctrl-C)."""
        with self._cond:
            self._stopping = True
            for job in self._jobs:
                if job.state in ("queued", "waiting"):
                    job.state, job.message = "failed", "annulé : la page de revue s'est arrêtée (rien n'a été enregistré)"
            proc = self._proc
            self._cond.notify_all()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()

    # --- the worker ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not any(j.state == "queued" for j in self._jobs):
                    self._cond.wait()
                if self._stopping:
                    return
                job = next(j for j in self._jobs if j.state == "queued")
                job.state = "waiting"
                self._cond.notify_all()
            delay = self.retry[0]
            while True:
                holder = lock_holder(self.root)
                if holder is None:
                    outcome = self._run(job)
                    if outcome != "locked":
                        break
                    holder = "?"
                with self._cond:
                    job.state = "waiting"
                    job.message = f"{WAITING} (PID {holder}) : nouvel essai dans {delay:.0f} s"
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self._stopping, timeout=delay)
                    if self._stopping:
                        return
                delay = min(self.retry[1], delay * 2)
            with self._cond:
                job.ended_at = time.time()
                self._proc = None
                self._cond.notify_all()

    def _set(self, job: Job, state: str, message: str) -> None:
        with self._cond:
            job.state, job.message = state, message
            self._cond.notify_all()

    def _run(self, job: Job) -> str:
        """Record the steps, run doit; "locked" when another run took the lock first."""
        with self._cond:
            steps = list(job.steps)  # a step joining later waits for the next attempt (the job is running)
        saved = {path: _read(path) for step in steps for path in step.files}
        try:
            for step in steps:
                step.description = step.record()
        except Exception as exc:  # PipelineError (French) or an OS refusal
            _restore(saved)
            self._set(job, "failed", f"rien n'a été enregistré : {getattr(exc, 'message', None) or exc}")
            return "failed"
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        with self._cond:
            job.state, job.started_at, job.attempts = "running", time.time(), job.attempts + 1
            job.message = "; ".join(s.description for s in steps if s.description)
            job.lines.clear()
            self._cond.notify_all()
        try:
            proc = subprocess.Popen(self.command(job.folder), cwd=self.root, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace")
        except OSError as exc:
            _restore(saved)
            self._set(job, "failed", f"impossible de lancer doit : {exc} (rien n'a été enregistré)")
            return "failed"
        with self._cond:
            self._proc = proc
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                with self._cond:
                    job.lines.append(line)
                    self._cond.notify_all()
        job.returncode = proc.wait()
        lines = list(job.lines)
        if any(LOCK_HELD.search(ln) for ln in lines):
            _restore(saved)  # that doit made nothing: nothing stays recorded, try again later
            return "locked"
        failures = [ln.strip().lstrip("✗").strip() for ln in lines if ln.strip().startswith("✗")]
        if job.returncode == 0:
            self._set(job, "done", next((ln for ln in reversed(lines) if ln.startswith("Terminé")), "terminé"))
            return "done"
        why = " ; ".join(failures) or (lines[-1] if lines else f"code de sortie {job.returncode}")
        if not any(_made(step) for step in steps):
            _restore(saved)
            why += " — rien n'est resté enregistré (relancez depuis la page quand la cause est réglée)"
        self._set(job, "failed", why)
        return "failed"


def _made(step: Step) -> bool:
    try:
        return bool(step.made())
    except Exception:
        return False


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _restore(saved: dict[Path, bytes | None]) -> None:
    """Put the files back exactly as they were before the job recorded its steps."""
    for path, data in saved.items():
        if data is None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        else:
            atomic_write_bytes(path, data)
