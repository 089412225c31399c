"""What the review page and the report show about each reference: one JSON row per reference
(photos, style references used, views with their state and checks, cost), and the thumbnails."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..core import view_state
from ..core.discovery import Reference, StyleRefs
from ..core.files import atomic_write_bytes, sha256_file
from ..core.paths import stamp_path, thumbs_dir
from ..core.provenance import read_sidecar
from ..core.settings import Settings
from ..core.view_state import LABELS as STATE_LABELS
from ..core.view_state import reference_state
from ..core.views import VIEWS
from ..imaging.decode import jpeg_bytes, open_image

PHOTO_SIDE = 360                      # thumbnails' long side (shown ~150 px wide: sharp on 2x screens)
STYLE_SIDE = 200
VIEW_SIDE = 900                       # the views are shown ~320 px wide; click opens the PNG itself

CHECK_LABELS = {
    "decode": "lecture",
    "size": "taille",
    "contrast": "contraste",
    "garment_share": "vêtement présent",
    "border": "fond #F3F3F3",
    "colour": "couleur",
    "style_copy": "copie du style",
    "back_vs_face": "dos / face",
    "framing": "cadrage",
}

PHOTO_LABELS = {"face": "photo face", "back": "photo dos"}


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


class ShaCache:
    """SHA-256 of files, recomputed only when size or mtime change (the page reloads often)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, int, str]] = {}

    def get(self, path: Path) -> str | None:
        try:
            st = path.stat()
        except OSError:
            return None
        key = str(path)
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
            return hit[2]
        try:
            sha = sha256_file(path)
        except OSError:
            return None
        with self._lock:
            self._cache[key] = (st.st_mtime_ns, st.st_size, sha)
        return sha


def _value_text(value) -> str:
    """A check's measured value, short (the message says it in full)."""
    def one(v):
        if isinstance(v, bool):
            return "oui" if v else "non"
        if isinstance(v, float):
            return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:.0f}"
        if isinstance(v, (list, tuple)):
            return "(" + ", ".join(one(x) for x in v[:3]) + ")"
        return "—" if v is None else str(v)
    if isinstance(value, (list, tuple)):
        return " / ".join(one(v) for v in value[:3]) + (" …" if len(value) > 3 else "")
    return one(value)


def _fr(x, n: int = 1) -> str:
    """A measure in French: « 3,2 »."""
    return f"{float(x):.{n}f}".replace(".", ",")


def _fr_g(x) -> str:
    """A limit in French, as short as it is: « 8 », « 0,85 »."""
    return f"{float(x):g}".replace(".", ",")


def _pct(x, n: int = 0) -> str:
    return f"{float(x) * 100:.{n}f} %".replace(".", ",")


def _signed_pct(x) -> str:
    return f"{float(x) * 100:+.0f} %".replace("-", "−")


def _limits(threshold: str) -> list[float]:
    """The numbers of a check's threshold text (« ΔE2000 ≤ 7 » -> [7]; the 2000 of ΔE2000 is a name)."""
    text = re.sub(r"ΔE(2000)?", "", threshold)
    return [float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)]


