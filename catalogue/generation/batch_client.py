"""The Batch API and Files API through the real `google-genai` SDK: create, get, list, cancel,
delete, upload, download; requests in the two wire spellings (inline SDK dicts, JSONL lines).

The client is made as the interactive one (`gemini._make_client`: pinned API version, no base
URL set here, the SDK's retries off); these calls are free (only the requests inside a job are
billed), so a failure is said in French and the caller decides. The API key is scrubbed from
every message. Notes: ../shared/notes/gemini.md §4 (SDK surface, states) and §7 (wire).

A request is the one `image_request.ImageRequest` the interactive path sends: the images in order, the
instruction last, `responseModalities` TEXT+IMAGE, `imageConfig` and the seed; each carries an id
`<folder>|<view>|<request key>` (`metadata.key` inline, `key` in a JSONL line), which comes back
with its result: results say whose answer they are even when the local record is lost.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from google.genai import errors as genai_errors

from ..core.errors import GenerationError
from .gemini import TRANSPORT_ERRORS, _make_client, _Scrubber, _shorten
from .image_request import RESPONSE_MODALITIES, ImageRequest

LIST_PAGE_SIZE = 50


def request_id(folder: str, view: str, key: str) -> str:
    return f"{folder}|{view}|{key}"


def parse_request_id(rid: str) -> tuple[str, str, str]:
    """(folder, view, request key) of an id; the folder may itself hold a `|`."""
    parts = str(rid).rsplit("|", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("?", "?", str(rid))


def inline_request(request: ImageRequest, rid: str) -> dict:
    """The request as the SDK's `InlinedRequest` dict (`batches.create(src=[...])`)."""
    parts = [{"inline_data": {"data": data, "mime_type": mime}} for data, mime in request.images]
    parts.append({"text": request.instruction})
    return {"contents": [{"role": "user", "parts": parts}],
            "config": {"response_modalities": list(RESPONSE_MODALITIES),
                       "image_config": {"aspect_ratio": request.aspect_ratio, "image_size": request.image_size},
                       "seed": int(request.seed)},
            "metadata": {"key": rid}}


