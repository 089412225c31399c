"""HTTP client of the shop's NestJS backend (`BACKEND_URL`), contract in `shared/REBOUL_BACKEND.md`.

One `requests.Session` per client: bearer token when `BACKEND_TOKEN` is set (never printed),
timeouts on every call, GET, DELETE and PATCH retried with exponential backoff by urllib3's `Retry`
on the session's adapter (connection errors, 429/502/503/504; at least `MIN_RETRY_WAIT` between
tries, so a 503 of the production front's rate limit is not asked again at once). POST is never
retried on a read error or an error status: the upload reconciles from its intent journal instead
(a lost answer may hide a success). A connection that was refused is retried for every method,
since nothing was sent.

The production front (nginx) allows 10 requests a second with a burst of 20: every request of
this process to one backend waits its turn in a shared pacer (`REQUESTS_PER_SECOND`, `PACE_BURST`),
which keeps any window of t seconds under 8 + 8t requests, below what the front accepts.

Every failure becomes an `UploadError` in French naming the reference folder; a refused or failed
bulk upload is a `BulkError` that says whether the backend stored nothing of it (`stored_nothing`)
so that the upload can tell the operator what the next run will do.
"""

from __future__ import annotations

import re
import threading
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.filepost import encode_multipart_formdata
from urllib3.util.retry import Retry

from ..core.errors import UploadError
from .stamp import safe_url

CONNECT_TIMEOUT = 5.0     # seconds to open a connection
READ_TIMEOUT = 30.0       # seconds to wait for a GET/DELETE answer
UPLOAD_TIMEOUT = 300.0    # seconds to wait for the bulk upload (the backend uploads to Cloudinary)
RETRIES = 3
BACKOFF = 0.5             # urllib3: 0, 2*BACKOFF, 4*BACKOFF, ... seconds between tries
MIN_RETRY_WAIT = 0.2      # the front frees one request every 0.1 s: never retry sooner than this
RETRY_STATUSES = (429, 502, 503, 504)
REQUESTS_PER_SECOND = 8.0  # the production front: 10 r/s, burst 20 (nginx limit_req)
PACE_BURST = 8
MAX_FILES = 7             # FilesInterceptor('files', 7)
ALLOWED_TYPES = "jpg, jpeg, png, gif, webp"

__all__ = ["BackendClient", "BulkError", "multipart_size", "nest_message", "safe_url"]


class BulkError(UploadError):
    """A bulk upload refused or failed; `stored_nothing` when the backend (or its front) certainly
    kept nothing of the request, `hint` what the operator may change."""

    def __init__(self, message: str, *, reference: str | None, stored_nothing: bool, hint: str = "",
                 malformed: bool = False):
        super().__init__(message, reference=reference)
        self.stored_nothing = stored_nothing
        self.hint = hint
        self.malformed = malformed          # the backend said it stored the files, in an unusable answer


class _Retry(Retry):
    def get_backoff_time(self) -> float:
        backoff = super().get_backoff_time()
        return max(backoff, MIN_RETRY_WAIT) if self.history else backoff


class _Pacer:
    """A token bucket: `rate` requests a second, `burst` at once; shared by the threads of a run."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1.0:
                delay = (1.0 - self.tokens) / self.rate
                time.sleep(delay)
                self.last, self.tokens = now + delay, 1.0
            self.tokens -= 1.0


_pacers: dict[str, _Pacer] = {}
_pacers_lock = threading.Lock()


def _pacer(base: str) -> _Pacer:
    with _pacers_lock:
        if base not in _pacers:
            _pacers[base] = _Pacer(REQUESTS_PER_SECOND, PACE_BURST)
        return _pacers[base]


def multipart_size(files: list[tuple[str, bytes, str]]) -> int:
    """The exact body size of a bulk request carrying these files (what nginx compares to
    client_max_body_size): the multipart framing plus the files' bytes."""
    body, _ = encode_multipart_formdata([("files", (name, b"", mime)) for name, _data, mime in files])
    return len(body) + sum(len(data) for _name, data, _mime in files)


def _is_front_page(response: requests.Response) -> bool:
    """nginx's own error page (the production front answered, the backend never saw the request)."""
    ctype = response.headers.get("Content-Type", "")
    return "text/html" in ctype and "nginx" in (response.text or "")


