"""The tasks a person runs: `report` (the static page), `approve:<folder>`, `check_api`. Each runs
only when asked for (uptodate False). The review page is a command (`tasks.commands.Review`): a task
would run under the run lock and keep every other run out while the page is open."""

from __future__ import annotations

from ..core import view_state
from ..core.discovery import Reference
from ..core.files import sha256_file
from ..core.paths import folder_dir, view_path
from ..core.settings import Settings
from .actions import fail_action, run_action

APPROVE_ALL = "--all"
APPROVE_BARE = ("doit approve sans référence approuverait toutes les vues de toutes les références d'un coup : "
                "nommez la référence (doit approve:L100001-V09A), ou confirmez avec doit approve --all.")


def _approve(settings: Settings, ref: Reference):
    out_dir = folder_dir(settings, ref.folder)
    approved = []
    for view in ref.views:
        path = view_path(settings, ref.folder, view)
        if path.exists():
            view_state.decide(out_dir, view, sha256_file(path), "approved", note="doit approve")
            approved.append(view)
    if not approved:
        return fail_action(f"{ref.folder} : aucune vue à approuver dans {out_dir} (générez-les d'abord).")
    print(f"{ref.folder} : approuvé pour l'envoi ({', '.join(approved)}), tel que ces images sont "
          f"maintenant ; une image régénérée devra être approuvée à nouveau.", flush=True)
    return None


def _approve_task(settings: Settings, ref: Reference) -> dict:
    return {"name": ref.task_name, "doc": f"approuver les vues actuelles de {ref.folder}",
            "actions": [(run_action, ["check", ref.folder, settings, _approve, settings, ref])], "uptodate": [False],
            "io": {"capture": False}, "meta": {"kind": "check", "folder": ref.folder, "view": "approbation"}}


def _refused(name: str, message: str, *, basename: bool = False) -> dict:
    task = {"actions": [(fail_action, [message])], "uptodate": [False], "io": {"capture": False},
            "meta": {"kind": "check", "folder": name, "view": "approbation"}}
    return {**task, "basename": "approve", "doc": "approuver (nommez la référence, ou --all)"} if basename \
        else {**task, "name": name}


def approve_tasks(settings: Settings, refs: list[Reference], argv: list[str]):
    """`approve:<folder>`: a person checked the views: let them through the quality gate.

    A bare `doit approve` would approve every reference at once: it refuses, unless `--all` says
    so explicitly (then every reference with finished views). `approve:<unknown>` answers in
    French. Made only when the command line names an approve task (or lists tasks): one task per
    reference that no other command uses would cost every cron run's graph load ~10 %.
    """
    listing = any(a in ("list", "help", "info") for a in argv)
    asked = [a for a in argv if a == "approve" or a.startswith("approve:")]
    if not asked and not listing:
        return
    if "approve" in asked and not listing:
        if APPROVE_ALL not in argv:
            yield _refused("approve", APPROVE_BARE, basename=True)
            return
        yield {"name": None, "doc": "approuver les vues actuelles d'une référence (--all : toutes)",
               "params": [{"name": "all", "long": "all", "type": bool, "default": False,
                           "help": "approuver toutes les références qui ont des vues"}]}
        for ref in refs:
            if not ref.problem and any(view_path(settings, ref.folder, v).exists() for v in ref.views):
                yield _approve_task(settings, ref)
        return
    wanted = {a.split(":", 1)[1] for a in asked if ":" in a}
    known = set()
    for ref in refs:
        known.update((ref.task_name, ref.folder))
        if ref.problem:
            if ref.task_name in wanted or ref.folder in wanted:
                yield _refused(ref.task_name, f"{ref.folder} : {ref.problem}")
            continue
        yield _approve_task(settings, ref)
    for name in sorted(wanted - known):
        if not any(c in name for c in "*?["):  # a wildcard selects among the real ones
            yield _refused(name, f"Référence inconnue : « {name} » (aucun dossier {settings.photos_dir / name}) ; "
                                 f"doit list --all approve les montre toutes.")


def _report(settings: Settings, refs: list[Reference]):
    from ..review.report import report_action

    return report_action(settings, refs)


def report_task(settings: Settings, refs: list[Reference]) -> dict:
    return {"actions": [(run_action, ["check", "report", settings, _report, settings, refs])],
            "uptodate": [False], "io": {"capture": False}, "verbosity": 2}


def _check_api(settings: Settings):
    if not settings.gemini_api_key:
        return fail_action("GEMINI_API_KEY est vide : ajoutez la clé dans .env pour utiliser Gemini.")
    from ..generation.gemini import check_api  # google-genai: only when asked for

    ok, message = check_api(settings)
    if not ok:
        return fail_action(message)  # the reporter prints it, once
    print(message, flush=True)
    return None


def check_api_task(settings: Settings) -> dict:
    """`doit check_api`: key valid, model reachable, rate-limited or not; generates nothing."""
    return {"actions": [(run_action, ["check", "check_api", settings, _check_api, settings])],
            "uptodate": [False], "io": {"capture": False},
            "meta": {"kind": "check", "folder": "Gemini", "view": "vérification"}}
