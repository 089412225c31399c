"""The view task family, in the manner of Nikola's task plugins.

The family gathers exactly the settings that shape its output in one dict (`view_config`),
attaches `config_changed` to it, and yields plain task dicts: the graph reads like a table.

    1_face:<folder>          photo (+ style ref)                      -> output/<folder>/1_face.png
    2_back:<folder>          back photo (+ style ref, + 1_face)       -> output/<folder>/2_back.png
    3_detail_logo:<folder>   finished 1_face (+ style ref)            -> output/<folder>/3_detail_logo.png
    generate:<folder>        the views of one reference (a group)
"""

from __future__ import annotations

from pathlib import Path

from ..core.discovery import Reference, StyleRefs
from ..core.garment_types import (DECLARATION_FILE, ImageTypes, ProductTypes, decide, known_sources, needs_type,
                                  read_declaration, read_map_types)
from ..core.jobs import ViewJob
from ..core.models import API_VERSION
from ..core.paths import batches_dir, sidecar_path, view_path
from ..core.provenance import ViewCurrent, config_digest
from ..core.settings import Settings
from ..core.versions import FINISHING_VERSION, LOCAL_RENDERER_VERSION
from ..core.views import VIEWS, VIEWS_BY_NAME, ViewSpec
from ..generation.prompts import PROMPT_VERSION
from ..generation.retouch_steps import ADJUSTMENTS_FILE, ViewSteps, plan_reference, read_reference, steps_config
from .actions import fail_action, log_bug, run_action


def view_config(settings: Settings, view: ViewSpec) -> dict:
    """The settings that shape this view's image, whatever the reference."""
    kw = {"generator": settings.generator, "view": view.name, "output_size": settings.output_size,
          "image_size": settings.image_size}  # caps the output's size too
    if settings.generator == "gemini":
        kw.update(model=settings.model, api_version=API_VERSION,
                  prompt_version=PROMPT_VERSION, finishing_version=FINISHING_VERSION,
                  anchored=bool(view.anchor))
    else:
        kw.update(renderer_version=LOCAL_RENDERER_VERSION)
    return kw


def _build_view(settings: Settings, job: ViewJob):
    from ..generation.view_build import build_view  # numpy, Pillow: only when a view is built

    return build_view(settings, job)


def _source_path(settings: Settings, ref: Reference, view: ViewSpec) -> Path:
    if view.source in VIEWS_BY_NAME:
        return view_path(settings, ref.folder, view.source)
    return ref.photos[view.source]


class GarmentTypes:
    """What the graph load knows of each product's type: declarations, PRODUCTS_MAP's type column,
    and the caches the builds and `doit plan` fill (database categories, inferred types). Nothing
    here decodes an image or connects to the database."""

    def __init__(self, settings: Settings):
        self.image_types = ImageTypes(settings.state_dir)
        self.products = ProductTypes(settings.state_dir)
        self.map_types = read_map_types(settings.products_map)

    def of(self, ref: Reference):
        """(TypeChoice or None, problem)."""
        declared, problem = read_declaration(ref.photo_dir) if DECLARATION_FILE in ref.files else (None, None)
        face = ref.photos.get("face")
        inferred = self.image_types.lookup(face) if face is not None else None
        return decide(known_sources(ref.photo_dir, ref.folder, declared, self.map_types, self.products,
                                    inferred)), problem


def _view_task(settings: Settings, ref: Reference, view: ViewSpec, kw: dict, kw_digest: str, styles: StyleRefs,
               steps=None, garment=None, after_batch: bool = False) -> dict:
    # No output capture: doit swaps the global sys.stdout per captured action, which races under
    # threads (a closed buffer left behind made the process exit with 120 after 10,000 views).
    task = {"basename": view.name, "name": ref.folder, "io": {"capture": False},
            "meta": {"kind": "view", "folder": ref.folder, "view": view.name}}
    if styles.problem:  # refs/types.toml malformed
        return {**task, "actions": [(fail_action, [styles.problem])]}
    pool = styles.pool(view.name)
    choice = styles.choose(view.name, ref.folder, garment.family if garment else None)
    if choice is None:
        return {**task, "actions": [(fail_action, [styles.missing_message(view.name)])]}
    if steps is not None and steps.problem:  # adjustments.toml malformed or inconsistent
        return {**task, "actions": [(fail_action, [steps.problem])]}
    style = choice.path
    # The product's type may change without any file changing (its category edited in the shop):
    # every image of the view is a dependency (an edited style image is looked at again), and the
    # image the build used (kept in doit's values) must be the one the caches now point to.
    # Unknown types (a product never built): the build decides, nothing to compare yet.
    pending, expected = (), None
    if needs_type(pool):
        pending = tuple(s.path for s in pool if s.path != style)
        known = garment is not None and all(s.family is not None for s in pool)
        expected = str(style) if known else None
    anchored = kw["generator"] == "gemini" and view.anchor is not None
    config = {**kw, "seed": ref.seed(view.name)} if kw["generator"] == "gemini" else kw
    planned = steps.steps if steps is not None else ()
    if planned:  # declared retouches are inputs of the view: their content is in its config
        config = {**config, **steps_config(planned)}
    extra = ()
    if kw["generator"] == "local" and view.source in VIEWS_BY_NAME:
        # The local detail is cut from the front photo itself, through the face's placement.
        extra = (("photo", ref.photos[VIEWS_BY_NAME[view.source].source]),)
    job = ViewJob(folder=ref.folder, view=view.name, source=_source_path(settings, ref, view), extra_inputs=extra,
                  style=style, output=view_path(settings, ref.folder, view.name),
                  anchor=view_path(settings, ref.folder, view.anchor) if anchored else None, config=config,
                  steps=planned, step_inputs=tuple(steps.inputs.items()) if planned else (),
                  photo=ref.photos.get("face"), style_pool=pool, garment=garment, style_choice=choice,
                  pending_deps=pending)
    task["meta"]["job"] = job
    # The family's own dict (local views without retouches): doit gets its digest, computed once.
    settings_state = kw_digest if config is kw else config
    if after_batch:  # the finished jobs are collected before any view is built
        task["task_dep"] = [BATCH_TASK]
    return {**task,
            "file_dep": list(dict.fromkeys(str(p) for p in (*job.inputs.values(), *pending))),
            "targets": [str(job.output), str(sidecar_path(job.output))],
            "actions": [(run_action, ["view", f"{ref.folder} {view.name}", settings, _build_view, settings, job])],
            "uptodate": [ViewCurrent(settings_state, job.output, job.inputs),
                         *([(style_unchanged, [expected])] if expected else [])]}


