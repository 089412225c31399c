"""The one error boundary between the pipeline and doit.

Every task action runs through `run_action(kind, folder, fn, *args)`:

* a `PipelineError` (bad input, refusal, budget, ...) becomes doit's `TaskFailed` with its French
  message, tagged with the task's kind (view, upload, check) and the error's class: exit code 1;
* the operating system's usual refusals (permission denied, read-only file system, disk full,
  file name too long) become a French message naming the path and what to do: exit code 1;
* anything else is a bug: its traceback is written to stderr and appended to
  `output/.state/errors.log` (for the operator to send), and it stays an error: exit code 2.

Light on purpose (standard library and doit only): the task graph imports it when it loads.
"""

from __future__ import annotations

import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

from doit.exceptions import TaskFailed

from ..core.errors import OS_REFUSALS, STOP_PAYING, BudgetExceeded, PipelineError
from ..core.in_flight import note_write_failure
from ..core.paths import errors_log_path
from .run_lock import busy_message, hold_run_lock, lock_of

def os_refusal_message(exc: OSError) -> str | None:
    """The French message for an OS refusal, or None when `exc` is not one of them."""
    known = OS_REFUSALS.get(exc.errno)
    if known is None:
        return None
    what, todo = known
    path = exc.filename or "?"
    if exc.filename2:
        path = f"{path} → {exc.filename2}"
    return f"écriture impossible dans {path} : {what} ; {todo}."


def failure(message: str, *, kind: str, error: str = "PipelineError") -> TaskFailed:
    """A doit failure carrying the French message, the task's kind and the error's class."""
    failed = TaskFailed(message)
    failed.kind = error     # the reporter sums up budget stops on one line
    failed.family = kind    # view | upload | check
    return failed


def log_bug(settings, where: str) -> Path | None:
    """Append the current exception's traceback to output/.state/errors.log and to stderr."""
    text = traceback.format_exc()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sys.stderr.write(f"--- {stamp} {where}\n{text}")
    sys.stderr.flush()
    if settings is None:
        return None
    path = errors_log_path(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"--- {stamp} {where}\n{text}")
    except OSError:
        return None
    return path


# Task kinds that pay or publish: they run only under the project's run lock.
LOCKED_KINDS = ("view", "upload")


def run_action(kind: str, where: str, settings, fn, *args):
    """Run `fn(*args)` behind the boundary (see the module docstring)."""
    if kind in LOCKED_KINDS and settings is not None and hold_run_lock(settings) is None:
        return failure(busy_message(lock_of(settings)), kind=kind, error="RunLocked")
    try:
        return fn(*args)
    except PipelineError as exc:
        error = "BudgetExceeded" if isinstance(exc, BudgetExceeded) else type(exc).__name__  # a stop, not a failure
        return failure(exc.message, kind=kind, error=error)
    except OSError as exc:
        message = os_refusal_message(exc)
        if message is None:
            log_bug(settings, where)
            raise
        if exc.errno in STOP_PAYING:  # what is paid now could not be kept: no new paid call
            note_write_failure(exc)
        return failure(message, kind=kind, error="OSError")
    except Exception:
        log_bug(settings, where)
        raise


def fail_action(message: str):
    """doit action of a task that cannot run until the operator fixes its input."""
    return TaskFailed(message)
