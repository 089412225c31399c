"""The one paid path: every image Gemini makes for the pipeline goes through `paid_image`.

    request -> answer store (per-key lock) -> paid call -> ledger -> decode -> finish

Used by the base generation of a view (`view_build`), the declared retouches (`retouches`) and
the one-off retouch (`one_off_retouch`). The answer store is looked up under the request key's
lock (threads and processes), so identical requests (parallel workers, two one-off retouches
started together) are paid once; the generator writes the ledger line of every attempt.

What keeps paid work at the edges:
* before the process's first paid call, the answer store and the ledger must be writable (a
  read-only or full OUTPUT_DIR fails the call at once, in French, naming the folder); after the
  first write error no new paid call starts;
* the ledger says "started" before the request leaves, "ended" if it fails (kill -9: the next
  run reconciles, see `core.in_flight.reconcile`);
* the call runs in a worker thread: a Ctrl-C or SIGTERM landing in the main thread (a run
  without -n) does not cut it; its answer is stored, then the interruption goes on;
* a damaged stored answer is set aside and paid again once, said on the view's line.

With GEMINI_MODE=batch (in a doit run, once the `batch` task has collected) the paid call is not
made here: `batch_jobs.wait_for_batch` queues the request for a Batch API job (or says which job
it is in) and the view waits; a later run finds the answer in the same store, by the same key.
"""

from __future__ import annotations

import io
import threading
import uuid
from dataclasses import dataclass

from PIL import Image

from ..core import models
from ..core.errors import OS_REFUSALS, GenerationError
from ..core import batch_state
from ..core.files import probe_writable
from ..core.in_flight import note_write_failure, write_failure
from ..core.paths import answers_dir, ledger_path
from ..imaging.finishing import FinishResult, finish
from .answer_store import AnswerStore
from .image_request import ImageRequest

# Seconds a Ctrl-C / SIGTERM in the main thread waits for the paid call under way.
INTERRUPT_GRACE = 240


@dataclass(frozen=True)
class PaidImage:
    image: Image.Image               # the answer, decoded (RGB), as Gemini made it
    finished: FinishResult | None    # finished to the asked size (when one was given)
    key: str                         # the request key (answer store, sidecar)
    model: str
    from_store: bool                 # answered from the store: nothing paid now
    cost_usd: float                  # what this call cost now (0.0 from the store)
    input_tokens: int
    output_tokens: int
    model_text: str
    note: str = ""                   # French, for the view's line (a damaged stored answer)

    def record(self) -> dict:
        """The fields a sidecar or a retouch record keeps about the call."""
        return {"model": self.model, "request_key": self.key, "from_cache": self.from_store,
                "cost_usd": self.cost_usd, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "model_text": self.model_text}


