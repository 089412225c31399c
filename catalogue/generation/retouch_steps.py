"""Declared retouches ("adjustments"): per reference, replayed after every generation, cached.

A retouch made by overwriting an output file is lost the next time the view is regenerated. Here
each retouch is a *step* declared in `photos/<folder>/adjustments.toml` (human-editable; `doit
adjust` appends to it). The view's task applies the steps in order after generation and finishing
(`apply_steps`, called by `build.build_view`), and the steps are inputs of the view: their content
is in the view's config (doit's `config_changed`, the sidecar's `inputs_digest`), their reference
images in its `file_dep`.

File format (TOML: one array of tables per view, in the order the steps apply)::

    [[2_back]]
    instruction = "Match the garment colors to the reference image (second image). Same blue tone."
    ref = "1_face"          # optional: another view of this reference, or a path from the project root
    model = "pro"           # optional: pro, flash or a full model id (default: the run's model)

    [[2_back]]
    fix = "color-fix"       # deterministic, free: colour of the face (or of `ref`) onto this view

    [[1_face]]
    fix = "background-fix"  # deterministic, free: background normalised to #F3F3F3

    [[3_detail_logo]]
    instruction = "Remove the t-shirt under the hoodie."
    force = true            # accept the result even when the check refuses it (doit adjust --force)

Keys: `instruction` or `fix` (exactly one), `ref`, `model` (instructions only), `force`.

A Gemini step is an `ImageRequest` (the current image, then the step's reference image, then the
instruction; the view's aspect ratio and size), answered from the `AnswerStore` when the same
request was paid before: editing step 2 re-calls step 2 and the ones after it, never step 1 nor
the base generation. Each result is finished (`finishing.finish`) then checked against the image
before it (`check_retouch`, thresholds in `RETOUCH_LIMITS`): a garment that changed colour or
type is refused, the previous image stays and the sidecar says why, unless the step has
`force = true`. With the local generator an instruction cannot run: it is skipped with a note
and the view is flagged uncertain; deterministic fixes run anyway.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputError
from ..core.files import atomic_write_bytes
from ..core.models import resolve_model
from ..core.views import VIEW_NAMES, VIEWS, VIEWS_BY_NAME

ADJUSTMENTS_FILE = "adjustments.toml"
# Bump when what a step produces changes (the request's wording, a fix, the check's thresholds):
# part of the view's config, so every adjusted view is re-made (Gemini steps from the store, free).
ADJUST_VERSION = "1"
FIXES = ("color-fix", "background-fix")
STEP_KEYS = ("instruction", "fix", "ref", "model", "force")

# --- the file -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One declared step, as written in the file."""

    view: str
    index: int                # 1-based position in the view's list
    kind: str                 # "instruction" | "fix"
    text: str                 # the instruction, or the fix's name
    ref: str | None = None    # a view name, or a path (relative to the project root, or absolute)
    model: str | None = None  # alias or id as written; None = the run's model
    force: bool = False
    line: int = 0             # line of its [[view]] header in the file

    def as_table(self) -> dict:
        out = {"instruction" if self.kind == "instruction" else "fix": self.text}
        if self.ref:
            out["ref"] = self.ref
        if self.model:
            out["model"] = self.model
        if self.force:
            out["force"] = True
        return out


def adjustments_path(settings, folder: str) -> Path:
    return settings.photos_dir / folder / ADJUSTMENTS_FILE


def _header_lines(text: str, view: str) -> list[int]:
    """Line numbers (1-based) of the `[[view]]` headers, in order."""
    pat = re.compile(r"^\s*\[\[\s*(?:\"%s\"|'%s'|%s)\s*\]\]" % ((re.escape(view),) * 3))
    return [i for i, line in enumerate(text.splitlines(), 1) if pat.match(line)]


