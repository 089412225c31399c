"""The task families, in the manner of Nikola's task plugins.

Each family gathers exactly the settings that shape its output in one dict (`kw`), attaches
`config_changed(kw)`, and yields plain task dicts: the graph reads like a table.

    1_face:<folder>          photo (+ style ref)                      -> output/<folder>/1_face.png
    2_back:<folder>          back photo (+ style ref, + 1_face)       -> output/<folder>/2_back.png
    3_detail_logo:<folder>   finished 1_face (+ style ref)            -> output/<folder>/3_detail_logo.png
    generate:<folder>        the views of one reference (a group)
    upload:<folder>          the finished views -> the shop's backend -> output/<folder>/upload.json
"""

from __future__ import annotations

import functools
from pathlib import Path

from doit.tools import config_changed

from .build import ViewJob, fail_action, view_action
from .discovery import Reference, StyleRefs
from .models import API_VERSION
from .settings import Settings
from .views import VIEWS, VIEWS_BY_NAME, ViewSpec

# Bump when the local renderer or the finishing of answers changes what they produce.
LOCAL_RENDERER_VERSION = "2"
FINISHING_VERSION = "1"


def view_path(settings: Settings, folder: str, view: str) -> Path:
    """The one spelling of a view's path: doit links tasks by identical file names."""
    return _view_path(settings.output_dir, folder, view)


@functools.lru_cache(maxsize=None)
def _view_path(output_dir: Path, folder: str, view: str) -> Path:
    # Memoised: each path is asked for by several tasks, thousands of times per graph load.
    return output_dir / folder / f"{view}.png"


def view_config(settings: Settings, view: ViewSpec) -> dict:
    """The settings that shape this view's image, whatever the reference."""
    from .prompts import PROMPT_VERSION

    kw = {"generator": settings.generator, "view": view.name, "output_size": settings.output_size,
          "image_size": settings.image_size}  # caps the output's size too
    if settings.generator == "gemini":
        kw.update(model=settings.model, api_version=API_VERSION,
                  prompt_version=PROMPT_VERSION, finishing_version=FINISHING_VERSION,
                  anchored=bool(view.anchor))
    else:
        kw.update(renderer_version=LOCAL_RENDERER_VERSION)
    return kw


def _source_path(settings: Settings, ref: Reference, view: ViewSpec) -> Path:
    if view.source in VIEWS_BY_NAME:
        return view_path(settings, ref.folder, view.source)
    return ref.photos[view.source]


def _view_task(settings: Settings, ref: Reference, view: ViewSpec, kw: dict, styles: StyleRefs,
               steps=None) -> dict:
    # No output capture: doit swaps the global sys.stdout per captured action, which races under
    # threads (a closed buffer left behind made the process exit with 120 after 10,000 views).
    task = {"basename": view.name, "name": ref.folder, "io": {"capture": False},
            "meta": {"kind": "view", "folder": ref.folder, "view": view.name}}
    style = styles.for_view(view.name, ref.folder)
    if style is None:
        return {**task, "actions": [(fail_action, [styles.missing_message(view.name)])]}
    if steps is not None and steps.problem:  # adjustments.toml malformed or inconsistent
        return {**task, "actions": [(fail_action, [steps.problem])]}
    anchored = kw["generator"] == "gemini" and view.anchor is not None
    config = {**kw, "seed": ref.seed(view.name)} if kw["generator"] == "gemini" else kw
    planned = steps.steps if steps is not None else ()
    if planned:  # declared retouches are inputs of the view: their content is in its config
        from .adjustments import steps_config

        config = {**config, **steps_config(planned)}
    job = ViewJob(folder=ref.folder, view=view.name, source=_source_path(settings, ref, view),
                  style=style, output=view_path(settings, ref.folder, view.name),
                  anchor=view_path(settings, ref.folder, view.anchor) if anchored else None, config=config,
                  steps=planned, step_inputs=tuple(steps.inputs.items()) if planned else ())
    task["meta"]["job"] = job
    return {**task,
            "file_dep": list(dict.fromkeys(str(p) for p in job.inputs.values())),
            "targets": [str(job.output), str(job.output.with_suffix(".json"))],
            "actions": [(view_action, [settings, job])],
            "uptodate": [config_changed(config)]}


