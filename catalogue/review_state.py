"""A person's decisions on views, tied to the image's content (`output/<folder>/review.json`).

An approval or a hold names the SHA-256 of the image it was given for: a regenerated image is a
new image and needs a new decision. The upload gate and the review page read this file.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

from .files import atomic_write_bytes

REVIEW_FILE = "review.json"
_lock = threading.Lock()  # the review page's handler threads write here


def _path(folder_dir: Path) -> Path:
    return Path(folder_dir) / REVIEW_FILE


def load(folder_dir: Path) -> dict:
    try:
        return json.loads(_path(folder_dir).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def decide(folder_dir: Path, view: str, sha256: str, state: str, note: str = "") -> None:
    """Record `state` ("approved" | "held") for this exact image of `view`."""
    if state not in ("approved", "held"):
        raise ValueError(state)
    with _lock:
        data = load(folder_dir)
        data[view] = {"state": state, "sha256": sha256, "note": note,
                      "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write_bytes(_path(folder_dir), (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def decision(folder_dir: Path, view: str, sha256: str) -> str | None:
    """"approved" / "held" when a person decided on exactly this image, else None."""
    entry = load(folder_dir).get(view) or {}
    return entry.get("state") if entry.get("sha256") == sha256 else None


def blocking_reason(folder_dir: Path, view: str, sha: str, sidecar: dict) -> str | None:
    """Why this image (`sha`) of `view` may not be published yet (French), or None."""
    decided = decision(folder_dir, view, sha)
    if decided == "approved":
        return None
    if decided == "held":
        note = (load(folder_dir).get(view) or {}).get("note")
        return f"retenue par une personne{f' ({note})' if note else ''}"
    qa = sidecar.get("qa") or {}
    if qa.get("verdict") == "held":
        failed = [c.get("message", name) for name, c in (qa.get("checks") or {}).items() if not c.get("passed")]
        return "contrôle qualité : " + " ; ".join(failed or ["échec"])
    return None