def check_chip(name: str, label: str, value, threshold: str) -> str:
    """What a check measured against what limit, in French words: « couleur : écart 3,2 (max 7) »."""
    threshold = str(threshold or "")
    if threshold == "non applicable":
        return f"{label} : non applicable"
    if value is None:
        return f"{label} : non mesurable"
    lim = _limits(threshold)
    try:
        if name == "decode":
            return f"{label} : image lisible ({value[0]}×{value[1]})"
        if name == "size":
            size = f"{value[0]}×{value[1]}"
            if threshold.startswith("="):
                return f"{label} : {size} (attendu {threshold[1:].strip()})"
            return f"{label} : {size}, proportions de la référence (écart max {_fr_g(lim[-1])})"
        if name == "contrast":
            return f"{label} : écart-type {_fr(value)} (min {_fr_g(lim[-1])})"
        if name == "garment_share":
            return f"{label} : {_pct(value)} de l'image (min {_pct(lim[-1])})"
        if name == "border":
            return (f"{label} : écart {_fr(value[0])} (max {_fr_g(lim[0])}), {_pct(value[1])} du bord conforme "
                    f"(min {_pct(lim[1])})")
        if name in ("colour", "back_vs_face"):
            de = value[0] if isinstance(value, (list, tuple)) else value
            return f"{label} : écart {_fr(de)} (max {_fr_g(lim[-1])})"
        if name == "style_copy":
            de_style, de_src, dup = value[0], value[1], value[2]
            parts = []
            if dup is not None:
                parts.append(f"écart à la référence {_fr(dup)} (min {_fr_g(lim[-1])})")
            if de_style is not None and de_src is not None:
                parts.append(f"couleur à {_fr(de_src)} de la source, à {_fr(de_style)} de la référence "
                             f"(marge {_fr_g(lim[0])})")
            return f"{label} : " + (", ".join(parts) or "non mesurable")
        if name == "framing":
            dx, dy, size, margin = value[:4]
            return (f"{label} : centre décalé de {_signed_pct(dx)} / {_signed_pct(dy)} (max {_pct(lim[0])}), "
                    f"taille {_pct(size)} ({_pct(lim[1])}–{_pct(lim[2])}), marge {_pct(margin, 1)} "
                    f"(min {_pct(lim[3])})")
    except (TypeError, ValueError, IndexError, KeyError):
        pass  # an older sidecar's shape: said plainly below
    return f"{label} : {_value_text(value)}" + (f" (seuil {threshold})" if threshold else "")


def _checks(sidecar: dict | None) -> list[dict]:
    qa = (sidecar or {}).get("qa") or {}
    out = []
    for name, c in (qa.get("checks") or {}).items():
        if not isinstance(c, dict):
            continue
        label = CHECK_LABELS.get(name, name)
        out.append({"name": name, "label": label, "passed": bool(c.get("passed")),
                    "value": _value_text(c.get("value")), "threshold": str(c.get("threshold") or ""),
                    "chip": check_chip(name, label, c.get("value"), c.get("threshold")),
                    "message": str(c.get("message") or "")})
    out.sort(key=lambda c: c["passed"])  # failed first
    return out


RETOUCH_STATUS = {"accepted": "appliquée", "applied": "appliquée", "refused": "refusée", "skipped": "non appliquée"}


def _retouches(sidecar: dict | None) -> list[dict]:
    """The view's declared retouches as the last build left them (sidecar `adjustments`)."""
    out = []
    for rec in (sidecar or {}).get("adjustments") or []:
        if not isinstance(rec, dict):
            continue
        status = str(rec.get("status") or "")
        out.append({"step": rec.get("step"), "text": str(rec.get("instruction") or rec.get("fix") or ""),
                    "status": status, "status_label": RETOUCH_STATUS.get(status, status),
                    "why": str(rec.get("why") or ""), "cost_usd": float(rec.get("cost_usd") or 0.0)})
    return out


def style_path(settings: Settings, styles: StyleRefs, folder: str, view: str, sidecar: dict | None) -> Path | None:
    """The style reference used for this view: the sidecar's input when it lies in REFS_DIR (a
    sidecar is not trusted with an arbitrary path), else the one the pipeline would choose now."""
    raw = (((sidecar or {}).get("inputs") or {}).get("style") or {}).get("path")
    if raw:
        try:
            path = Path(raw).resolve()
            if path.is_relative_to(settings.refs_dir.resolve()) and path.is_file():
                return path
        except (OSError, ValueError):
            pass
    return styles.for_view(view, folder)


@dataclass
class Links:
    """How the page reaches each image: server URLs, or relative paths / data: URIs in the report."""

    photo: callable
    style: callable
    view_thumb: callable
    view_full: callable


def server_links() -> Links:
    def q(s):
        return quote(s, safe="")
    return Links(
        photo=lambda ref, role, path: f"/img/photo/{q(ref.folder)}/{role}?v={_mtime_tag(path)}",
        style=lambda ref, view, path: f"/img/style/{q(ref.folder)}/{view}?v={_mtime_tag(path)}",
        view_thumb=lambda ref, view, sha: f"/img/view/{q(ref.folder)}/{view}?v={sha[:12]}",
        view_full=lambda ref, view, sha: f"/img/view/{q(ref.folder)}/{view}?full=1&v={sha[:12]}",
    )


def _mtime_tag(path: Path) -> str:
    try:
        st = path.stat()
        return f"{st.st_mtime_ns:x}{st.st_size:x}"
    except OSError:
        return "0"


