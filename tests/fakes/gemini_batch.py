"""The fake Gemini's Batch API and Files API (served by `FakeGemini`, tests/fakes/gemini_server.py).

Wire format as the real `google-genai` SDK (3.6.1) sends and reads it (../shared/notes/gemini.md §4
and §7, captured against a probe server):

- `POST /upload/{ver}/files` with `X-Goog-Upload-Protocol: resumable`, `X-Goog-Upload-Command:
  start`, `X-Goog-Upload-Header-Content-Length` / `-Content-Type` and `{"file": {...}}`: answers
  200 with an `X-Goog-Upload-URL` header (this server's own address, an `upload_id`) and
  `X-Goog-Upload-Status: active`. Then `POST <that url>` with `X-Goog-Upload-Command: upload`
  (8 MiB chunks) or `upload, finalize` and `X-Goog-Upload-Offset` = the bytes received so far (a
  wrong offset is refused); the last one answers `X-Goog-Upload-Status: final` and `{"file": File}`.
  The upload URL carries no API key (the upload id is the capability), as Google's does.
- `GET /{ver}/files/{id}` (a File), `DELETE /{ver}/files/{id}`, `GET /{ver}/files/{id}:download
  ?alt=media`: the bytes of a file the service GENERATED (a job's responses file); a file created
  by upload cannot be downloaded (400), as the SDK's docstring says.
- `POST /{ver}/models/{model}:batchGenerateContent` `{"batch": {"displayName", "inputConfig":
  {"requests": {"requests": [{"request": {...}, "metadata": {"key": ...}}]}} | {"fileName":
  "files/..."}}}`: an Operation `{"name": "batches/<id>", "metadata": {"@type":
  "...GenerateContentBatch", "model", "displayName", "inputConfig", "createTime", "updateTime",
  "batchStats" (counts as strings), "state": "BATCH_STATE_PENDING", "name"}}`. An inline body over
  `inline_limit` bytes (20 MB, Google's limit) is refused with 400, as Google refuses it. A JSONL
  line must carry `key` and `request` (`generationConfig` or `generation_config`, `inlineData` or
  `inline_data`, `mimeType` or `mime_type`: proto JSON takes both spellings).
- `GET /{ver}/batches/{id}`, `GET /{ver}/batches?pageSize=N&pageToken=T` (`{"operations": [...],
  "nextPageToken"}`, newest first), `POST /{ver}/batches/{id}:cancel` (`{}`), `DELETE
  /{ver}/batches/{id}` (`{}`); an unknown id is Google's 404 NOT_FOUND.

A job goes PENDING -> RUNNING -> its outcome (SUCCEEDED, FAILED, EXPIRED; CANCELLED when cancelled
first) on the clock: PENDING for the first 30 % of its `delay`, RUNNING until `delay` has passed.
An ended job has `"done": true` and `endTime`; a SUCCEEDED one its output in `metadata.output`
and `response` (`inlinedResponses.inlinedResponses[]`: `{"response": GenerateContentResponse,
"metadata": {...}}` or `{"error": google.rpc.Status, "metadata": ...}`; file input:
`{"responsesFile": "files/batch-<id>"}`, a JSONL of `{"key", "response"}` / `{"key", "error"}`
lines); a FAILED one a top-level `error`.

Scriptable: `delay` (seconds, default 0: a job is over as soon as it is created),
`push_jobs(*scripts)` (the next created jobs: `{"outcome": "FAILED", "delay": 5}`...),
`push_requests(*scenarios)` (`fake.push(..., route="batch")`: the requests of the next jobs, in
order: any generateContent scenario of the fake (ok, image_safety, text_only, ...), or `error`
(an error line: params code, status, message)), `push_create(*kinds)` (the next creates:
`server_error` = 500 and no job; `lost_answer` = the job is created, then 500: the caller cannot
know), `finish()` (every job ends now), `expire()`. Records: `jobs` (id -> job), `files`,
`calls` (method, path), `created` (the create requests, in order), `downloads`, `deleted`.
"""

from __future__ import annotations

import base64
import collections
import copy
import hashlib
import json
import re
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

OPERATION_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
INLINE_LIMIT = 20 * 1024 * 1024
ENDED = ("SUCCEEDED", "FAILED", "EXPIRED", "CANCELLED")
# google.rpc.Code of an HTTP status, for the error lines of a job
RPC_CODES = {400: 3, 403: 7, 404: 5, 429: 8, 500: 13, 503: 14}