def jsonl_line(request: ImageRequest, rid: str) -> str:
    """The request as one line of a JSONL input file (REST JSON: `generationConfig`, base64)."""
    parts = [{"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode("ascii")}}
             for data, mime in request.images]
    parts.append({"text": request.instruction})
    doc = {"key": rid, "request": {"contents": [{"role": "user", "parts": parts}],
                                   "generationConfig": {"responseModalities": list(RESPONSE_MODALITIES),
                                                        "imageConfig": {"aspectRatio": request.aspect_ratio,
                                                                        "imageSize": request.image_size},
                                                        "seed": int(request.seed)}}}
    return json.dumps(doc, separators=(",", ":")) + "\n"


class BatchAPIError(GenerationError):
    """A Batch or Files API call failed. `certain`: the server surely did not act (a 4xx), so
    e.g. a job that failed to be created does not exist."""

    def __init__(self, message: str, *, certain: bool, code: int = 0):
        super().__init__(message)
        self.certain = certain
        self.code = code


@dataclass
class JobInfo:
    name: str
    state: str                   # PENDING | RUNNING | SUCCEEDED | FAILED | EXPIRED | CANCELLED | UNSPECIFIED
    display_name: str
    model: str
    create_time: str | None      # ISO 8601
    end_time: str | None
    job: object                  # the SDK's BatchJob (results: job.dest)


def _info(job) -> JobInfo:
    state = job.state.name if job.state is not None else "JOB_STATE_UNSPECIFIED"
    iso = (lambda t: t.isoformat() if t is not None else None)
    return JobInfo(name=job.name or "", state=state.removeprefix("JOB_STATE_"), display_name=job.display_name or "",
                   model=(job.model or "").removeprefix("models/"), create_time=iso(job.create_time),
                   end_time=iso(job.end_time), job=job)


class BatchClient:
    def __init__(self, settings):
        if not settings.gemini_api_key:
            raise GenerationError("GEMINI_API_KEY est vide : le mode lot (GEMINI_MODE=batch) a besoin de la clé.")
        self._scrub = _Scrubber(settings.gemini_api_key)
        self._client = _make_client(settings)

    def close(self) -> None:
        self._client.close()

    def _fail(self, what: str, exc: BaseException) -> BatchAPIError:
        if isinstance(exc, genai_errors.APIError):
            code = exc.code or 0
            message = _shorten(self._scrub(exc.message or ""), 200)
            if code in (400, 401, 403) and "key" in (exc.message or "").lower():
                return BatchAPIError(f"{what} : la clé GEMINI_API_KEY est refusée par Google ({code} : « {message} ») : "
                                     f"vérifiez GEMINI_API_KEY dans .env.", certain=True, code=code)
            return BatchAPIError(f"{what} : Google a répondu {code} {exc.status or ''} (« {message} »).",
                                 certain=400 <= code < 500 and code not in (408, 429), code=code)
        return BatchAPIError(f"{what} : API Gemini injoignable ({type(exc).__name__} : "
                             f"{_shorten(self._scrub(exc), 160)}) ; vérifiez le réseau.", certain=False)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (genai_errors.APIError, *TRANSPORT_ERRORS) as exc:
            raise self._fail(what, exc) from None
        except ValueError as exc:   # the SDK's own checks (an upload not finalised, ...)
            raise BatchAPIError(f"{what} : {_shorten(self._scrub(exc), 200)}", certain=False) from None

    # --- jobs ------------------------------------------------------------------------------------

    def create_inline(self, model: str, requests: list[dict], display_name: str) -> JobInfo:
        job = self._call("Soumission du lot", self._client.batches.create, model=model, src=requests,
                         config={"display_name": display_name})
        return _info(job)

    def create_from_file(self, model: str, file_name: str, display_name: str) -> JobInfo:
        job = self._call("Soumission du lot", self._client.batches.create, model=model, src=file_name,
                         config={"display_name": display_name})
        return _info(job)

    def get(self, name: str) -> JobInfo:
        return _info(self._call(f"Lecture du lot {name}", self._client.batches.get, name=name))

    def list_jobs(self, prefix: str) -> list[JobInfo]:
        """Every job whose display name starts with `prefix` (all pages)."""
        def read():
            return [_info(j) for j in self._client.batches.list(config={"page_size": LIST_PAGE_SIZE})
                    if (j.display_name or "").startswith(prefix)]
        return self._call("Liste des lots", read)

    def delete(self, name: str) -> None:
        """Delete a job; one already gone (404) is fine."""
        try:
            self._call(f"Suppression du lot {name}", self._client.batches.delete, name=name)
        except BatchAPIError as exc:
            if exc.code != 404:
                raise

    # --- files -----------------------------------------------------------------------------------

    def upload(self, path: Path, display_name: str) -> str:
        """Upload a JSONL input file (the resumable protocol); returns its name (files/…)."""
        f = self._call("Envoi du fichier du lot", self._client.files.upload, file=str(path),
                       config={"mime_type": "application/jsonl", "display_name": display_name})
        return f.name

    def delete_file(self, name: str) -> None:
        """Delete a file; one already gone (403/404: Google says 403 for a missing file) is fine."""
        try:
            self._call(f"Suppression du fichier {name}", self._client.files.delete, name=name)
        except BatchAPIError as exc:
            if exc.code not in (403, 404):
                raise

    # --- results ---------------------------------------------------------------------------------

    def results(self, info: JobInfo) -> tuple[list[tuple[str, dict | None, dict | None]], str | None]:
        """([(id, response JSON or None, error or None)], the responses file to delete or None)
        of a SUCCEEDED job. Inline results come parsed by the SDK (which drops `finishMessage`,
        python-genai#2049): they are turned back into the REST JSON the answer checks read."""
        dest = getattr(info.job, "dest", None)
        out: list[tuple[str, dict | None, dict | None]] = []
        if dest is None:
            return out, None
        if dest.inlined_responses:
            for item in dest.inlined_responses:
                rid = str((item.metadata or {}).get("key", ""))
                if item.error is not None:
                    out.append((rid, None, {"code": item.error.code, "message": item.error.message}))
                elif item.response is not None:
                    out.append((rid, item.response.model_dump(mode="json", by_alias=True, exclude_none=True), None))
                else:
                    out.append((rid, None, {"code": None, "message": "résultat vide"}))
            return out, None
        if dest.file_name:
            data = self._call(f"Téléchargement des résultats {dest.file_name}", self._client.files.download,
                              file=dest.file_name)
            for line in data.decode("utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                rid = str(doc.get("key", ""))
                if isinstance(doc.get("response"), dict):
                    out.append((rid, doc["response"], None))
                else:
                    err = doc.get("error") or doc.get("status") or {"message": "résultat vide"}
                    out.append((rid, None, {"code": err.get("code"), "message": err.get("message")}))
            return out, dest.file_name
        return out, None