def view_tasks(settings: Settings, refs: list[Reference]):
    """One task per (reference, view); a reference that cannot be built gets one failing task."""
    styles = StyleRefs(settings.refs_dir)
    kws = {view.name: view_config(settings, view) for view in VIEWS}
    for view in VIEWS:  # the family's own line in `doit list`
        yield {"basename": view.name, "name": None, "doc": f"la vue {view.name} de chaque référence"}
    for ref in refs:
        if ref.problem:
            yield {"basename": VIEWS[0].name, "name": ref.task_name, "io": {"capture": False},
                   "meta": {"kind": "view", "folder": ref.folder, "view": VIEWS[0].name},
                   "actions": [(fail_action, [ref.problem])]}
            continue
        planned = _planned_steps(settings, ref)
        for name in ref.views:
            view = VIEWS_BY_NAME[name]
            yield _view_task(settings, ref, view, kws[name], styles, planned.get(name))


def _planned_steps(settings: Settings, ref: Reference) -> dict:
    """The declared retouches of each view of `ref` (photos/<folder>/adjustments.toml), planned."""
    from .adjustments import ADJUSTMENTS_FILE, ViewSteps, plan_reference, read_reference

    if ADJUSTMENTS_FILE not in ref.files:
        return {}
    steps, problem = read_reference(settings, ref.folder)
    if problem:  # a malformed file fails every view of the reference, naming the file and line
        return {v: ViewSteps(problem=problem) for v in ref.views}
    if not steps:
        return {}
    return plan_reference(settings, ref.folder, ref.views, steps, generator=settings.generator,
                          source_of=lambda v: _source_path(settings, ref, VIEWS_BY_NAME[v]),
                          view_path_of=lambda v: view_path(settings, ref.folder, v))


def generate_tasks(refs: list[Reference]):
    """`generate:<folder>`: the views of one reference; `generate` alone: every reference."""
    for ref in refs:
        views = ref.views if not ref.problem else (VIEWS[0].name,)
        yield {"name": ref.task_name, "actions": None,
               "task_dep": [f"{v}:{ref.task_name}" for v in views]}


def missing_photos_dir_task(settings: Settings) -> dict:
    return {"doc": "toutes les vues à (re)faire", "io": {"capture": False},
            "meta": {"kind": "view", "folder": settings.photos_dir.name, "view": "dossier"},
            "actions": [(fail_action, [f"Dossier introuvable : {settings.photos_dir}. Créez-le ou "
                                       f"réglez PHOTOS_DIR."])]}


def announcement(settings: Settings) -> str:
    """The first line of every run: which generator, said loudly."""
    if settings.generator == "gemini":
        budget = f"budget MAX_COST {settings.max_cost:.2f} $" if settings.max_cost else "sans plafond MAX_COST"
        return (f"Générateur : Gemini ({settings.model}, {settings.image_size}) — appels payants, {budget}.")
    why = "GENERATOR=local" if settings.generator_chosen else "aucune clé GEMINI_API_KEY"
    publish = ("ALLOW_LOCAL_UPLOAD=1 : ces aperçus peuvent être publiés" if settings.allow_local_upload
               else "ces images ne sont pas publiées sans ALLOW_LOCAL_UPLOAD=1")
    return f"Générateur : LOCAL, aperçu hors ligne gratuit ({why}) ; {publish}."


# --- upload -----------------------------------------------------------------------------------

