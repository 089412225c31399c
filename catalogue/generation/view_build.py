"""The action of one view task: inputs -> generator (or stored answer) -> finishing -> files.

Order of operations is what keeps money and data safe:
1. a view whose sidecar already matches its inputs is left alone (doit's state may be lost);
2. the generator's raw answer is looked up by request key before any paid call, stored after it;
   the declared retouches (`adjustments.apply_steps`) follow, each answer stored the same way;
3. the finished PNG and its sidecar are written atomically, PNG first (a crash in between leaves
   a sidecar that no longer matches: the next run re-finishes from the stored answer, for free).
"""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from ..core.files import sha256_bytes
from ..core.jobs import ViewJob
from ..core.provenance import (hash_inputs, inputs_unchanged, is_current, now_iso, outputs_stat, read_sidecar,
                               write_sidecar)
from ..core.settings import Settings
from ..core.views import VIEW_NAMES, VIEWS_BY_NAME
from ..imaging.checks import check_view
from ..imaging.decode import open_image, save_png_atomic
from .garment_choice import resolve_style
from .image_request import ImageRequest, nearest_aspect_ratio, prepare_image
from .local_renderer import FacePhoto, render_view
from .paid_call import paid_image
from .prompts import instruction_for
from .retouches import apply_steps, supersede_colour_check

# The local renderer reads photos at this multiple of the output's long side: the garment fills
# more of the output than of the photo, so this keeps full detail without decoding 24 Mpx.
LOCAL_WORK_SCALE = 1.6


# Long side of what Gemini returns per IMAGE_SIZE: finished views are never larger (a style
# reference photographed at 3000×4000 would otherwise give 12 Mpx views, over the backend's 10 MB).
IMAGE_SIZE_LONG_SIDE = {"1K": 1024, "2K": 2048, "4K": 4096}


