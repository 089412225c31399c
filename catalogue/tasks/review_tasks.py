"""The tasks a person runs: `review` (the local page), `report` (the static page), `approve:<folder>`,
`check_api`. Each runs only when asked for (uptodate False)."""

from __future__ import annotations

from ..core import view_state
from ..core.discovery import Reference
from ..core.files import sha256_file
from ..core.paths import folder_dir, view_path
from ..core.settings import Settings
from .actions import fail_action, run_action


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


def approve_tasks(settings: Settings, refs: list[Reference], argv: list[str]):
    """`approve:<folder>`: a person checked the views: let them through the quality gate.

    Made only when the command line names an approve task (or lists tasks): one task per
    reference that no other command uses would cost every cron run's graph load ~10 %.
    """
    if not any(a.startswith("approve") or a in ("list", "help", "info") for a in argv):
        return
    for ref in refs:
        if ref.problem:
            continue
        yield {"name": ref.task_name, "doc": f"approuver les vues actuelles de {ref.folder}",
               "actions": [(run_action, ["check", ref.folder, settings, _approve, settings, ref])], "uptodate": [False],
               "io": {"capture": False}, "meta": {"kind": "check", "folder": ref.folder, "view": "approbation"}}


def _review(settings: Settings, refs: list[Reference]):
    from ..review.server import review_action  # the page's server is only imported when asked for

    return review_action(settings, refs)


def _report(settings: Settings, refs: list[Reference]):
    from ..review.report import report_action

    return report_action(settings, refs)


def review_task(settings: Settings, refs: list[Reference]) -> dict:
    return {"actions": [(run_action, ["check", "review", settings, _review, settings, refs])],
            "uptodate": [False], "io": {"capture": False}, "verbosity": 2}


def report_task(settings: Settings, refs: list[Reference]) -> dict:
    return {"actions": [(run_action, ["check", "report", settings, _report, settings, refs])],
            "uptodate": [False], "io": {"capture": False}, "verbosity": 2}


def _check_api(settings: Settings):
    if not settings.gemini_api_key:
        return fail_action("GEMINI_API_KEY est vide : ajoutez la clé dans .env pour utiliser Gemini.")
    from ..generation.gemini import check_api  # google-genai: only when asked for

    ok, message = check_api(settings)
    print(message, flush=True)
    return None if ok else fail_action(message)


def check_api_task(settings: Settings) -> dict:
    """`doit check_api`: key valid, model reachable, rate-limited or not; generates nothing."""
    return {"actions": [(run_action, ["check", "check_api", settings, _check_api, settings])],
            "uptodate": [False], "io": {"capture": False},
            "meta": {"kind": "check", "folder": "Gemini", "view": "vérification"}}
