"""The one state model of a view, and a person's decisions on views (`output/<folder>/review.json`).

A view is, in order of precedence:

    missing    not made yet
    held       held by a person (review page, `doit review`), or by a failed quality check
    uploaded   this exact image is online (the upload stamp names its SHA-256)
    approved   a person approved this exact image
    uncertain  made, but the generator or a retouch flagged it for a look (sidecar `uncertain`)
    new        made, checks passed, nobody looked at it

Nothing goes online that nobody looked at: a held view and an uncertain view both block their
reference's upload until a person approves that exact image (`blocks_upload`). An approval or a
hold names the SHA-256 of the image it was given for: a regenerated image is a new image and needs
a new decision. The run's lines, the upload gate, the review page and the
report all read the state from here, with the same French words (`LABELS`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .files import atomic_write_bytes
from .paths import review_path

LABELS = {
    "missing": "à générer",
    "new": "nouveau",
    "uncertain": "incertain",
    "held": "retenu",
    "approved": "approuvé",
    "uploaded": "envoyé",
    "problem": "problème",
    "absent": "sans objet",
}
# The words of the run's lines (reporter) for a view that needs a look.
RUN_UNCERTAIN = "INCERTAIN (pas d'envoi avant approbation)"
RUN_HELD = "RETENUE (pas d'envoi avant vérification)"

_lock = threading.Lock()  # the review page's handler threads write here


@dataclass(frozen=True)
class ViewState:
    state: str                  # a key of LABELS
    by: str | None = None       # "person" | "qa" | "upload" | "generator" | None: who put it there
    reason: str = ""            # French: why it is held or uncertain

    @property
    def label(self) -> str:
        return LABELS[self.state]

    @property
    def needs_decision(self) -> bool:
        """Nobody has looked at this image yet, or only the quality gate has."""
        return self.state in ("new", "uncertain") or (self.state == "held" and self.by == "qa")

    @property
    def blocks_upload(self) -> bool:
        """Held (by a person or the quality gate) or uncertain: a person must approve it first."""
        return self.state in ("held", "uncertain")


def failed_checks(sidecar: dict | None) -> list[str]:
    qa = (sidecar or {}).get("qa") or {}
    return [c.get("message") or name for name, c in (qa.get("checks") or {}).items()
            if isinstance(c, dict) and not c.get("passed")]


def view_state(image_sha: str | None, sidecar: dict | None, review: dict | None,
               stamp: dict | None, view: str) -> ViewState:
    """The state of one view, from the image's SHA-256 and the files that speak about it.

    `review` is `output/<folder>/review.json` (a person's decisions), `stamp` is `upload.json`.
    """
    if not image_sha:
        return ViewState("missing")
    entry = (review or {}).get(view) or {}
    decided = entry.get("state") if entry.get("sha256") == image_sha else None
    if decided == "held":
        note = entry.get("note") or ""
        return ViewState("held", "person", f"retenue par une personne{f' ({note})' if note else ''}")
    stamped = {img.get("view"): img.get("sha256") for img in (stamp or {}).get("images") or []
               if isinstance(img, dict)}
    if stamped.get(view) == image_sha:
        return ViewState("uploaded", "upload")
    if decided == "approved":
        return ViewState("approved", "person")
    qa = (sidecar or {}).get("qa") or {}
    if qa.get("verdict") == "held":
        return ViewState("held", "qa", "contrôle qualité : " + " ; ".join(failed_checks(sidecar) or ["échec"]))
    if (sidecar or {}).get("uncertain"):
        notes = [str(n) for n in (sidecar or {}).get("notes") or []]
        return ViewState("uncertain", "generator", "incertaine, à vérifier : " + (" ; ".join(notes) or "sans précision"))
    return ViewState("new")


def reference_state(states: list[ViewState], problem: str | None = None) -> str:
    """The state of a reference from its views' states: the least advanced view wins."""
    if problem:
        return "problem"
    if not states or any(s.state == "missing" for s in states):
        return "missing"
    for state in ("held", "uncertain", "new", "approved"):
        if any(s.state == state for s in states):
            return state
    return "uploaded"


# --- a person's decisions -------------------------------------------------------------------------

def load(folder_dir: Path) -> dict:
    try:
        data = json.loads(review_path(Path(folder_dir)).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def decide(folder_dir: Path, view: str, sha256: str, state: str, note: str = "") -> None:
    """Record `state` ("approved" | "held") for this exact image of `view`."""
    if state not in ("approved", "held"):
        raise ValueError(state)
    with _lock:
        data = load(folder_dir)
        data[view] = {"state": state, "sha256": sha256, "note": note,
                      "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write_bytes(review_path(Path(folder_dir)),
                           (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def decision(folder_dir: Path, view: str, sha256: str) -> str | None:
    """"approved" / "held" when a person decided on exactly this image, else None."""
    entry = load(folder_dir).get(view) or {}
    return entry.get("state") if entry.get("sha256") == sha256 else None


def blocking_reason(folder_dir: Path, view: str, sha: str, sidecar: dict) -> str | None:
    """Why this image (`sha`) of `view` may not be published yet (French), or None."""
    st = view_state(sha, sidecar, load(folder_dir), None, view)
    return st.reason if st.blocks_upload else None
