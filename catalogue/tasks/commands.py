"""doit commands of the pipeline (registered in pyproject.toml): the locked run, `plan`, `reroll`,
`review` (the review page: a command, not a task, so that it never holds the run lock), and
`forget` (a bare `doit forget` refuses in French).

`adjust` lives in `adjust_command.py` (its command line is larger). Every command here answers
`--help` / `-h` with its own help (doit's parser would refuse the option).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from doit import get_var
from doit.cmd_base import Command, DoitCmdBase
from doit.cmd_forget import Forget as DoitForget
from doit.cmd_run import Run
from doit.control import TaskControl

from ..core.discovery import discover_references
from ..core.errors import PipelineError
from ..core.in_flight import paid_calls_in_flight, wait_for_paid_calls
from ..core.settings import load_settings
from .doit_config import handle_sigterm
from .plan import explain_plan
from .reporter import ProgressReporter
from .reroll import bump_seed
from .run_lock import LOCK_FILE, RunLock, busy_message, holds_run_lock, regenerate

# Seconds an interrupted run waits for the paid calls under way (a Gemini request: tens of seconds).
PAID_CALLS_GRACE = 240


class FrozenGraph:
    """A doit command that builds its task graph with the cyclic garbage collector off, then
    freezes it (`gc.freeze`): the graph (tens of thousands of objects, alive until the end) is
    never traversed again by the collections of the run. At 5,000 references the collector took
    0.65 s of a 2.6 s no-op run (12 collections of the whole heap during the load)."""

    def execute(self, params, args):
        gc.disable()
        try:
            return super().execute(params, args)   # loads dodo.py and the tasks, then _execute
        finally:
            gc.enable()

    @staticmethod
    def graph_loaded() -> None:
        gc.freeze()
        gc.enable()


class LockedRun(FrozenGraph, Run):
    """`doit` / `doit run`, refusing politely to start while another run is in progress."""

    name = "run"

    def _execute(self, outfile, verbosity=None, always=False, continue_=False, reporter="console",
                 num_process=0, par_type="process", single=False, auto_delayed_regex=False,
                 force_verbosity=False, failure_verbosity=0, pdb=False):
        self.graph_loaded()
        handle_sigterm()
        lock = None
        if not holds_run_lock(Path(os.getcwd())):  # dodo.py takes it when the graph loads
            lock = RunLock(Path(os.getcwd()) / LOCK_FILE)
            if not lock.acquire():
                print(busy_message(lock), flush=True)
                self.dep_manager.close()
                return 0
        try:
            code = super()._execute(outfile, verbosity, always, continue_, reporter, num_process,
                                    par_type, single, auto_delayed_regex, force_verbosity,
                                    failure_verbosity, pdb)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from cron's `timeout`: doit saved what finished
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
            if lock is not None:
                lock.release()
        # doit says 2 when a view's failure made its dependents unrunnable; that is still an
        # expected failure (1: fix the input or retry), keep 2 for bugs.
        progress = ProgressReporter.current
        if code == 2 and progress is not None and progress.unexpected == 0 and (
                progress.failed or progress.budget_message):
            return 1
        if code and progress is not None and progress.unexpected == 0 and not progress.failed and (
                not progress.budget_message and progress.counts["pending"]):
            return 0  # GEMINI_MODE=batch: views waiting for their jobs, nothing failed
        return code


class HelpOption:
    """`doit <command> --help` (or -h): the command's help, instead of doit's parser error."""

    def parse_execute(self, in_args):
        if "--help" in in_args or "-h" in in_args:
            print(self.help(), flush=True)
            return 0
        return super().parse_execute(in_args)


class Plan(HelpOption, FrozenGraph, DoitCmdBase):
    """doit has no dry run: say what the next run would build, why, and what it would cost."""

    name = "plan"
    doc_purpose = "dry run: what would be (re)generated or uploaded, why, and the estimated cost"
    doc_usage = "[TASK ...]"
    doc_description = None
    cmd_options = ()

    def _execute(self, pos_args=None):
        self.graph_loaded()
        control = TaskControl(self.task_list)
        control.process(self.sel_tasks)
        try:
            lines, code = explain_plan(control.tasks, control.selected_tasks, self.dep_manager)
        finally:
            self.dep_manager.close()
        for warning in ProgressReporter.warnings:  # .env typos, an unknown model: before the figures
            self.outstream.write(f"Attention : {warning}\n")
        for line in lines:
            self.outstream.write(line + "\n")
        return code


class Reroll(HelpOption, DoitCmdBase):
    """A deliberate re-roll of one view: a new seed recorded for it, then the reference rebuilt."""

    name = "reroll"
    doc_purpose = "re-roll one view with a new seed (a new paid Gemini call), then rebuild the reference"
    doc_usage = "FOLDER VIEW"
    doc_description = None
    cmd_options = ()

    def _execute(self, pos_args=None):
        self.dep_manager.close()
        try:
            folder, view, seed = bump_seed(load_settings(os.getcwd()), pos_args or [])
        except Exception as exc:  # PipelineError: a French message for the operator
            print(str(exc), flush=True)
            return 1
        print(f"Nouveau tirage pour {folder} / {view} (graine {seed}) : génération…", flush=True)
        return regenerate(folder)


class Review(HelpOption, Command):
    """`doit review`: the review page. A command, not a task: it never holds the run lock (a cron
    run goes on while the page is open); each regeneration it starts takes the lock like any run."""

    name = "review"
    doc_purpose = ("the review page on http://127.0.0.1:<REVIEW_PORT>: approve, hold, re-roll, retouch "
                   "from the keyboard (Ctrl-C to stop)")
    doc_usage = "[model=flash]"
    doc_description = None
    cmd_options = ()

    def execute(self, params, args):
        handle_sigterm()
        try:
            settings = load_settings(os.getcwd(), model_override=get_var("model"))
            refs = discover_references(settings.photos_dir)
        except PipelineError as exc:
            print(f"Réglages invalides : {exc}", flush=True)
            return 1
        except FileNotFoundError:
            print(f"Dossier introuvable : {load_settings(os.getcwd()).photos_dir}. Créez-le ou réglez PHOTOS_DIR.",
                  flush=True)
            return 1
        for warning in settings.warnings:
            print(f"Attention : {warning}", flush=True)
        from ..review.server import serve  # the page's server: only when asked for

        return serve(settings, refs, port=settings.review_port)


class Forget(HelpOption, DoitForget):
    """doit's `forget`, refusing in French to forget everything when no task is named."""

    name = "forget"

    def _execute(self, forget_sub, forget_disable_default, forget_all):
        if not forget_all and self.sel_default_tasks and forget_disable_default:
            self.dep_manager.close()
            print("doit forget sans tâche oublierait l'état de tout le catalogue (et ferait tout refaire) : "
                  "nommez les tâches (ex. doit forget 1_face:L100001-V09A), ou --all pour vraiment tout "
                  "oublier.", flush=True)
            return 1
        return super()._execute(forget_sub, forget_disable_default, forget_all)
