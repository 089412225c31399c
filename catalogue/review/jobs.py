"""The review page's regenerations (re-roll, retouch): `doit generate:<folder>` runs, one at a time,
in the background; the page polls their progress."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

JOB_LOG_LINES = 40


@dataclass
class Job:
    id: int
    folder: str
    views: list[str]
    kinds: list[str]                      # "reroll" | "adjust"
    state: str = "queued"                 # "queued" | "running" | "done" | "failed"
    lines: deque = field(default_factory=lambda: deque(maxlen=JOB_LOG_LINES))
    message: str = ""
    returncode: int | None = None
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None

    def to_json(self) -> dict:
        what = ", ".join(f"{'nouveau tirage' if k == 'reroll' else 'ajustement'} {v}"
                         for k, v in zip(self.kinds, self.views))
        return {"id": self.id, "folder": self.folder, "views": list(self.views), "what": what,
                "state": self.state, "message": self.message, "returncode": self.returncode,
                "last_line": self.lines[-1] if self.lines else "", "log": list(self.lines),
                "started_at": self.started_at, "ended_at": self.ended_at,
                "seconds": round((self.ended_at or time.time()) - self.started_at, 1) if self.started_at else None}


class JobRunner:
    """A FIFO of `doit generate:<folder>` runs, one at a time (doit's run lock allows one anyway).

    A request for a folder already waiting joins that job: one run rebuilds every stale view.
    """

    def __init__(self, root: Path, env: dict | None = None, command=None):
        self.root = root
        self.env = env
        self.command = command or (lambda folder: [sys.executable, "-m", "doit", f"generate:{folder}"])
        self._cond = threading.Condition()
        self._jobs: list[Job] = []
        self._next_id = 1
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="review-jobs", daemon=True)
        self._thread.start()

    def submit(self, folder: str, view: str, kind: str) -> Job:
        with self._cond:
            for job in self._jobs:
                if job.folder == folder and job.state == "queued":
                    job.views.append(view)
                    job.kinds.append(kind)
                    return job
            job = Job(self._next_id, folder, [view], [kind])
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
            return any(j.state in ("queued", "running") for j in self._jobs)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(j.state in ("queued", "running") for j in self._jobs):
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
                if job.state == "queued":
                    job.state, job.message = "failed", "annulé : la page de revue s'est arrêtée"
            proc = self._proc
            self._cond.notify_all()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not any(j.state == "queued" for j in self._jobs):
                    self._cond.wait()
                if self._stopping:
                    return
                job = next(j for j in self._jobs if j.state == "queued")
                job.state, job.started_at = "running", time.time()
                self._cond.notify_all()
            self._run(job)
            with self._cond:
                job.ended_at = time.time()
                self._proc = None
                self._cond.notify_all()

    def _run(self, job: Job) -> None:
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        try:
            proc = subprocess.Popen(self.command(job.folder), cwd=self.root, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace")
        except OSError as exc:
            job.state, job.message = "failed", f"impossible de lancer doit : {exc}"
            return
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
        locked = next((ln for ln in lines if "Une autre exécution est déjà en cours" in ln), None)
        failures = [ln.strip().lstrip("✗").strip() for ln in lines if ln.strip().startswith("✗")]
        if locked:
            job.state, job.message = "failed", locked
        elif job.returncode == 0:
            job.state = "done"
            job.message = next((ln for ln in reversed(lines) if ln.startswith("Terminé")), "terminé")
        else:
            job.state = "failed"
            job.message = " ; ".join(failures) or (lines[-1] if lines else f"code de sortie {job.returncode}")
