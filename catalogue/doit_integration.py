"""doit plumbing for a paid, long-running, cron-driven pipeline (see the README, "Why these doit
settings"): the configuration, a run lock, SIGTERM handled like Ctrl-C, a progress reporter in
French, and the `plan` command (doit has no dry run).
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from doit.cmd_base import DoitCmdBase
from doit.cmd_run import Run
from doit.control import TaskControl
from doit.reporter import ConsoleReporter

LOCK_FILE = ".doit.lock"
# Seconds an interrupted run waits for the paid calls under way (a Gemini request: tens of seconds).
PAID_CALLS_GRACE = 240


def doit_config(reporter_cls) -> dict:
    return {
        "default_tasks": ["generate"],
        "backend": "sqlite3",             # the default dbm changes with the interpreter, loses records
        "dep_file": ".doit.sqlite",
        "check_file_uptodate": "md5",     # timestamps would re-pay for every touched photo
        "continue": True,                 # one bad reference never stops the others
        "forget_disable_default": True,   # a bare `doit forget` must not forget the catalogue
        "par_type": "thread",             # API-bound work; one shared rate limiter
        "reporter": reporter_cls,
        "verbosity": 2,
    }


def handle_sigterm() -> None:
    """cron's `timeout` sends SIGTERM: treat it like Ctrl-C so doit saves what finished."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


# --- the run lock -----------------------------------------------------------------------------

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
    import subprocess

    lock = RunLock(Path(os.getcwd()) / LOCK_FILE)
    if not lock.acquire():
        print(f"Une autre exécution est en cours (PID {lock.holder()}) : la vue sera refaite par la "
              f"prochaine exécution (ou relancez doit generate:{folder} après elle).", flush=True)
        return 1
    lock.release()
    return subprocess.call([sys.executable, "-m", "doit", f"generate:{folder}"])


class LockedRun(Run):
    """`doit` / `doit run`, refusing politely to start while another run is in progress."""

    name = "run"

    def _execute(self, outfile, verbosity=None, always=False, continue_=False, reporter="console",
                 num_process=0, par_type="process", single=False, auto_delayed_regex=False,
                 force_verbosity=False, failure_verbosity=0, pdb=False):
        handle_sigterm()
        lock = RunLock(Path(os.getcwd()) / LOCK_FILE)
        if not lock.acquire():
            print(f"Une autre exécution est déjà en cours (PID {lock.holder()}, verrou {lock.path}) : "
                  f"celle-ci s'arrête sans rien faire pour ne rien payer deux fois.", flush=True)
            self.dep_manager.close()
            return 0
        try:
            code = super()._execute(outfile, verbosity, always, continue_, reporter, num_process,
                                    par_type, single, auto_delayed_regex, force_verbosity,
                                    failure_verbosity, pdb)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from cron's `timeout`: doit saved what finished
            from .store import paid_calls_in_flight, wait_for_paid_calls

            if paid_calls_in_flight():
                print(f"Interruption : {paid_calls_in_flight()} appel(s) payant(s) en cours, leurs réponses "
                      f"sont attendues pour être gardées (Ctrl-C à nouveau pour abandonner)…", flush=True)
                try:
                    wait_for_paid_calls(timeout=PAID_CALLS_GRACE)
                except KeyboardInterrupt:
                    pass
            print("Interrompu : les vues terminées sont enregistrées, les réponses déjà payées sont "
                  "gardées ; relancez doit pour finir le reste.", flush=True)
            return 1
        finally:
            lock.release()
        # doit says 2 when a view's failure made its dependents unrunnable; that is still an
        # expected failure (1: fix the input or retry), keep 2 for bugs.
        progress = ProgressReporter.current
        if code == 2 and progress is not None and progress.unexpected == 0 and (
                progress.failed or progress.budget_message):
            return 1
        return code


# --- progress reporter ------------------------------------------------------------------------

OUTCOME_LABELS = {
    "generated": "généré",
    "cached": "repris de la réponse déjà payée",
    "uptodate": "déjà à jour",
}


def _meta(task) -> dict:
    return getattr(task, "meta", None) or {}


def _is_unmet(fail) -> bool:
    from doit.exceptions import UnmetDependency

    return isinstance(fail, UnmetDependency)


def _failure_text(fail) -> str:
    """The French message of an expected failure (TaskFailed), or, for a bug (an exception, which
    doit keeps as a traceback), its last line and what to do."""
    if fail.traceback:
        lines = [ln for ln in "".join(fail.traceback).strip().splitlines() if ln.strip()]
        return f"erreur inattendue ({lines[-1] if lines else fail.message}) : signalez-la avec le journal."
    return fail.message.strip()


