"""The review page: a person checks a season of references and decides, keyboard first.

`doit review` calls `serve()`: a page on 127.0.0.1 (stdlib `ThreadingHTTPServer`, a small JSON API and
one HTML page with vanilla JS, `catalogue/review/static/`). One row per reference: the raw photos, the
style references used (from the sidecars' inputs), the three views, each quality check's value and
verdict, cost, generator and model, and a state per view and per reference (`view_state`).

Actions (POST, JSON): approve or hold a view or the whole reference (`view_state.decide`, tied to the
image's SHA-256), re-roll a view (a new seed, `reroll.bump_seed`, then `python -m doit generate:<folder>`
in the project root), write a retouch instruction (`retouch_steps.record_step`, then the same
regeneration). Regenerations run one at a time in the background (`jobs.JobRunner`): each takes the
run lock like any run, waits while another run holds it, and records its seed or step only when it
can start; the page shows their progress and reloads the reference when they finish.

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

Security (the page is a door into a paid account): loopback only; a random key per start, in the
URL printed at start (`/?cle=<key>`), exchanged for a `SameSite=Strict`, HttpOnly cookie; every other
request needs that cookie (or the `X-Review-Key` header); `Host` must be exactly `127.0.0.1:<port>`
or `localhost:<port>` (DNS rebinding); every state change is a POST with `Content-Type` exactly
`application/json` and an `Origin` that is exactly the page's own (required); GET changes nothing.
Folder and view names are looked up among the known references and views (never joined into a path
as given); a style reference is served only from REFS_DIR.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import sys
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..core import view_state
from ..core.discovery import Reference, StyleRefs
from ..core.errors import PipelineError
from ..core.files import sha256_file
from ..core.discovery import OVERRIDES_FILE
from ..core.paths import folder_dir, view_path
from ..core.provenance import read_sidecar
from ..core.settings import Settings
from ..core.views import VIEWS_BY_NAME
from ..generation.retouch_steps import ADJUSTMENTS_FILE, record_step
from ..tasks.reroll import bump_seed
from .jobs import JobRunner, Step
from .page import render_page
from .rows import PHOTO_SIDE, STYLE_SIDE, VIEW_SIDE, ShaCache, build_row, counts, server_links, style_path, thumbnail

MAX_BODY = 64 * 1024                  # largest POST body accepted
KEY_PARAM = "cle"                     # /?cle=<key>: the URL printed at start
KEY_HEADER = "X-Review-Key"
JSON = "application/json"
NO_KEY_NOTE = ("Sans clé GEMINI_API_KEY (rendu local) : l'instruction ne peut pas être appliquée maintenant. "
               "Enregistrée, elle attendra une clé : elle sera envoyée à Gemini (appel payant) à la première "
               "exécution avec une clé.")


# --- the application (what the HTTP handler calls) -----------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ReviewApp:
    """The review page's logic, independent of HTTP (the tests call it directly too)."""

    def __init__(self, settings: Settings, refs: list[Reference], *, env: dict | None = None, command=None,
                 key: str | None = None, retry: tuple[float, float] = (1.0, 30.0)):
        self.settings = settings
        self.key = key or secrets.token_urlsafe(24)   # per start: the printed URL carries it
        self.refs = {ref.folder: ref for ref in refs}
        self.order = [ref.folder for ref in refs]
        self.styles = StyleRefs(settings.refs_dir)
        self.shas = ShaCache()
        self.links = server_links()
        self.jobs = JobRunner(settings.root, env=env, command=command, retry=retry)

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
                "adjust_available": True,
                "adjust_needs_key": self.settings.generator != "gemini",
                "adjust_note": "" if self.settings.generator == "gemini" else NO_KEY_NOTE,
                "rows": rows, "counts": counts(rows), "jobs": self.jobs.snapshot()}

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
        out_dir = folder_dir(self.settings, ref.folder)
        for v in views:
            view_state.decide(out_dir, v, sha256_file(self.view_png(ref, v)), state, note=note)
        word = "approuvée" if state == "approved" else "retenue"
        return {"ok": True, "message": f"{ref.folder} : {', '.join(views)} {word}{'s' if len(views) > 1 else ''}.",
                "row": self.row(ref.folder)}

    def approve(self, body: dict) -> dict:
        return self._decide(body, "approved")

    def hold(self, body: dict) -> dict:
        return self._decide(body, "held")

    def reroll(self, body: dict) -> dict:
        ref = self.ref(_str(body, "folder"))
        view = self.view(ref, _str(body, "view"), must_exist=False)
        if self.settings.generator != "gemini":
            raise ApiError(HTTPStatus.CONFLICT, "Le rendu local est déterministe : un nouveau tirage ne changerait "
                                                "rien. Réglez GEMINI_API_KEY pour un nouveau tirage Gemini.")
        settings, png, seed = self.settings, self.view_png(ref, view), {}

        def record() -> str:  # when the job starts, not now: see jobs.py
            _, _, seed["new"] = bump_seed(settings, [ref.folder, view])
            return f"nouveau tirage {view} (graine {seed['new']})"

        def made() -> bool:
            side = read_sidecar(png) or {}
            return "new" in seed and side.get("seed") == seed["new"]

        job = self.jobs.submit(ref.folder, Step("reroll", view, record, made,
                                                (settings.photos_dir / ref.folder / OVERRIDES_FILE,)))
        return {"ok": True, "message": f"{ref.folder} {view} : nouveau tirage en file d'attente (un appel Gemini payant).",
                "job": job.to_json(), "row": self.row(ref.folder)}

    def adjust(self, body: dict) -> dict:
        ref = self.ref(_str(body, "folder"))
        view = self.view(ref, _str(body, "view"), must_exist=False)
        instruction = _str(body, "instruction").strip()
        if not instruction:
            raise ApiError(HTTPStatus.BAD_REQUEST, "Écrivez l'instruction d'ajustement.")
        if len(instruction) > 2000:
            raise ApiError(HTTPStatus.BAD_REQUEST, "Instruction trop longue (2000 caractères au plus).")
        other = _str(body, "ref", required=False) or None
        if other is not None and (other not in ref.views or other == view):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"Image de référence invalide : « {other} » (une autre vue de {ref.folder}).")
        if self.settings.generator != "gemini" and body.get("wait_for_key") is not True:
            # never a step recorded silently, to be paid later: the person confirms it will wait
            raise ApiError(HTTPStatus.CONFLICT, NO_KEY_NOTE + " Confirmez dans la fenêtre d'ajustement.")
        settings, png = self.settings, self.view_png(ref, view)

        def record() -> str:
            record_step(settings, ref.folder, view, instruction, ref=other)
            return f"ajustement {view}"

        def made() -> bool:
            side = read_sidecar(png) or {}
            return any(isinstance(a, dict) and a.get("instruction") == instruction for a in side.get("adjustments") or [])

        job = self.jobs.submit(ref.folder, Step("adjust", view, record, made,
                                                (settings.photos_dir / ref.folder / ADJUSTMENTS_FILE,)))
        later = " (il attendra une clé Gemini)" if self.settings.generator != "gemini" else ""
        return {"ok": True, "message": f"{ref.folder} {view} : ajustement en file d'attente{later}.",
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
                    path = style_path(self.settings, self.styles, ref.folder, name, read_sidecar(png))
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
            self.wfile.write(body)  # a browser gone away: ConnectionError, silenced by _Server.handle_error

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"ok": False, "error": message})

    # the locks on the door ---------------------------------------------------------------------
    def _port(self) -> int:
        return self.server.server_address[1]

    def _host_ok(self) -> bool:
        """DNS rebinding: the Host must be exactly this server, by a loopback name."""
        return (self.headers.get("Host") or "") in (f"127.0.0.1:{self._port()}", f"localhost:{self._port()}")

    def _cookie_name(self) -> str:
        return f"catalogue_review_{self._port()}"  # cookies ignore ports: one per page

    def _has_key(self) -> bool:
        key = self.app.key.encode()
        given = self.headers.get(KEY_HEADER)
        if given and hmac.compare_digest(given.encode(), key):
            return True
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self._cookie_name() and hmac.compare_digest(value.encode(), key):
                return True
        return False

    def _refuse_door(self) -> bool:
        """Answer 403 and return True when the request is not from this page."""
        if not self._host_ok():
            self._error(HTTPStatus.FORBIDDEN, "Hôte refusé : ouvrez l'adresse affichée par doit review.")
            return True
        if not self._has_key():
            self._error(HTTPStatus.FORBIDDEN, "Clé absente ou fausse : ouvrez l'adresse complète affichée par "
                                              "doit review (avec ?cle=…).")
            return True
        return False

    def _welcome(self, query: dict) -> bool:
        """GET /?cle=<key>: set the cookie and go to the page (the key leaves the address bar)."""
        given = (query.get(KEY_PARAM) or [""])[0]
        if not given or not self._host_ok() or not hmac.compare_digest(given.encode(), self.app.key.encode()):
            return False
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", "/")
        self.send_header("Set-Cookie", f"{self._cookie_name()}={self.app.key}; Path=/; HttpOnly; SameSite=Strict")
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        return True

    # verbs ---------------------------------------------------------------------------------
    def do_GET(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path in ("/", "/index.html") and KEY_PARAM in query and self._welcome(query):
            return None
        if self._refuse_door():
            return None
        segments = [unquote(s) for s in parts.path.split("/") if s]
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
        if self._refuse_door():
            return None
        own = {f"http://127.0.0.1:{self._port()}", f"http://localhost:{self._port()}"}
        origin = self.headers.get("Origin")
        if origin is None or origin not in own or urlsplit(origin).netloc != self.headers.get("Host"):
            return self._error(HTTPStatus.FORBIDDEN, "Origine absente ou refusée : agissez depuis la page de revue.")
        segments = [s for s in urlsplit(self.path).path.split("/") if s]
        if len(segments) != 2 or segments[0] != "api" or segments[1] not in ReviewApp.ACTIONS:
            return self._error(HTTPStatus.NOT_FOUND, "Action inconnue.")
        if (self.headers.get("Content-Type") or "").strip().lower() not in (JSON, JSON + "; charset=utf-8"):
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Corps JSON attendu (Content-Type: application/json).")
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    disconnects = 0             # browsers that went away mid-answer (counted, never a traceback)

    def handle_error(self, request, client_address):
        """A browser that closes the page mid-answer is not an error of ours: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipeError, ConnectionResetError, ...
            type(self).disconnects += 1
            return
        super().handle_error(request, client_address)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(settings: Settings, refs: list[Reference], host: str = "127.0.0.1", port: int = 8765, *,
                env: dict | None = None, command=None, key: str | None = None,
                retry: tuple[float, float] = (1.0, 30.0)) -> tuple[ThreadingHTTPServer, ReviewApp]:
    """The server (not started) and its app; port 0 picks a free port (`server.server_address`).
    `app.key` is the page's key (random per start unless given)."""
    if not _loopback(host):
        raise ValueError(f"La page de revue n'écoute que sur la machine locale (127.0.0.1), pas sur {host}.")
    app = ReviewApp(settings, refs, env=env, command=command, key=key, retry=retry)
    handler = type("ReviewHandler", (_Handler,), {"app": app})
    server_cls = type("ReviewServer", (_Server,), {})
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
    url = f"http://{host}:{real_port}/?{KEY_PARAM}={app.key}"
    todo = sum(1 for r in app.state()["rows"] if r["needs_decision"])
    print(f"Page de revue : {url}  ({len(refs)} références, {todo} à décider) — Ctrl-C pour arrêter.", flush=True)
    if open_browser:
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
