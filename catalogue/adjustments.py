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

import io
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GenerationError, InputError
from .files import atomic_write_bytes
from .models import resolve_model
from .views import VIEW_NAMES, VIEWS, VIEWS_BY_NAME

ADJUSTMENTS_FILE = "adjustments.toml"
# Bump when what a step produces changes (the request's wording, a fix, the check's thresholds):
# part of the view's config, so every adjusted view is re-made (Gemini steps from the store, free).
ADJUST_VERSION = "1"
FIXES = ("color-fix", "background-fix")
STEP_KEYS = ("instruction", "fix", "ref", "model", "force")

# The check of every Gemini retouch (`check_retouch`), on the garments of the image before and
# after the step (masks and medians of `qa.flat_lay_garment`, CIEDE2000 of `qa.ciede2000`):
RETOUCH_LIMITS: dict[str, float] = {
    # Median garment colour change allowed, ΔE2000. A retouch ("remove the t-shirt underneath",
    # "smooth the folds") keeps the colour: the same garment re-rendered measures 0-3; the QA's
    # colour checks allow 7 between a view and its photo or face; recoloured garments measure
    # 10-25 and more. 8 sits between.
    "delta_e_max": 8.0,
    # With a reference image, a larger change is accepted when the garment moved towards the
    # reference's garment and ends within this ΔE2000 of it (a "match the face's colour" retouch):
    # the QA's own back-vs-face limit.
    "ref_delta_e_max": 7.0,
    # Garment silhouette IoU (bounding boxes normalised, `qa.shape_iou`) at least this. The same
    # garment moved or rescaled measures 0.95-1.0; a T-shirt against a plain rectangle (trousers,
    # a folded garment) 0.65; different garments of one type 0.8-0.99 (the QA's calibration), so
    # the check catches a change of type, not a re-cut of the same one.
    "shape_iou_min": 0.75,
}

# Added after the operator's instruction: the house rules of every retouch.
RETOUCH_RULES = ("Edit the first image only as instructed above. Keep everything else identical: the same "
                 "garment, its colours, logo and details, the flat-lay framing and the plain light grey "
                 "#F3F3F3 background.")
RETOUCH_REF_RULE = "The second image is a reference for this edit only: do not copy its background or framing."


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
    import os

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


# --- the tiny serializer -----------------------------------------------------------------------------

def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _toml_string(v)
    raise TypeError(f"unsupported value {v!r}")  # only strings and booleans are ever written


def toml_table(view: str, table: dict) -> str:
    """One `[[view]]` table: keys in the file's usual order, strings and booleans only."""
    lines = [f"[[{view}]]"]
    for key in STEP_KEYS:
        if key in table:
            lines.append(f"{key} = {_toml_value(table[key])}")
    return "\n".join(lines) + "\n"


FILE_HEADER = """\
# Retouches déclarées de {folder} : rejouées à chaque génération de la vue (voir le README, « Retouching »).
# Une étape par tableau [[vue]], appliquées dans l'ordre. Clés : instruction = "…" (retouche Gemini)
# ou fix = "color-fix" | "background-fix" (gratuit) ; ref = "1_face" ou un chemin ; model = "pro" | "flash" ;
# force = true pour accepter un résultat refusé par le contrôle.
"""


