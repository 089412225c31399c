"""The cost ledger (`output/.state/ledger.jsonl`) and the per-run budget (`MAX_COST`).

One JSON line per call made to the paid API, successful or not:

    time, folder, view, model, image_size, input_tokens, output_tokens, cost_usd, seconds,
    outcome ("ok" or the error kind), request_key, plus optional extra fields (attempt, detail)

Lines are appended with a single `write()` on a file descriptor opened with `O_APPEND`, under a
lock, so that several threads (and several processes) never interleave half lines. The budget is
per run (this process): `run_cost` sums the calls recorded by this `Ledger` object, not the file.
A call the API did not bill (4xx, 5xx, timeout) is recorded with cost 0 and its outcome.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ..core.errors import BudgetExceeded

FIELDS = ("time", "folder", "view", "model", "image_size", "input_tokens", "output_tokens",
          "cost_usd", "seconds", "outcome", "request_key",
          "thought_tokens", "text_output_tokens", "image_output_tokens", "images",
          "input_cost_usd", "text_output_cost_usd", "image_cost_usd")


def budget_message(spent: float, max_cost: float) -> str:
    return (f"Budget MAX_COST atteint ({spent:.2f} $ dépensés sur {max_cost:.2f} $) : "
            f"plus aucun appel payant dans cette exécution.")


class Ledger:
    def __init__(self, path: Path | str, max_cost: float | None):
        self.path = Path(path)
        self.max_cost = max_cost if max_cost and max_cost > 0 else None
        self._lock = threading.Lock()
        self._run_cost = 0.0
        self._reserved = 0.0
        self._calls = 0
        self._budget_reached = False

    # --- recording -------------------------------------------------------------------------------

    def record(self, **fields) -> dict:
        """Append one line; returns the record as written."""
        rec = {name: fields.pop(name, None) for name in FIELDS}
        if rec["time"] is None:
            rec["time"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        rec["cost_usd"] = round(float(rec["cost_usd"] or 0.0), 6)
        rec.update(fields)
        line = (json.dumps(rec, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, line)
                if written != len(line):  # pragma: no cover - regular files write whole lines
                    os.write(fd, line[written:])
            finally:
                os.close(fd)
            self._run_cost += rec["cost_usd"]
            self._calls += 1
        return rec

    def read(self) -> list[dict]:
        """Every line of the ledger file (all runs); unreadable lines are skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    # --- budget ----------------------------------------------------------------------------------

    @property
    def run_cost(self) -> float:
        """USD spent by the calls this process recorded."""
        with self._lock:
            return round(self._run_cost, 6)

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def budget_reached(self) -> bool:
        return self._budget_reached

    def check_budget(self, next_cost: float = 0.0) -> None:
        """Raise `BudgetExceeded` when starting a call of `next_cost` would pass `MAX_COST`."""
        with self._lock:
            self._check_locked(next_cost)

    def _check_locked(self, next_cost: float) -> None:
        if self.max_cost is None:
            return
        if self._run_cost + self._reserved + next_cost > self.max_cost + 1e-9:
            self._budget_reached = True
            raise BudgetExceeded(budget_message(self._run_cost, self.max_cost))

    @contextmanager
    def reserve(self, next_cost: float) -> Iterator[None]:
        """Check the budget and hold `next_cost` while the call runs, so that parallel workers
        can never start calls that together pass `MAX_COST`. Record the call inside the block."""
        with self._lock:
            self._check_locked(next_cost)
            self._reserved += next_cost
        try:
            yield
        finally:
            with self._lock:
                self._reserved = max(0.0, self._reserved - next_cost)