BATCHES = re.compile(r"^/(?P<ver>v1|v1beta)/batches(?:/(?P<id>[^/:?]+))?(?::(?P<method>[A-Za-z]+))?/?$")
FILES = re.compile(r"^/(?P<ver>v1|v1beta)/files(?:/(?P<id>[^/:?]+))?(?::(?P<method>[A-Za-z]+))?/?$")
UPLOAD = re.compile(r"^/upload/(?P<ver>v1|v1beta)/files/?$")
CREATE = re.compile(r"^/(?P<ver>v1|v1beta)/models/(?P<model>[^/:?]+):batchGenerateContent/?$")


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _get(d: dict, *names):
    """The first of `names` present in `d` (proto JSON takes lowerCamel and snake_case)."""
    for n in names:
        if n in d:
            return d[n]
    return None


def normalise_request(req: dict) -> dict:
    """A request of a job (inline or JSONL line) as a generateContent body the fake reads:
    `contents[].parts[].inlineData` and `generationConfig` (either spelling accepted)."""
    contents = []
    for content in _get(req, "contents") or []:
        parts = []
        for part in content.get("parts") or []:
            blob = _get(part, "inlineData", "inline_data")
            if blob is not None:
                parts.append({"inlineData": {"mimeType": _get(blob, "mimeType", "mime_type"),
                                             "data": blob.get("data") or ""}})
            elif "text" in part:
                parts.append({"text": part["text"]})
        contents.append({"role": content.get("role", "user"), "parts": parts})
    config = copy.deepcopy(_get(req, "generationConfig", "generation_config") or {})
    image = _get(config, "imageConfig", "image_config")
    if image is not None:
        config["imageConfig"] = {"aspectRatio": _get(image, "aspectRatio", "aspect_ratio"),
                                 "imageSize": _get(image, "imageSize", "image_size")}
    mods = _get(config, "responseModalities", "response_modalities")
    if mods is not None:
        config["responseModalities"] = mods
    return {"contents": contents, "generationConfig": config}