def _shown(path: Path) -> str:
    """The path as the operator typed it: relative to the current folder (the project root)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _where(path: Path, line: int | None) -> str:
    return f"{_shown(path)}, ligne {line}" if line else _shown(path)


def parse_adjustments(text: str, path: Path) -> dict[str, list[Step]]:
    """The steps of each view; raises `InputError` naming the file and the line."""
    fix_hint = f"Corrigez ou supprimez {path.name} (format : README, « Retouching »)."
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+), column (\d+)", str(exc))
        where = f"{_shown(path)}, ligne {m.group(1)}, colonne {m.group(2)}" if m else _shown(path)
        said = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise InputError(f"Fichier de retouches illisible ({where}) : TOML invalide, « {said} ». "
                         f"{fix_hint}") from None
    steps: dict[str, list[Step]] = {}
    for view, tables in data.items():
        if view not in VIEW_NAMES:
            line = next(iter(_header_lines(text, view)), None) or _key_line(text, view)
            raise InputError(f"{_where(path, line)} : « {view} » n'est pas une vue (vues : "
                             f"{', '.join(v.name for v in VIEWS)}). {fix_hint}")
        lines = _header_lines(text, view)
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise InputError(f"{_where(path, _key_line(text, view))} : chaque étape de {view} s'écrit "
                             f"comme un tableau [[{view}]]. {fix_hint}")
        for i, table in enumerate(tables, 1):
            line = lines[i - 1] if i - 1 < len(lines) else None
            where = f"{_where(path, line)} ({view}, étape {i})"
            unknown = [k for k in table if k not in STEP_KEYS]
            if unknown:
                raise InputError(f"{where} : clé inconnue « {unknown[0]} » (clés possibles : "
                                 f"{', '.join(STEP_KEYS)}). {fix_hint}")
            for key in ("instruction", "fix", "ref", "model"):
                if key in table and not (isinstance(table[key], str) and table[key].strip()):
                    raise InputError(f"{where} : « {key} » doit être un texte non vide. {fix_hint}")
            if "force" in table and not isinstance(table["force"], bool):
                raise InputError(f"{where} : « force » vaut true ou false. {fix_hint}")
            has_i, has_f = "instruction" in table, "fix" in table
            if has_i == has_f:
                raise InputError(f"{where} : une étape a soit « instruction », soit « fix » "
                                 f"(l'un des deux, pas les deux). {fix_hint}")
            if has_f and table["fix"].strip() not in FIXES:
                raise InputError(f"{where} : correction inconnue « {table['fix']} » (possibles : "
                                 f"{', '.join(FIXES)}). {fix_hint}")
            if has_f and "model" in table:
                raise InputError(f"{where} : « model » ne s'applique qu'à une instruction (une "
                                 f"correction « fix » ne fait aucun appel). {fix_hint}")
            steps.setdefault(view, []).append(Step(
                view=view, index=i, kind="instruction" if has_i else "fix",
                text=(table["instruction"] if has_i else table["fix"]).strip(),
                ref=table.get("ref", "").strip() or None, model=table.get("model", "").strip() or None,
                force=bool(table.get("force", False)), line=line or 0))
    return steps


def _key_line(text: str, key: str) -> int | None:
    pat = re.compile(r"^\s*(?:\[+\s*)?(?:\"%s\"|'%s'|%s)\s*(?:=|\]|\.)" % ((re.escape(key),) * 3))
    return next((i for i, line in enumerate(text.splitlines(), 1) if pat.match(line)), None)


def load_adjustments(path: Path) -> dict[str, list[Step]]:
    """The steps declared in `path` ({} when the file does not exist)."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"Fichier de retouches illisible ({_shown(path)}) : pas en UTF-8 ({exc}). "
                         f"Enregistrez-le en UTF-8.") from None
    return parse_adjustments(text, path)


# --- writing the file (tomlkit: the person's comments and layout are kept) ----------------------------

FILE_HEADER = """\
# Retouches déclarées de {folder} : rejouées à chaque génération de la vue (voir le README, « Retouching »).
# Une étape par tableau [[vue]], appliquées dans l'ordre. Clés : instruction = "…" (retouche Gemini)
# ou fix = "color-fix" | "background-fix" (gratuit) ; ref = "1_face" ou un chemin ; model = "pro" | "flash" ;
# force = true pour accepter un résultat refusé par le contrôle.
"""


