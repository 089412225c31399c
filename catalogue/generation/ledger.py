"""The cost ledger (`output/.state/ledger.jsonl`) and the per-run budget (`MAX_COST`).

One JSON line per call made to the paid API, successful or not:

    time, folder, view, model, image_size, input_tokens, output_tokens, cost_usd, seconds,
    outcome ("ok" or the error kind), request_key, plus optional extra fields (attempt, detail)

Lines are appended whole (`core.files.append_line`: one `write()`, under an exclusive flock, a
partial last line left by a crash closed first), so threads and processes never interleave or
swallow lines. The budget is per run (this process): `run_cost` sums the calls recorded by this
`Ledger` object, not the file. A call the API did not bill (4xx, 5xx, timeout) is recorded with
cost 0 and its outcome.

Journal lines around each paid request (`paid_call`): "started" before it is sent (with the
call's `call_id` and `estimate_usd`), "ended" when it failed; a "started" line that nothing
closed (no answer stored, no "ok" or "ended" line) was cut by a kill -9: the next run records it
as "interrupted" at its estimated cost (`core.in_flight.reconcile`).

A line that cannot be written (disk full, read-only) never loses the call's cost: it is counted
in `run_cost` first; the failure is kept in `write_error` and no new paid call is started.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ..core.errors import BudgetExceeded
from ..core.files import append_line
from ..core.in_flight import carried_cost, note_write_failure

# Lines that are not calls: the journal around each paid request (see the module docstring).
JOURNAL_OUTCOMES = ("started", "ended", "interrupted")

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
        self._run_cost = carried_cost(self.path)  # calls a kill -9 cut, reconciled by this run
        self._reserved = 0.0
        self._calls = 0
        self._budget_reached = False
        self.write_error: OSError | None = None

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
            self._run_cost += rec["cost_usd"]  # first: whatever happens to the line, it was paid
            if rec["outcome"] not in JOURNAL_OUTCOMES:
                self._calls += 1
            try:
                append_line(self.path, line)
            except OSError as exc:
                self.write_error = exc
                note_write_failure(exc)
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
