"""Paid calls under way, across threads and processes: what keeps an answer already paid for from
being lost or paid twice at the edges (an interruption, a second process, a full disk, kill -9).

* `count_paying` / `wait_for_paid_calls`: an interrupted run waits for the calls under way, so
  that their answers are stored (counted by the answer store).
* `KeyLock`: a per-request-key file lock next to the answer store, held across the lookup and the
  paid call, so that two processes asking the same request pay once.
* `note_write_failure` / `write_failure`: the first write error (disk full, read-only) stops
  every new paid call of this process: its answer could not be kept.
* `reconcile`: the ledger's "started" lines that nothing closed (the process was killed while the
  request was out) are recorded as "interrupted", at their estimated cost, by the next run, which
  counts them in its cost and says so in its summary (`notices`).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from .files import FILE_MODE, append_line, atomic_write_bytes
from .paths import answer_file

_paying = 0
_paying_changed = threading.Condition()


def paid_calls_in_flight() -> int:
    with _paying_changed:
        return _paying


def wait_for_paid_calls(timeout: float) -> int:
    """Wait until no paid call is under way (at most `timeout` s); returns how many still are."""
    with _paying_changed:
        _paying_changed.wait_for(lambda: _paying == 0, timeout=timeout)
        return _paying


def count_paying(delta: int) -> None:
    global _paying
    with _paying_changed:
        _paying += delta
        _paying_changed.notify_all()


# --- the first write error stops new paid calls -------------------------------------------------

_write_failure: OSError | None = None


def note_write_failure(exc: OSError) -> None:
    global _write_failure
    if _write_failure is None:
        _write_failure = exc


def write_failure() -> OSError | None:
    return _write_failure


# --- per-key file lock ----------------------------------------------------------------------------

def key_lock_path(answers_root: Path, key: str) -> Path:
    return answer_file(answers_root, key, ".lock")


class KeyLock:
    """An exclusive flock on `answers/<kk>/<key>.lock` (released by the OS if the process dies).

    flock locks belong to an open file: two threads of one process exclude each other too."""

    def __init__(self, answers_root: Path, key: str):
        self.path = key_lock_path(answers_root, key)
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "KeyLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --- kill -9: reconcile what the ledger says was started and nothing closed ----------------------

_carried: dict[Path, float] = {}
_notices: list[tuple[str, float]] = []
_notices_lock = threading.Lock()


def carried_cost(ledger_path: Path) -> float:
    """The cost this process reconciled into the ledger at `ledger_path` (counted in its run)."""
    with _notices_lock:
        return _carried.get(Path(ledger_path), 0.0)


def notices() -> list[tuple[str, float]]:
    """(French line, cost counted in this run) for the run's summary."""
    with _notices_lock:
        return list(_notices)


def _answer_stored(answers_root: Path, key: str) -> bool:
    return answer_file(answers_root, key, ".json").exists()


def _checkpoint_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(ledger_path.name + ".checked")


def _read_from(ledger_path: Path, start: int) -> tuple[list[tuple[int, dict]], list[bytes], int]:
    """From byte `start`: ((offset, record) of the journal lines, raw "ok" lines, end offset)."""
    journal, oks = [], []
    with open(ledger_path, "rb") as f:
        f.seek(start)
        offset = start
        for raw in f:
            if raw.endswith(b"\n"):
                if b'"call_id"' in raw:
                    try:
                        journal.append((offset, json.loads(raw)))
                    except ValueError:
                        pass
                elif b'"outcome": "ok"' in raw:
                    oks.append(raw)
            offset += len(raw)
    return journal, oks, offset


