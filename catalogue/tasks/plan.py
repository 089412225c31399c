"""`doit plan`: what the next run would build, why, and what it would cost.

doit's `list --status` looks at each task alone; a view whose upstream will be rebuilt is stale
too, and a view doit forgot (lost state) may still be current by its sidecar. The plan walks the
graph in dependency order and applies both rules, exactly as the run will.
"""

from __future__ import annotations

from ..core.models import estimate_call_cost
from ..core.provenance import ViewCurrent, inputs_digest, is_current

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


def estimated_cost(job) -> float:
    """The base generation plus one call per declared retouch instruction (pessimistic: a
    request already paid for is answered from the store at no cost)."""
    if job is None or job.config.get("generator") != "gemini":
        return 0.0
    size = job.config["image_size"]
    cost = estimate_call_cost(job.config["model"], size, len(job.base_inputs))
    for step in job.steps:
        if step.kind == "instruction":
            cost += estimate_call_cost(step.model or job.config["model"], size, 2 if step.ref_path else 1)
    return cost


def explain_plan(tasks: dict, selected: list[str], dep_manager) -> tuple[list[str], int]:
    """(lines to print, exit code). Read-only: nothing is built or recorded."""
    runs: dict[str, bool] = {}
    lines, views, uploads, current, cost = [], 0, 0, 0, 0.0
    generators = set()
    for name in _dependency_order(tasks, selected):
        task = tasks[name]
        meta = task.meta or {}
        upstream = [d for d in task.task_dep if runs.get(d)]
        if not meta.get("kind"):
            runs[name] = bool(upstream)
            continue
        status = dep_manager.get_status(task, tasks, get_log=True)
        stale = status.status != "up-to-date"
        job = meta.get("job")
        if stale and not upstream and job is not None and status.status != "error":
            digest, _ = inputs_digest(job.config, job.inputs) if all(p.exists() for p in job.inputs.values()) else ("", {})
            if digest and is_current(job.output, digest):
                stale = False  # doit forgot it, the sidecar proves it current: nothing to pay
        runs[name] = stale or bool(upstream)
        if not runs[name]:
            current += 1
            continue
        why = _reasons(status) if stale else []
        if upstream:
            why.append("amont reconstruit (" + ", ".join(d.split(":")[0] for d in upstream) + ")")
        if meta["kind"] == "view":
            views += 1
            cost += estimated_cost(job)
            if job:
                generators.add(job.config["generator"])
            lines.append(f"  à générer  {meta['folder']} {meta['view']} — {'; '.join(why) or 'à faire'}")
        else:
            uploads += 1
            lines.append(f"  à envoyer  {meta['folder']} — {'; '.join(why) or 'vues modifiées depuis le dernier envoi'}")
    gen = "/".join(sorted(generators)) or "aucun"
    summary = (f"Plan : {views} vues à générer ({views} appels au générateur {gen}, coût estimé "
               f"{cost:.2f} $), {uploads} références à envoyer, {current} à jour.")
    return lines + [summary], 0
