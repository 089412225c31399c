"""The review page: a person checks a season of references and decides, keyboard first.

`doit review` calls `serve()`: a page on 127.0.0.1 (stdlib `ThreadingHTTPServer`, a small JSON API and
one HTML page with vanilla JS, `catalogue/review_page/`). One row per reference: the raw photos, the
style references used (from the sidecars' inputs), the three views, each quality check's value and
verdict, cost, generator and model, and a state per view and per reference (`view_state`).

Actions (POST, JSON): approve or hold a view or the whole reference (`review_state.decide`, tied to the
image's SHA-256), re-roll a view (`reroll.bump_seed`, then `python -m doit generate:<folder>` in the
project root), write an adjustment instruction (`adjustments.record_step`, then the same regeneration).
Regenerations run one at a time in the background; the page shows their progress and reloads the
reference when they finish.

`doit report` calls `write_report()`: the same page as a static `output/index.html` (data embedded,
actions disabled, views referenced relatively, photo and style thumbnails embedded) for sharing.

API (every answer is JSON; errors are `{"ok": false, "error": "<French message>"}`):

    GET  /                                 the page
    GET  /api/state                        {"rows": [...], "counts": {...}, "jobs": [...], ...}
    GET  /api/ref/<folder>                 one row
    GET  /api/jobs                         the regenerations (queued, running, finished)
    GET  /img/photo/<folder>/<face|back>   thumbnail of a raw photo (JPEG, EXIF-upright)
    GET  /img/style/<folder>/<view>        thumbnail of the style reference used for that view
    GET  /img/view/<folder>/<view>         thumbnail of a finished view; ?full=1: the PNG itself
    POST /api/approve   {"folder", "view"?}             no view: every view of the reference
    POST /api/hold      {"folder", "view"?, "note"?}
    POST /api/reroll    {"folder", "view"}
    POST /api/adjust    {"folder", "view", "instruction", "ref"?}   ref: another view of the reference

Security: loopback only; folder and view names are looked up among the known references and views
(never joined into a path as given); a style reference is served only from REFS_DIR; actions are POST
with a JSON body, a Host header naming this server and, when present, a same-origin Origin header.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import review_state
from .discovery import Reference, StyleRefs
from .errors import PipelineError
from .files import atomic_write_bytes, sha256_file
from .provenance import read_sidecar
from .settings import Settings
from .views import VIEWS, VIEWS_BY_NAME

PAGE_DIR = Path(__file__).with_name("review_page")
REPORT_NAME = "index.html"
THUMBS_DIR = "thumbs"                 # under output/.state/
PHOTO_SIDE = 360                      # thumbnails' long side (shown ~150 px wide: sharp on 2x screens)
STYLE_SIDE = 200
VIEW_SIDE = 900                       # the views are shown ~320 px wide; click opens the PNG itself
REPORT_PHOTO_SIDE = 240               # embedded in the static report (data: URIs), kept small
REPORT_STYLE_SIDE = 120
MAX_BODY = 64 * 1024                  # largest POST body accepted
JOB_LOG_LINES = 40

STATE_LABELS = {
    "missing": "à générer",
    "new": "nouveau",
    "held": "retenu",
    "approved": "approuvé",
    "uploaded": "envoyé",
    "problem": "problème",
    "absent": "sans objet",
}

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


# --- state: the one place that says new / held / approved / uploaded ----------------------------

@dataclass(frozen=True)
class ViewState:
    state: str                  # "missing" | "new" | "held" | "approved" | "uploaded"
    by: str | None = None       # "person" | "qa" | "upload" | None: who put it in that state
    reason: str = ""            # French: why it is held (failed checks or the person's note)

    @property
    def needs_decision(self) -> bool:
        """Nobody has looked at this image yet (new), or only the quality gate has (held by QA)."""
        return self.state == "new" or (self.state == "held" and self.by == "qa")


def view_state(image_sha: str | None, sidecar: dict | None, review: dict | None,
               stamp: dict | None, view: str) -> ViewState:
    """The state of one view, from the image's SHA-256 and the files that speak about it.

    `review` is `output/<folder>/review.json` (a person's decisions), `stamp` is `upload.json`.
    A decision or an upload counts only for exactly this image: a regenerated view is new again.
    Order: held by a person > uploaded > approved by a person > held by the quality gate > new.
    """
    if not image_sha:
        return ViewState("missing")
    entry = (review or {}).get(view) or {}
    decided = entry.get("state") if entry.get("sha256") == image_sha else None
    if decided == "held":
        note = entry.get("note") or ""
        return ViewState("held", "person", f"retenue par une personne{f' : {note}' if note else ''}")
    stamped = {img.get("view"): img.get("sha256") for img in (stamp or {}).get("images") or []
               if isinstance(img, dict)}
    if stamped.get(view) == image_sha:
        return ViewState("uploaded", "upload")
    if decided == "approved":
        return ViewState("approved", "person")
    qa = (sidecar or {}).get("qa") or {}
    if qa.get("verdict") == "held":
        failed = [c.get("message") or name for name, c in (qa.get("checks") or {}).items()
                  if isinstance(c, dict) and not c.get("passed")]
        return ViewState("held", "qa", "contrôle qualité : " + " ; ".join(failed or ["échec"]))
    return ViewState("new")


def reference_state(states: list[ViewState], problem: str | None = None) -> str:
    """The state of a reference from its views' states: the least advanced view wins."""
    if problem:
        return "problem"
    if not states or any(s.state == "missing" for s in states):
        return "missing"
    for state in ("held", "new", "approved"):
        if any(s.state == state for s in states):
            return state
    return "uploaded"


# --- reading the project ------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


class _ShaCache:
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


def _checks(sidecar: dict | None) -> list[dict]:
    qa = (sidecar or {}).get("qa") or {}
    out = []
    for name, c in (qa.get("checks") or {}).items():
        if not isinstance(c, dict):
            continue
        out.append({"name": name, "label": CHECK_LABELS.get(name, name), "passed": bool(c.get("passed")),
                    "value": _value_text(c.get("value")), "threshold": str(c.get("threshold") or ""),
                    "message": str(c.get("message") or "")})
    out.sort(key=lambda c: c["passed"])  # failed first
    return out


def _style_path(settings: Settings, styles: StyleRefs, folder: str, view: str, sidecar: dict | None) -> Path | None:
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


def _server_links() -> Links:
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


def build_row(settings: Settings, ref: Reference, styles: StyleRefs, shas: _ShaCache, links: Links,
              index: int = 0) -> dict:
    """Everything the page shows about one reference (JSON-ready)."""
    folder_dir = settings.output_dir / ref.folder
    review = review_state.load(folder_dir) if folder_dir.is_dir() else {}
    stamp = _read_json(folder_dir / "upload.json")
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
        st = view_state(sha, sidecar, review, stamp, name)
        states.append(st)
        style = _style_path(settings, styles, ref.folder, name, sidecar)
        entry = {"view": name, "label": spec.label, "expected": True, "state": st.state,
                 "state_label": STATE_LABELS[st.state], "by": st.by, "reason": st.reason,
                 "needs_decision": st.needs_decision, "sha256": sha,
                 "style": ({"url": links.style(ref, name, style), "name": style.name} if style else None)}
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
                         qa_verdict=qa.get("verdict"), checks=_checks(sidecar),
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


def _counts(rows: list[dict]) -> dict:
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
    from .imaging import jpeg_bytes, open_image

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{side}".encode()).hexdigest()
    cached = settings.state_dir / THUMBS_DIR / f"{key[:32]}.jpg"
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


# --- regenerations (re-roll, adjustment): one at a time, in the background ----------------------

@dataclass
class Job:
    id: int
    folder: str
    views: list[str]
    kinds: list[str]                      # "reroll" | "adjust"
    state: str = "queued"                 # "queued" | "running" | "done" | "failed"
    lines: deque = field(default_factory=lambda: deque(maxlen=JOB_LOG_LINES))
    message: str = ""
    returncode: int | None = None
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None

    def to_json(self) -> dict:
        what = ", ".join(f"{'nouveau tirage' if k == 'reroll' else 'ajustement'} {v}"
                         for k, v in zip(self.kinds, self.views))
        return {"id": self.id, "folder": self.folder, "views": list(self.views), "what": what,
                "state": self.state, "message": self.message, "returncode": self.returncode,
                "last_line": self.lines[-1] if self.lines else "", "log": list(self.lines),
                "started_at": self.started_at, "ended_at": self.ended_at,
                "seconds": round((self.ended_at or time.time()) - self.started_at, 1) if self.started_at else None}


class JobRunner:
    """A FIFO of `doit generate:<folder>` runs, one at a time (doit's run lock allows one anyway).

    A request for a folder already waiting joins that job: one run rebuilds every stale view.
    """

    def __init__(self, root: Path, env: dict | None = None, command=None):
        self.root = root
        self.env = env
        self.command = command or (lambda folder: [sys.executable, "-m", "doit", f"generate:{folder}"])
        self._cond = threading.Condition()
        self._jobs: list[Job] = []
        self._next_id = 1
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="review-jobs", daemon=True)
        self._thread.start()

    def submit(self, folder: str, view: str, kind: str) -> Job:
        with self._cond:
            for job in self._jobs:
                if job.folder == folder and job.state == "queued":
                    job.views.append(view)
                    job.kinds.append(kind)
                    return job
            job = Job(self._next_id, folder, [view], [kind])
            self._next_id += 1
            self._jobs.append(job)
            del self._jobs[:-50]  # keep the recent history only
            self._cond.notify_all()
            return job

    def snapshot(self) -> list[dict]:
        with self._cond:
            return [j.to_json() for j in self._jobs]

    def busy(self) -> bool:
        with self._cond:
            return any(j.state in ("queued", "running") for j in self._jobs)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(j.state in ("queued", "running") for j in self._jobs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking jobs; a running generation gets SIGTERM (doit records it like Ctrl-C)."""
        with self._cond:
            self._stopping = True
            for job in self._jobs:
                if job.state == "queued":
                    job.state, job.message = "failed", "annulé : la page de revue s'est arrêtée"
            proc = self._proc
            self._cond.notify_all()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not any(j.state == "queued" for j in self._jobs):
                    self._cond.wait()
                if self._stopping:
                    return
                job = next(j for j in self._jobs if j.state == "queued")
                job.state, job.started_at = "running", time.time()
                self._cond.notify_all()
            self._run(job)
            with self._cond:
                job.ended_at = time.time()
                self._proc = None
                self._cond.notify_all()

    def _run(self, job: Job) -> None:
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        try:
            proc = subprocess.Popen(self.command(job.folder), cwd=self.root, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace")
        except OSError as exc:
            job.state, job.message = "failed", f"impossible de lancer doit : {exc}"
            return
        with self._cond:
            self._proc = proc
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                with self._cond:
                    job.lines.append(line)
                    self._cond.notify_all()
        job.returncode = proc.wait()
        lines = list(job.lines)
        locked = next((ln for ln in lines if "Une autre exécution est déjà en cours" in ln), None)
        failures = [ln.strip().lstrip("✗").strip() for ln in lines if ln.strip().startswith("✗")]
        if locked:
            job.state, job.message = "failed", locked
        elif job.returncode == 0:
            job.state = "done"
            job.message = next((ln for ln in reversed(lines) if ln.startswith("Terminé")), "terminé")
        else:
            job.state = "failed"
            job.message = " ; ".join(failures) or (lines[-1] if lines else f"code de sortie {job.returncode}")


# --- the application (what the HTTP handler calls) -----------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ReviewApp:
    """The review page's logic, independent of HTTP (the tests call it directly too)."""

    def __init__(self, settings: Settings, refs: list[Reference], *, env: dict | None = None, command=None):
        self.settings = settings
        self.refs = {ref.folder: ref for ref in refs}
        self.order = [ref.folder for ref in refs]
        self.styles = StyleRefs(settings.refs_dir)
        self.shas = _ShaCache()
        self.links = _server_links()
        self.jobs = JobRunner(settings.root, env=env, command=command)

    # lookups: every name from a request goes through these ---------------------------------
    def ref(self, folder: str) -> Reference:
        ref = self.refs.get(folder) if isinstance(folder, str) else None
        if ref is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"Référence inconnue : « {folder} ».")
        return ref

    def view(self, ref: Reference, view: str | None, *, must_exist: bool = True) -> str:
        if not isinstance(view, str) or view not in VIEWS_BY_NAME:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"Vue inconnue : « {view} » (1_face, 2_back ou 3_detail_logo).")
        if ref.problem:
            raise ApiError(HTTPStatus.CONFLICT, ref.problem)
        if view not in ref.views:
            raise ApiError(HTTPStatus.CONFLICT, f"{ref.folder} n'a pas de vue {view} (pas de photo de dos).")
        if must_exist and not self.view_png(ref, view).is_file():
            raise ApiError(HTTPStatus.CONFLICT, f"{ref.folder} : la vue {view} n'est pas encore générée.")
        return view

    def view_png(self, ref: Reference, view: str) -> Path:
        from .tasks import view_path

        return view_path(self.settings, ref.folder, view)

    # reading -------------------------------------------------------------------------------
    def row(self, folder: str) -> dict:
        ref = self.ref(folder)
        return build_row(self.settings, ref, self.styles, self.shas, self.links, self.order.index(folder))

    def state(self) -> dict:
        rows = [build_row(self.settings, self.refs[f], self.styles, self.shas, self.links, i)
                for i, f in enumerate(self.order)]
        return {"ok": True, "static": False, "project": self.settings.root.name,
                "generator": self.settings.generator, "model": self.settings.model,
                "reroll_available": self.settings.generator == "gemini",
                "reroll_note": "" if self.settings.generator == "gemini" else
                ("Rendu local : un nouveau tirage donnerait la même image (réglez GEMINI_API_KEY "
                 "pour des tirages Gemini)."),
                "adjust_available": True, "adjust_note": "",
                "rows": rows, "counts": _counts(rows), "jobs": self.jobs.snapshot()}

    # actions -------------------------------------------------------------------------------
    def _decide(self, body: dict, state: str) -> dict:
        ref = self.ref(_str(body, "folder"))
        if ref.problem:
            raise ApiError(HTTPStatus.CONFLICT, ref.problem)
        note = _str(body, "note", required=False)[:500]
        view = body.get("view")
        views = [self.view(ref, view)] if view else [v for v in ref.views if self.view_png(ref, v).is_file()]
        if not views:
            raise ApiError(HTTPStatus.CONFLICT, f"{ref.folder} : aucune vue générée à décider.")
        folder_dir = self.settings.output_dir / ref.folder
        for v in views:
            review_state.decide(folder_dir, v, sha256_file(self.view_png(ref, v)), state, note=note)
        word = "approuvée" if state == "approved" else "retenue"
        return {"ok": True, "message": f"{ref.folder} : {', '.join(views)} {word}{'s' if len(views) > 1 else ''}.",
                "row": self.row(ref.folder)}

    def approve(self, body: dict) -> dict:
        return self._decide(body, "approved")

    def hold(self, body: dict) -> dict:
        return self._decide(body, "held")

    def reroll(self, body: dict) -> dict:
        from .reroll import bump_seed

        ref = self.ref(_str(body, "folder"))
        view = self.view(ref, _str(body, "view"), must_exist=False)
        try:
            _, _, seed = bump_seed(self.settings, [ref.folder, view])
        except PipelineError as exc:
            raise ApiError(HTTPStatus.CONFLICT, exc.message)
        job = self.jobs.submit(ref.folder, view, "reroll")
        return {"ok": True, "message": f"{ref.folder} {view} : nouveau tirage (graine {seed}) en file d'attente.",
                "job": job.to_json(), "row": self.row(ref.folder)}

    def adjust(self, body: dict) -> dict:
        ref = self.ref(_str(body, "folder"))
        view = self.view(ref, _str(body, "view"), must_exist=False)
        instruction = _str(body, "instruction").strip()
        if not instruction:
            raise ApiError(HTTPStatus.BAD_REQUEST, "Écrivez l'instruction d'ajustement.")
        if len(instruction) > 2000:
            raise ApiError(HTTPStatus.BAD_REQUEST, "Instruction trop longue (2000 caractères au plus).")
        from .adjustments import record_step

        other = _str(body, "ref", required=False) or None
        if other is not None and (other not in ref.views or other == view):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"Image de référence invalide : « {other} » (une autre vue de {ref.folder}).")
        try:
            record_step(self.settings, ref.folder, view, instruction, ref=other)
        except PipelineError as exc:
            raise ApiError(HTTPStatus.CONFLICT, exc.message)
        job = self.jobs.submit(ref.folder, view, "adjust")
        return {"ok": True, "message": f"{ref.folder} {view} : ajustement enregistré, régénération en file d'attente.",
                "job": job.to_json(), "row": self.row(ref.folder)}

    ACTIONS = {"approve": approve, "hold": hold, "reroll": reroll, "adjust": adjust}

    # images --------------------------------------------------------------------------------
    def image(self, kind: str, folder: str, name: str, full: bool = False) -> tuple[bytes, str]:
        ref = self.ref(folder)
        try:
            if kind == "photo":
                path = ref.photos.get(name) if name in ("face", "back") else None
                if path is None:
                    raise ApiError(HTTPStatus.NOT_FOUND, "Photo inconnue.")
                return thumbnail(self.settings, path, PHOTO_SIDE), "image/jpeg"
            if kind in ("style", "view"):
                if name not in VIEWS_BY_NAME:
                    raise ApiError(HTTPStatus.NOT_FOUND, "Vue inconnue.")
                png = self.view_png(ref, name)
                if kind == "style":
                    path = _style_path(self.settings, self.styles, ref.folder, name, read_sidecar(png))
                    if path is None:
                        raise ApiError(HTTPStatus.NOT_FOUND, "Référence de style introuvable.")
                    return thumbnail(self.settings, path, STYLE_SIDE, what="la référence de style"), "image/jpeg"
                if not png.is_file():
                    raise ApiError(HTTPStatus.NOT_FOUND, "Vue pas encore générée.")
                if full:
                    return png.read_bytes(), "image/png"
                return thumbnail(self.settings, png, VIEW_SIDE, what="la vue"), "image/jpeg"
        except PipelineError as exc:
            raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, exc.message)
        except OSError:
            raise ApiError(HTTPStatus.NOT_FOUND, "Image introuvable.")
        raise ApiError(HTTPStatus.NOT_FOUND, "Adresse inconnue.")


