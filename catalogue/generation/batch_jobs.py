"""GEMINI_MODE=batch: the views' paid requests through Google's Batch API (half price, answers
within 24 h, outside the per-minute quota), collected by later runs. One run is three steps:

1. `collect` (the action of the `batch` task, before every view task): every job of this project
   is read on the server (`batches.list`, jobs recognised by their display name
   `catalogue:<project tag>:<nonce>`) and matched with its record under `output/.state/batches/`.
   A SUCCEEDED job's results are checked exactly like interactive answers
   (`GeminiGenerator.check_answer`: same checks, same French errors, one ledger line each, at the
   batch price) and stored in the answer store under their request key; an error line fails its
   view only. A FAILED, EXPIRED or CANCELLED job releases its views: submitted again by this run,
   and said. Then the job, its input file and its responses file are deleted, and its record.
2. The view tasks run as usual; where the interactive path would pay, `wait_for_batch` (called
   by `paid_call`, under the request key's lock) queues the request, or says which job already
   has it, and the view waits (`BatchPending`: not a failure). A view whose answer was collected
   is made from the store like any stored answer: switching mode never pays twice.
3. `submit` (the `batch` task's teardown, after every view task): the queued requests become
   jobs, one per model, inline while a job stays under `INLINE_MAX_BYTES` (Google: 20 MB), else a
   JSONL file uploaded with the Files API. The record is written before the job is created (with
   its nonce), completed after: a crash in between is resolved by the next run, which finds the
   job by its nonce on the server, or knows that it was never created.

Nothing is paid twice: a request is never queued while its key is in a pending or succeeded job
(local records, else the server's list); a job of this project found on the server without its
record (the records deleted) is pending with a content this run cannot read (the SDK does not
return a job's input, and an uploaded file cannot be downloaded), so nothing new is submitted
until it ends; when it succeeds its results name their views (`<folder>|<view>|<key>`).

Money: each queued request reserves its estimated batch cost (`models.estimate_call_cost(...,
batch=True)`) in this run's budget (MAX_COST): past it the view is postponed as for an
interactive call. The real cost is recorded when the answer is collected, at the batch price,
in the run that collects it (not counted again in that run's budget).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..core import batch_state, models
from ..core.errors import BatchPending, BudgetExceeded, GenerationError
from ..core.files import atomic_write_bytes
from ..core.paths import answers_dir, batch_record_path, batches_dir, ledger_path
from ..core.provenance import now_iso
from .answer_store import AnswerStore
from .batch_client import BatchAPIError, BatchClient, inline_request, jsonl_line, parse_request_id, request_id
from .gemini import RetryableAnswer, RunStopped, shared_generator
from .image_request import ImageRequest
from .ledger import Ledger, budget_message

# Google takes inline requests while the whole request stays under 20 MB; what is counted here is
# the requests' JSON (base64 images): a margin is kept for the envelope. Lowered by tests.
INLINE_MAX_BYTES = 19 * 1024 * 1024
# Requests per job, and bytes per JSONL input file (the Files API takes 2 GB).
MAX_REQUESTS_PER_JOB = 1000
FILE_MAX_BYTES = 1_500_000_000
DISPLAY_PREFIX = "catalogue"
RECORD_VERSION = 1
PENDING_STATES = ("PENDING", "RUNNING", "UNSPECIFIED")
STATE_WORDS = {"FAILED": "a échoué (FAILED)", "EXPIRED": "a expiré sans réponse (EXPIRED, 48 h)",
               "CANCELLED": "a été annulé (CANCELLED)"}


def project_tag(settings) -> str:
    """8 hex digits naming this project's output folder in the jobs' display names."""
    return hashlib.sha256(str(Path(settings.output_dir).resolve()).encode()).hexdigest()[:8]


def display_prefix(settings) -> str:
    return f"{DISPLAY_PREFIX}:{project_tag(settings)}:"


def _age_seconds(iso: str | None) -> float | None:
    try:
        return (datetime.now(timezone.utc) - datetime.fromisoformat(str(iso).replace("Z", "+00:00"))).total_seconds()
    except (TypeError, ValueError):
        return None


def _say(line: str) -> None:
    print(line, flush=True)


# --- the records under output/.state/batches/ --------------------------------------------------

def read_records(settings) -> list[dict]:
    out = []
    folder = batches_dir(settings)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("nonce"):
            out.append(rec)
    return out


def write_record(settings, rec: dict) -> None:
    atomic_write_bytes(batch_record_path(settings, rec["nonce"]),
                       json.dumps(rec, indent=1, ensure_ascii=False).encode("utf-8"))


def drop_record(settings, rec: dict) -> None:
    for path in (batch_record_path(settings, rec["nonce"]), batches_dir(settings) / f"{rec['nonce']}.jsonl"):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


# --- this run's state ----------------------------------------------------------------------------

@dataclass
class Queued:
    request: ImageRequest
    rid: str
    folder: str
    view: str
    estimate: float
    size: int                    # bytes of its JSON (base64 images)
    attempt: int = 1


@dataclass
class BatchRun:
    pending: dict = field(default_factory=dict)     # key -> (job, since, state)
    failures: dict = field(default_factory=dict)    # key -> French message (this run only)
    notes: dict = field(default_factory=dict)       # key -> French note (resubmitted because ...)
    attempts: dict = field(default_factory=dict)    # key -> attempt number of its next submission
    queue: dict = field(default_factory=dict)       # key -> Queued
    held: str = ""            # French: nothing is submitted (a job of unknown content is pending)
    unreachable: str = ""     # French: the API could not be read; nothing new is submitted
    stopped: str = ""         # French: an account restriction seen in a result
    reserved: float = 0.0     # estimated cost of the queued requests (MAX_COST)
    collected: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_RUNS: dict = {}
_RUNS_LOCK = threading.Lock()


def current_run(settings) -> BatchRun:
    with _RUNS_LOCK:
        return _RUNS.setdefault(settings, BatchRun())


# --- 2. a view asks for its answer -----------------------------------------------------------------

def wait_for_batch(settings, request: ImageRequest, *, folder: str, view: str, task_view: str | None = None):
    """Instead of a paid call: the request is in a job, or queued for one. Never returns: raises
    `BatchPending`, `GenerationError` (its answer came back refused or failed), `BudgetExceeded`.
    `view` names the call (« 2_back (retouche 1) »), `task_view` the view whose task waits."""
    run = current_run(settings)
    task_view = task_view or view
    key = request.key()
    where = f"{folder} / {view}"
    if key in run.failures:
        raise GenerationError(run.failures[key])
    if key in run.pending:
        job, since, state = run.pending[key]
        w = batch_state.wait(folder, task_view, key, job=job, since=since, state=state, note=run.notes.get(key, ""))
        raise BatchPending(f"{where} : {w.describe()}")
    if run.unreachable:
        raise GenerationError(f"{where} : {run.unreachable}")
    if run.held:
        w = batch_state.wait(folder, task_view, key, held=run.held)
        raise BatchPending(f"{where} : {w.describe()}")
    if run.stopped:
        raise RunStopped(run.stopped)
    with run.lock:
        if key not in run.queue:
            estimate = models.estimate_call_cost(request.model, request.image_size, len(request.images), batch=True)
            ledger = shared_generator(settings).ledger
            if ledger.max_cost is not None and ledger.run_cost + run.reserved + estimate > ledger.max_cost + 1e-9:
                raise BudgetExceeded(budget_message(ledger.run_cost + run.reserved, ledger.max_cost))
            run.reserved += estimate
            rid = request_id(folder, view, key)
            run.queue[key] = Queued(request=request, rid=rid, folder=folder, view=view, estimate=estimate,
                                    size=len(jsonl_line(request, rid)), attempt=run.attempts.get(key, 1))
    batch_state.wait(folder, task_view, key, note=run.notes.get(key, ""))
    raise BatchPending(f"{where} : à soumettre en lot")


_RECORDED: dict = {}
_RECORDED_LOCK = threading.Lock()


def already_in_a_job(settings, request: ImageRequest, *, folder: str, view: str, task_view: str | None = None):
    """An interactive run (GEMINI_MODE=interactive, `doit reroll`, the review page) never pays for a
    request already in a recorded Batch API job: its view waits for the job (`BatchPending`).
    Returns when the request is in no recorded job (the records are read once per process)."""
    with _RECORDED_LOCK:
        known = _RECORDED.get(settings)
        if known is None:
            known = _RECORDED[settings] = {r["key"]: (rec.get("job"), rec.get("created") or rec.get("submitted_at"))
                                           for rec in read_records(settings) for r in rec.get("requests", [])}
    key = request.key()
    if key in known:
        job, since = known[key]
        w = batch_state.wait(folder, task_view or view, key, job=job, since=since,
                             note="relevée par une prochaine exécution, rien n'est payé deux fois")
        raise BatchPending(f"{folder} / {view} : {w.describe()}")


# --- 1. collect ----------------------------------------------------------------------------------------

@dataclass
class _Asked:
    """What the answer checks need of a request whose images are not at hand (a job's result)."""
    model: str
    image_size: str | None
    request_key: str

    def key(self) -> str:
        return self.request_key


def collect(settings) -> dict:
    """The `batch` task's action: read every job of this project, collect the finished ones."""
    batch_state.arm()
    run = current_run(settings)
    if run.collected:
        return {"outcome": "collected"}
    run.collected = True
    started = time.monotonic()
    records = read_records(settings)
    try:
        client = BatchClient(settings)
    except GenerationError as exc:
        run.unreachable = exc.message
        _say(exc.message)
        return {"outcome": "unreachable"}
    stats = {"stored": 0, "failed": 0, "released": 0, "pending": 0}
    try:
        try:
            on_server = {j.name: j for j in client.list_jobs(display_prefix(settings))}
        except BatchAPIError as exc:
            _unreachable(settings, run, records, exc.message)
            return {"outcome": "unreachable"}
        by_job = {r.get("job"): r for r in records if r.get("job")}
        by_nonce = {r["nonce"]: r for r in records}
        # A job of ours without a record: a crash after its creation, or the records were deleted.
        for name, info in on_server.items():
            if name in by_job:
                continue
            nonce = info.display_name.rsplit(":", 1)[-1]
            rec = by_nonce.get(nonce)
            if rec is not None:   # created, then the run died before recording it
                rec.update(job=name, state=info.state, created=info.create_time)
                write_record(settings, rec)
            else:
                rec = {"version": RECORD_VERSION, "nonce": nonce, "display_name": info.display_name,
                       "model": info.model, "job": name, "state": info.state, "created": info.create_time,
                       "requests": [], "found_again": True}
                records.append(rec)
                by_nonce[nonce] = rec
                _say(f"Lot {name} retrouvé sur le serveur sans sa fiche locale ({info.state}) : il est suivi "
                     f"à nouveau, rien n'est soumis deux fois.")
            by_job[name] = rec
        for rec in records:
            if not rec.get("job"):   # the creation failed or never reached Google
                if rec.get("state") == "SUBMITTING":
                    _say(f"Lot {rec['display_name']} : jamais créé chez Google (introuvable sur le serveur) ; "
                         f"ses vues sont soumises à nouveau.")
                    _note(run, rec, "nouvelle soumission : la précédente n'a pas abouti")
                drop_record(settings, rec)
                if rec.get("input_file"):
                    _quietly(client.delete_file, rec["input_file"])
                continue
            info = on_server.get(rec["job"])
            if info is None:
                try:
                    info = client.get(rec["job"])
                except BatchAPIError as exc:
                    if exc.code == 404:   # deleted on the server (AI Studio): its views are free again
                        _say(f"Lot {rec['job']} introuvable chez Google (supprimé ?) : ses vues sont soumises à "
                             f"nouveau.")
                        _note(run, rec, f"nouvelle soumission : le lot {rec['job']} a disparu")
                        stats["released"] += len(rec["requests"])
                        drop_record(settings, rec)
                        continue
                    _keep_pending(run, rec, rec.get("state") or "?")
                    _say(exc.message)
                    continue
            if info.state in PENDING_STATES:
                if rec.get("state") != info.state:
                    rec["state"] = info.state
                    if not rec.get("found_again"):
                        write_record(settings, rec)
                _keep_pending(run, rec, info.state)
                stats["pending"] += len(rec["requests"])
                if not rec["requests"]:
                    run.held = (f"en attente : le lot {info.name} de ce projet (retrouvé sur le serveur, son contenu "
                                f"n'est plus connu ici) est en cours ; rien n'est soumis avant sa fin, pour ne rien "
                                f"payer deux fois")
                continue
            if info.state == "SUCCEEDED":
                try:
                    done = _collect_results(settings, run, client, rec, info)
                except _Retain:
                    continue
                stats["stored"] += done["stored"]
                stats["failed"] += done["failed"]
            else:
                words = STATE_WORDS.get(info.state, info.state)
                _say(f"Lot {info.name} {words} : ses {len(rec['requests'])} vue(s) sont soumises à nouveau.")
                _note(run, rec, f"nouvelle soumission : le lot {info.name} {words}")
                _ledger_lines(settings, rec, outcome=f"batch_{info.state.lower()}", job=info.name)
                stats["released"] += len(rec["requests"])
            _cleanup(settings, client, rec, info)
    finally:
        client.close()
    took = time.monotonic() - started
    if records or stats["stored"]:
        _say(f"Lots : {stats['stored']} réponse(s) relevée(s), {stats['failed']} en échec, "
             f"{stats['released']} à soumettre à nouveau, {stats['pending']} en attente ({took:.2f} s).")
    return {"outcome": "collected", "seconds": round(took, 3), **stats}


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except BatchAPIError as exc:
        _say(f"Attention : {exc.message}")


def _note(run: BatchRun, rec: dict, note: str) -> None:
    for r in rec["requests"]:
        run.notes[r["key"]] = note
        run.attempts[r["key"]] = int(r.get("attempt", 1))


def _keep_pending(run: BatchRun, rec: dict, state: str) -> None:
    for r in rec["requests"]:
        run.pending[r["key"]] = (rec["job"], rec.get("created"), state)


def _unreachable(settings, run: BatchRun, records: list[dict], message: str) -> None:
    """The jobs cannot be read: what the records say is pending stays pending; nothing is submitted."""
    run.unreachable = (f"{message} Aucun lot n'est soumis tant que les lots en cours ne peuvent pas être lus "
                       f"(rien ne doit être payé deux fois).")
    _say(run.unreachable)
    for rec in records:
        if rec.get("job"):
            _keep_pending(run, rec, rec.get("state") or "?")


def _ledger_lines(settings, rec: dict, *, outcome: str, job: str) -> None:
    """One line per request of a job that ended without answers (nothing billed)."""
    recorder = Ledger(ledger_path(settings), None)
    for r in rec["requests"]:
        recorder.record(folder=r["folder"], view=r["view"], model=rec.get("model"), image_size=r.get("image_size"),
                        request_key=r["key"], outcome=outcome, cost_usd=0.0, mode="batch", batch=job)


def _collect_results(settings, run: BatchRun, client: BatchClient, rec: dict, info) -> dict:
    """A SUCCEEDED job: every result checked and stored (or its view failed), said on one line."""
    try:
        lines, responses_file = client.results(info)
    except BatchAPIError as exc:   # try again next run
        _say(exc.message)
        _keep_pending(run, rec, info.state)
        raise _Retain() from None
    rec["responses_file"] = responses_file
    generator = shared_generator(settings)
    recorder = Ledger(ledger_path(settings), None)   # paid now, counted in the run that submitted it
    store = AnswerStore(answers_dir(settings))
    created = datetime.fromisoformat(info.create_time) if info.create_time else None
    ended = datetime.fromisoformat(info.end_time) if info.end_time else None
    seconds = (ended - created).total_seconds() if created and ended else 0.0
    asked = {r["id"]: r for r in rec["requests"]}
    stored = failed = 0
    seen = set()
    for rid, response, error in lines:
        folder, view, key = parse_request_id(rid)
        entry = asked.get(rid) or {"key": key, "folder": folder, "view": view, "image_size": None, "attempt": 1}
        seen.add(rid)
        where = f"{folder} / {view}"
        if error is not None:
            failed += 1
            run.failures[key] = (f"{where} : le lot {info.name} a répondu une erreur pour cette vue (code "
                                 f"{error.get('code')} : « {error.get('message')} »). La vue est en échec, les autres "
                                 f"continuent ; relancez doit pour la soumettre à nouveau.")
            recorder.record(folder=folder, view=view, model=info.model, image_size=entry.get("image_size"),
                            request_key=key, outcome="batch_error", cost_usd=0.0, mode="batch", batch=info.name,
                            detail=str(error.get("message"))[:200])
            continue
        asked_for = _Asked(model=info.model or rec.get("model"), image_size=entry.get("image_size"), request_key=key)
        try:
            answer = generator.check_answer(response, asked_for, folder=folder, view=view, seconds=seconds,
                                            ledger=recorder, batch=True, extra={"mode": "batch", "batch": info.name})
        except RetryableAnswer as r:
            if int(entry.get("attempt", 1)) < 2:
                run.notes[key] = f"nouvel essai (la réponse du lot {info.name} n'avait pas d'image)"
                run.attempts[key] = int(entry.get("attempt", 1)) + 1
            else:
                failed += 1
                run.failures[key] = f"{r.message} (2 essais en lot)."
            continue
        except RunStopped as exc:
            failed += 1
            run.failures[key] = exc.message
            run.stopped = exc.message
            continue
        except GenerationError as exc:
            failed += 1
            run.failures[key] = exc.message
            continue
        store.get_or_create(key, lambda: (answer.data, answer.stored_fields(
            asked_for.model, folder=folder, view=view, extra={"mode": "batch", "batch": info.name})))
        batch_state.mark_fresh(key)
        stored += 1
    for r in rec["requests"]:
        if r["id"] not in seen:
            run.notes[r["key"]] = f"nouvelle soumission : absente des résultats du lot {info.name}"
    _say(f"Lot {info.name} terminé : {stored} réponse(s) gardée(s)" + (f", {failed} en échec" if failed else "") + ".")
    return {"stored": stored, "failed": failed}


class _Retain(Exception):
    """Internal: keep the job and its record for the next run."""


def _cleanup(settings, client: BatchClient, rec: dict, info) -> None:
    """Answers kept: the job, its input file and its responses file deleted, then its record."""
    for name in (rec.get("input_file"), rec.get("responses_file")):
        if name:
            _quietly(client.delete_file, name)
    _quietly(client.delete, info.name)
    drop_record(settings, rec)


# --- 3. submit -------------------------------------------------------------------------------------

def submit(settings) -> None:
    """The `batch` task's teardown: the queued requests as jobs, each recorded."""
    run = current_run(settings)
    with run.lock:
        queued = list(run.queue.values())
        run.queue.clear()
    if not queued:
        return
    started = time.monotonic()
    try:
        client = BatchClient(settings)
    except GenerationError as exc:
        batch_state.update([q.request.key() for q in queued], problem=exc.message)
        return
    jobs = 0
    try:
        for model in sorted({q.request.model for q in queued}):
            group = [q for q in queued if q.request.model == model]
            for part, inline in _split(group):
                jobs += _submit_job(settings, client, model, part, inline)
    finally:
        client.close()
    _say(f"Lots : {jobs} lot(s) soumis pour {len(queued)} vue(s) en {time.monotonic() - started:.2f} s.")


def _split(group: list[Queued]):
    """(requests, inline?) per job: inline when the whole group fits, else JSONL files."""
    total = sum(q.size for q in group)
    if total <= INLINE_MAX_BYTES and len(group) <= MAX_REQUESTS_PER_JOB:
        yield group, True
        return
    part, size = [], 0
    for q in group:
        if part and (size + q.size > FILE_MAX_BYTES or len(part) >= MAX_REQUESTS_PER_JOB):
            yield part, False
            part, size = [], 0
        part.append(q)
        size += q.size
    if part:
        yield part, False


def _submit_job(settings, client: BatchClient, model: str, part: list[Queued], inline: bool) -> int:
    nonce = uuid.uuid4().hex[:16]
    display = f"{display_prefix(settings)}{nonce}"
    keys = [q.request.key() for q in part]
    estimate = sum(q.estimate for q in part)
    rec = {"version": RECORD_VERSION, "nonce": nonce, "display_name": display, "model": model, "job": None,
           "state": "SUBMITTING", "submitted_at": now_iso(), "mode": "inline" if inline else "file",
           "estimate_usd": round(estimate, 6),
           "requests": [{"id": q.rid, "key": q.request.key(), "folder": q.folder, "view": q.view,
                         "image_size": q.request.image_size, "images": len(q.request.images),
                         "estimate_usd": round(q.estimate, 6), "attempt": q.attempt} for q in part]}
    write_record(settings, rec)   # before the job exists: a crash now is resolved by the next run
    try:
        if inline:
            info = client.create_inline(model, [inline_request(q.request, q.rid) for q in part], display)
        else:
            path = batches_dir(settings) / f"{nonce}.jsonl"
            atomic_write_bytes(path, "".join(jsonl_line(q.request, q.rid) for q in part).encode("utf-8"))
            rec["input_file"] = client.upload(path, display)
            write_record(settings, rec)
            info = client.create_from_file(model, rec["input_file"], display)
    except BatchAPIError as exc:
        if exc.certain:   # Google refused: no job exists
            if rec.get("input_file"):
                _quietly(client.delete_file, rec["input_file"])
            drop_record(settings, rec)
            batch_state.update(keys, problem=f"lot non soumis : {exc.message}")
        else:             # unknown: the next run looks for the nonce on the server
            batch_state.update(keys, job=None)
            _say(f"{exc.message} Soumission incertaine : la prochaine exécution vérifie sur le serveur "
                 f"(lot {display}).")
        return 0
    rec.update(job=info.name, state=info.state, created=info.create_time or now_iso())
    write_record(settings, rec)
    try:
        (batches_dir(settings) / f"{nonce}.jsonl").unlink()
    except FileNotFoundError:
        pass
    batch_state.update(keys, job=info.name, since=rec["created"], state=info.state)
    how = "requêtes en ligne" if inline else f"fichier JSONL {rec['input_file']}"
    interactive = sum(models.estimate_call_cost(q.request.model, q.request.image_size, len(q.request.images))
                      for q in part)
    _say(f"Lot {info.name} soumis : {len(part)} vue(s), {how}, coût estimé {estimate:.2f} $ au tarif lot "
         f"(au lieu de {interactive:.2f} $ en interactif).")
    return 1


# --- `doit plan` -------------------------------------------------------------------------------------

def plan_lines(settings) -> tuple[list[str], dict]:
    """(lines about the jobs under way, {(folder, view): (job, state)}) for `doit plan`: the
    recorded jobs, their state read on the server (free) when it answers, their age."""
    records = [r for r in read_records(settings) if r.get("job") or r.get("state") == "SUBMITTING"]
    if not records:
        return [], {}
    states = {}
    try:
        client = BatchClient(settings)
        try:
            states = {j.name: j.state for j in client.list_jobs(display_prefix(settings))}
        finally:
            client.close()
        seen = ""
    except GenerationError as exc:
        seen = f" (état enregistré : {exc.message})"
    lines, views = [f"Lots en cours{seen} :"], {}
    for rec in records:
        state = states.get(rec.get("job"), rec.get("state") or "?")
        age = _age_seconds(rec.get("created") or rec.get("submitted_at"))
        age_text = "?" if age is None else (f"{age / 3600:.1f} h" if age >= 3600 else f"{age / 60:.0f} min")
        lines.append(f"  lot {rec.get('job') or rec['display_name']} — {state}, depuis {age_text}, "
                     f"{len(rec['requests'])} vue(s), coût estimé {float(rec.get('estimate_usd') or 0):.2f} $")
        for r in rec["requests"]:
            views[(r["folder"], r["view"])] = (rec.get("job"), state)
    return lines, views
