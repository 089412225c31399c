"""`doit plan`: what the next run would build, why, and what it would cost.

doit's `list --status` looks at each task alone; a view whose upstream will be rebuilt is stale
too, and a view doit forgot (lost state) may still be current by its sidecar. The plan walks the
graph in dependency order and applies both rules, exactly as the run will.
"""

from __future__ import annotations

import os

from doit import get_var

from ..core.garment_types import REFS_TYPES_FILE, TYPE_SURE, ImageTypes, label, needs_type
from ..core.models import estimate_call_cost
from ..core.provenance import ViewCurrent, inputs_digest, is_current
from ..core.settings import load_settings
from .reporter import count

REASONS = {
    "missing_target": "image absente",
    "changed_file_dep": "entrée modifiée",
    "uptodate_false": "réglages modifiés (générateur, modèle, prompt, taille ou tirage)",
    "has_no_dependencies": "entrée à corriger",
    "added_file_dep": "nouvelle entrée",
    "removed_file_dep": "entrée retirée",
    "checker_changed": "méthode de comparaison changée",
    "missing_file_dep": "entrée manquante",
}


def _dependency_order(tasks: dict, selected: list[str]) -> list[str]:
    order, seen = [], set()

    def visit(name):
        if name in seen or name not in tasks:
            return
        seen.add(name)
        for dep in tasks[name].task_dep:
            visit(dep)
        order.append(name)

    for name in selected:
        visit(name)
    return order


def _reasons(status) -> list[str]:
    reasons = status.reasons or {}
    if reasons.get("missing_target"):
        return [REASONS["missing_target"]]  # the rest (no recorded state yet) says nothing more
    out = []
    for key, value in reasons.items():
        if not value:
            continue
        label = REASONS.get(key, key)
        if key == "uptodate_false" and isinstance(value, list):
            own = [utd.reason for utd, _a, _k in value if isinstance(utd, ViewCurrent) and utd.reason]
            label = "; ".join(own) if own else label  # the view's own files, not its settings
        if key in ("changed_file_dep", "added_file_dep", "missing_file_dep") and isinstance(value, list):
            label += " (" + ", ".join(sorted({p.rsplit("/", 1)[-1] for p in value})) + ")"
        out.append(label)
    return out


def estimated_cost(job, batch: bool = False) -> float:
    """The base generation plus one call per declared retouch instruction (pessimistic: a
    request already paid for is answered from the store at no cost); `batch`: at the Batch
    API's price."""
    if job is None or job.config.get("generator") != "gemini":
        return 0.0
    size = job.config["image_size"]
    cost = estimate_call_cost(job.config["model"], size, len(job.base_inputs), batch=batch)
    for step in job.steps:
        if step.kind == "instruction":
            cost += estimate_call_cost(step.model or job.config["model"], size, 2 if step.ref_path else 1,
                                       batch=batch)
    return cost


def _batch_jobs(tasks: dict):
    """GEMINI_MODE=batch (the `batch` task exists): (lines about the jobs under way,
    {(folder, view): (job, state)}), else None. The jobs' states are read on the server (free)."""
    if "batch" not in tasks:
        return None
    from ..generation.batch_jobs import plan_lines  # google-genai: only in batch mode
    settings = load_settings(os.getcwd(), model_override=get_var("model"), mode_override=get_var("mode"))
    lines, views = plan_lines(settings)
    return lines, views, settings.gemini_mode == "batch"


def paid_calls(job) -> int:
    """Gemini calls the view's build makes at most: the base image, then one per instruction."""
    if job is None or job.config.get("generator") != "gemini":
        return 0
    return 1 + sum(1 for step in job.steps if step.kind == "instruction")


def _garment_types(tasks: dict, order: list[str]):
    """The style image each view will really use (`generation.garment_choice`): the database's
    categories read again in one query and recorded, types nobody declared inferred and cached, so
    the next run rebuilds exactly the products whose type changed. Heavy imports: only here.
    Returns ({task: (job, style record, uncertain notes)}, lines about the style images' types)."""
    jobs = {n: tasks[n].meta["job"] for n in order if (tasks[n].meta or {}).get("job") is not None}
    if not any(needs_type(j.style_pool) for j in jobs.values()):
        return {}, []
    from ..generation.garment_choice import infer_image, prefetch_categories, resolve_style
    settings = load_settings(os.getcwd())
    note = prefetch_categories(settings, sorted({j.folder for j in jobs.values() if j.style_pool}))
    resolved = {n: resolve_style(settings, j) for n, j in jobs.items()}
    lines, seen, types = [], set(), ImageTypes(settings.state_dir)
    for job in jobs.values():
        for s in job.style_pool:
            if s.how in ("", "inferred") and s.path not in seen:
                seen.add(s.path)
                entry = infer_image(settings, types, s.path) or {}
                rel = s.path.relative_to(settings.refs_dir).as_posix()
                sure = "" if entry.get("confidence", 0) >= TYPE_SURE else ", incertain"
                lines.append(f'  "{rel}" = "{label(entry.get("family"))}"   # déduit : {entry.get("reason", "?")}{sure}')
    if lines:
        lines = [f"Types des références de style déduits de l'image (à corriger une fois pour toutes en copiant "
                 f"ces lignes dans {settings.refs_dir / REFS_TYPES_FILE}) :"] + lines
    if note:
        lines.append(f"Attention : {note}")
    return resolved, lines


