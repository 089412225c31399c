"""The one paid path: every image Gemini makes for the pipeline goes through `paid_image`.

    request -> answer store (per-key lock) -> paid call -> ledger -> decode -> finish

Used by the base generation of a view (`view_build`), the declared retouches (`retouches`) and
the one-off retouch (`one_off_retouch`). The answer store is looked up under the request key's
lock, so identical requests (parallel workers, two one-off retouches started together) are paid
once; the generator writes the ledger line of every call it makes.

With GEMINI_MODE=batch (in a doit run, once the `batch` task has collected) the paid call is not
made here: `batch_jobs.wait_for_batch` queues the request for a Batch API job (or says which job
it is in) and the view waits; a later run finds the answer in the same store, by the same key.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from ..core.errors import GenerationError
from ..core import batch_state
from ..core.paths import answers_dir
from ..imaging.finishing import FinishResult, finish
from . import batch_jobs
from .answer_store import AnswerStore
from .gemini import ImageRequest, shared_generator


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

    def pay():
        if settings.gemini_mode == "batch" and batch_state.armed():
            batch_jobs.wait_for_batch(settings, request, folder=folder, view=view,  # raises BatchPending
                                      task_view=(meta or {}).get("view", view))
        answer = shared_generator(settings).generate(request, folder=folder, view=view)
        return answer.data, answer.stored_fields(request.model, folder=folder, view=view, extra=meta)

    data, stored, from_store = AnswerStore(answers_dir(settings)).get_or_create(key, pay)
    if from_store and batch_state.is_fresh(key):  # collected from a Batch API job by this run: made now
        from_store = False
    try:
        raw = Image.open(io.BytesIO(data))
        raw.load()
        image = raw.convert("RGB")
    except Exception:
        raise GenerationError(unreadable) from None
    return PaidImage(image=image, finished=finish(image, size) if size else None, key=key, model=request.model,
                     from_store=from_store, cost_usd=0.0 if from_store else float(stored.get("cost_usd") or 0.0),
                     input_tokens=int(stored.get("input_tokens") or 0),
                     output_tokens=int(stored.get("output_tokens") or 0),
                     model_text=str(stored.get("model_text") or ""))