def toml_table(view: str, table: dict) -> str:
    """One `[[view]]` table written by tomlkit: keys in the file's usual order."""
    import tomlkit  # only when a step is written: the task graph reads this module (tomllib only)

    item = tomlkit.table()
    for key in STEP_KEYS:
        if key in table:
            item[key] = table[key]
    tables = tomlkit.aot()
    tables.append(item)
    doc = tomlkit.document()
    doc.append(view, tables)
    return tomlkit.dumps(doc)


def dumps(folder: str, steps: dict[str, list[dict]]) -> str:
    """A whole new file: the header, then the steps view by view."""
    parts = [FILE_HEADER.format(folder=folder)]
    for view in VIEWS:
        for table in steps.get(view.name, []):
            parts.append("\n" + toml_table(view.name, table))
    return "".join(parts)


def _table_span(lines: list[str], step: Step) -> tuple[int, int]:
    """Lines [start, end) of the table of `step`: its header to the next header, without the
    comments and blank lines just before that next header (they introduce what follows)."""
    start = step.line - 1
    end = start + 1
    while end < len(lines) and not lines[end].lstrip().startswith("["):
        end += 1
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def _set_force(text: str, step: Step) -> str:
    """`force = true` in the table of `step`, edited by tomlkit on that table alone (an existing
    `force` line keeps its place and comment; the rest of the file is untouched byte for byte).

    Only that table is handed to tomlkit: tomlkit re-orders a file whose arrays of tables are
    interleaved (python-poetry/tomlkit#601), which `doit adjust` itself writes ([[2_back]],
    [[1_face]], [[2_back]] when steps are added in that order).
    """
    import tomlkit  # see toml_table

    lines = text.splitlines(keepends=True)
    start, end = _table_span(lines, step)
    doc = tomlkit.parse("".join(lines[start:end]))
    doc[step.view][-1]["force"] = True
    edited = tomlkit.dumps(doc)
    if end < len(lines) and not edited.endswith("\n"):
        edited += "\n"
    return "".join(lines[:start]) + edited + "".join(lines[end:])


def _steps_of(text: str, path: Path) -> dict:
    return {v: [s.as_table() for s in steps] for v, steps in parse_adjustments(text, path).items()}


# --- recording a step (doit adjust, the review page) -----------------------------------------------

def _check_target(settings, folder: str, view: str) -> Path:
    if view not in VIEW_NAMES:
        raise InputError(f"Vue inconnue « {view} » (vues : {', '.join(v.name for v in VIEWS)}).")
    photo_dir = settings.photos_dir / folder
    if not photo_dir.is_dir():
        raise InputError(f"Dossier introuvable : {photo_dir} (référence « {folder} »).")
    return photo_dir / ADJUSTMENTS_FILE


def normalise_ref(settings, folder: str, ref: str | None) -> str | None:
    """A `ref` as the file stores it: a view name when it is a view of this reference (given by name
    or as its output path), else a path relative to the project root (absolute outside it).
    A relative `ref` is read from the project root (where doit runs)."""
    if ref is None or not str(ref).strip():
        return None
    ref = str(ref).strip()
    if ref in VIEW_NAMES:
        return ref
    p = Path(ref).expanduser()
    full = (p if p.is_absolute() else settings.root / p).resolve()
    here = (settings.output_dir / folder).resolve()
    if full.parent == here and full.suffix.lower() == ".png" and full.stem in VIEW_NAMES:
        return full.stem
    if not full.is_file():
        raise InputError(f"Image de référence introuvable : {ref}.")
    try:
        return full.relative_to(settings.root).as_posix()
    except ValueError:
        return str(full)