def _upload_action(settings: Settings, folder: str, views: tuple[str, ...]):
    from doit.exceptions import TaskFailed

    from .errors import PipelineError
    from .upload import upload_reference

    try:
        outcome = upload_reference(settings, folder, views)
    except PipelineError as exc:
        return TaskFailed(exc.message)
    if outcome.skipped_reason:
        return TaskFailed(outcome.skipped_reason)
    return {"outcome": "uploaded" if outcome.uploaded else "uptodate", "message": outcome.message,
            "product_id": outcome.product_id}


def _upload_current(settings: Settings, folder: str, views: tuple[str, ...]):
    """doit uptodate: True when the stamp matches every finished view (nothing to send)."""
    def check(task, values):
        from .upload import needs_upload

        return not needs_upload(settings, folder, views)
    return check


def upload_tasks(settings: Settings, refs: list[Reference]):
    """`upload:<folder>`: the reference's finished views -> the shop (safe replace)."""
    kw = {"backend_url": settings.backend_url, "mode": settings.upload_mode}
    for ref in refs:
        task = {"name": ref.task_name, "io": {"capture": False}, "meta": {"kind": "upload", "folder": ref.folder}}
        if ref.problem:
            yield {**task, "actions": [(fail_action, [ref.problem])]}
            continue
        views = [str(view_path(settings, ref.folder, v)) for v in ref.views]
        yield {**task,
               "file_dep": views,
               "targets": [str(settings.output_dir / ref.folder / "upload.json")],
               "actions": [(_upload_action, [settings, ref.folder, ref.views])],
               "uptodate": [config_changed(kw), _upload_current(settings, ref.folder, ref.views)]}


def all_generate_tasks(settings: Settings, refs: list[Reference]):
    yield from view_tasks(settings, refs)
    yield from generate_tasks(refs)


def check_api_task(settings: Settings) -> dict:
    """`doit check_api`: key valid, model reachable, rate-limited or not; generates nothing."""
    return {"actions": [(_check_api_action, [settings])], "uptodate": [False], "io": {"capture": False},
            "meta": {"kind": "check", "folder": "Gemini", "view": "vérification"}}


def _check_api_action(settings: Settings):
    from doit.exceptions import TaskFailed

    if not settings.gemini_api_key:
        return TaskFailed("GEMINI_API_KEY est vide : ajoutez la clé dans .env pour utiliser Gemini.")
    from .gemini import check_api

    ok, message = check_api(settings)
    print(message, flush=True)
    return None if ok else TaskFailed(message)


# --- approval ---------------------------------------------------------------------------------

def _approve_action(settings: Settings, ref: Reference):
    from doit.exceptions import TaskFailed

    from . import review_state
    from .files import sha256_file

    folder_dir = settings.output_dir / ref.folder
    approved = []
    for view in ref.views:
        path = view_path(settings, ref.folder, view)
        if path.exists():
            review_state.decide(folder_dir, view, sha256_file(path), "approved", note="doit approve")
            approved.append(view)
    if not approved:
        return TaskFailed(f"{ref.folder} : aucune vue à approuver dans {folder_dir} (générez-les d'abord).")
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
               "actions": [(_approve_action, [settings, ref])], "uptodate": [False],
               "io": {"capture": False}, "meta": {"kind": "check", "folder": ref.folder, "view": "approbation"}}


# --- review -----------------------------------------------------------------------------------

def _review_action(settings: Settings, refs: list[Reference]):
    from .review import review_action  # the page's server is only imported when asked for

    return review_action(settings, refs)


def _report_action(settings: Settings, refs: list[Reference]):
    from .review import report_action

    return report_action(settings, refs)


def review_task(settings: Settings, refs: list[Reference]) -> dict:
    return {"actions": [(_review_action, [settings, refs])], "uptodate": [False],
            "io": {"capture": False}, "verbosity": 2}


def report_task(settings: Settings, refs: list[Reference]) -> dict:
    return {"actions": [(_report_action, [settings, refs])], "uptodate": [False],
            "io": {"capture": False}, "verbosity": 2}