def explain_plan(tasks: dict, selected: list[str], dep_manager) -> tuple[list[str], int]:
    """(lines to print, exit code). Builds nothing; records only what the builds would (database
    categories, inferred garment types: output/.state/)."""
    runs: dict[str, bool] = {}
    lines, views, uploads, current, cost, calls = [], 0, 0, 0, 0.0, 0
    generators = set()
    order = _dependency_order(tasks, selected)
    styles, type_lines = _garment_types(tasks, order)
    batch = _batch_jobs(tasks)
    in_jobs, interactive_cost = 0, 0.0
    for name in order:
        task = tasks[name]
        meta = task.meta or {}
        upstream = [d for d in task.task_dep if runs.get(d)]
        if not meta.get("kind"):
            runs[name] = bool(upstream)
            continue
        status = dep_manager.get_status(task, tasks, get_log=True)
        stale = status.status != "up-to-date"
        job = meta.get("job")
        style_line, type_changed = "", ""
        if name in styles:
            resolved, record, notes = styles[name]
            style = record["style"]
            style_line = f" [style {style['path']} : {style['why']}{' ; INCERTAIN : ' + '; '.join(notes) if notes else ''}]"
            if job.style != resolved.style and job.output.exists():
                type_changed = (f"type de vêtement changé : {style['why']} (au lieu de "
                                f"{job.style.name})")
                stale = True
            job = resolved
        if stale and not upstream and job is not None and status.status != "error":
            digest, _ = inputs_digest(job.config, job.inputs) if all(p.exists() for p in job.inputs.values()) else ("", {})
            if digest and is_current(job.output, digest):
                stale = False  # doit forgot it, the sidecar proves it current: nothing to pay
        runs[name] = stale or bool(upstream)
        if not runs[name]:
            current += 1
            continue
        why = (_reasons(status) if status.status != "up-to-date" else []) if stale else []
        if type_changed:
            why = [type_changed]
        if upstream:
            why.append("amont reconstruit (" + ", ".join(d.split(":")[0] for d in upstream) + ")")
        if meta["kind"] == "view" and batch and (meta["folder"], meta["view"]) in batch[1]:
            in_jobs += 1
            name, state = batch[1][(meta["folder"], meta["view"])]
            lines.append(f"  en lot     {meta['folder']} {meta['view']} — {name or 'soumission incertaine'} ({state})")
            continue
        if meta["kind"] == "view":
            views += 1
            cost += estimated_cost(job, batch=bool(batch and batch[2]))
            interactive_cost += estimated_cost(job)
            calls += paid_calls(job)
            if job:
                generators.add(job.config["generator"])
            lines.append(f"  à générer  {meta['folder']} {meta['view']} — {'; '.join(why) or 'à faire'}{style_line}")
        else:
            uploads += 1
            lines.append(f"  à envoyer  {meta['folder']} — {'; '.join(why) or 'vues modifiées depuis le dernier envoi'}")
    made = count(views, "vue") + " à générer"
    if batch is not None and not batch[2]:
        type_lines = type_lines + batch[0]
        made += (f" ({count(calls, 'appel')} au générateur gemini, coût estimé {cost:.2f} $), {in_jobs} en lot "
                 f"en attente (relevées par la prochaine exécution)")
    elif batch is not None:
        made = (f"{count(views, 'vue')} à soumettre en lot ({count(calls, 'appel')}, coût estimé {cost:.2f} $ au "
                f"tarif lot, {interactive_cost:.2f} $ en interactif), {in_jobs} en lot en attente")
        type_lines = type_lines + batch[0]
    elif "gemini" in generators:
        made += f" ({count(calls, 'appel')} au générateur gemini, coût estimé {cost:.2f} $)"
    elif views:
        made += " (rendu local, gratuit)"
    summary = f"Plan : {made}, {count(uploads, 'référence')} à envoyer, {current} à jour."
    return type_lines + lines + [summary], 0