class FakeBatchAPI:
    def __init__(self, fake):
        self.fake = fake
        self.lock = threading.Lock()
        self.delay = 0.0
        self.inline_limit = INLINE_LIMIT
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.jobs: dict[str, dict] = {}
            self.files: dict[str, dict] = {}
            self.uploads: dict[str, dict] = {}
            self.calls: list[tuple[str, str]] = []
            self.created: list[dict] = []
            self.downloads: list[str] = []
            self.deleted: list[str] = []
            self._job_scripts: collections.deque = collections.deque()
            self._request_scenarios: collections.deque = collections.deque()
            self._create_scripts: collections.deque = collections.deque()

    # --- scripting -------------------------------------------------------------------------------

    def push_jobs(self, *scripts) -> None:
        with self.lock:
            self._job_scripts.extend(dict(s) for s in scripts)

    def push_requests(self, *scenarios) -> None:
        with self.lock:
            self._request_scenarios.extend(scenarios)

    def push_create(self, *kinds) -> None:
        with self.lock:
            self._create_scripts.extend(kinds)

    def finish(self) -> None:
        """Every job not ended yet ends now (with its scripted outcome)."""
        now = time.monotonic()
        with self.lock:
            for job in self.jobs.values():
                if job["ended_at"] is None:
                    job["delay"] = max(0.0, now - job["t0"])

    def expire(self) -> None:
        """Every job not ended yet ends EXPIRED now (48 h passed)."""
        with self.lock:
            for job in self.jobs.values():
                job["outcome"] = "EXPIRED" if job["ended_at"] is None else job["outcome"]
        self.finish()

    # --- views for the tests ---------------------------------------------------------------------

    @property
    def live_jobs(self) -> list[dict]:
        with self.lock:
            return [j for j in self.jobs.values() if not j["deleted"]]

    def requests_submitted(self) -> int:
        """Requests in every job created (each one a paid request)."""
        with self.lock:
            return sum(len(j["requests"]) for j in self.jobs.values())

    def submitted_keys(self) -> list[str]:
        with self.lock:
            return [r["key"] for j in self.jobs.values() for r in j["requests"]]

    # --- routing ---------------------------------------------------------------------------------

    def handle(self, h, method: str) -> bool:
        """Serve `h` (the HTTP handler) when its path is a Batch or Files API route."""
        split = urlsplit(h.path)
        path, query = split.path, parse_qs(split.query)
        routes = ((UPLOAD, self._upload), (CREATE, self._create), (BATCHES, self._batches),
                  (FILES, self._files))
        for pattern, fn in routes:
            m = pattern.match(path)
            if m:
                break
        else:
            return False
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        with self.lock:
            self.calls.append((method, h.path))
        if not (pattern is UPLOAD and "upload_id" in query):   # the upload session needs no key
            err = h._key_error()
            if err:
                h._send(*err)
                return True
        fn(h, method, m, query, raw)
        return True

    # --- Files API -------------------------------------------------------------------------------

    def _file_resource(self, f: dict) -> dict:
        out = {k: f[k] for k in ("name", "mimeType", "sizeBytes", "createTime", "updateTime",
                                 "expirationTime", "sha256Hash", "uri", "state", "source")}
        if f.get("displayName"):
            out["displayName"] = f["displayName"]
        if f["source"] == "GENERATED":
            out["downloadUri"] = f"{self.fake.url}/v1beta/{f['name']}:download?alt=media"
        return out

    def _new_file(self, data: bytes, mime: str, display: str | None, source: str, name: str | None = None) -> dict:
        now = datetime.now(timezone.utc)
        fid = name or secrets.token_hex(6)
        f = {"name": f"files/{fid}", "displayName": display, "mimeType": mime, "sizeBytes": str(len(data)),
             "createTime": _rfc3339(now), "updateTime": _rfc3339(now),
             "expirationTime": _rfc3339(now + timedelta(hours=48)),
             "sha256Hash": base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode(),
             "uri": f"{self.fake.url}/v1beta/files/{fid}", "state": "ACTIVE", "source": source, "data": data}
        self.files[fid] = f
        return f

    def _upload(self, h, method, m, query, raw) -> None:
        from .gemini_server import status_body

        if method != "POST":
            return h._send(404, status_body(404, "NOT_FOUND", "Not found."))
        if "upload_id" not in query:   # start the resumable session
            if (h.headers.get("X-Goog-Upload-Protocol") != "resumable"
                    or h.headers.get("X-Goog-Upload-Command") != "start"):
                return h._send(400, status_body(400, "INVALID_ARGUMENT", "Upload protocol not supported."))
            try:
                meta = (json.loads(raw or b"{}").get("file") or {})
                size = int(h.headers.get("X-Goog-Upload-Header-Content-Length") or -1)
            except ValueError:
                return h._send(400, status_body(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
            uid = secrets.token_urlsafe(12)
            with self.lock:
                self.uploads[uid] = {"size": size, "data": b"", "ver": m.group("ver"),
                                     "mime": h.headers.get("X-Goog-Upload-Header-Content-Type")
                                     or _get(meta, "mimeType", "mime_type") or "application/octet-stream",
                                     "display": _get(meta, "displayName", "display_name")}
            url = f"{self.fake.url}/upload/{m.group('ver')}/files?upload_id={uid}&upload_protocol=resumable"
            return h._send_raw(200, b"{}", "application/json; charset=UTF-8",
                               {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active",
                                "X-Goog-Upload-Chunk-Granularity": "262144"})
        uid = query["upload_id"][0]
        command = [c.strip() for c in (h.headers.get("X-Goog-Upload-Command") or "").split(",")]
        with self.lock:
            up = self.uploads.get(uid)
            if up is None:
                return h._send(404, status_body(404, "NOT_FOUND", "Upload session not found."))
            offset = int(h.headers.get("X-Goog-Upload-Offset") or -1)
            if "upload" not in command or offset != len(up["data"]):
                return h._send_raw(400, b"", "text/plain", {"X-Goog-Upload-Status": "active"})
            up["data"] += raw
            if "finalize" not in command:
                return h._send_raw(200, b"", "text/plain", {"X-Goog-Upload-Status": "active"})
            del self.uploads[uid]
            if up["size"] >= 0 and up["size"] != len(up["data"]):
                return h._send_raw(400, b"", "text/plain", {"X-Goog-Upload-Status": "final"})
            f = self._new_file(up["data"], up["mime"], up["display"], "UPLOADED")
            body = json.dumps({"file": self._file_resource(f)}).encode()
        h._send_raw(200, body, "application/json; charset=UTF-8", {"X-Goog-Upload-Status": "final"})

    def _files(self, h, method, m, query, raw) -> None:
        from .gemini_server import status_body

        fid, action = m.group("id"), m.group("method")
        with self.lock:
            f = self.files.get(fid) if fid else None
            if fid is None:
                if method == "GET":
                    return h._send(200, {"files": [self._file_resource(x) for x in self.files.values()]})
                return h._send(404, status_body(404, "NOT_FOUND", "Not found."))
            if f is None:   # Google answers 403 for a file that is not (or no longer) there
                return h._send(403, status_body(403, "PERMISSION_DENIED", f"You do not have permission to "
                                                f"access the File {fid} or it may not exist."))
            if method == "DELETE" and action is None:
                del self.files[fid]
                self.deleted.append(f["name"])
                return h._send(200, {})
            if method == "GET" and action == "download":
                if f["source"] != "GENERATED":
                    return h._send(400, status_body(400, "INVALID_ARGUMENT",
                                                    "Only generated files can be downloaded."))
                self.downloads.append(f["name"])
                return h._send_raw(200, f["data"], "application/octet-stream")
            if method == "GET" and action is None:
                return h._send(200, self._file_resource(f))
        h._send(404, status_body(404, "NOT_FOUND", f"Method not found: {h.path}"))

    # --- Batch API -------------------------------------------------------------------------------

    def _create(self, h, method, m, query, raw) -> None:
        from .gemini_server import not_found_message, status_body

        model = m.group("model")
        if method != "POST":
            return h._send(404, status_body(404, "NOT_FOUND", "Not found."))
        if model not in self.fake.models:
            return h._send(404, status_body(404, "NOT_FOUND", not_found_message(model, m.group("ver"))))
        try:
            batch = json.loads(raw or b"{}")["batch"]
            source = batch["inputConfig"]
        except (ValueError, KeyError, TypeError):
            return h._send(400, status_body(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
        if "requests" in source:
            if len(raw) > self.inline_limit:
                return h._send(400, status_body(400, "INVALID_ARGUMENT",
                                                f"Request payload size exceeds the limit: {self.inline_limit} bytes."))
            requests = [{"key": (r.get("metadata") or {}).get("key"), "metadata": r.get("metadata") or {},
                         "request": normalise_request(r.get("request") or {})}
                        for r in (source.get("requests") or {}).get("requests") or []]
        elif "fileName" in source:
            fid = str(source["fileName"]).removeprefix("files/")
            with self.lock:
                f = self.files.get(fid)
            if f is None:
                return h._send(400, status_body(400, "INVALID_ARGUMENT", f"File {source['fileName']} not found."))
            requests = []
            for n, line in enumerate(f["data"].decode("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                    requests.append({"key": str(doc["key"]), "metadata": {"key": str(doc["key"])},
                                     "request": normalise_request(doc["request"])})
                except (ValueError, KeyError, TypeError):
                    return h._send(400, status_body(400, "INVALID_ARGUMENT",
                                                    f"Invalid request at line {n} of {source['fileName']}."))
        else:
            return h._send(400, status_body(400, "INVALID_ARGUMENT", "inputConfig needs requests or fileName."))
        if not requests:
            return h._send(400, status_body(400, "INVALID_ARGUMENT", "A batch needs at least one request."))
        with self.lock:
            kind = self._create_scripts.popleft() if self._create_scripts else "ok"
            if kind == "server_error":
                return h._send(500, status_body(500, "INTERNAL", "An internal error has occurred."))
            script = self._job_scripts.popleft() if self._job_scripts else {}
            jid = secrets.token_hex(10)
            now = datetime.now(timezone.utc)
            job = {"id": jid, "name": f"batches/{jid}", "model": model, "display": batch.get("displayName") or "",
                   "input": copy.deepcopy(source), "file_input": "fileName" in source, "requests": requests,
                   "created": now, "t0": time.monotonic(), "delay": float(script.get("delay", self.delay)),
                   "outcome": script.get("outcome", "SUCCEEDED"), "cancelled": None, "ended_at": None,
                   "output": None, "deleted": False, "version": m.group("ver")}
            self.jobs[jid] = job
            self.created.append({"name": job["name"], "display": job["display"], "n": len(requests),
                                 "file_input": job["file_input"], "bytes": len(raw)})
            op = self._operation(job)
        if kind == "lost_answer":   # created, but the answer never reaches the caller
            return h._send(500, status_body(500, "INTERNAL", "An internal error has occurred."))
        h._send(200, op)

    def _state(self, job: dict) -> str:
        """The job's state now; materialises its output when it has just ended (lock held)."""
        if job["ended_at"] is not None:
            return job["ended_state"]
        now = time.monotonic()
        elapsed = now - job["t0"]
        if job["cancelled"] is not None:
            state = "CANCELLED"
        elif elapsed >= job["delay"]:
            state = job["outcome"]
        elif elapsed >= 0.3 * job["delay"]:
            return "RUNNING"
        else:
            return "PENDING"
        job["ended_at"] = datetime.now(timezone.utc)
        job["ended_state"] = state
        if state == "SUCCEEDED":
            self._answer_job(job)
        return state

    def _answer_job(self, job: dict) -> None:
        """Every request of the job answered as generateContent would answer it (lock held)."""
        from .gemini_server import _parse_parts, status_body

        lines = []
        for req in job["requests"]:
            scenario = self._request_scenarios.popleft() if self._request_scenarios else "ok"
            scenario = dict(scenario) if isinstance(scenario, dict) else {"kind": scenario}
            if scenario.get("kind") == "error":
                code = int(scenario.get("http", 400))
                err = status_body(code, scenario.get("status", "INVALID_ARGUMENT"),
                                  scenario.get("message", "Request contains an invalid argument."))["error"]
                err["code"] = RPC_CODES.get(code, 2)
                lines.append({"error": err, "key": req["key"], "metadata": req["metadata"]})
                continue
            body = req["request"]
            record = {"generation_config": body.get("generationConfig") or {}, "parts": []}
            try:
                record["parts"] = _parse_parts(body)
                code, answer = self.fake.answer_generate(job["model"], body, record, scenario=scenario,
                                                         latency=False)
            except ValueError as e:
                code, answer = 400, status_body(400, "INVALID_ARGUMENT", str(e))
            if code == 200 and isinstance(answer, dict):
                lines.append({"response": answer, "key": req["key"], "metadata": req["metadata"]})
            else:
                err = answer["error"] if isinstance(answer, dict) else {"message": "bad response"}
                err = {**err, "code": RPC_CODES.get(code, 2)}
                lines.append({"error": err, "key": req["key"], "metadata": req["metadata"]})
        if job["file_input"]:
            text = "".join(json.dumps({k: v for k, v in ln.items() if k in ("key", "response", "error")}) + "\n"
                           for ln in lines)
            f = self._new_file(text.encode(), "application/jsonl", None, "GENERATED", name=f"batch-{job['id']}")
            job["output"] = {"responsesFile": f["name"]}
        else:
            job["output"] = {"inlinedResponses": {"inlinedResponses": [
                {k: v for k, v in ln.items() if k in ("response", "error", "metadata")} for ln in lines]}}
        job["lines"] = lines

    def _operation(self, job: dict) -> dict:
        """The job as an Operation, exactly as the API sends it (lock held)."""
        state = self._state(job)
        n = len(job["requests"])
        stats = {"requestCount": str(n)}
        if state in ("PENDING", "RUNNING"):
            stats["pendingRequestCount"] = str(n)
        elif state == "SUCCEEDED":
            ok = sum(1 for ln in job.get("lines", []) if "response" in ln)
            stats["successfulRequestCount"] = str(ok)
            if n - ok:
                stats["failedRequestCount"] = str(n - ok)
        meta = {"@type": OPERATION_TYPE, "model": f"models/{job['model']}", "displayName": job["display"],
                "inputConfig": job["input"], "createTime": _rfc3339(job["created"]),
                "updateTime": _rfc3339(job["ended_at"] or job["created"]), "batchStats": stats,
                "state": f"BATCH_STATE_{state}", "name": job["name"]}
        op = {"name": job["name"], "metadata": meta}
        if state in ENDED:
            meta["endTime"] = _rfc3339(job["ended_at"])
            op["done"] = True
            if state == "SUCCEEDED":
                meta["output"] = copy.deepcopy(job["output"])
                op["response"] = {"@type": OUTPUT_TYPE, **copy.deepcopy(job["output"])}
            elif state == "FAILED":
                op["error"] = {"code": 13, "message": "Batch job failed: an internal error has occurred."}
        return op

    def _batches(self, h, method, m, query, raw) -> None:
        from .gemini_server import status_body

        jid, action = m.group("id"), m.group("method")
        with self.lock:
            if jid is None:
                if method != "GET":
                    return h._send(404, status_body(404, "NOT_FOUND", "Not found."))
                live = sorted((j for j in self.jobs.values() if not j["deleted"]),
                              key=lambda j: j["created"], reverse=True)
                size = int((query.get("pageSize") or ["50"])[0])
                start = int((query.get("pageToken") or ["0"])[0] or 0)
                page = live[start:start + size]
                out = {"operations": [self._operation(j) for j in page]}
                if start + size < len(live):
                    out["nextPageToken"] = str(start + size)
                return h._send(200, out)
            job = self.jobs.get(jid)
            if job is None or job["deleted"]:
                return h._send(404, status_body(404, "NOT_FOUND", "Requested entity was not found."))
            if method == "GET" and action is None:
                return h._send(200, self._operation(job))
            if method == "POST" and action == "cancel":
                if self._state(job) not in ENDED:
                    job["cancelled"] = time.monotonic()
                    self._state(job)
                return h._send(200, {})
            if method == "DELETE" and action is None:
                job["deleted"] = True
                self.deleted.append(job["name"])
                return h._send(200, {})
        h._send(404, status_body(404, "NOT_FOUND", f"Method not found: {h.path}"))
