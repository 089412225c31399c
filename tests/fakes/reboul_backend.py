"""A test double of the shop's NestJS backend (`../shared/REBOUL_BACKEND.md`) on a real PostgreSQL.

It answers as the shop's own server does (its source: `backend/` of the shop's public repository,
`products.controller.ts`, `products.service.ts`, `multer.config.ts`, `multer-exception.filter.ts`,
`cloudinary.service.ts`), with the backend's JSON shapes (camelCase), status codes and NestJS error
bodies, on the same tables (`tests/fakes/postgres.py`), plus a fake Cloudinary that keeps every
uploaded file's bytes (so tests compare files byte for byte):

    GET    /products/:id                          product + images, cached 5 minutes (stale on purpose)
    GET    /products/:id/images                   from the database, ordered by order then createdAt
    POST   /products/:id/images/bulk?orders=0,1   multipart, field `files` (multer: 1..7 files, each
                                                  under 10 MiB, jpg/jpeg/png/gif/webp part types),
                                                  optional `alts` / `orders` form fields; 201 + array
    DELETE /products/:productId/images/:imageId   204; 404 "Image with ID n not found" (productId unchecked)
    PATCH  /products/:productId/images/:imageId/order   JSON {"order": n}; 200 + image
    GET    /__cloudinary/<publicId>[.png]         not the backend's: the stored file, to look at it

What the real server does, and so does the double:

- multer reads the whole request before the handler runs; its refusals store nothing: a file of
  10,485,760 bytes or more -> 413 {"message": "File too large", "error": "Payload Too Large"}; an 8th
  file -> 400 "Unexpected field - files" (a file under another field: "Unexpected field - <field>");
  a part type that is not jpg/jpeg/png/gif/webp -> 400 "Only image files are allowed!";
- `orders` comes from the query (comma-separated) or else from form fields; a missing order puts the
  image after the product's highest order; a non-numeric one fails the save of that file with 500
  "Internal server error" (the earlier files of the bulk are kept);
- files are uploaded to Cloudinary one by one, each saved at once: a Cloudinary failure part-way
  answers 500 {"message": "Cloudinary upload failed: …"} and keeps the earlier files; a failed
  Cloudinary delete answers 500 "Cloudinary delete failed: …" and keeps the row.

The production front (`front=True`, or `front_max_body=` / `front_rate=` / `front_burst=`): nginx,
the only published port of the shop's production compose file. `client_max_body_size 20M`: a body
over 20 MiB gets nginx's own 413 HTML page and never reaches the backend; `limit_req rate=10r/s
burst=20 nodelay`: beyond it, nginx's 503 HTML page (nginx's leaky-bucket accounting).

Scriptable failures, per request (`fail_next`): an error status with a NestJS body, the front's HTML
page for a status, a dropped connection before or after the work is done, a slow answer, a bulk
upload that stores the first N files then fails (like a Cloudinary error part-way), and backends that
misbehave (stores every file twice, answers without ids or with one id repeated, never sees the
orders). Every request is logged (`requests`).

    backend = ReboulBackend(cluster.url, front=True).start()
    backend.fail_next("POST", "/products/7/images/bulk", status=500)
    backend.fail_next("POST", "/products/7/images/bulk", fail_after_files=1, mode="cloudinary")
    backend.fail_next("DELETE", "/products/7/images/*", mode="drop")
    backend.fail_next("GET", "/products/7/images", status=503, mode="front")
"""

from __future__ import annotations

import email.parser
import email.policy
import fnmatch
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg

MAX_FILES = 7                          # FilesInterceptor('files', 7)
MAX_FILE_BYTES = 10 * 1024 * 1024      # multer `limits.fileSize`: a file of this size is already refused
IMAGE_MIME = re.compile(r"/(jpg|jpeg|png|gif|webp)$")   # multer.config.ts fileFilter
CACHE_TTL = 300.0                      # GET /products/:id is cached for 5 minutes
CLOUD_NAME = "demo"

FRONT_MAX_BODY = 20 * 1024 * 1024      # nginx `client_max_body_size 20M`
FRONT_RATE = 10.0                      # nginx `limit_req_zone ... rate=10r/s`
FRONT_BURST = 20                       # nginx `limit_req ... burst=20 nodelay`
NGINX = "nginx/1.27.3"                 # nginx:alpine, server_tokens on

