"""The progress reporter: one French line per finished view with `[k/N]`, then the summary."""

from __future__ import annotations

import time
from collections import Counter

from doit.exceptions import TaskError, UnmetDependency
from doit.reporter import ConsoleReporter

from ..core import batch_state
from ..core.view_state import RUN_HELD, RUN_UNCERTAIN
from ..core.in_flight import notices

OUTCOME_LABELS = {
    "generated": "généré",
    "cached": "repris de la réponse déjà payée",
    "uptodate": "déjà à jour",
}


def count(n: int, singular: str, plural: str | None = None) -> str:
    """« 0 vue », « 1 vue », « 2 vues »: French agreement (0 and 1 take the singular)."""
    return f"{n} {singular if n <= 1 else (plural or singular + 's')}"


def _meta(task) -> dict:
    return getattr(task, "meta", None) or {}


def _is_unmet(fail) -> bool:
    return isinstance(fail, UnmetDependency)


def _failure_text(fail) -> str:
    """The French message of an expected failure (TaskFailed), or, for a bug (an exception, which
    doit keeps as a traceback), its last line and what to do."""
    if fail.traceback:
        lines = [ln for ln in "".join(fail.traceback).strip().splitlines() if ln.strip()]
        return (f"erreur inattendue ({lines[-1] if lines else fail.message}) : signalez-la avec le journal "
                f"{ProgressReporter.errors_log}.")
    return fail.message.strip()


