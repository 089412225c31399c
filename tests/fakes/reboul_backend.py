"""A test double of the shop's NestJS backend (`../shared/REBOUL_BACKEND.md`) on a real PostgreSQL.

It implements the endpoints the pipeline uses, with the backend's JSON shapes (camelCase), status
codes and NestJS error bodies, on the same two tables (`tests/fakes/postgres.py`), plus a fake
Cloudinary that keeps every uploaded file's bytes (so tests compare files byte for byte):

    GET    /products/:id                          product + images, cached 5 minutes (stale on purpose)
    GET    /products/:id/images                   from the database, ordered by order then createdAt
    POST   /products/:id/images/bulk?orders=0,1   multipart, field `files` (1..7 files, <= 10 MB each),
                                                  optional `alts` / `orders` form fields; 201 + array
    DELETE /products/:productId/images/:imageId   204; 404 "Image with ID n not found"
    PATCH  /products/:productId/images/:imageId/order   JSON {"order": n}; 200 + image
    GET    /__cloudinary/<publicId>[.png]         not the backend's: the stored file, to look at it

Scriptable failures, per request (`fail_next`): an error status with a NestJS body, a dropped
connection before or after the work is done, a slow answer, and a bulk upload that stores the first
N files then fails (like a Cloudinary error part-way). Every request is logged (`requests`).

    backend = ReboulBackend(cluster.url).start()
    backend.fail_next("POST", "/products/7/images/bulk", status=500)
    backend.fail_next("POST", "/products/7/images/bulk", fail_after_files=1)
    backend.fail_next("DELETE", "/products/7/images/*", mode="drop")
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
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg

MAX_FILES = 7
MAX_FILE_BYTES = 10 * 1024 * 1024      # multer `limits.fileSize` of the real backend: 10 MB
CACHE_TTL = 300.0                      # GET /products/:id is cached for 5 minutes
CLOUD_NAME = "demo"


@dataclass
class Failure:
    method: str
    path: str                   # exact path or fnmatch pattern, without the query string
    status: int = 500
    message: str | list | None = None
    mode: str = "status"        # "status" | "drop" | "drop_after" | "slow"
    delay: float = 0.0
    fail_after_files: int | None = None
    times: int = 1

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


@dataclass
class _Raw:
    data: bytes | None


class _Drop(Exception):
    """Close the connection without an answer."""


class HttpError(Exception):
    def __init__(self, status: int, message, error: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = {"statusCode": status, "message": message,
                     "error": error or HTTPStatus(status).phrase}
        if status == 500:
            self.body = {"statusCode": 500, "message": "Internal server error"}


def _iso(ts: datetime) -> str:
    """A JavaScript Date as JSON.stringify writes it."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _image_json(row) -> dict:
    id_, product_id, url, public_id, alt, order, created_at = row
    return {"id": id_, "productId": product_id, "url": url, "publicId": public_id, "alt": alt,
            "order": order, "createdAt": _iso(created_at)}


_IMAGE_COLS = 'id, product_id, url, public_id, alt, "order", created_at'


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