def _str(body: dict, key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"Champ « {key} » manquant ou invalide.")
    return value


# --- the page -------------------------------------------------------------------------------------

def render_page(boot: dict) -> str:
    """The page with its CSS and JS inlined and `boot` (JSON) embedded: one self-contained file."""
    html = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    css = (PAGE_DIR / "review.css").read_text(encoding="utf-8")
    js = (PAGE_DIR / "review.js").read_text(encoding="utf-8")
    data = json.dumps(boot, ensure_ascii=False).replace("<", "\\u003c").replace("\u2028", "\\u2028") \
        .replace("\u2029", "\\u2029")
    return (html.replace("/*__CSS__*/", css)
                .replace("/*__BOOT__*/", f"window.REVIEW_BOOT = {data};")
                .replace("/*__JS__*/", js.replace("</script", "<\\/script")))


class _Handler(BaseHTTPRequestHandler):
    app: ReviewApp              # set on the subclass made by make_server
    server_version = "catalogue-review"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: the terminal shows the URL and the jobs only
        pass

    # helpers -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"ok": False, "error": message})

    def _host_ok(self) -> bool:
        """DNS rebinding: only answer requests addressed to this server by a loopback name."""
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if ":" in host else host
        return name in ("127.0.0.1", "localhost", "::1") or name.startswith("127.")

    # verbs ---------------------------------------------------------------------------------
    def do_GET(self):
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "Hôte refusé.")
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        try:
            if not segments or segments == ["index.html"]:
                page = render_page({"static": False}).encode("utf-8")
                return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            if segments == ["api", "state"]:
                return self._json(HTTPStatus.OK, self.app.state())
            if segments == ["api", "jobs"]:
                return self._json(HTTPStatus.OK, {"ok": True, "jobs": self.app.jobs.snapshot()})
            if len(segments) == 3 and segments[:2] == ["api", "ref"]:
                return self._json(HTTPStatus.OK, {"ok": True, "row": self.app.row(segments[2])})
            if len(segments) == 4 and segments[0] == "img":
                data, ctype = self.app.image(segments[1], segments[2], segments[3],
                                             full=query.get("full") == ["1"])
                return self._send(HTTPStatus.OK, data, ctype, cache="private, max-age=86400")
            if segments == ["favicon.ico"]:
                return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            raise ApiError(HTTPStatus.NOT_FOUND, "Adresse inconnue.")
        except ApiError as exc:
            return self._error(exc.status, exc.message)

    do_HEAD = do_GET

    def do_POST(self):
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "Hôte refusé.")
        origin = self.headers.get("Origin")
        if origin and origin != "null":
            if urlsplit(origin).netloc.lower() != (self.headers.get("Host") or "").lower():
                return self._error(HTTPStatus.FORBIDDEN, "Origine refusée.")
        segments = [s for s in urlsplit(self.path).path.split("/") if s]
        if len(segments) != 2 or segments[0] != "api" or segments[1] not in ReviewApp.ACTIONS:
            return self._error(HTTPStatus.NOT_FOUND, "Action inconnue.")
        if "application/json" not in (self.headers.get("Content-Type") or ""):
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Corps JSON attendu.")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Requête trop grande.")
        try:
            body = json.loads(self.rfile.read(length).decode("utf-8") or "{}")
            if not isinstance(body, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            return self._error(HTTPStatus.BAD_REQUEST, "Corps JSON invalide.")
        try:
            return self._json(HTTPStatus.OK, ReviewApp.ACTIONS[segments[1]](self.app, body))
        except ApiError as exc:
            return self._error(exc.status, exc.message)

    def do_PUT(self):
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "Méthode refusée.")

    do_DELETE = do_PATCH = do_PUT


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(settings: Settings, refs: list[Reference], host: str = "127.0.0.1", port: int = 8765, *,
                env: dict | None = None, command=None) -> tuple[ThreadingHTTPServer, ReviewApp]:
    """The server (not started) and its app; port 0 picks a free port (`server.server_address`)."""
    if not _loopback(host):
        raise ValueError(f"La page de revue n'écoute que sur la machine locale (127.0.0.1), pas sur {host}.")
    app = ReviewApp(settings, refs, env=env, command=command)
    handler = type("ReviewHandler", (_Handler,), {"app": app})
    server_cls = type("ReviewServer", (ThreadingHTTPServer,), {"daemon_threads": True, "allow_reuse_address": True})
    try:
        server = server_cls((host, port), handler)
    except OSError:
        app.jobs.stop(timeout=1)
        raise
    return server, app