def nest_message(response: requests.Response) -> str:
    """The `message` of a NestJS error body (string or list), the title of an HTML page, else the
    start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message") is not None:
        msg = body["message"]
        return "; ".join(str(m) for m in msg) if isinstance(msg, list) else str(msg)
    text = (response.text or "").strip()
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        return title.group(1).strip()
    return text[:200] if text else (response.reason or f"HTTP {response.status_code}")


class BackendClient:
    def __init__(self, settings, folder: str, *, retries: int | None = None, backoff: float | None = None):
        self.base = settings.backend_url.rstrip("/")
        self.shown = safe_url(self.base)
        self.folder = folder
        self.max_request_bytes = settings.upload_max_request_bytes
        self._token = settings.backend_token
        self._pacer = _pacer(self.base)
        self.session = requests.Session()
        retry = _Retry(total=RETRIES if retries is None else retries,
                       backoff_factor=BACKOFF if backoff is None else backoff,
                       status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "DELETE", "PATCH"}),
                       raise_on_status=False, respect_retry_after_header=True)
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Accept"] = "application/json"
        if self._token:
            self.session.headers["Authorization"] = f"Bearer {self._token}"

    def __repr__(self) -> str:  # never the token
        return f"BackendClient({self.shown!r}, folder={self.folder!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "BackendClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- endpoints ----------------------------------------------------------------------------

    def list_images(self, product_id: int) -> list[dict]:
        """GET /products/:id/images: the product's images from the database (never the cached product).
        Every image has an integer `id` and `order`, or this is an error."""
        path = f"/products/{product_id}/images"
        r = self._request("GET", path, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        data = self._json(r)
        if not isinstance(data, list) or not all(
                isinstance(img, dict) and _is_int(img.get("id")) and _is_int(img.get("order")) for img in data):
            raise self._error(f"réponse inattendue de GET {path} (liste d'images avec id et order attendue) ; "
                              f"rien n'a été modifié sur la boutique.")
        return data

    def upload_bulk(self, product_id: int, files: list[tuple[str, bytes, str]], orders: list[int]) -> list[dict]:
        """POST /products/:id/images/bulk?orders=…: files as (filename, bytes, mime) -> the created
        images, one per file in the order sent, each with its own new integer id (else BulkError)."""
        if not 1 <= len(files) <= MAX_FILES:
            raise ValueError(f"1 to {MAX_FILES} files per request")
        body, content_type = encode_multipart_formdata([("files", (name, data, mime)) for name, data, mime in files])
        if len(body) > self.max_request_bytes:
            raise ValueError(f"request body {len(body)} > {self.max_request_bytes} bytes: split the bulk")
        path = f"/products/{product_id}/images/bulk"
        r = self._request("POST", path, params={"orders": ",".join(str(o) for o in orders)}, data=body,
                          headers={"Content-Type": content_type}, timeout=(CONNECT_TIMEOUT, UPLOAD_TIMEOUT),
                          bulk_size=len(body))
        try:
            data = r.json()
        except ValueError:
            data = None
        ids = [img.get("id") for img in data if isinstance(img, dict)] if isinstance(data, list) else []
        if (not isinstance(data, list) or len(data) != len(files) or len(ids) != len(files)
                or not all(_is_int(i) for i in ids) or len(set(ids)) != len(ids)):
            what = ("pas une liste" if not isinstance(data, list)
                    else f"{len(data)} image(s) pour {len(files)} fichier(s)" if len(data) != len(files)
                    else "images sans identifiant" if not all(_is_int(i) for i in ids)
                    else "le même identifiant pour plusieurs images")
            raise BulkError(self._prefix(f"réponse inattendue du backend à l'envoi groupé ({r.status_code}, {what})"),
                            reference=self.folder, stored_nothing=False, malformed=True)
        return data

    def delete_image(self, product_id: int, image_id: int) -> bool:
        """DELETE one image; False when it was already gone (404), which is fine."""
        r = self._request("DELETE", f"/products/{product_id}/images/{image_id}",
                          timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_404=True)
        return r.status_code != 404

    def set_order(self, product_id: int, image_id: int, order: int) -> None:
        """PATCH /products/:productId/images/:imageId/order."""
        self._request("PATCH", f"/products/{product_id}/images/{image_id}/order", json={"order": order},
                      timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))

    # --- plumbing -------------------------------------------------------------------------------

    def _prefix(self, text: str) -> str:
        return f"{self.folder} : {text}"

    def _error(self, text: str) -> UploadError:
        return UploadError(self._prefix(text), reference=self.folder)

    def _request(self, method: str, path: str, *, allow_404: bool = False, bulk_size: int | None = None,
                 **kw) -> requests.Response:
        what = f"{method} {path}"
        self._pacer.wait()
        try:
            r = self.session.request(method, self.base + path, **kw)
        except requests.exceptions.ConnectTimeout:
            raise self._error(f"Backend injoignable : {self.shown} (délai de connexion dépassé) — vérifiez que le "
                              f"backend Reboul est démarré (ou le tunnel SSH).") from None
        except requests.exceptions.ReadTimeout:
            extra = (" ; l'envoi a peut-être abouti : la prochaine exécution le vérifiera avant de renvoyer quoi que "
                     "ce soit" if method == "POST" else "")
            raise self._failed(method, f"le backend ({self.shown}) n'a pas répondu à temps ({what}){extra}") from None
        except requests.exceptions.ConnectionError as exc:
            if _timed_out(exc):     # read timeouts retried by urllib3 until exhausted
                raise self._failed(method, f"le backend ({self.shown}) n'a pas répondu à temps ({what})") from None
            if _refused(exc):
                raise self._error(f"Backend injoignable : {self.shown} — vérifiez que le backend Reboul est démarré "
                                  f"(ou le tunnel SSH).") from None
            extra = (" ; l'envoi a peut-être abouti : la prochaine exécution le vérifiera avant de renvoyer quoi que "
                     "ce soit" if method == "POST" else "")
            raise self._failed(method, f"connexion au backend ({self.shown}) interrompue pendant {what}{extra}") \
                from None
        except requests.exceptions.RequestException as exc:
            raise self._error(f"échec de la requête {what} vers {self.shown} : {type(exc).__name__}") from None
        if r.status_code == 404 and allow_404:
            return r
        if r.status_code >= 400:
            msg = nest_message(r)
            if r.status_code == 401:
                hint = (" — vérifiez BACKEND_TOKEN" if self._token
                        else " — le backend demande un jeton : réglez BACKEND_TOKEN")
                raise self._error(f"le backend refuse l'accès ({what}, 401 : {msg}){hint}.")
            if method == "POST":
                raise self._bulk_refused(r, msg, bulk_size or 0)
            if method == "DELETE" and r.status_code == 500 and msg.startswith("Cloudinary delete failed"):
                image_id = path.rsplit("/", 1)[-1]
                raise self._error(f"Cloudinary n'a pas supprimé l'image {image_id} (500 : {msg}) ; elle reste sur le "
                                  f"produit")
            if _is_front_page(r):
                raise self._error(f"le frontal de la boutique (nginx) a refusé {what} ({r.status_code} : {msg})")
            raise self._error(f"le backend a refusé {what} ({r.status_code}) : {msg}")
        return r

    def _failed(self, method: str, text: str) -> UploadError:
        if method == "POST":
            return BulkError(self._prefix(text), reference=self.folder, stored_nothing=False)
        return self._error(text)

    def _bulk_refused(self, r: requests.Response, msg: str, size: int) -> BulkError:
        """What a refused bulk upload means, from the shop's source (multer, the controller,
        Cloudinary, the nginx front), in French."""
        status = r.status_code

        def refused(text: str, hint: str = "", nothing: bool = True) -> BulkError:
            return BulkError(self._prefix(text), reference=self.folder, stored_nothing=nothing, hint=hint)

        if _is_front_page(r):
            if status == 413:
                return refused(f"le frontal de la boutique (nginx) refuse une requête de {size / 1e6:.1f} Mo "
                               f"(413 {msg} : client_max_body_size)",
                               f"baissez UPLOAD_MAX_REQUEST_MB sous la limite du frontal (actuellement "
                               f"{self.max_request_bytes / 1024 / 1024:g} Mo) : la prochaine exécution découpera "
                               f"l'envoi en requêtes plus petites")
            if status == 503:
                return refused(f"le frontal de la boutique (nginx) refuse la requête : trop de requêtes "
                               f"(503 {msg}, limite de 10 par seconde)")
            return refused(f"le frontal de la boutique (nginx) n'a pas obtenu la réponse du backend ({status} {msg})",
                           nothing=False)
        if status == 413:
            return refused(f"le backend refuse un fichier trop lourd (413 : {msg} ; 10 485 759 octets au plus par "
                           f"fichier)", "si le refus se répète, réduisez OUTPUT_SIZE et régénérez les vues")
        if status == 400 and msg.startswith("Unexpected field"):
            return refused(f"le backend n'accepte pas autant de fichiers dans un envoi (400 : {msg} ; "
                           f"{MAX_FILES} au plus d'après son code)",
                           "si le refus se répète, le backend a changé : signalez-le")
        if status == 400 and "Only image files" in msg:
            return refused(f"le backend refuse le type d'un fichier (400 : {msg} ; {ALLOWED_TYPES} seulement)",
                           "si le refus se répète, le backend a changé : signalez-le")
        if status == 404:
            return refused(f"le backend ne connaît pas ce produit (404 : {msg}) — BACKEND_URL et DATABASE_URL (ou "
                           f"PRODUCTS_MAP) doivent désigner la même boutique")
        if 400 <= status < 500:
            return refused(f"le backend a refusé l'envoi groupé ({status} : {msg})")
        if msg.startswith("Cloudinary upload failed"):
            return refused(f"Cloudinary a échoué pendant l'envoi groupé (500 : {msg})", nothing=False)
        return refused(f"erreur du backend pendant l'envoi groupé ({status} : {msg})", nothing=False)

    def _json(self, r: requests.Response):
        try:
            return r.json()
        except ValueError:
            raise self._error(f"réponse illisible du backend ({r.status_code}, JSON attendu)") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _chain(exc: BaseException):
    seen, stack = set(), [exc]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [getattr(e, "reason", None), e.__cause__, e.__context__]
        stack += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]


def _timed_out(exc: BaseException) -> bool:
    return any(type(e).__name__ in ("ReadTimeoutError", "TimeoutError", "timeout") for e in _chain(exc))


def _refused(exc: BaseException) -> bool:
    """True when the connection could not be opened at all (nothing was sent)."""
    for e in _chain(exc):
        if isinstance(e, ConnectionRefusedError) or type(e).__name__ in ("NewConnectionError", "NameResolutionError"):
            return True
    return bool(re.search(r"Connection refused|Failed to establish a new connection|Name or service not known",
                          str(exc)))
