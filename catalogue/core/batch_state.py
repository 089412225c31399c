"""What this run knows of its Batch API jobs (GEMINI_MODE=batch), process-wide and light.

`generation.batch_jobs` fills it (the views waiting for a job, the job each one is in, the keys
collected by this run); the reporter (`tasks.reporter`) reads it for the views' lines, which are
written at the end of the run, once the new jobs are submitted and have their names. Standard
library only: the task graph loads the reporter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

_lock = threading.Lock()
_armed = False
_waiting: dict[tuple[str, str], "Waiting"] = {}
_fresh: set[str] = set()


@dataclass
class Waiting:
    """One view whose request is in a job, or queued for one."""
    folder: str
    view: str
    key: str
    job: str | None = None          # "batches/…" once the job exists
    since: str | None = None        # ISO time the job was created
    state: str = ""                 # PENDING, RUNNING, … as last seen
    note: str = ""                  # French: why it was submitted again, …
    held: str = ""                  # French: why nothing is submitted now (a job of unknown content)
    problem: str = ""               # French: the submission failed (the view fails)

    def describe(self) -> str:
        """« en lot (batches/…) depuis 14:02 » and what else there is to say (French)."""
        if self.held:
            text = self.held
        elif self.job:
            text = f"en lot ({self.job}) depuis {since_text(self.since)}"
            if self.state == "RUNNING":
                text += ", en cours de traitement"
        else:
            text = "soumission en lot incertaine : la prochaine exécution vérifie sur le serveur"
        return text + (f" — {self.note}" if self.note else "")


def since_text(iso: str | None) -> str:
    """14:02 today, « le 01/12 à 14:02 » another day (local time)."""
    if not iso:
        return "?"
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return iso
    if dt.date() == datetime.now().astimezone().date():
        return dt.strftime("%H:%M")
    return dt.strftime("le %d/%m à %H:%M")


def arm() -> None:
    """This process runs the batch mode (the `batch` task collected): view requests go to jobs."""
    global _armed
    with _lock:
        _armed = True


def armed() -> bool:
    return _armed


def wait(folder: str, view: str, key: str, **fields) -> Waiting:
    with _lock:
        w = _waiting[(folder, view)] = Waiting(folder, view, key, **fields)
        return w


def waiting(folder: str, view: str) -> Waiting | None:
    with _lock:
        return _waiting.get((folder, view))


def update(keys, **fields) -> None:
    """Set `fields` on every waiting view whose request key is in `keys`."""
    keys = set(keys)
    with _lock:
        for w in _waiting.values():
            if w.key in keys:
                for name, value in fields.items():
                    setattr(w, name, value)


def mark_fresh(key: str) -> None:
    """`key`'s answer was collected by this run: its view is reported as made now (and paid)."""
    with _lock:
        _fresh.add(key)


def is_fresh(key: str) -> bool:
    with _lock:
        return key in _fresh