def style_unchanged(task, values, expected: str) -> bool:
    """doit uptodate: the style image the last build used (its returned `style`) is the one the
    product's garment type now points to."""
    return values.get("style") == expected


def view_tasks(settings: Settings, refs: list[Reference]):
    """One task per (reference, view); a reference that cannot be built gets one failing task."""
    types = GarmentTypes(settings)
    styles = StyleRefs(settings.refs_dir, image_types=types.image_types)
    typed = any(needs_type(styles.pool(v.name)) for v in VIEWS)  # one family for everything: no type
    kws = {view.name: view_config(settings, view) for view in VIEWS}
    digests = {name: config_digest(kw) for name, kw in kws.items()}  # once, not once per task and run
    after_batch = collects_batches(settings)  # lists output/.state/batches: once, not once per view
    for view in VIEWS:  # the family's own line in `doit list`
        yield {"basename": view.name, "name": None, "doc": f"la vue {view.name} de chaque référence"}
    for ref in refs:
        if ref.problem:
            yield {"basename": VIEWS[0].name, "name": ref.task_name, "io": {"capture": False},
                   "meta": {"kind": "view", "folder": ref.folder, "view": VIEWS[0].name},
                   "actions": [(fail_action, [ref.problem])]}
            continue
        planned = _planned_steps(settings, ref)
        garment, problem = types.of(ref) if typed else (None, None)
        for name in ref.views:
            view = VIEWS_BY_NAME[name]
            if problem:  # photos/<folder>/type.txt unreadable or unknown word
                yield {"basename": name, "name": ref.task_name, "io": {"capture": False},
                       "meta": {"kind": "view", "folder": ref.folder, "view": name},
                       "actions": [(fail_action, [problem])]}
                continue
            yield _view_task(settings, ref, view, kws[name], digests[name], styles, planned.get(name), garment,
                             after_batch)


def _planned_steps(settings: Settings, ref: Reference) -> dict:
    """The declared retouches of each view of `ref` (photos/<folder>/adjustments.toml), planned."""
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
        if batch_mode(settings):
            return (f"Générateur : Gemini ({settings.model}, {settings.image_size}) en lot (Batch API : moitié "
                    f"prix, réponses sous 24 h, relevées par les exécutions suivantes) — appels payants, {budget}.")
        return (f"Générateur : Gemini ({settings.model}, {settings.image_size}) — appels payants, {budget}.")
    why = "GENERATOR=local" if settings.generator_chosen else "aucune clé GEMINI_API_KEY"
    publish = ("ALLOW_LOCAL_UPLOAD=1 : ces aperçus peuvent être publiés" if settings.allow_local_upload
               else "ces images ne sont pas publiées sans ALLOW_LOCAL_UPLOAD=1")
    return f"Générateur : LOCAL, aperçu hors ligne gratuit ({why}) ; {publish}."


def all_generate_tasks(settings: Settings, refs: list[Reference]):
    if collects_batches(settings):
        yield batch_task(settings)
    yield from view_tasks(settings, refs)
    yield from generate_tasks(refs)


# --- GEMINI_MODE=batch -------------------------------------------------------------------------

BATCH_TASK = "batch"


def batch_mode(settings: Settings) -> bool:
    return settings.generator == "gemini" and settings.gemini_mode == "batch"


def collects_batches(settings: Settings) -> bool:
    """Batch mode, or jobs of an earlier batch run still recorded (a run back in interactive mode
    collects them too: their views are never paid twice, nor left waiting for ever)."""
    if settings.generator != "gemini":
        return False
    if settings.gemini_mode == "batch":
        return True
    folder = batches_dir(settings)
    return folder.is_dir() and any(folder.glob("*.json"))


def _collect(settings: Settings):
    from ..generation.batch_jobs import collect  # google-genai: only when the batch mode runs

    return collect(settings)


def _submit(settings: Settings):
    """The `batch` task's teardown: after every view, the requests they queued become jobs. A bug
    is logged like any other (output/.state/errors.log) and the run ends with 2."""
    from ..generation.batch_jobs import submit

    try:
        submit(settings)
    except Exception:
        log_bug(settings, "batch submit")
        raise
    return True


def batch_task(settings: Settings) -> dict:
    """`batch`: collect the finished Batch API jobs (before the views), submit the new requests
    (its teardown, after them). No file_dep: it runs in every batch run."""
    return {"basename": BATCH_TASK, "io": {"capture": False},
            "doc": "relève les lots Gemini terminés, puis soumet les nouvelles vues (GEMINI_MODE=batch)",
            "actions": [(run_action, ["batch", "lots", settings, _collect, settings])],
            "teardown": [(_submit, [settings])]}
