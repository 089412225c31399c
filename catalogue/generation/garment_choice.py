"""The style image a view is actually made with: the graph load's choice, completed.

The task graph knows only what is cheap (core.garment_types). When a view is built (or `doit plan`
explains it) the gaps are filled here: the types of style images nobody declared are inferred from
their pixels (imaging.silhouette, cached by SHA-256), the product's category is read from the shop's
database (the same query as the product id lookup, memoised per process, recorded for the next graph
load) and its front photo's silhouette is inferred; then the same `decide` / `choose_style` as the
graph load pick the image. What was chosen and why goes to the sidecar (`style`, `garment`).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from ..core.errors import PipelineError
from ..core.garment_types import (DECLARATION_FILE, ImageTypes, ProductTypes, Source, StyleImage, choose_style,
                                  database_source, decide, inferred_source, label, needs_type, read_declaration,
                                  read_map_types)
from ..core.files import sha256_file
from ..core.jobs import ViewJob
from ..core.settings import Settings
from ..imaging.decode import open_image
from ..imaging.silhouette import infer_garment
from ..publishing.lookup import categories

INFER_SIDE = 800          # inference reads images at this long side (it works at 480)

_memo_lock = threading.Lock()
_categories: dict[tuple[str, str], dict | None] = {}   # (database url, folder) -> category, this process
_unreachable: set[str] = set()


def infer_image(settings: Settings, types: ImageTypes, path: Path) -> dict | None:
    """The inferred type of one image, from the cache or computed (and cached by SHA-256)."""
    entry = types.lookup(path, hash_missing=True)
    if entry:
        return entry
    try:
        sha = sha256_file(path)
        img = open_image(path, max_pixels=settings.max_pixels, what="l'image", max_side=INFER_SIDE)
    except (OSError, PipelineError):
        return None  # the view's own decoding says what is wrong with it
    entry = infer_garment(img).to_json()
    types.record(path, sha, entry)
    return entry


def typed_pool(settings: Settings, types: ImageTypes, pool: tuple[StyleImage, ...]) -> tuple[StyleImage, ...]:
    out = []
    for s in pool:
        if s.family is None:
            entry = infer_image(settings, types, s.path)
            s = StyleImage(s.path, entry["family"], "inferred") if entry else s
        out.append(s)
    return tuple(out)


def database_category(settings: Settings, folder: str, products: ProductTypes) -> tuple[dict | None, str]:
    """(category, note): read once per process and folder; the last one read when the base is out of reach."""
    if not settings.database_url:
        return None, ""
    key = (settings.database_url, folder)
    with _memo_lock:
        if key in _categories:
            return _categories[key], ""
        unreachable = settings.database_url in _unreachable
    if not unreachable:
        try:
            found = categories(settings, [folder])
        except PipelineError:
            with _memo_lock:
                _unreachable.add(settings.database_url)
        else:
            cat = found.get(folder)
            products.record_categories({folder: cat})
            with _memo_lock:
                _categories[key] = cat
            return cat, ""
    cached = products.category(folder)
    return cached, ("base de données injoignable : catégorie lue précédemment" if cached else "")


def prefetch_categories(settings: Settings, folders: list[str]) -> str:
    """`doit plan`: every folder's category in one query, recorded; returns a French note on failure."""
    if not settings.database_url or not folders:
        return ""
    try:
        found = categories(settings, folders)
    except PipelineError as exc:
        return f"catégories non relues ({exc})"
    found = {f: found.get(f) for f in folders}
    ProductTypes(settings.state_dir).record_categories(found)
    with _memo_lock:
        for f, cat in found.items():
            _categories[(settings.database_url, f)] = cat
    return ""


def product_type(settings: Settings, job: ViewJob, types: ImageTypes, products: ProductTypes):
    """(TypeChoice or None, notes) from every source, fresh."""
    sources: list[Source] = []
    notes = []
    if job.photo is not None:
        declared, _problem = read_declaration(job.photo.parent)  # a problem already failed the task
        if declared:
            sources.append(Source("declared", declared, f"déclaré dans {job.folder}/{DECLARATION_FILE}"))
    cat, note = database_category(settings, job.folder, products)
    if note:
        notes.append(note)
    db = database_source(cat)
    if db:
        sources.append(db)
    map_family = read_map_types(settings.products_map).get(job.folder)
    if map_family:
        sources.append(Source("map", map_family, "colonne type de PRODUCTS_MAP"))
    if job.photo is not None:
        inf = inferred_source(infer_image(settings, types, job.photo))
        if inf:
            sources.append(inf)
    return decide(sources), notes


def resolve_style(settings: Settings, job: ViewJob) -> tuple[ViewJob, dict, list[str]]:
    """(the job with the style image actually used, the sidecar's `style`/`garment` fields, French
    notes that make the view INCERTAIN)."""
    pool = job.style_pool
    if not pool or not needs_type(pool):
        choice = job.style_choice
        return job, {"style": _style_record(settings, job.style, choice.family if choice else None,
                                            choice.why if choice else "")}, []
    types = ImageTypes(settings.state_dir)
    products = ProductTypes(settings.state_dir)
    pool = typed_pool(settings, types, pool)
    garment, notes = product_type(settings, job, types, products)
    choice = choose_style(pool, job.folder, garment.family if garment else None, job.view)
    uncertain = [n for n in (garment.reason if garment and garment.uncertain else "", choice.uncertain) if n]
    record = {"style": _style_record(settings, choice.path, choice.family, choice.why),
              "garment": garment.to_json() if garment else None}
    if garment:
        record["style"]["why"] = f"{label(garment.family)} ({garment.why}) → {choice.why}"
    if notes:
        record["style"]["note"] = "; ".join(notes)
    return dataclasses.replace(job, style=choice.path), record, uncertain


def _style_record(settings: Settings, path: Path, family: str | None, why: str) -> dict:
    try:
        rel = path.resolve().relative_to(settings.refs_dir.resolve()).as_posix()
    except ValueError:
        rel = str(path)
    return {"path": rel, "family": family, "label": label(family) if family else None, "why": why}