def _unclosed(ledger_path: Path, answers_root: Path, start: int) -> tuple[list[tuple[int, dict]], int]:
    """The "started" lines after `start` that nothing closed, with their offsets; the end offset."""
    journal, oks, end = _read_from(ledger_path, start)
    started: dict[str, tuple[int, dict]] = {}
    for offset, rec in journal:
        cid = rec.get("call_id")
        if rec.get("outcome") == "started":
            started[cid] = (offset, rec)
        elif rec.get("outcome") in ("ended", "interrupted"):
            started.pop(cid, None)
    out = []
    for offset, rec in started.values():
        key = str(rec.get("request_key") or "")
        if _answer_stored(answers_root, key):
            continue
        needle = f'"request_key": "{key}"'.encode()
        if any(needle in raw for raw in oks):  # paid and recorded, its answer lost with the process
            continue
        out.append((offset, rec))
    return sorted(out, key=lambda item: item[0]), end


def reconcile(ledger_path: Path, answers_root: Path) -> tuple[int, float]:
    """Record every call started and never closed as "interrupted" at its estimated cost.

    Run by the process that takes the run lock, before its first task. A call still under way in
    another process (a one-off retouch) holds its key lock: it is left alone. Reads the ledger
    from a checkpoint (`ledger.jsonl.checked`: the offset before which every call is closed).
    Returns (calls, cost); the cost is counted in this run (`carried_cost`) and said in its
    summary (`notices`)."""
    ledger_path, answers_root = Path(ledger_path), Path(answers_root)
    if not ledger_path.exists():
        return 0, 0.0
    checkpoint = _checkpoint_path(ledger_path)
    try:
        start = int(checkpoint.read_text().strip() or 0)
        if start > ledger_path.stat().st_size:
            start = 0
    except (FileNotFoundError, ValueError):
        start = 0
    candidates, end = _unclosed(ledger_path, answers_root, start)
    held, lost = [], []
    try:
        for _offset, rec in candidates:
            lock = KeyLock(answers_root, str(rec.get("request_key") or "none"))
            if lock.acquire(blocking=False):
                held.append(lock)
        if held:  # read again with the keys locked: a call that ended meanwhile wrote its line
            locked = {lk.path for lk in held}
            again, end = _unclosed(ledger_path, answers_root, start)
            lost = [r for _o, r in again if key_lock_path(answers_root, str(r.get("request_key") or "none")) in locked]
            candidates = again
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for rec in lost:
            estimate = round(float(rec.get("estimate_usd") or 0.0), 6)
            line = {"time": now, "folder": rec.get("folder"), "view": rec.get("view"), "model": rec.get("model"),
                    "image_size": rec.get("image_size"), "input_tokens": 0, "output_tokens": 0,
                    "cost_usd": estimate, "seconds": 0.0, "outcome": "interrupted",
                    "request_key": rec.get("request_key"), "call_id": rec.get("call_id"),
                    "started_at": rec.get("time"),
                    "detail": "appel envoyé puis processus tué (kill -9, coupure) avant la réponse : "
                              "coût estimé, sans doute facturé"}
            append_line(ledger_path, json.dumps(line, ensure_ascii=False).encode("utf-8"))
    finally:
        for lock in held:
            lock.release()
    lost_ids = {r.get("call_id") for r in lost}
    still_open = [o for o, r in candidates if r.get("call_id") not in lost_ids]
    checked = min(still_open) if still_open else end
    if checked != start:  # every cron run passes here: write only when the checkpoint moves
        try:
            atomic_write_bytes(checkpoint, f"{checked}\n".encode())
        except OSError:
            pass
    if not lost:
        return 0, 0.0
    cost = round(sum(float(r.get("estimate_usd") or 0.0) for r in lost), 6)
    with _notices_lock:
        _carried[ledger_path] = _carried.get(ledger_path, 0.0) + cost
        _notices.append((f"{len(lost)} appel(s) payant(s) interrompu(s) par un arrêt brutal d'une exécution "
                         f"précédente (kill -9, coupure) : réponse(s) perdue(s), coût estimé {cost:.2f} $ "
                         f"inscrit au grand livre (output/.state/ledger.jsonl) et compté dans cette exécution.",
                         cost))
    return len(lost), cost
