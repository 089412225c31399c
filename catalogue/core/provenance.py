"""The provenance sidecar written next to every finished view (`output/<folder>/<view>.json`).

It says where the image comes from (inputs' SHA-256, generator, model, prompt version, seed,
tokens, cost, time, QA verdict) and lets a run recognise a view that is already up to date even
when doit's own state is lost: `inputs_digest` covers everything that determines the output.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from .files import atomic_write_bytes, sha256_file
from .paths import sidecar_path


def read_sidecar(view_png: Path) -> dict | None:
    try:
        return json.loads(sidecar_path(view_png).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def write_sidecar(view_png: Path, data: dict) -> None:
    atomic_write_bytes(sidecar_path(view_png),
                       (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def inputs_digest(config: dict, inputs: dict[str, Path]) -> tuple[str, dict[str, dict]]:
    """Digest of the settings that shape a view and of its input files' content.

    Returns (digest, {role: {"path", "sha256"}}) for the sidecar.
    """
    files = {role: {"path": str(path), "sha256": sha256_file(path)} for role, path in sorted(inputs.items())}
    payload = json.dumps({"config": config, "inputs": {r: f["sha256"] for r, f in files.items()}},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest(), files


def is_current(view_png: Path, digest: str) -> bool:
    """True when `view_png` exists, was made from exactly these inputs and is intact."""
    meta = read_sidecar(view_png)
    if not meta or meta.get("inputs_digest") != digest or not view_png.exists():
        return False
    return meta.get("output_sha256") == sha256_file(view_png)


def now_iso() -> str:
    """The timestamp written in sidecars and answer metadata (UTC, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