def output_size(settings: Settings, style: Path) -> tuple[int, int]:
    """OUTPUT_SIZE when set, else the style reference's upright size, capped at IMAGE_SIZE."""
    if settings.output_size:
        return settings.output_size
    w, h = _style_size(settings, style)
    cap = IMAGE_SIZE_LONG_SIDE[settings.image_size]
    scale = min(1.0, cap / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _style_size(settings: Settings, style: Path) -> tuple[int, int]:
    """The style reference's upright size (header read only)."""
    try:
        with Image.open(style) as img:
            w, h = img.size
            rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # unreadable: open_image will say so in French
        open_image(style, max_pixels=settings.max_pixels, what="la référence de style")
        raise
    return (h, w) if rotated else (w, h)


def _render_local(settings: Settings, job: ViewJob, size: tuple[int, int]):
    upstream = VIEWS_BY_NAME[job.view].source
    what = f"la vue {upstream}" if upstream in VIEW_NAMES else "la photo"
    source = open_image(job.source, max_pixels=settings.max_pixels, what=what, max_side=_work_side(size))
    style = open_image(job.style, max_pixels=settings.max_pixels, what="la référence de style", max_side=1600)
    extra = dict(job.extra_inputs)
    photo = None
    face_style = _style_used(job.source) if "photo" in extra else None
    if face_style is not None:  # the detail: the front photo decoded as for 1_face, and at full resolution
        work = open_image(extra["photo"], max_pixels=settings.max_pixels,
                          max_side=_work_side(output_size(settings, face_style)))
        full = open_image(extra["photo"], max_pixels=settings.max_pixels)
        photo = FacePhoto(work=work, full=full, face_style=open_image(
            face_style, max_pixels=settings.max_pixels, what="la référence de style", max_side=1600))
    result = render_view(job.view, source, style, out_size=size, photo=photo)
    return result.image, {"decoded": {job.source: source, job.style: style}, "generator": "local",
                          "uncertain": result.uncertain, "notes": list(result.notes),
                          "metrics": result.metrics, "from_cache": False, "cost_usd": 0.0,
                          "input_tokens": 0, "output_tokens": 0}


def _style_used(view_png: Path) -> Path | None:
    """The style reference the finished view `view_png` was made with (its sidecar), if still there."""
    raw = (((read_sidecar(view_png) or {}).get("inputs") or {}).get("style") or {}).get("path")
    return Path(raw) if raw and Path(raw).is_file() else None


def _work_side(size: tuple[int, int]) -> int:
    """The long side the local renderer reads a photo at for a view of `size`."""
    return max(1200, int(LOCAL_WORK_SCALE * max(size)))


def _generate_gemini(settings: Settings, job: ViewJob, size: tuple[int, int]):
    images = tuple(prepare_image(p, max_pixels=settings.max_pixels) for p in job.base_inputs.values())
    request = ImageRequest(
        model=job.config["model"], images=images,
        instruction=instruction_for(job.view, has_anchor=job.anchor is not None),
        aspect_ratio=nearest_aspect_ratio(*size), image_size=job.config["image_size"],
        seed=job.config["seed"])
    paid = paid_image(settings, request, folder=job.folder, view=job.view, size=size,
                      unreadable=f"La réponse de Gemini pour {job.folder} / {job.view} n'est pas une image "
                                 f"lisible : relancez avec un nouveau tirage (doit reroll).")
    finished = paid.finished
    return finished.image, {"generator": "gemini", "uncertain": bool(finished.flags), "notes": list(finished.flags),
                            "metrics": finished.metrics, **paid.record(),
                            **({"notice": paid.note} if paid.note else {})}


# QA measures at a reduced size: reading the inputs at this long side is plenty.
QA_READ_SIDE = 1024


def _quality(settings: Settings, job: ViewJob, image, size: tuple[int, int], decoded: dict) -> dict:
    """The quality checks of DESIGN "Quality gate": a failing view is kept but held from upload.
    `decoded`: inputs the generator already decoded (path -> image), not read again."""
    def read(path: Path | None):
        if path in decoded:
            return decoded[path]
        if path is None or not path.exists():
            return None
        return open_image(path, max_pixels=settings.max_pixels, max_side=QA_READ_SIDE)

    # Back vs face only when the face is an input of the back (Gemini's colour anchor): otherwise
    # the face may be missing or older than this back, and nothing would re-check it.
    face = read(job.anchor) if job.view == "2_back" else None
    report = check_view(job.view, image, source=read(job.source), style=read(job.style), face=face,
                        expected_size=size)
    return report.to_json()


def _made(job: ViewJob) -> dict:
    """The value doit keeps for `ViewCurrent`: the outputs as written."""
    return {"made": outputs_stat(job.output)}


def build_view(settings: Settings, job: ViewJob) -> dict:
    """Make one view; returns the values doit keeps and the progress line shows."""
    started = time.monotonic()
    # The style image of the product's garment type (the graph load's guess, completed here).
    job, style_record, type_notes = resolve_style(settings, job)
    digest, files, made_from = hash_inputs(job.config, job.inputs)
    if is_current(job.output, digest):
        return {"outcome": "uptodate", "seconds": 0.0, "style": str(job.style), **_made(job)}

    size = output_size(settings, job.style)
    if job.config["generator"] == "gemini":
        image, info = _generate_gemini(settings, job, size)
    else:
        image, info = _render_local(settings, job, size)
    if type_notes:  # never a silent choice across garment types
        info["notes"] = type_notes + list(info.get("notes", []))
        info["uncertain"] = True
    adjustments = None
    if job.steps:  # declared retouches (adjustments.toml), after generation + finishing, before QA

        done = apply_steps(settings, job, image, size)
        image, adjustments = done.image, done.records
        info["notes"] = list(info.get("notes", [])) + done.notes
        info["uncertain"] = bool(info.get("uncertain")) or done.uncertain
        info["cost_usd"] = round(info.get("cost_usd", 0.0) + done.cost_usd, 6)
        info["input_tokens"] = info.get("input_tokens", 0) + done.input_tokens
        info["output_tokens"] = info.get("output_tokens", 0) + done.output_tokens
        info["from_cache"] = bool(info.get("from_cache")) and done.paid_calls == 0
    qa = _quality(settings, job, image, size, info.pop("decoded", {}))
    if adjustments:
        qa = supersede_colour_check(qa, adjustments)
    notice = info.pop("notice", "")
    inputs_unchanged(job.inputs, made_from)  # made from the files as they are now, or nothing written
    png = save_png_atomic(image, job.output)
    seconds = round(time.monotonic() - started, 3)
    write_sidecar(job.output, {
        "view": job.view, "folder": job.folder, "inputs": files, "inputs_digest": digest,
        "config": job.config, "prompt_version": job.config.get("prompt_version"),
        "model": info.get("model"), "seed": job.config.get("seed", 0),
        "output_sha256": sha256_bytes(png), "width": image.width, "height": image.height,
        "seconds": seconds, "created_at": now_iso(),
        "qa": qa, **style_record,
        **({"adjustments": adjustments} if adjustments is not None else {}),
        **{k: v for k, v in info.items() if k != "model"},
    })
    held = [c["message"] for c in qa["checks"].values() if not c["passed"]]
    return {**_made(job), **({"notice": notice} if notice else {}),
            "outcome": "cached" if info.get("from_cache") else "generated", "seconds": seconds,
            "cost_usd": info.get("cost_usd", 0.0), "uncertain": bool(info.get("uncertain")),
            "notes": "; ".join(info.get("notes", [])), "generator": info["generator"],
            "held": "; ".join(held), "style": str(job.style)}