MODES = ("status", "front", "drop", "drop_after", "slow", "cloudinary", "duplicate", "no_ids", "same_id",
         "ignore_orders")


def nginx_page(status: int) -> bytes:
    """nginx's own error page (ngx_http_special_response.c), CRLF line ends."""
    title = f"{status} {_NGINX_TITLES.get(status) or HTTPStatus(status).phrase}"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>{NGINX}</center>\r\n</body>\r\n</html>\r\n").encode()


_NGINX_TITLES = {413: "Request Entity Too Large", 503: "Service Temporarily Unavailable",
                 502: "Bad Gateway", 504: "Gateway Time-out"}


@dataclass
class Failure:
    method: str
    path: str                   # exact path or fnmatch pattern, without the query string
    status: int = 500
    message: str | list | None = None
    mode: str = "status"        # one of MODES
    delay: float = 0.0
    fail_after_files: int | None = None
    times: int = 1
    skip: int = 0               # let this many matching requests through first

    def matches(self, method: str, path: str) -> bool:
        return method == self.method.upper() and (path == self.path or fnmatch.fnmatchcase(path, self.path))


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict
    headers: dict
    status: int | None = None               # None: the connection was dropped
    files: list[dict] = field(default_factory=list)   # [{filename, content_type, size, sha256}]
    form: dict = field(default_factory=dict)
    body_size: int = 0
    by_front: bool = False                  # answered by the nginx front, never reached the backend


@dataclass
class _Raw:
    data: bytes | None


class _Drop(Exception):
    """Close the connection without an answer."""


class _FrontPage(Exception):
    """nginx answers itself with its HTML page."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class HttpError(Exception):
    """A NestJS HttpException: `{"statusCode", "message", "error"}`; a 500 without a message is the
    filter's generic `{"statusCode": 500, "message": "Internal server error"}`."""

    def __init__(self, status: int, message=None, error: str | None = None):
        super().__init__(message)
        self.status = status
        if status == 500 and message is None:
            self.body = {"statusCode": 500, "message": "Internal server error"}
        else:
            self.body = {"statusCode": status, "message": message if message is not None else HTTPStatus(status).phrase,
                         "error": error or HTTPStatus(status).phrase}


def _iso(ts: datetime) -> str:
    """A JavaScript Date as JSON.stringify writes it."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _image_json(row) -> dict:
    id_, product_id, url, public_id, alt, order, created_at = row
    return {"id": id_, "productId": product_id, "url": url, "publicId": public_id, "alt": alt,
            "order": order, "createdAt": _iso(created_at)}


_IMAGE_COLS = 'id, product_id, url, public_id, alt, "order", created_at'


def js_number(text: str):
    """JavaScript's Number(text) for what a form or query holds: an int, a float, or None for NaN."""
    t = text.strip()
    if t == "":
        return 0
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", t):
        return int(t, 16)
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", t):
        return None
    x = float(t)
    return int(x) if x.is_integer() else x


def parse_multipart(body: bytes, content_type: str) -> list[dict]:
    """multipart/form-data -> [{name, filename, content_type, data}], byte for byte.

    Headers of each part are parsed by the stdlib `email` parser (quoting, RFC 2231 names); the
    parts themselves are cut at the boundary, so binary payloads are never touched.
    """
    ctype = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(f"Content-Type: {content_type}\n\n")
    if ctype.get_content_type() != "multipart/form-data" or not ctype.get_param("boundary"):
        raise HttpError(400, "Multipart: Boundary not found", "Bad Request")
    delimiter = b"--" + ctype.get_param("boundary").encode("latin-1")
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    if not first.startswith(delimiter):
        raise HttpError(400, "Multipart: Unexpected end of form", "Bad Request")
    chunks[0] = first[len(delimiter):]
    parts = []
    for chunk in chunks:
        if chunk.startswith(b"--"):
            break                               # closing delimiter
        if not chunk.startswith(b"\r\n"):
            raise HttpError(400, "Multipart: Malformed part header", "Bad Request")
        head, sep, data = chunk[2:].partition(b"\r\n\r\n")
        if not sep:
            raise HttpError(400, "Multipart: Malformed part header", "Bad Request")
        headers = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(head + b"\r\n\r\n")
        disposition = headers.get("Content-Disposition")
        if disposition is None:
            raise HttpError(400, "Multipart: Malformed part header", "Bad Request")
        parts.append({"name": headers.get_param("name", header="content-disposition"),
                      "filename": headers.get_filename(),
                      "content_type": headers.get_content_type() if headers.get("Content-Type") else None,
                      "data": data})
    else:
        raise HttpError(400, "Multipart: Unexpected end of form", "Bad Request")
    return parts