class ProgressReporter(ConsoleReporter):
    """One line per finished view with `[k/N]`, then « Terminé : X générés, Y à jour, Z échecs ».

    Plain lines (no colours, no cursor tricks) when stdout is not a terminal: cron logs stay
    readable. The first line says which generator runs.
    """

    desc = "catalogue progress"
    announcement = ""  # set by dodo.py: which generator, said loudly
    errors_log = "output/.state/errors.log"  # set by dodo.py: where the tracebacks of bugs go
    current = None     # the instance of the running command, read by LockedRun for the exit code

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.tty = hasattr(outstream, "isatty") and outstream.isatty()
        self.totals = Counter()  # by kind: "view", "upload"
        self.dones = Counter()
        self.counts = Counter()
        self.cost = 0.0
        self.failed: dict[str, list[str]] = {}
        self.unexpected = 0  # failures that are bugs, not bad inputs or refusals
        self.budget_message = ""
        self.waiting: list[tuple[str, str, str]] = []    # (progress, folder, view): in a Batch API job
        self.after: list[tuple[str, str, str, str]] = []  # (progress, folder, view, upstream): after one
        self.pending_tasks: set[str] = set()
        self.started = time.monotonic()
        ProgressReporter.current = self

    def _line(self, text: str, colour: str | None = None) -> None:
        if self.tty and colour:
            text = f"\033[{colour}m{text}\033[0m"
        self.write(text + "\n")
        self.outstream.flush()

    def initialize(self, tasks, selected_tasks):
        if self.announcement:
            self._line(self.announcement, "1")
        for warning in self.warnings:
            self._line(f"Attention : {warning}", "33")
        seen, todo = set(), list(selected_tasks)
        while todo:
            name = todo.pop()
            if name in seen or name not in tasks:
                continue
            seen.add(name)
            todo.extend(tasks[name].task_dep)
        self.totals = Counter(_meta(tasks[n]).get("kind") for n in seen
                              if _meta(tasks[n]).get("kind") in ("view", "upload"))

    def execute_task(self, task):
        pass

    def _progress(self, task) -> str:
        kind = _meta(task).get("kind")
        if kind not in ("view", "upload"):
            return ""
        self.dones[kind] += 1
        return f"[{self.dones[kind]}/{self.totals[kind]}] "

    def skip_uptodate(self, task):
        if _meta(task).get("kind") in ("view", "upload"):
            self.dones[_meta(task)["kind"]] += 1
            self.counts["uptodate"] += 1

    def skip_ignore(self, task):
        if _meta(task).get("kind"):
            self._line(f"{self._progress(task)}{task.name} : ignoré (doit ignore)")

    def add_success(self, task):
        meta = _meta(task)
        if meta.get("kind") not in ("view", "upload"):
            return
        values = task.values or {}
        outcome = values.get("outcome", "generated")
        self.counts[outcome] += 1
        self.cost += float(values.get("cost_usd") or 0.0)
        if meta["kind"] == "upload":
            message = values.get("message") or "fait"
            if not message.startswith(meta["folder"]):
                message = f"{meta['folder']} envoi : {message}"
            self._line(f"{self._progress(task)}{message}")
            return
        text = f"{self._progress(task)}{meta['folder']} {meta['view']} : {OUTCOME_LABELS.get(outcome, outcome)}"
        if outcome != "uptodate":
            text += f" ({values.get('generator', '')}) en {values.get('seconds', 0):.1f} s"
        if values.get("cost_usd"):
            text += f", {values['cost_usd']:.3f} $"
        if values.get("notice"):  # e.g. a damaged stored answer, set aside and paid again
            text += f" — {values['notice']}"
        if values.get("held"):
            self.counts["held"] += 1
            text += f" — {RUN_HELD} : {values['held']}"
        if values.get("uncertain"):
            self.counts["uncertain"] += 1
            text += f" — {RUN_UNCERTAIN} : {values.get('notes') or 'à vérifier'}"
        self._line(text, "33" if values.get("uncertain") or values.get("held") else None)

    def add_failure(self, task, fail):
        meta = _meta(task)
        if not meta.get("kind"):
            if _is_unmet(fail):
                return  # a group (generate:<folder>) failing because one of its views did: said already
            self.unexpected += 1
            self.failed.setdefault(task.name, []).append(_failure_text(fail))
            self._line(f"[!] {task.name} : ÉCHEC — {_failure_text(fail)}", "31")
            return
        folder = meta.get("folder") or task.name
        what = meta.get("view") or "envoi"
        if meta["kind"] == "check":  # check_api, approve: its message, once; no counter, no recap
            if isinstance(fail, TaskError):
                self.unexpected += 1
            self.counts["checks_failed"] += 1
            self._line(_failure_text(fail), "31")
            return
        if getattr(fail, "kind", None) == "BatchPending":  # said at the end, with its job's name
            self.pending_tasks.add(task.name)
            self.waiting.append((self._progress(task), folder, what))
            return
        if _is_unmet(fail) and self.pending_tasks and set(str(fail.message).split()) <= self.pending_tasks:
            self.pending_tasks.add(task.name)  # its upstream view is in a Batch API job
            upstream = ", ".join(sorted({n.split(":")[0] for n in str(fail.message).split()}))
            self.after.append((self._progress(task), folder, what, upstream))
            return
        if _is_unmet(fail):  # the cause is reported on its own line
            self.counts["blocked"] += 1
            self._line(f"{self._progress(task)}{folder} {what} : non fait (une vue dont il dépend a échoué)")
            return
        if getattr(fail, "kind", None) == "BudgetExceeded":
            self.counts["postponed"] += 1
            self.budget_message = fail.message
            said = ("reporté (budget MAX_COST atteint)" if "MAX_COST" in fail.message
                    else "reporté (limite de Gemini atteinte, voir plus bas)")
            self._line(f"{self._progress(task)}{folder} {what} : {said}", "33")
            return
        if isinstance(fail, TaskError):
            self.unexpected += 1
        msg = _failure_text(fail)
        for prefix in (f"{folder} / {what} : ", f"{folder} : "):  # the line names them already
            msg = msg[len(prefix):] if msg.startswith(prefix) else msg
        self.counts["failed"] += 1
        self.failed.setdefault(folder, []).append(f"{what} : {msg}")
        self._line(f"{self._progress(task)}{folder} {what} : ÉCHEC — {msg}", "31")

    def runtime_error(self, msg):
        self._line(f"Erreur : {msg}", "31")

    def _batch_lines(self) -> None:
        """The views waiting for the Batch API (GEMINI_MODE=batch), now that the run's new jobs
        are submitted: « en lot (batches/…) depuis 14:02 »."""
        for progress, folder, what in self.waiting:
            w = batch_state.waiting(folder, what)
            if w is not None and w.problem:
                self.counts["failed"] += 1
                self.failed.setdefault(folder, []).append(f"{what} : {w.problem}")
                self._line(f"{progress}{folder} {what} : ÉCHEC — {w.problem}", "31")
                continue
            self.counts["pending"] += 1
            self._line(f"{progress}{folder} {what} : {w.describe() if w else 'en lot'}", "36")
        for progress, folder, what, upstream in self.after:
            self.counts["pending"] += 1
            self._line(f"{progress}{folder} {what} : attend {upstream} (en lot), soumise ensuite", "36")

    def complete_run(self):
        self._batch_lines()
        c = self.counts
        said = notices()  # calls a kill -9 cut in an earlier run, reconciled by this one
        self.cost += sum(cost for _text, cost in said)
        if not self.totals and not self.failed and not said and not c["pending"]:
            return  # only checks ran (check_api, approve): their own lines said it all
        made = c["generated"] + c["cached"]
        summary = f"Terminé : {count(made, 'générée')}, {c['uptodate']} à jour, {count(c['failed'], 'échec')}"
        if c["pending"]:
            summary += f", {c['pending']} en attente"
        extras = []
        if c["cached"]:
            extras.append(f"dont {c['cached']} reprise{'s' if c['cached'] > 1 else ''} sans nouvel appel payant")
        if c["held"]:
            extras.append(f"{c['held']} retenue{'s' if c['held'] > 1 else ''} par le contrôle qualité")
        if c["uncertain"]:
            extras.append(f"{c['uncertain']} incertaine{'s' if c['uncertain'] > 1 else ''} à vérifier")
        if c["uploaded"]:
            extras.append(f"{count(c['uploaded'], 'référence envoyée', 'références envoyées')}")
        if self.cost:
            extras.append(f"coût {self.cost:.2f} $")
        extras.append(f"{time.monotonic() - self.started:.1f} s")
        self._line(f"{summary} ({', '.join(extras)})", "1")
        for text, _cost in said:
            self._line(text, "33")
        if self.budget_message:
            self._line(f"{self.budget_message} {count(c['postponed'], 'vue reportée', 'vues reportées')} "
                       f"à la prochaine exécution.", "33")
        for folder, reasons in sorted(self.failed.items()):
            for reason in reasons:
                self._line(f"  ✗ {folder} — {reason}", "31")