def build_row(settings: Settings, ref: Reference, styles: StyleRefs, shas: ShaCache, links: Links,
              index: int = 0) -> dict:
    """Everything the page shows about one reference (JSON-ready)."""
    folder_dir = settings.output_dir / ref.folder
    review = view_state.load(folder_dir) if folder_dir.is_dir() else {}
    stamp = _read_json(stamp_path(settings, ref.folder))
    views, states, cost, generators = [], [], 0.0, []
    expected = ref.views if not ref.problem else ()
    for spec in VIEWS:
        name = spec.name
        png = folder_dir / spec.filename
        if name not in expected:
            why = ("pas de photo de dos" if not ref.problem and spec.source == "back" else "")
            views.append({"view": name, "label": spec.label, "state": "absent", "state_label": why or
                          STATE_LABELS["absent"], "expected": False})
            continue
        sha = shas.get(png) if png.is_file() else None
        sidecar = read_sidecar(png) if sha else None
        st = view_state.view_state(sha, sidecar, review, stamp, name)
        states.append(st)
        style = style_path(settings, styles, ref.folder, name, sidecar)
        entry = {"view": name, "label": spec.label, "expected": True, "state": st.state,
                 "state_label": STATE_LABELS[st.state], "by": st.by, "reason": st.reason,
                 "needs_decision": st.needs_decision, "sha256": sha,
                 "style": ({"url": links.style(ref, name, style), "name": style.name,
                            "why": str(((sidecar or {}).get("style") or {}).get("why") or "")} if style else None)}
        if sha:
            entry.update(thumb=links.view_thumb(ref, name, sha), full=links.view_full(ref, name, sha))
        if sidecar:
            c = float(sidecar.get("cost_usd") or 0.0)
            cost += c
            gen = sidecar.get("generator") or "?"
            model = sidecar.get("model")
            label = f"{gen} · {model}" if model else gen
            if label not in generators:
                generators.append(label)
            qa = sidecar.get("qa") or {}
            entry.update(cost_usd=round(c, 4), generator=gen, model=model, seed=sidecar.get("seed"),
                         created_at=sidecar.get("created_at"), uncertain=bool(sidecar.get("uncertain")),
                         notes=[str(n) for n in sidecar.get("notes") or []],
                         qa_verdict=qa.get("verdict"), checks=_checks(sidecar), retouches=_retouches(sidecar),
                         width=sidecar.get("width"), height=sidecar.get("height"))
        elif sha:
            entry.update(checks=[], notes=["fiche de provenance absente ou illisible : régénérez la vue"])
        views.append(entry)
    state = reference_state(states, ref.problem)
    photos = []
    for role in ("face", "back"):
        path = ref.photos.get(role)
        if path is not None:
            photos.append({"role": role, "label": PHOTO_LABELS[role], "name": path.name,
                           "url": links.photo(ref, role, path)})
    return {"folder": ref.folder, "index": index, "problem": ref.problem, "state": state,
            "state_label": STATE_LABELS[state],
            "needs_decision": any(s.needs_decision for s in states),
            "cost_usd": round(cost, 4), "generators": generators, "photos": photos, "views": views,
            "uploaded_at": (stamp or {}).get("uploaded_at")}


def counts(rows: list[dict]) -> dict:
    counts = {k: 0 for k in STATE_LABELS}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    counts["to_decide"] = sum(1 for r in rows if r["needs_decision"])
    counts["total"] = len(rows)
    counts["cost_usd"] = round(sum(r["cost_usd"] for r in rows), 4)
    return counts


# --- thumbnails ---------------------------------------------------------------------------------

def thumbnail(settings: Settings, path: Path, side: int, *, what: str = "la photo",
              cache: bool = True) -> bytes:
    """A JPEG of `path`, upright (EXIF), long side at most `side`; cached in output/.state/thumbs.

    Raises PipelineError (French) when the image cannot be read.
    """
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{side}".encode()).hexdigest()
    cached = thumbs_dir(settings) / f"{key[:32]}.jpg"
    if cache:
        try:
            return cached.read_bytes()
        except OSError:
            pass
    img = open_image(path, max_pixels=settings.max_pixels, what=what, max_side=side)
    data = jpeg_bytes(img, quality=86)
    if cache:
        try:
            atomic_write_bytes(cached, data)
        except OSError:
            pass  # a read-only output folder only costs speed
    return data