class ProgressReporter(ConsoleReporter):
    """One line per finished view with `[k/N]`, then « Terminé : X générés, Y à jour, Z échecs ».

    Plain lines (no colours, no cursor tricks) when stdout is not a terminal: cron logs stay
    readable. The first line says which generator runs.
    """

    desc = "catalogue progress"
    announcement = ""  # set by dodo.py: which generator, said loudly
    current = None     # the instance of the running command, read by LockedRun for the exit code

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.tty = hasattr(outstream, "isatty") and outstream.isatty()
        self.total = 0
        self.done = 0
        self.counts = Counter()
        self.cost = 0.0
        self.failed: dict[str, list[str]] = {}
        self.unexpected = 0  # failures that are bugs, not bad inputs or refusals
        self.budget_message = ""
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
        seen, todo = set(), list(selected_tasks)
        while todo:
            name = todo.pop()
            if name in seen or name not in tasks:
                continue
            seen.add(name)
            todo.extend(tasks[name].task_dep)
        self.total = sum(1 for n in seen if _meta(tasks[n]).get("kind") in ("view", "upload"))

    def execute_task(self, task):
        pass

    def _progress(self) -> str:
        self.done += 1
        return f"[{self.done}/{self.total}]"

    def skip_uptodate(self, task):
        if _meta(task).get("kind") in ("view", "upload"):
            self.done += 1
            self.counts["uptodate"] += 1

    def skip_ignore(self, task):
        if _meta(task).get("kind"):
            self._line(f"{self._progress()} {task.name} : ignoré (doit ignore)")

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
            self._line(f"{self._progress()} {message}")
            return
        text = f"{self._progress()} {meta['folder']} {meta['view']} : {OUTCOME_LABELS.get(outcome, outcome)}"
        if outcome != "uptodate":
            text += f" ({values.get('generator', '')}) en {values.get('seconds', 0):.1f} s"
        if values.get("cost_usd"):
            text += f", {values['cost_usd']:.3f} $"
        if values.get("uncertain"):
            text += f" — INCERTAIN, à vérifier : {values.get('notes')}"
        if values.get("held"):
            self.counts["held"] += 1
            text += f" — RETENUE (pas d'envoi avant vérification) : {values['held']}"
        self._line(text, "33" if values.get("uncertain") or values.get("held") else None)

    def add_failure(self, task, fail):
        from doit.exceptions import TaskError

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
        if _is_unmet(fail):  # the cause is reported on its own line
            self.counts["blocked"] += 1
            self._line(f"{self._progress()} {folder} {what} : non fait (une vue dont il dépend a échoué)")
            return
        if getattr(fail, "kind", None) == "BudgetExceeded":
            self.counts["postponed"] += 1
            self.budget_message = fail.message
            self._line(f"{self._progress()} {folder} {what} : reporté (budget MAX_COST atteint)", "33")
            return
        if isinstance(fail, TaskError):
            self.unexpected += 1
        msg = _failure_text(fail)
        for prefix in (f"{folder} / {what} : ", f"{folder} : "):  # the line names them already
            msg = msg[len(prefix):] if msg.startswith(prefix) else msg
        self.counts["failed"] += 1
        self.failed.setdefault(folder, []).append(f"{what} : {msg}")
        self._line(f"{self._progress()} {folder} {what} : ÉCHEC — {msg}", "31")

    def runtime_error(self, msg):
        self._line(f"Erreur : {msg}", "31")

    def complete_run(self):
        c = self.counts
        made = c["generated"] + c["cached"]
        summary = f"Terminé : {made} générés, {c['uptodate']} à jour, {c['failed']} échecs"
        extras = []
        if c["cached"]:
            extras.append(f"dont {c['cached']} repris sans nouvel appel payant")
        if c["held"]:
            extras.append(f"{c['held']} retenue(s) par le contrôle qualité")
        if c["uploaded"]:
            extras.append(f"{c['uploaded']} références envoyées")
        if self.cost:
            extras.append(f"coût {self.cost:.2f} $")
        extras.append(f"{time.monotonic() - self.started:.1f} s")
        self._line(f"{summary} ({', '.join(extras)})", "1")
        if self.budget_message:
            self._line(f"{self.budget_message} {c['postponed']} vue(s) reportée(s) à la prochaine "
                       f"exécution.", "33")
        for folder, reasons in sorted(self.failed.items()):
            for reason in reasons:
                self._line(f"  ✗ {folder} — {reason}", "31")


# --- doit plan ---------------------------------------------------------------------------------

class Plan(DoitCmdBase):
    """doit has no dry run: say what the next run would build, why, and what it would cost."""

    name = "plan"
    doc_purpose = "dry run: what would be (re)generated or uploaded, why, and the estimated cost"
    doc_usage = "[TASK ...]"
    doc_description = None
    cmd_options = ()

    def _execute(self, pos_args=None):
        from .plan import explain_plan

        control = TaskControl(self.task_list)
        control.process(self.sel_tasks)
        try:
            lines, code = explain_plan(control.tasks, control.selected_tasks, self.dep_manager)
        finally:
            self.dep_manager.close()
        for line in lines:
            self.outstream.write(line + "\n")
        return code


# --- doit reroll --------------------------------------------------------------------------------

class Reroll(DoitCmdBase):
    """A deliberate re-roll of one view: a new seed recorded for it, then the reference rebuilt."""

    name = "reroll"
    doc_purpose = "re-roll one view with a new seed (a new paid Gemini call), then rebuild the reference"
    doc_usage = "FOLDER VIEW"
    doc_description = None
    cmd_options = ()

    def _execute(self, pos_args=None):
        from .reroll import bump_seed
        from .settings import load_settings

        self.dep_manager.close()
        try:
            folder, view, seed = bump_seed(load_settings(os.getcwd()), pos_args or [])
        except Exception as exc:  # PipelineError: a French message for the operator
            print(str(exc), flush=True)
            return 1
        print(f"Nouveau tirage pour {folder} / {view} (graine {seed}) : génération…", flush=True)
        return regenerate(folder)