class ReboulBackend:
    """The backend double. `url` is its BACKEND_URL once started."""

    def __init__(self, database_url: str, *, token: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 max_files: int = MAX_FILES, max_file_bytes: int = MAX_FILE_BYTES, cache_ttl: float = CACHE_TTL,
                 quiet: bool = True):
        self.database_url = database_url
        self.token = token
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.cache_ttl = cache_ttl
        self.clock = time.monotonic
        self.quiet = quiet
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
                  delay: float = 0.0, fail_after_files: int | None = None, times: int = 1) -> None:
        """The next `times` requests matching (method, path pattern) fail.

        mode "status": answer `status` with a NestJS body, without doing anything;
        "drop": close the connection without an answer, without doing anything;
        "drop_after": do the work (commit), then close the connection without an answer;
        "slow": sleep `delay` seconds, then do the work normally.
        `fail_after_files=n` (bulk only): store the first n files, then fail with `status` (or drop
        the connection when mode is "drop").
        """
        with self._lock:
            self._failures.append(Failure(method.upper(), path, status, message, mode, delay, fail_after_files,
                                          times))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _take_failure(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for f in self._failures:
                if f.matches(method, path):
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
        row = conn.execute("SELECT id, name, reference FROM products WHERE id = %s", (product_id,)).fetchone()
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
            pid, name, reference = self._product(conn, product_id)
            body = {"id": pid, "name": name, "reference": reference, "images": self._images(conn, pid),
                    "variants": []}
        self._cache[product_id] = (now, body)
        return 200, body

    def get_images(self, product_id: int) -> tuple[int, object]:
        with self._db() as conn:
            self._product(conn, product_id)
            return 200, self._images(conn, product_id)

    def post_bulk(self, product_id: int, query: dict, parts: list[dict], failure: Failure | None,
                  log: LoggedRequest) -> tuple[int, object]:
        files = [p for p in parts if p["filename"] is not None and p["name"] == "files"]
        unexpected = [p for p in parts if p["filename"] is not None and p["name"] != "files"]
        if unexpected:      # multer: a file under another field name
            raise HttpError(400, "Unexpected field", "Bad Request")
        fields: dict[str, list[str]] = {}
        for p in parts:
            if p["filename"] is None:
                fields.setdefault(p["name"], []).append(p["data"].decode("utf-8", "replace"))
        log.form = fields
        log.files = [{"filename": p["filename"], "content_type": p["content_type"], "size": len(p["data"]),
                      "sha256": hashlib.sha256(p["data"]).hexdigest()} for p in files]
        if not files:
            raise HttpError(400, "At least one image file is required", "Bad Request")
        if len(files) > self.max_files:
            raise HttpError(400, f"You can upload up to {self.max_files} images at once", "Bad Request")
        for p in files:
            if len(p["data"]) > self.max_file_bytes:
                raise HttpError(400, f"File {p['filename']} exceeds the 10MB size limit", "Bad Request")

        def listed(name: str) -> list[str]:
            raw = query.get(name) or fields.get(name) or []
            return [v.strip() for item in raw for v in item.split(",") if v.strip() != ""]

        try:
            orders = [int(v) for v in listed("orders")]
        except ValueError:
            raise HttpError(400, "orders must be a comma-separated list of integers", "Bad Request")
        alts = fields.get("alts") or []
        created = []
        with self._db() as conn:
            self._product(conn, product_id)
            for i, p in enumerate(files):
                if failure and failure.fail_after_files is not None and i >= failure.fail_after_files:
                    if failure.mode == "drop":
                        raise _Drop()
                    raise HttpError(failure.status, failure.message or "Internal server error")
                public_id = f"products/{secrets.token_hex(10)}"
                fmt = _image_format(p["data"])
                self.cloudinary[public_id] = p["data"]
                url = f"https://res.cloudinary.com/{CLOUD_NAME}/image/upload/v1/{public_id}.{fmt}"
                order = orders[i] if i < len(orders) else i
                alt = alts[i] if i < len(alts) else None
                row = conn.execute(
                    f'INSERT INTO images (product_id, url, public_id, alt, "order", created_at) '
                    f'VALUES (%s, %s, %s, %s, %s, clock_timestamp()) RETURNING {_IMAGE_COLS}',
                    (product_id, url, public_id, alt, order)).fetchone()
                created.append(_image_json(row))
        return 201, created

    def delete_image(self, product_id: int, image_id: int) -> tuple[int, object]:
        with self._db() as conn:
            row = conn.execute("SELECT public_id FROM images WHERE id = %s AND product_id = %s",
                               (image_id, product_id)).fetchone()
            if row is None:
                raise HttpError(404, f"Image with ID {image_id} not found")
            self.cloudinary.pop(row[0], None)      # Cloudinary first, then the row
            conn.execute("DELETE FROM images WHERE id = %s", (image_id,))
        return 204, None

    def patch_order(self, product_id: int, image_id: int, body: bytes) -> tuple[int, object]:
        try:
            order = json.loads(body or b"{}").get("order")
        except (ValueError, AttributeError):
            raise HttpError(400, "Unexpected token in JSON", "Bad Request")
        if not isinstance(order, int):
            raise HttpError(400, ["order must be an integer number"], "Bad Request")
        with self._db() as conn:
            row = conn.execute(f'UPDATE images SET "order" = %s WHERE id = %s AND product_id = %s '
                               f'RETURNING {_IMAGE_COLS}', (order, image_id, product_id)).fetchone()
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
                pid = num(segs[1])
                ctype = headers.get("Content-Type", "")
                if ctype.lower().startswith("multipart/"):
                    parts = parse_multipart(body, ctype)
                else:       # multer ignores other bodies: no files; urlencoded fields still read
                    parts = [{"name": k, "filename": None, "content_type": None, "data": v.encode()}
                             for k, vs in parse_qs(body.decode("utf-8", "replace")).items() for v in vs]
                return self.post_bulk(pid, query, parts, failure, log)
            if method == "DELETE" and len(segs) == 4 and segs[2] == "images":
                return self.delete_image(num(segs[1]), num(segs[3]))
            if method == "PATCH" and len(segs) == 5 and segs[2] == "images" and segs[4] == "order":
                return self.patch_order(num(segs[1]), num(segs[3]), body)
        raise HttpError(404, f"Cannot {method} {path}")

    def _handler_class(self):
        backend = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "ReboulBackendDouble/1.0"

            def log_message(self, fmt, *args):  # noqa: N802 - stdlib name
                if not backend.quiet:
                    super().log_message(fmt, *args)

            def _handle(self, method: str) -> None:
                split = urlsplit(self.path)
                path, query = split.path, parse_qs(split.query, keep_blank_values=True)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                log = LoggedRequest(method, path, query, dict(self.headers.items()))
                backend.requests.append(log)
                failure = backend._take_failure(method, path)
                try:
                    if failure and failure.mode == "slow":
                        time.sleep(failure.delay)
                    if failure and failure.fail_after_files is None:
                        if failure.mode == "drop":
                            raise _Drop()
                        if failure.mode == "status":
                            raise HttpError(failure.status, failure.message or HTTPStatus(failure.status).phrase)
                    status, payload = backend._dispatch(method, path, query, self.headers, body, failure, log)
                    if failure and failure.mode == "drop_after":
                        raise _Drop()
                except _Drop:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                except HttpError as exc:
                    status, payload = exc.status, exc.body
                except Exception as exc:  # a bug in the double: answer like NestJS, keep the trace
                    import traceback
                    traceback.print_exc()
                    status, payload = 500, {"statusCode": 500, "message": "Internal server error"}
                if isinstance(payload, _Raw):
                    if payload.data is None:
                        status, payload = 404, {"statusCode": 404, "message": "Not Found"}
                    else:
                        fmt = _image_format(payload.data)
                        log.status = 200
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg" if fmt == "jpg" else f"image/{fmt}")
                        self.send_header("Content-Length", str(len(payload.data)))
                        self.end_headers()
                        self.wfile.write(payload.data)
                        return
                log.status = status
                data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    if payload is not None:
                        self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):   # the client gave up (timeout)
                    self.close_connection = True

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