def _image_format(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


class _LimitReq:
    """nginx's limit_req with nodelay (ngx_http_limit_req_module): `excess` drains at `rate` per
    second, every accepted request adds one; a request that would bring it over `burst` is refused
    and leaves the state unchanged."""

    def __init__(self, rate: float, burst: int, clock):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.excess: float | None = None
        self.last = 0.0
        self.lock = threading.Lock()

    def allow(self) -> bool:
        with self.lock:
            now = self.clock()
            if self.excess is None:
                self.excess, self.last = 0.0, now
                return True
            excess = max(self.excess - self.rate * (now - self.last) + 1.0, 0.0)
            if excess > self.burst:
                return False
            self.excess, self.last = excess, now
            return True


class ReboulBackend:
    """The backend double. `url` is its BACKEND_URL once started (through the front when enabled)."""

    def __init__(self, database_url: str, *, token: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 max_files: int = MAX_FILES, max_file_bytes: int = MAX_FILE_BYTES, cache_ttl: float = CACHE_TTL,
                 front: bool = False, front_max_body: int | None = None, front_rate: float | None = None,
                 front_burst: int | None = None, quiet: bool = True):
        self.database_url = database_url
        self.token = token
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.cache_ttl = cache_ttl
        self.clock = time.monotonic
        self.quiet = quiet
        self.front_max_body = front_max_body if front_max_body is not None else (FRONT_MAX_BODY if front else None)
        rate = front_rate if front_rate is not None else (FRONT_RATE if front else None)
        burst = front_burst if front_burst is not None else FRONT_BURST
        self._limit = _LimitReq(rate, burst, lambda: self.clock()) if rate else None
        self.cloudinary: dict[str, bytes] = {}        # public_id -> bytes (the fake Cloudinary)
        self.requests: list[LoggedRequest] = []
        self._failures: list[Failure] = []
        self._cache: dict[int, tuple[float, dict]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "ReboulBackend":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="reboul-backend", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ReboulBackend":
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- scripting ----------------------------------------------------------------------------

    def fail_next(self, method: str, path: str, *, status: int = 500, message=None, mode: str = "status",
                  delay: float = 0.0, fail_after_files: int | None = None, times: int = 1,
                  skip: int = 0) -> None:
        """The next `times` requests matching (method, path pattern) fail or misbehave (after `skip`
        matching requests let through).

        "status": answer `status` with a NestJS body (`message`), without doing anything;
        "front": nginx answers `status` (413, 502, 503, 504) with its HTML page, the backend never
        sees the request;
        "drop": close the connection without an answer, without doing anything;
        "drop_after": do the work (commit), then close the connection without an answer;
        "slow": sleep `delay` seconds, then do the work normally;
        "cloudinary": Cloudinary fails — a bulk stores its first `fail_after_files` files (default 0)
        then answers 500 "Cloudinary upload failed: <message>"; a DELETE answers 500 "Cloudinary
        delete failed: <message>" and keeps the row;
        "duplicate" (bulk): a backend that stores every file twice and answers the first copies;
        "no_ids" / "same_id" (bulk): stores the files, answers without `id` / with the first id repeated;
        "ignore_orders" (bulk): the `orders` never arrive (the images go after the highest order).
        `fail_after_files=n` with "status" or "drop" (bulk only): store the first n files, then fail
        with `status` (or drop the connection).
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            self._failures.append(Failure(method.upper(), path, status, message, mode, delay, fail_after_files,
                                          times, skip))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _take_failure(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for f in self._failures:
                if f.matches(method, path):
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.times -= 1
                    if f.times <= 0:
                        self._failures.remove(f)
                    return f
        return None

    def calls(self, method: str | None = None, pattern: str | None = None) -> list[LoggedRequest]:
        return [r for r in self.requests
                if (method is None or r.method == method.upper())
                and (pattern is None or fnmatch.fnmatchcase(r.path, pattern))]

    def clear_log(self) -> None:
        self.requests.clear()

    def expire_cache(self) -> None:
        self._cache.clear()

    def file_bytes(self, image: dict) -> bytes:
        """The bytes stored on the fake Cloudinary for an image (JSON or row dict)."""
        return self.cloudinary[image.get("publicId") or image.get("public_id")]

    # --- the endpoints --------------------------------------------------------------------------

    def _db(self):
        return psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)

    def _product(self, conn, product_id: int) -> tuple:
        row = conn.execute("SELECT p.id, p.name, p.reference, p.price, p.category_id, c.name, c.slug "
                           "FROM products p JOIN categories c ON c.id = p.category_id WHERE p.id = %s",
                           (product_id,)).fetchone()
        if row is None:
            raise HttpError(404, f"Product with ID {product_id} not found")
        return row

    def _images(self, conn, product_id: int) -> list[dict]:
        rows = conn.execute(f'SELECT {_IMAGE_COLS} FROM images WHERE product_id = %s '
                            f'ORDER BY "order" ASC, created_at ASC, id ASC', (product_id,)).fetchall()
        return [_image_json(r) for r in rows]

    def get_product(self, product_id: int) -> tuple[int, object]:
        now = self.clock()
        cached = self._cache.get(product_id)
        if cached and now - cached[0] < self.cache_ttl:
            return 200, cached[1]
        with self._db() as conn:
            pid, name, reference, price, category_id, cat_name, cat_slug = self._product(conn, product_id)
            body = {"id": pid, "name": name, "reference": reference,
                    "price": str(Decimal(price).quantize(Decimal("0.01"))),   # TypeORM: decimal as a string
                    "categoryId": category_id, "category": {"id": category_id, "name": cat_name, "slug": cat_slug},
                    "images": self._images(conn, pid), "variants": []}
        self._cache[product_id] = (now, body)
        return 200, body

    def get_images(self, product_id: int) -> tuple[int, object]:
        with self._db() as conn:
            self._product(conn, product_id)
            return 200, self._images(conn, product_id)

    def _multer(self, parts: list[dict]) -> list[dict]:
        """multer (memoryStorage, FilesInterceptor('files', 7), multerConfig): the accepted files, or
        its first refusal — raised before the handler runs, so nothing of the request is stored."""
        files = []
        for p in parts:
            if p["filename"] is None:
                continue
            if p["name"] != "files" or len(files) >= self.max_files:
                raise HttpError(400, f"Unexpected field - {p['name']}", "Bad Request")
            mimetype = p["content_type"] or "application/octet-stream"
            if not IMAGE_MIME.search(mimetype):
                raise HttpError(400, "Only image files are allowed!", "Bad Request")
            if len(p["data"]) >= self.max_file_bytes:
                raise HttpError(413, "File too large", "Payload Too Large")
            files.append(p)
        return files

    def post_bulk(self, product_id: int, query: dict, parts: list[dict], failure: Failure | None,
                  log: LoggedRequest) -> tuple[int, object]:
        fields: dict[str, list[str]] = {}
        for p in parts:
            if p["filename"] is None:
                fields.setdefault(p["name"], []).append(p["data"].decode("utf-8", "replace"))
        log.form = fields
        log.files = [{"filename": p["filename"], "content_type": p["content_type"], "size": len(p["data"]),
                      "sha256": hashlib.sha256(p["data"]).hexdigest()} for p in parts if p["filename"] is not None]
        files = self._multer(parts)
        if not files:
            raise HttpError(400, "At least one image file is required", "Bad Request")
        mode = failure.mode if failure else None

        # products.controller.ts: the query's orders, else the form fields (Number() of each)
        query_orders = (query.get("orders") or [None])[-1] if mode != "ignore_orders" else None
        if query_orders:
            raw_orders = [v.strip() for v in query_orders.split(",")]
        else:
            raw_orders = (fields.get("orders") or fields.get("orders[]") or []) if mode != "ignore_orders" else []
        orders = [js_number(v) if v != "" else "undefined" for v in raw_orders]
        alts = fields.get("alts") or fields.get("alts[]") or []

        created = []
        with self._db() as conn:
            self._product(conn, product_id)
            highest = conn.execute('SELECT "order" FROM images WHERE product_id = %s ORDER BY "order" DESC LIMIT 1',
                                   (product_id,)).fetchone()
            next_order = highest[0] + 1 if highest else 0
            for i, p in enumerate(files):
                if failure and (failure.fail_after_files is not None or mode == "cloudinary") \
                        and i >= (failure.fail_after_files or 0):
                    if mode == "drop":
                        raise _Drop()
                    if mode == "cloudinary":
                        raise HttpError(500, f"Cloudinary upload failed: {failure.message or 'Request Timeout'}",
                                        "Internal Server Error")
                    raise HttpError(failure.status, failure.message)
                order = orders[i] if i < len(orders) else "undefined"
                if order == "undefined":
                    order = next_order
                    next_order += 1
                for _copy in range(2 if mode == "duplicate" else 1):
                    public_id = f"products/{secrets.token_hex(10)}"
                    fmt = _image_format(p["data"])
                    self.cloudinary[public_id] = p["data"]      # Cloudinary first, then the row
                    if not isinstance(order, int):              # NaN or 1.5 into an integer column
                        raise HttpError(500)
                    url = f"https://res.cloudinary.com/{CLOUD_NAME}/image/upload/v1/{public_id}.{fmt}"
                    alt = alts[i] if i < len(alts) else None
                    row = conn.execute(
                        f'INSERT INTO images (product_id, url, public_id, alt, "order", created_at) '
                        f'VALUES (%s, %s, %s, %s, %s, clock_timestamp()) RETURNING {_IMAGE_COLS}',
                        (product_id, url, public_id, alt or None, order)).fetchone()
                    if _copy == 0:
                        created.append(_image_json(row))
        if mode == "no_ids":
            created = [{k: v for k, v in img.items() if k != "id"} for img in created]
        elif mode == "same_id":
            created = [{**img, "id": created[0]["id"]} for img in created]
        return 201, created

    def delete_image(self, product_id: int, image_id: int, failure: Failure | None = None) -> tuple[int, object]:
        # products.service.ts deleteImage(id): the productId of the path is not checked
        with self._db() as conn:
            row = conn.execute("SELECT public_id FROM images WHERE id = %s", (image_id,)).fetchone()
            if row is None:
                raise HttpError(404, f"Image with ID {image_id} not found")
            if row[0]:
                if failure and failure.mode == "cloudinary":
                    raise HttpError(500, f"Cloudinary delete failed: {failure.message or 'Request Timeout'}",
                                    "Internal Server Error")
                self.cloudinary.pop(row[0], None)      # Cloudinary first, then the row
            conn.execute("DELETE FROM images WHERE id = %s", (image_id,))
        return 204, None

    def patch_order(self, product_id: int, image_id: int, body: bytes) -> tuple[int, object]:
        try:
            order = json.loads(body or b"{}").get("order")
        except (ValueError, AttributeError):
            raise HttpError(400, "Unexpected token in JSON", "Bad Request")
        if not isinstance(order, (int, float)) or isinstance(order, bool):
            raise HttpError(400, ["order must not be less than 0",
                                  "order must be a number conforming to the specified constraints"], "Bad Request")
        if order < 0:
            raise HttpError(400, ["order must not be less than 0"], "Bad Request")
        if not float(order).is_integer():
            raise HttpError(500)
        with self._db() as conn:
            row = conn.execute(f'UPDATE images SET "order" = %s WHERE id = %s RETURNING {_IMAGE_COLS}',
                               (int(order), image_id)).fetchone()
            if row is None:
                raise HttpError(404, f"Image with ID {image_id} not found")
        return 200, _image_json(row)

    # --- HTTP plumbing ---------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, query: dict, headers, body: bytes, failure: Failure | None,
                  log: LoggedRequest) -> tuple[int, object]:
        if method == "GET" and path.startswith("/__cloudinary/"):    # debug route: see a stored file
            return 200, _Raw(self.cloudinary.get(path[len("/__cloudinary/"):].rsplit(".", 1)[0]))
        if self.token is not None and headers.get("Authorization", "") != f"Bearer {self.token}":
            raise HttpError(401, "Unauthorized")
        segs = [s for s in path.split("/") if s]

        def num(s: str) -> int:
            if not re.fullmatch(r"-?\d+", s):
                raise HttpError(400, "Validation failed (numeric string is expected)", "Bad Request")
            return int(s)

        if len(segs) >= 2 and segs[0] == "products":
            if method == "GET" and len(segs) == 2:
                return self.get_product(num(segs[1]))
            if method == "GET" and len(segs) == 3 and segs[2] == "images":
                return self.get_images(num(segs[1]))
            if method == "POST" and len(segs) == 4 and segs[2:] == ["images", "bulk"]:
                ctype = headers.get("Content-Type", "")
                if ctype.lower().startswith("multipart/"):
                    parts = parse_multipart(body, ctype)
                else:       # multer ignores other bodies: no files; urlencoded fields still read
                    parts = [{"name": k, "filename": None, "content_type": None, "data": v.encode()}
                             for k, vs in parse_qs(body.decode("utf-8", "replace")).items() for v in vs]
                if len(query.get("orders") or []) > 1:     # ?orders=..&orders=..: an array has no split()
                    raise HttpError(500)
                pid = num(segs[1])
                return self.post_bulk(pid, query, parts, failure, log)
            if method == "DELETE" and len(segs) == 4 and segs[2] == "images":
                pid, image_id = num(segs[1]), num(segs[3])
                return self.delete_image(pid, image_id, failure)
            if method == "PATCH" and len(segs) == 5 and segs[2] == "images" and segs[4] == "order":
                return self.patch_order(num(segs[1]), num(segs[3]), body)
        raise HttpError(404, f"Cannot {method} {path}")

    def _front(self, path: str, length: int) -> None:
        """The nginx front: body size first (checked on Content-Length), then the request rate."""
        if path.startswith("/__cloudinary/"):
            return
        if self.front_max_body is not None and length > self.front_max_body:
            raise _FrontPage(413)
        if self._limit is not None and not self._limit.allow():
            raise _FrontPage(503)

    def _handler_class(self):
        backend = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "ReboulBackendDouble/1.0"

            def log_message(self, fmt, *args):  # noqa: N802 - stdlib name
                if not backend.quiet:
                    super().log_message(fmt, *args)

            def _send(self, status: int, data: bytes, ctype: str | None, extra: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    if ctype:
                        self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (extra or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):   # the client gave up (timeout)
                    self.close_connection = True

            def _handle(self, method: str) -> None:
                split = urlsplit(self.path)
                path, query = split.path, parse_qs(split.query, keep_blank_values=True)
                length = int(self.headers.get("Content-Length") or 0)
                log = LoggedRequest(method, path, query, dict(self.headers.items()), body_size=length)
                backend.requests.append(log)
                try:
                    backend._front(path, length)
                except _FrontPage as page:
                    if length:                    # nginx's lingering close: the body is read and dropped
                        self.rfile.read(length)
                    log.status, log.by_front = page.status, True
                    self.close_connection = True
                    self._send(page.status, nginx_page(page.status), "text/html",
                               {"Server": NGINX, "Connection": "close"})
                    return
                body = self.rfile.read(length) if length else b""
                failure = backend._take_failure(method, path)
                try:
                    if failure and failure.mode == "front":
                        raise _FrontPage(failure.status)
                    if failure and failure.mode == "slow":
                        time.sleep(failure.delay)
                    if failure and failure.fail_after_files is None:
                        if failure.mode == "drop":
                            raise _Drop()
                        if failure.mode == "status":
                            raise HttpError(failure.status, failure.message)
                    status, payload = backend._dispatch(method, path, query, self.headers, body, failure, log)
                    if failure and failure.mode == "drop_after":
                        raise _Drop()
                except _FrontPage as page:
                    log.status, log.by_front = page.status, True
                    self._send(page.status, nginx_page(page.status), "text/html", {"Server": NGINX})
                    return
                except _Drop:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                except HttpError as exc:
                    status, payload = exc.status, exc.body
                except Exception:  # a bug in the double: answer like NestJS, keep the trace
                    import traceback
                    traceback.print_exc()
                    status, payload = 500, {"statusCode": 500, "message": "Internal server error"}
                if isinstance(payload, _Raw):
                    if payload.data is None:
                        status, payload = 404, {"statusCode": 404, "message": "Not Found"}
                    else:
                        fmt = _image_format(payload.data)
                        log.status = 200
                        self._send(200, payload.data, "image/jpeg" if fmt == "jpg" else f"image/{fmt}")
                        return
                log.status = status
                data = b"" if payload is None else json.dumps(payload).encode()
                self._send(status, data, "application/json; charset=utf-8" if payload is not None else None)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

            def do_DELETE(self):  # noqa: N802
                self._handle("DELETE")

            def do_PATCH(self):  # noqa: N802
                self._handle("PATCH")

            def do_PUT(self):  # noqa: N802
                self._handle("PUT")

        return Handler
