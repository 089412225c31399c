"""HTTP client of the shop's NestJS backend (`BACKEND_URL`), contract in `shared/REBOUL_BACKEND.md`.

One `requests.Session` per client: bearer token when `BACKEND_TOKEN` is set (never printed),
timeouts on every call, GET and DELETE retried with exponential backoff by urllib3's `Retry` on the
session's adapter (connection errors, 429/502/503/504). POST is never retried on a read error or an
error status: the upload reconciles from its intent journal instead (a lost answer may hide a
success). A connection that was refused is retried for every method, since nothing was sent.

Every failure becomes an `UploadError` in French naming the reference folder.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..core.errors import UploadError

CONNECT_TIMEOUT = 5.0     # seconds to open a connection
READ_TIMEOUT = 30.0       # seconds to wait for a GET/DELETE answer
UPLOAD_TIMEOUT = 300.0    # seconds to wait for the bulk upload (the backend uploads to Cloudinary)
RETRIES = 3
BACKOFF = 0.5             # urllib3: 0, 2*BACKOFF, 4*BACKOFF, ... seconds between tries
RETRY_STATUSES = (429, 502, 503, 504)


def safe_url(url: str) -> str:
    """The URL without any user:password part."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def nest_message(response: requests.Response) -> str:
    """The `message` of a NestJS error body (string or list), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message") is not None:
        msg = body["message"]
        return "; ".join(str(m) for m in msg) if isinstance(msg, list) else str(msg)
    text = (response.text or "").strip()
    return text[:200] if text else (response.reason or f"HTTP {response.status_code}")


class BackendClient:
    def __init__(self, settings, folder: str, *, retries: int | None = None, backoff: float | None = None):
        self.base = settings.backend_url.rstrip("/")
        self.shown = safe_url(self.base)
        self.folder = folder
        self._token = settings.backend_token
        self.session = requests.Session()
        retry = Retry(total=RETRIES if retries is None else retries,
                      backoff_factor=BACKOFF if backoff is None else backoff,
                      status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "DELETE"}),
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
        """GET /products/:id/images: the product's images from the database (never the cached product)."""
        r = self._request("GET", f"/products/{product_id}/images", timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        data = self._json(r)
        if not isinstance(data, list):
            raise self._error(f"réponse inattendue de GET /products/{product_id}/images (liste attendue)")
        return data

    def upload_bulk(self, product_id: int, files: list[tuple[str, bytes, str]], orders: list[int]) -> list[dict]:
        """POST /products/:id/images/bulk?orders=…: files as (filename, bytes, mime) -> created images."""
        if not 1 <= len(files) <= 7:
            raise ValueError("1 to 7 files per request")
        multipart = [("files", (name, data, mime)) for name, data, mime in files]
        r = self._request("POST", f"/products/{product_id}/images/bulk",
                          params={"orders": ",".join(str(o) for o in orders)}, files=multipart,
                          timeout=(CONNECT_TIMEOUT, UPLOAD_TIMEOUT))
        data = self._json(r)
        if not isinstance(data, list) or len(data) != len(files):
            raise self._error(f"réponse inattendue de l'envoi groupé ({len(files)} images envoyées) ; "
                              f"la prochaine exécution vérifiera ce que le backend a enregistré")
        return data

    def delete_image(self, product_id: int, image_id: int) -> bool:
        """DELETE one image; False when it was already gone (404), which is fine."""
        r = self._request("DELETE", f"/products/{product_id}/images/{image_id}",
                          timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_404=True)
        return r.status_code != 404

    # --- plumbing -------------------------------------------------------------------------------

    def _error(self, text: str) -> UploadError:
        return UploadError(f"{self.folder} : {text}", reference=self.folder)

    def _request(self, method: str, path: str, *, allow_404: bool = False, **kw) -> requests.Response:
        what = f"{method} {path}"
        try:
            r = self.session.request(method, self.base + path, **kw)
        except requests.exceptions.ConnectTimeout:
            raise self._error(f"Backend injoignable : {self.shown} (délai de connexion dépassé) — vérifiez que le "
                              f"backend Reboul est démarré (ou le tunnel SSH).") from None
        except requests.exceptions.ReadTimeout:
            extra = (" ; l'envoi a peut-être abouti : la prochaine exécution le vérifiera avant de renvoyer quoi que "
                     "ce soit" if method == "POST" else "")
            raise self._error(f"le backend ({self.shown}) n'a pas répondu à temps ({what}){extra}.") from None
        except requests.exceptions.ConnectionError as exc:
            if _timed_out(exc):     # read timeouts retried by urllib3 until exhausted
                raise self._error(f"le backend ({self.shown}) n'a pas répondu à temps ({what}).") from None
            if _refused(exc):
                raise self._error(f"Backend injoignable : {self.shown} — vérifiez que le backend Reboul est démarré "
                                  f"(ou le tunnel SSH).") from None
            extra = (" ; l'envoi a peut-être abouti : la prochaine exécution le vérifiera avant de renvoyer quoi que "
                     "ce soit" if method == "POST" else "")
            raise self._error(f"connexion au backend ({self.shown}) interrompue pendant {what}{extra}.") from None
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
            raise self._error(f"le backend a refusé {what} ({r.status_code}) : {msg}")
        return r

    def _json(self, r: requests.Response):
        try:
            return r.json()
        except ValueError:
            raise self._error(f"réponse illisible du backend ({r.status_code}, JSON attendu)") from None


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