def paid_image(settings, request: ImageRequest, *, folder: str, view: str, unreadable: str,
               size: tuple[int, int] | None = None, meta: dict | None = None) -> PaidImage:
    """The image answering `request`: from the store, else paid now and stored before use.

    `folder` / `view` name the call in the ledger and the errors; `unreadable` is the French
    message when the answer does not decode; `meta` adds fields to the stored answer's metadata.
    """
    key = request.key()
    store = AnswerStore(answers_dir(settings))

    def pay():
        # The SDK (0.5 s to import) only when a call is paid: a local-renderer run never loads it.
        from . import batch_jobs
        from .gemini import shared_generator

        _refuse_when_unwritable(settings)
        task_view = (meta or {}).get("view", view)
        if settings.gemini_mode == "batch" and batch_state.armed():
            batch_jobs.wait_for_batch(settings, request, folder=folder, view=view, task_view=task_view)
        batch_jobs.already_in_a_job(settings, request, folder=folder, view=view, task_view=task_view)
        generator = shared_generator(settings)
        ledger = generator.ledger
        estimate = models.estimate_call_cost(request.model, request.image_size, len(request.images))
        ledger.check_budget(estimate)
        journal = dict(folder=folder, view=view, model=request.model, image_size=request.image_size,
                       request_key=key, call_id=uuid.uuid4().hex)
        ledger.record(**journal, outcome="started", estimate_usd=round(estimate, 6))
        try:
            answer = generator.generate(request, folder=folder, view=view)
        except BaseException:
            ledger.record(**journal, outcome="ended")
            raise
        return answer.data, answer.stored_fields(request.model, folder=folder, view=view, extra=meta)

    def lookup_or_pay():
        try:
            return store.get_or_create(key, pay)
        except OSError as exc:  # the answer could not be kept: no new paid call in this run
            note_write_failure(exc)
            raise

    data, stored, from_store = _outside_the_main_thread(lookup_or_pay)
    if from_store and batch_state.is_fresh(key):  # collected from a Batch API job by this run: made now
        from_store = False
    note = str(stored.get("store_note") or "")
    try:
        image = _decode(data)
    except Exception:
        if not from_store:
            raise GenerationError(unreadable) from None
        # an answer stored before digests were kept, damaged: set aside and paid again, once
        note = store.set_aside(key, "son image ne se décode pas").note
        data, stored, from_store = _outside_the_main_thread(lookup_or_pay)
        try:
            image = _decode(data)
        except Exception:
            raise GenerationError(unreadable) from None
    return PaidImage(image=image, finished=finish(image, size) if size else None, key=key, model=request.model,
                     from_store=from_store, cost_usd=0.0 if from_store else float(stored.get("cost_usd") or 0.0),
                     input_tokens=int(stored.get("input_tokens") or 0),
                     output_tokens=int(stored.get("output_tokens") or 0),
                     model_text=str(stored.get("model_text") or ""), note=note)


def _decode(data: bytes) -> Image.Image:
    raw = Image.open(io.BytesIO(data))
    raw.load()
    return raw.convert("RGB")


# --- where the answers and the ledger go must take them ------------------------------------------

_checked: set = set()
_checked_lock = threading.Lock()


def _refuse_when_unwritable(settings) -> None:
    """Before the process's first paid call: the answer store and the ledger's folder take a
    file; after any write error: no new paid call. Raises GenerationError (French)."""
    failed = write_failure()
    if failed is None:
        folders = (answers_dir(settings), ledger_path(settings).parent)
        with _checked_lock:
            todo = [f for f in folders if f not in _checked]
            for folder in todo:
                try:
                    probe_writable(folder)
                except OSError as exc:
                    note_write_failure(exc)
                    break
                _checked.add(folder)
        failed = write_failure()
    if failed is not None:
        raise GenerationError(unwritable_message(failed))


def unwritable_message(exc: OSError) -> str:
    what = OS_REFUSALS.get(exc.errno, (exc.strerror or str(exc),))[0]
    return (f"Écriture impossible dans {exc.filename or '?'} ({what}) : les réponses payées ne pourraient pas "
            f"être gardées, donc plus aucun appel payant dans cette exécution ; rendez OUTPUT_DIR inscriptible "
            f"ou libérez de la place, puis relancez doit.")


# --- a paid call is never cut by an interruption ----------------------------------------------------

def _outside_the_main_thread(fn):
    """fn() in a worker thread when called from the main thread (where Ctrl-C and SIGTERM land):
    an interruption waits for the call to finish and its answer to be stored, then goes on."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    result: dict = {}

    def work():
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    worker = threading.Thread(target=work, name="paid-call")
    worker.start()
    interrupted = None
    while worker.is_alive():
        try:
            worker.join(0.2 if interrupted is None else INTERRUPT_GRACE)
        except KeyboardInterrupt as exc:
            if interrupted is not None:
                raise  # a second Ctrl-C: give up waiting
            interrupted = exc
            print("Interruption : l'appel payant en cours est attendu pour garder sa réponse "
                  "(Ctrl-C à nouveau pour abandonner)…", flush=True)
    if interrupted is not None:
        raise interrupted
    if "error" in result:
        raise result["error"]
    return result["value"]
