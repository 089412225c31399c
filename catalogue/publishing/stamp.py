"""The upload stamp, read without the network: is a reference up to date on the shop?

`needs_upload` is the upload task's doit `uptodate` check, called for every reference on every
`doit upload`: this module imports only the standard library and `catalogue.core` (no requests,
psycopg or PIL), so a run with nothing to send loads none of them.

The stamp `output/<folder>/upload.json` is written by `upload.py` only after the read-back showed
exactly one image of ours per view, in order: `{product_id, reference, mode, backend, uploaded_at,
images: [{view, image_id, sha256, url, [sent_sha256, reencoded]}]}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..core.files import sha256_file
from ..core.paths import INTENT_FILE, STAMP_FILE, sidecar_path
from ..core.views import VIEWS, ViewSpec


@dataclass
class LocalView:
    spec: ViewSpec
    path: Path
    sha256: str
    sidecar: dict | None

    @property
    def name(self) -> str:
        return self.spec.name


def safe_url(url: str) -> str:
    """The URL without any user:password part."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def present_views(folder_dir: Path, wanted: tuple[str, ...] | None = None) -> list[LocalView]:
    """The finished views in `folder_dir`; with `wanted`, only those the reference still has (a
    2_back left over from a removed back photo must not go back online)."""
    views = []
    for spec in VIEWS:
        if wanted is not None and spec.name not in wanted:
            continue
        path = folder_dir / spec.filename
        if path.is_file():
            views.append(LocalView(spec, path, sha256_file(path), read_json(sidecar_path(path))))
    return views


def stamp_matches(stamp: dict | None, views: list[LocalView], settings) -> bool:
    """The last upload sent exactly these images, to this backend."""
    if not stamp or not isinstance(stamp.get("images"), list):
        return False
    if stamp.get("backend") != safe_url(settings.backend_url):
        return False  # e.g. tried on scripts/local_shop.py, now pointed at the real shop
    try:
        stamped = {img["view"]: img["sha256"] for img in stamp["images"]}
    except (KeyError, TypeError):
        return False
    return bool(views) and stamped == {v.name: v.sha256 for v in views}


def needs_upload(settings, folder: str, views: tuple[str, ...] | None = None) -> bool:
    """True when the reference has something to send or finish: a pending intent, no stamp, or a
    finished view whose content (SHA-256) differs from what was last uploaded. No network.
    `views`: the views the reference has now (default: every view file present)."""
    folder_dir = Path(settings.output_dir) / folder
    if (folder_dir / INTENT_FILE).exists():
        return True
    if not folder_dir.is_dir():
        return True          # upload_reference says « Dossier introuvable »
    return not stamp_matches(read_json(folder_dir / STAMP_FILE), present_views(folder_dir, views), settings)