def add_step(settings, folder: str, view: str, table: dict, *, force: bool = False) -> Path:
    """Append one step (a table of STEP_KEYS) to the reference's file; returns the file's path.

    The same step as the view's last one (same instruction or fix, ref and model) is not added
    twice: with `force` it gets `force = true` (the operator accepts a refused result). The new
    table goes at the end of the file; what the person wrote (comments, order, spacing) is kept.
    """
    path = _check_target(settings, folder, view)
    table = {k: v for k, v in table.items() if v not in (None, "", False)}
    if force:
        table["force"] = True
    existing = load_adjustments(path)  # a malformed file is refused, with its line
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    want = {v: [s.as_table() for s in steps] for v, steps in existing.items()}
    last = (existing.get(view) or [None])[-1]
    if last is not None:
        same = {k: v for k, v in last.as_table().items() if k != "force"}
        if same == {k: v for k, v in table.items() if k != "force"}:
            if force and not last.force:
                new = _set_force(text, last)
                want[view][-1]["force"] = True
                _write_checked(path, new, want)
            return path
    if not text:
        new = dumps(folder, {view: [table]})
    else:
        new = text + ("" if text.endswith("\n") else "\n") + "\n" + toml_table(view, table)
    want.setdefault(view, []).append({k: table[k] for k in STEP_KEYS if k in table})
    _write_checked(path, new, want)
    return path


def _write_checked(path: Path, new: str, want: dict) -> None:
    """Write `new` only when it reads back as exactly the steps wanted (never a file the pipeline
    would refuse, nor an edit that landed in the wrong table)."""
    if _steps_of(new, path) != want:
        raise InputError(f"{_shown(path)} : modification automatique impossible sans risque (mise en "
                         f"page inhabituelle). Ajoutez l'étape à la main (format : README, « Retouching »).")
    atomic_write_bytes(path, new.encode("utf-8"))


def record_step(settings, folder: str, view: str, instruction: str, *, ref: str | None = None,
                model: str | None = None, force: bool = False) -> Path:
    """Append a Gemini retouch of `view` to `photos/<folder>/adjustments.toml`; returns its path.

    `ref`: another view of the reference ("1_face"), its output path, or an image path; `model`:
    "pro", "flash" or a full id (None: the run's model); `force`: accept the result even when the
    check refuses it. Raises `InputError` (French) on a bad folder, view, ref or file.
    """
    if not instruction or not instruction.strip():
        raise InputError("La consigne de retouche est vide : décrivez la retouche (--prompt \"…\").")
    table = {"instruction": instruction.strip(), "ref": normalise_ref(settings, folder, ref),
             "model": (model or "").strip() or None}
    return add_step(settings, folder, view, table, force=force)


def record_fix(settings, folder: str, view: str, fix: str, *, ref: str | None = None,
               force: bool = False) -> Path:
    """Append a deterministic fix ("color-fix" | "background-fix") of `view`; returns the file's path."""
    if fix not in FIXES:
        raise InputError(f"Correction inconnue « {fix} » (possibles : {', '.join(FIXES)}).")
    return add_step(settings, folder, view, {"fix": fix, "ref": normalise_ref(settings, folder, ref)},
                    force=force)


# --- steps as inputs of the view's task --------------------------------------------------------------

@dataclass(frozen=True)
class PlannedStep:
    """A step ready to run: its reference resolved to a file, its model to an id."""

    index: int
    kind: str                        # "instruction" | "fix"
    text: str
    ref_label: str | None            # "1_face", "photo" (the view's source photo) or the path as written
    ref_path: Path | None            # the file, or None
    ref_is_photo: bool               # the reference is a raw photo (segmentation differs)
    model: str | None                # full model id (instructions)
    force: bool

    @property
    def role(self) -> str:
        return f"adjust{self.index}_ref"

    def config(self) -> dict:
        out = {"kind": self.kind, ("instruction" if self.kind == "instruction" else "fix"): self.text,
               "ref": self.ref_label, "force": self.force}
        if self.kind == "instruction":
            out["model"] = self.model
        return out


@dataclass
class ViewSteps:
    steps: tuple[PlannedStep, ...] = ()
    inputs: dict[str, Path] = field(default_factory=dict)   # extra inputs (file_dep) by role
    problem: str | None = None                              # French message: the view fails


def read_reference(settings, folder: str) -> tuple[dict[str, list[Step]], str | None]:
    """(steps by view, problem) for one reference; a malformed file is the problem."""
    path = settings.photos_dir / folder / ADJUSTMENTS_FILE
    if not path.exists():
        return {}, None
    try:
        return load_adjustments(path), None
    except InputError as exc:
        return {}, exc.message


def _upstream(view: str, anchored: bool) -> set[str]:
    spec = VIEWS_BY_NAME[view]
    ups = {spec.source} if spec.source in VIEW_NAMES else set()
    if anchored and spec.anchor:
        ups.add(spec.anchor)
    return ups