def dumps(folder: str, steps: dict[str, list[dict]]) -> str:
    """A whole file: the header, then the steps view by view."""
    parts = [FILE_HEADER.format(folder=folder)]
    for view in VIEWS:
        for table in steps.get(view.name, []):
            parts.append("\n" + toml_table(view.name, table))
    return "".join(parts)


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
    twice: with `force` it gets `force = true` (the operator accepts a refused result).
    """
    path = _check_target(settings, folder, view)
    table = {k: v for k, v in table.items() if v not in (None, "", False)}
    if force:
        table["force"] = True
    existing = load_adjustments(path)  # a malformed file is refused, with its line
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    last = (existing.get(view) or [None])[-1]
    if last is not None:
        same = {k: v for k, v in last.as_table().items() if k != "force"}
        if same == {k: v for k, v in table.items() if k != "force"}:
            if force and not last.force:
                atomic_write_bytes(path, _set_force(text, last).encode("utf-8"))
            return path
    if not text:
        new = dumps(folder, {view: [table]})
    else:
        new = text + ("" if text.endswith("\n") else "\n") + "\n" + toml_table(view, table)
    parse_adjustments(new, path)  # never write a file the pipeline would refuse
    atomic_write_bytes(path, new.encode("utf-8"))
    return path


def _set_force(text: str, step: Step) -> str:
    """`force = true` in the table of `step` (edits that table only; comments elsewhere kept)."""
    lines = text.splitlines(keepends=True)
    start = step.line  # the header's index + 1 = first line of the table's body
    end = start
    while end < len(lines) and not lines[end].lstrip().startswith("["):
        end += 1
    body = [ln for ln in lines[start:end] if not re.match(r"^\s*force\s*=", ln)]
    return "".join(lines[:start] + ["force = true\n"] + body + lines[end:])


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


# --- applying the steps (in the view's task) ---------------------------------------------------------

@dataclass
class StepsOutcome:
    image: object
    records: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    uncertain: bool = False
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    paid_calls: int = 0


def _request_image(img) -> tuple[bytes, str]:
    """The current image as sent: PNG (lossless) up to 2048 px, JPEG 92 when the PNG is too big."""
    from .gemini import JPEG_QUALITY, PASSTHROUGH_MAX_BYTES
    from .imaging import downscale, jpeg_bytes, png_bytes

    img = downscale(img.convert("RGB"), 2048)
    data = png_bytes(img)
    if len(data) <= PASSTHROUGH_MAX_BYTES:
        return data, "image/png"
    return jpeg_bytes(img, quality=JPEG_QUALITY), "image/jpeg"


def retouch_instruction(text: str, has_ref: bool) -> str:
    return f"{text}\n\n{RETOUCH_RULES}" + (f" {RETOUCH_REF_RULE}" if has_ref else "")


def check_retouch(before, after, *, ref=None, ref_is_photo: bool = False) -> tuple[bool, dict, str]:
    """Same garment, same colour? (accepted, values, French message with the values)."""
    from .qa import delta_e, flat_lay_garment, photo_garment, shape_iou

    lim = RETOUCH_LIMITS
    g0, g1 = flat_lay_garment(before.convert("RGB")), flat_lay_garment(after.convert("RGB"))
    if g1.lab is None or not g1.mask.any():
        return False, {"delta_e": None, "shape_iou": None}, "aucun vêtement trouvé sur l'image retouchée"
    if g0.lab is None or not g0.mask.any():
        return True, {"delta_e": None, "shape_iou": None}, ("vêtement de l'image précédente non mesurable : "
                                                            "retouche acceptée sans contrôle")
    de = delta_e(g0.lab, g1.lab)
    iou = shape_iou(g0.mask, g1.mask)
    values = {"delta_e": round(de, 2), "shape_iou": None if iou is None else round(iou, 3)}
    if iou is not None and iou < lim["shape_iou_min"]:
        return False, values, (f"la forme du vêtement a changé (autre type de vêtement ?) : silhouette IoU "
                               f"{iou:.2f} (min {lim['shape_iou_min']:g}), ΔE2000 {de:.1f}")
    if de <= lim["delta_e_max"]:
        return True, values, (f"même vêtement : ΔE2000 {de:.1f} (max {lim['delta_e_max']:g}), silhouette "
                              f"IoU {values['shape_iou']} (min {lim['shape_iou_min']:g})")
    if ref is not None:
        gr = photo_garment(ref) if ref_is_photo else flat_lay_garment(ref.convert("RGB"), own_grey=True)
        d0, d1 = delta_e(g0.lab, gr.lab), delta_e(g1.lab, gr.lab)
        values.update(delta_e_ref_before=None if d0 is None else round(d0, 2),
                      delta_e_ref_after=None if d1 is None else round(d1, 2))
        if d0 is not None and d1 is not None and d1 < d0 and d1 <= lim["ref_delta_e_max"]:
            return True, values, (f"couleur rapprochée de la référence : ΔE2000 à la référence {d0:.1f} → "
                                  f"{d1:.1f} (max {lim['ref_delta_e_max']:g}) ; changement {de:.1f}")
        return False, values, (f"la couleur du vêtement a changé : ΔE2000 {de:.1f} (max "
                               f"{lim['delta_e_max']:g}) sans se rapprocher de la référence (ΔE2000 "
                               f"{'—' if d0 is None else f'{d0:.1f}'} → {'—' if d1 is None else f'{d1:.1f}'})")
    return False, values, (f"la couleur du vêtement a changé : ΔE2000 {de:.1f} (max {lim['delta_e_max']:g}), "
                           f"silhouette IoU {values['shape_iou']}")


def _read_ref(settings, step: PlannedStep):
    from .imaging import open_image

    if step.ref_path is None:
        return None
    return open_image(step.ref_path, max_pixels=settings.max_pixels, max_side=2048,
                      what=f"l'image de référence de la retouche {step.index}")


def _gemini_step(settings, job, step: PlannedStep, current, ref_img, size) -> tuple[object, dict, bytes | None]:
    """(finished candidate, record fields) of one Gemini step, from the store or paid now."""
    from PIL import Image

    from .build import _now
    from .finishing import finish
    from .gemini import ImageRequest, nearest_aspect_ratio, prepare_image, shared_generator
    from .store import AnswerStore

    images = [_request_image(current)]
    if step.ref_path is not None:
        images.append(prepare_image(step.ref_path, max_pixels=settings.max_pixels))
    request = ImageRequest(model=step.model, images=tuple(images),
                           instruction=retouch_instruction(step.text, step.ref_path is not None),
                           aspect_ratio=nearest_aspect_ratio(*size),
                           image_size=job.config.get("image_size") or settings.image_size, seed=0)
    key = request.key()

    def pay():
        answer = shared_generator(settings).generate(request, folder=job.folder,
                                                     view=f"{job.view} (retouche {step.index})")
        return answer.data, {"mime": answer.mime, "model": request.model, "folder": job.folder,
                             "view": job.view, "step": step.index, "kind": "adjustment",
                             "input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens,
                             "cost_usd": answer.cost_usd, "seconds": answer.seconds,
                             "model_text": answer.model_text, "created_at": _now()}

    data, meta, from_store = AnswerStore(settings.state_dir / "answers").get_or_create(key, pay)
    rec = {"model": request.model, "request_key": key, "from_cache": from_store,
           "cost_usd": 0.0 if from_store else meta["cost_usd"], "input_tokens": meta.get("input_tokens", 0),
           "output_tokens": meta.get("output_tokens", 0), "model_text": meta.get("model_text", "")}
    try:
        raw = Image.open(io.BytesIO(data))
        raw.load()
    except Exception:
        raise GenerationError(f"La réponse de Gemini à la retouche {step.index} de {job.folder} / {job.view} "
                              f"n'est pas une image lisible : modifiez la consigne dans "
                              f"{ADJUSTMENTS_FILE}.")
    finished = finish(raw.convert("RGB"), size)
    rec["finishing_flags"] = list(finished.flags)
    return finished.image, rec


def apply_steps(settings, job, image, size: tuple[int, int]) -> StepsOutcome:
    """Run the view's steps in order on the finished base image (see the module docstring)."""
    from .colour_fixes import background_fix, color_transfer

    out = StepsOutcome(image=image)
    local = job.config.get("generator") != "gemini"
    for step in job.steps:
        label = f"retouche {step.index}"
        rec: dict = {"step": step.index, "kind": step.kind, ("instruction" if step.kind == "instruction"
                     else "fix"): step.text, "ref": step.ref_label, "force": step.force,
                     "model": step.model, "request_key": None, "from_cache": None, "cost_usd": 0.0}
        if step.kind == "instruction" and local:
            note = (f"{label} (« {_short(step.text)} ») non appliquée : le rendu local ne sait pas "
                    f"retoucher sur consigne (il faut GEMINI_API_KEY)")
            rec.update(status="skipped", why=note)
            out.records.append(rec)
            out.notes.append(note)
            out.uncertain = True
            continue
        ref_img = _read_ref(settings, step)
        if step.kind == "fix":
            if step.text == "color-fix":
                what = {"1_face": "la vue de face", "2_back": "la vue de dos", "3_detail_logo": "le détail",
                        "photo": "la photo"}.get(step.ref_label or "", step.ref_label or "la référence")
                res = color_transfer(out.image, ref_img, reference_is_photo=step.ref_is_photo, what=what)
            else:
                res = background_fix(out.image, size)
            rec.update(status="applied" if res.applied else "skipped", why=res.note,
                       metrics={k: v for k, v in res.metrics.items() if k != "finish"})
            if res.applied:
                out.image = res.image
            if res.uncertain:
                out.uncertain = True
                out.notes.append(f"{label} : {res.note}")
            out.records.append(rec)
            continue
        candidate, fields = _gemini_step(settings, job, step, out.image, ref_img, size)
        rec.update(fields)
        out.cost_usd += fields["cost_usd"]
        out.input_tokens += fields.get("input_tokens", 0)
        out.output_tokens += fields.get("output_tokens", 0)
        out.paid_calls += 0 if fields["from_cache"] else 1
        ok, values, message = check_retouch(out.image, candidate, ref=ref_img, ref_is_photo=step.ref_is_photo)
        rec["check"] = values
        if ok:
            rec.update(status="accepted", why=message)
            out.image = candidate
        elif step.force:
            rec.update(status="accepted", why=f"acceptée malgré le contrôle (force) : {message}")
            out.image = candidate
            out.notes.append(f"{label} acceptée malgré le contrôle (force) : {message}")
        else:
            why = (f"{label} (« {_short(step.text)} ») refusée, image précédente gardée : {message} ; "
                   f"pour l'accepter : force = true dans {ADJUSTMENTS_FILE} (doit adjust --force)")
            rec.update(status="refused", why=why)
            out.notes.append(why)
            out.uncertain = True
        if rec.get("finishing_flags") and rec["status"] == "accepted":
            out.notes.extend(f"{label} : {f}" for f in rec["finishing_flags"])
            out.uncertain = True
        out.records.append(rec)
    return out


