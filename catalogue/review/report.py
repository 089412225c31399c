"""`doit report`: the review page as a static `output/index.html`, to share."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from ..core.discovery import Reference, StyleRefs
from ..core.errors import PipelineError
from ..core.files import atomic_write_bytes
from ..core.paths import report_path
from ..core.settings import Settings
from .page import render_page
from .rows import Links, ShaCache, build_row, counts, thumbnail

REPORT_PHOTO_SIDE = 240               # embedded in the static report (data: URIs), kept small
REPORT_STYLE_SIDE = 120


def _data_uri(settings: Settings, path: Path | None, side: int, what: str) -> str | None:
    if path is None:
        return None
    try:
        data = thumbnail(settings, path, side, what=what)
    except (PipelineError, OSError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _report_links(settings: Settings) -> Links:
    def rel(ref, view, sha):  # output/index.html -> output/<folder>/<view>.png
        return f"{quote(ref.folder)}/{view}.png"
    return Links(
        photo=lambda ref, role, path: _data_uri(settings, path, REPORT_PHOTO_SIDE, "la photo"),
        style=lambda ref, view, path: _data_uri(settings, path, REPORT_STYLE_SIDE, "la référence de style"),
        view_thumb=rel, view_full=rel,
    )


def write_report(settings: Settings, refs: list[Reference]) -> Path:
    """`doit report`: the page as a static `output/index.html` (actions disabled) for sharing.

    Everything but the views is inside the file (data, CSS, JS, small photo and style thumbnails);
    the views are referenced relatively (`<folder>/<view>.png`), so the output folder can be
    shared or opened as it is.
    """
    styles, shas, links = StyleRefs(settings.refs_dir), ShaCache(), _report_links(settings)
    rows = [build_row(settings, ref, styles, shas, links, i) for i, ref in enumerate(refs)]
    boot = {"static": True, "data": {
        "ok": True, "static": True, "project": settings.root.name, "generator": settings.generator,
        "model": settings.model, "reroll_available": False, "adjust_available": False,
        "reroll_note": "", "adjust_note": "",
        "generated_at": datetime.now(timezone.utc).astimezone().strftime("%d/%m/%Y à %H:%M"),
        "rows": rows, "counts": counts(rows), "jobs": []}}
    path = report_path(settings)
    atomic_write_bytes(path, render_page(boot).encode("utf-8"))
    return path


def report_action(settings: Settings, refs: list[Reference]):
    path = write_report(settings, refs)
    print(f"Rapport écrit : {path} (ouvrez-le dans un navigateur ; partagez le dossier {path.parent}).", flush=True)