def plan_reference(settings, folder: str, views: tuple[str, ...], steps: dict[str, list[Step]], *,
                   generator: str, source_of, view_path_of) -> dict[str, ViewSteps]:
    """The planned steps of each view of one reference (cheap: paths only, no image decoded).

    `source_of(view)` is the view's source file, `view_path_of(view)` a view's output path.
    A reference to a view this reference does not have, a missing file, or a loop (1_face
    adjusted against 3_detail_logo, which is made from 1_face) fails the views concerned.
    """
    path = settings.photos_dir / folder / ADJUSTMENTS_FILE
    out: dict[str, ViewSteps] = {}
    orphans = [s for v, vs in steps.items() if v not in views for s in vs]
    if orphans:  # e.g. [[2_back]] steps with no back photo: say so rather than ignore them
        problem = (f"{_where(path, orphans[0].line)} : retouche pour {orphans[0].view}, vue que {folder} n'a "
                   f"pas (pas de photo de dos ?) : ajoutez la photo ou retirez cette retouche.")
        return {v: ViewSteps(problem=problem) for v in views}
    edges: dict[str, set[str]] = {v: _upstream(v, generator == "gemini") & set(views) for v in views}
    for view in views:
        planned, inputs, problem = [], {}, None
        for step in steps.get(view, []):
            where = f"{_where(path, step.line)} ({view}, étape {step.index})"
            ref = step.ref
            if ref is None and step.kind == "fix" and step.text == "color-fix":
                ref = "1_face" if view != "1_face" else None
            ref_path, is_photo, label = None, False, ref
            if ref in VIEW_NAMES:
                if ref not in views:
                    problem = (f"{where} : la vue de référence « {ref} » n'existe pas pour {folder} "
                               f"(pas de photo de dos ?). Corrigez « ref » dans {path.name}.")
                    break
                if ref == view:
                    problem = (f"{where} : une vue ne peut pas servir de référence à sa propre retouche "
                               f"(« ref = \"{ref}\" »). Corrigez {path.name}.")
                    break
                ref_path = view_path_of(ref)
                edges[view].add(ref)
            elif ref is not None:
                p = Path(ref).expanduser()
                ref_path = p if p.is_absolute() else settings.root / p
                if not ref_path.is_file():
                    problem = (f"{where} : image de référence introuvable : {ref_path}. Corrigez « ref » "
                               f"dans {path.name}.")
                    break
                is_photo = ref_path.parent.resolve() == (settings.photos_dir / folder).resolve()
            elif step.kind == "fix" and step.text == "color-fix":  # 1_face: against its own photo
                ref_path, is_photo, label = source_of(view), True, "photo"
            model = resolve_model(step.model) if step.kind == "instruction" and step.model else (
                settings.model if step.kind == "instruction" else None)
            ps = PlannedStep(index=step.index, kind=step.kind, text=step.text, ref_label=label,
                             ref_path=ref_path, ref_is_photo=is_photo, model=model, force=step.force)
            planned.append(ps)
            if ref_path is not None and label != "photo":
                inputs[ps.role] = ref_path
        out[view] = ViewSteps(tuple(planned), inputs, problem)
    # Loops through the references (e.g. 1_face adjusted against 3_detail_logo, made from 1_face).
    for view in views:
        if out[view].problem:
            continue
        seen, todo = set(), list(edges[view])
        while todo:
            v = todo.pop()
            if v == view:
                out[view] = ViewSteps(problem=(
                    f"{_shown(path)} : les retouches de {view} prennent pour référence une vue qui dépend "
                    f"elle-même de {view} (boucle) : changez « ref » (par exemple une image hors de "
                    f"output/)."))
                break
            if v in seen:
                continue
            seen.add(v)
            todo.extend(edges.get(v, ()))
    return out


def steps_config(planned: tuple[PlannedStep, ...]) -> dict:
    """What the view's config gets (only when there are steps: views without stay as they were)."""
    return {"adjust_version": ADJUST_VERSION, "adjustments": [s.config() for s in planned]}