def supersede_colour_check(qa: dict, records: list[dict]) -> dict:
    """A view whose garment colour was deliberately set by an applied `color-fix` is judged on that
    colour: the QA's "colour vs its photo" check, when it failed, passes if the fix landed within
    the QA's own colour limit of its reference (the values stay in the message). Other checks,
    `back_vs_face` included, are untouched."""
    from .qa import THRESHOLDS

    fixes = [r for r in records if r.get("fix") == "color-fix" and r.get("status") == "applied"]
    check = (qa.get("checks") or {}).get("colour")
    if not fixes or not check or check.get("passed"):
        return qa
    after = (fixes[-1].get("metrics") or {}).get("delta_e_after")
    lim = THRESHOLDS["colour_delta_e_max"]
    if after is None or after > lim:
        return qa
    check = {**check, "passed": True,
             "message": (f"couleur calée volontairement sur {fixes[-1].get('ref')} (retouche "
                         f"{fixes[-1].get('step')}, color-fix) : ΔE2000 à cette référence {after:.1f} "
                         f"(max {lim:g}) ; par rapport à la photo : {check.get('message')}")}
    checks = {**qa["checks"], "colour": check}
    return {**qa, "checks": checks, "verdict": "ok" if all(c["passed"] for c in checks.values()) else "held"}


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