def serve(settings: Settings, refs: list[Reference], host: str = "127.0.0.1", port: int = 8765,
          open_browser: bool = False) -> int:
    """`doit review`: serve the page until Ctrl-C. Returns 0, or 1 when the port is taken."""
    try:
        server, app = make_server(settings, refs, host, port)
    except OSError as exc:
        print(f"Impossible d'ouvrir la page de revue sur {host}:{port} ({exc.strerror or exc}) : "
              f"le port est peut-être déjà utilisé (une autre page de revue ouverte ?).", flush=True)
        return 1
    real_port = server.server_address[1]
    url = f"http://{host}:{real_port}/"
    todo = sum(1 for r in app.state()["rows"] if r["needs_decision"])
    print(f"Page de revue : {url}  ({len(refs)} références, {todo} à décider) — Ctrl-C pour arrêter.", flush=True)
    if open_browser:
        import webbrowser

        threading.Timer(0.3, webbrowser.open, args=(url,)).start()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("\nPage de revue arrêtée.", flush=True)
    finally:
        if app.jobs.busy():
            print("Une régénération était en cours : arrêt propre (ce qui est fini est gardé).", flush=True)
        app.jobs.stop()
        server.server_close()
    return 0


# --- the static report ----------------------------------------------------------------------------

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
    styles, shas, links = StyleRefs(settings.refs_dir), _ShaCache(), _report_links(settings)
    rows = [build_row(settings, ref, styles, shas, links, i) for i, ref in enumerate(refs)]
    boot = {"static": True, "data": {
        "ok": True, "static": True, "project": settings.root.name, "generator": settings.generator,
        "model": settings.model, "reroll_available": False, "adjust_available": False,
        "reroll_note": "", "adjust_note": "",
        "generated_at": datetime.now(timezone.utc).astimezone().strftime("%d/%m/%Y à %H:%M"),
        "rows": rows, "counts": _counts(rows), "jobs": []}}
    path = settings.output_dir / REPORT_NAME
    atomic_write_bytes(path, render_page(boot).encode("utf-8"))
    return path


# --- doit actions ---------------------------------------------------------------------------------

def review_action(settings: Settings, refs: list[Reference]):
    """`doit review`: a failure to start (port taken) fails the task; Ctrl-C ends it normally."""
    from doit.exceptions import TaskFailed

    port = settings.review_port
    return None if serve(settings, refs, port=port) == 0 else TaskFailed(
        f"Page de revue non démarrée : le port {port} est pris (réglez REVIEW_PORT).")


def report_action(settings: Settings, refs: list[Reference]):
    path = write_report(settings, refs)
    print(f"Rapport écrit : {path} (ouvrez-le dans un navigateur ; partagez le dossier {path.parent}).", flush=True)
