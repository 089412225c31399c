"""The Gemini generator: the real `google-genai` SDK, answer checks, retries, rate limit, ledger.

One `GeminiGenerator` per process (`shared_generator`) serves every doit worker thread: it owns
the SDK client, the shared `RateLimiter` and the `Ledger`.

Request (`ImageRequest`): the images in order (product or source, style reference, [colour
anchor]), then the instruction text last; `responseModalities` TEXT+IMAGE (so that a refusal
comes back as text we can show), `imageConfig` {aspectRatio, imageSize}, and the seed. The API
version is pinned (`models.API_VERSION`); the base URL is never set here: the SDK reads
`GOOGLE_GEMINI_BASE_URL` itself (tests point it at the fake server).

Answer: read from the raw body (`should_return_http_response`; the SDK's parsing drops
`finishMessage`, python-genai#2049), then `GenerateContentResponse.model_validate`: the last
non-thought inline image of candidate 0, raw bytes as received. Billed as Google bills it
(`models.call_cost`: input, thinking + text output, the IMAGE entries of
`candidatesTokensDetails`), each part in the ledger. Finish reasons: NO_IMAGE, IMAGE_OTHER,
OTHER, MALFORMED_RESPONSE get one new attempt (paid, recorded); refusals (IMAGE_SAFETY, SAFETY,
PROHIBITED_CONTENT, BLOCKLIST, SPII, RECITATION, ...) fail the view at once with what in the
photo may cause them; PUP_LIMITED_DISABLED stops the run (`RunStopped`). Anything else without a
final image (no candidates, a block reason, text only, draft images only) is a `GenerationError`
with a French message naming the folder, the view, the reason, the model's text and, when
billed, the cost.

Retries are ours (SDK retries stay off: the SDK ignores `RetryInfo`): a per-minute 429 waits the
server's `RetryInfo.retryDelay` (else exponential backoff with jitter) and pauses the whole
shared limiter; a 429 naming a per-day quota or a spend cap stops paid calls for the run
(`RunStopped`, a `BudgetExceeded`: the rest is postponed as for MAX_COST); 5xx, 408 and
transport failures back off in the worker. GEMINI_MAX_WAIT bounds, in wall-clock time, how long
a view keeps retrying after its first failure; GEMINI_TIMEOUT bounds one call in wall-clock time
(the SDK's own timeout is per read). Other 4xx fail at once with what to do. The API key is
scrubbed from every message this module produces.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from ..core import models
from ..core.errors import BudgetExceeded, GenerationError
from ..core.paths import ledger_path
from .image_request import RESPONSE_MODALITIES, ImageAnswer, ImageRequest
from .ledger import Ledger
from .rate_limiter import DeadlineExceeded, LimiterClosed, RateLimiter

try:  # the SDK's default HTTP backend in 3.x
    import httpx2 as _httpx2
except ImportError:  # pragma: no cover
    _httpx2 = None
try:  # used instead when GOOGLE_GENAI_HTTP_CLIENT=httpx
    import httpx as _httpx
except ImportError:
    _httpx = None

TEXT_SHORTEN = 300

# Transport failures: not `APIError`; retried like a 5xx.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls for mod in (_httpx2, _httpx) if mod is not None
    for cls in (mod.TransportError,)
)
TIMEOUT_ERRORS: tuple[type[BaseException], ...] = tuple(
    mod.TimeoutException for mod in (_httpx2, _httpx) if mod is not None
)
# Transport failures that no retry can fix (a malformed GOOGLE_GEMINI_BASE_URL, ...).
FATAL_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    mod.UnsupportedProtocol for mod in (_httpx2, _httpx) if mod is not None
)
RETRYABLE_STATUS = {408, 429}
# Attempts per view for 5xx, timeouts and network failures (429s are bounded by GEMINI_MAX_WAIT
# only): a network that is down must not hold every view for GEMINI_MAX_WAIT.
MAX_TRANSIENT_ATTEMPTS = 5

# --- Helpers -------------------------------------------------------------------------------------

def _shorten(text: str, limit: int = TEXT_SHORTEN) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _enum_name(value) -> str | None:
    if value is None:
        return None
    return getattr(value, "value", None) or getattr(value, "name", None) or str(value)


def _parse_duration(raw) -> float | None:
    """A proto Duration ("1.5s", "53.016342224s") or a number of seconds -> float."""
    if raw is None:
        return None
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, dict):  # {"seconds": 2, "nanos": 5e8}
        return float(raw.get("seconds", 0)) + float(raw.get("nanos", 0)) / 1e9
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*s?\s*", str(raw))
    return float(m.group(1)) if m else None


def retry_delay_seconds(exc: genai_errors.APIError) -> float | None:
    """The server's wait for a 429: `RetryInfo.retryDelay`, else a `Retry-After` header."""
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    for d in (error or {}).get("details") or []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = _parse_duration(d.get("retryDelay"))
            if delay is not None:
                return delay
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        try:
            return _parse_duration(headers.get("retry-after"))
        except Exception:
            return None
    return None


def _error_reason(exc: genai_errors.APIError) -> str | None:
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    for d in (error or {}).get("details") or []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            return d.get("reason")
    return None


class _Scrubber:
    def __init__(self, secret: str | None):
        self.secrets = [s for s in {secret or ""} if len(s) >= 4]

    def __call__(self, text) -> str:
        text = str(text)
        for s in self.secrets:
            text = text.replace(s, "***")
        return text


def _make_client(settings) -> genai.Client:
    return genai.Client(
        api_key=settings.gemini_api_key,
        http_options=types.HttpOptions(
            api_version=models.API_VERSION,
            timeout=int(round(settings.gemini_timeout * 1000)),   # milliseconds
            # No retry_options: the SDK makes exactly one attempt; we retry (RetryInfo-aware).
        ),
    )


# --- The generator -------------------------------------------------------------------------------

class RunStopped(BudgetExceeded):
    """A limit that will not clear during this run (a per-day quota, a spend cap, an account
    restriction): no new paid call is started; the views left are postponed, as for MAX_COST."""


class _Retry(Exception):
    """Internal: the attempt failed in a retryable way."""

    def __init__(self, kind: str, detail: str, server_delay: float | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.server_delay = server_delay


class _AnswerRetry(Exception):
    """Internal: the answer is worth one new attempt (NO_IMAGE, IMAGE_OTHER, OTHER, ...);
    `message` is the view's failure if the new attempt fails too."""

    def __init__(self, message: str, cost: float):
        super().__init__(message)
        self.message = message
        self.cost = cost


# The public name of an answer worth one new request (the Batch API collector resubmits it once).
RetryableAnswer = _AnswerRetry


class _CallTimeout(Exception):
    """Internal: no complete answer within GEMINI_TIMEOUT (wall clock)."""


# Finish reasons (and prompt block reasons) worth one automatic new attempt: the model failed to
# draw, nothing in the request is at fault.
RETRY_ONCE_REASONS = frozenset({"NO_IMAGE", "IMAGE_OTHER", "OTHER", "MALFORMED_RESPONSE"})
# Refusals: the same request is refused again; what in the photo may cause it (French).
REFUSAL_CAUSES = {
    "IMAGE_SAFETY": "le filtre de sécurité des images : une personne ou de la peau visible (mannequin, "
                    "main, reflet), un vêtement porté, des sous-vêtements ou un maillot de bain",
    "SAFETY": "le filtre de sécurité : une personne ou de la peau visible, un vêtement porté, "
              "un texte ou un dessin du vêtement jugé choquant",
    "IMAGE_PROHIBITED_CONTENT": "le contenu interdit par Google dans les images : une personne "
                                "reconnaissable ou qui semble mineure, de la nudité, une arme ou un "
                                "symbole sur le vêtement",
    "PROHIBITED_CONTENT": "le contenu interdit par Google : une personne reconnaissable ou qui semble "
                          "mineure, de la nudité, une arme ou un symbole sur le vêtement",
    "BLOCKLIST": "un terme interdit : un texte lisible sur le vêtement, une étiquette ou un emballage",
    "SPII": "des données personnelles visibles : une étiquette, un ticket, un nom, une adresse, un "
            "numéro ou un code-barres sur la photo",
    "RECITATION": "la ressemblance avec une image protégée : une photo de catalogue reprise telle "
                  "quelle, un visuel ou un logo de marque en gros plan",
    "IMAGE_RECITATION": "la ressemblance avec une image protégée : une photo de catalogue reprise "
                        "telle quelle, un visuel ou un logo de marque en gros plan",
}
ACCOUNT_RESTRICTED_REASONS = frozenset({"PUP_LIMITED_DISABLED"})


def _usage_counts(usage: dict, final_images: int) -> dict:
    """Token counts of one answer from its raw `usageMetadata` (what Google bills)."""
    usage = usage if isinstance(usage, dict) else {}
    candidates = int(usage.get("candidatesTokenCount") or 0)
    thoughts = int(usage.get("thoughtsTokenCount") or 0)
    details = usage.get("candidatesTokensDetails")
    if isinstance(details, list) and details:
        image = sum(int(d.get("tokenCount") or 0) for d in details
                    if isinstance(d, dict) and d.get("modality") == "IMAGE")
    else:   # no breakdown: every candidate token of an answer with an image is billed as image
        image = candidates if final_images else 0
    return {"input_tokens": int(usage.get("promptTokenCount") or 0), "thought_tokens": thoughts,
            "image_output_tokens": image, "text_output_tokens": max(0, candidates - image),
            "output_tokens": candidates + thoughts}


def quota_violation(exc: genai_errors.APIError) -> tuple[str, str]:
    """(kind, quotaId) of a 429: kind is "day" (a per-day quota), "spend" (a spend cap over a
    rolling window), "month" (a monthly spend cap), "minute" (a per-minute quota) or "unknown"
    (no QuotaFailure detail)."""
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    message = str((error or {}).get("message") or exc.message or "")
    ids = []
    for d in (error or {}).get("details") or []:
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            for v in d.get("violations") or []:
                if isinstance(v, dict):
                    ids.append(str(v.get("quotaId") or v.get("quotaMetric") or ""))
    text = " ".join(ids + [message]).lower()
    quota_id = next((i for i in ids if i), "")
    if "spend" in text or "spending" in text:
        return ("month" if "month" in text else "spend"), quota_id
    if any("perday" in i.lower() for i in ids):
        return "day", quota_id
    if any("permonth" in i.lower() for i in ids):
        return "month", quota_id
    if ids:
        return "minute", quota_id
    return "unknown", quota_id


def _local_time(dt) -> str:
    return dt.astimezone().strftime("%d/%m à %H:%M")


def quota_stop_message(kind: str, quota_id: str, server_delay: float | None) -> str:
    """The French message of a run stopped by a limit that does not clear within the run."""
    now = datetime.now(timezone.utc)
    named = f" ({quota_id})" if quota_id else ""
    if kind == "day":
        try:
            pacific = ZoneInfo("America/Los_Angeles")
            local_midnight = (now.astimezone(pacific) + timedelta(days=1)).replace(
                hour=0, minute=0, second=0, microsecond=0)
            when = f"à minuit heure du Pacifique, soit le {_local_time(local_midnight)} (heure locale)"
        except Exception:  # pragma: no cover - no time zone database
            when = "à minuit heure du Pacifique"
        return (f"Quota journalier Gemini atteint{named} : plus aucun appel payant dans cette exécution ; "
                f"il se réinitialise {when}. Relancez doit ensuite (les vues faites sont gardées), "
                f"ou demandez un quota plus haut dans AI Studio.")
    if kind == "month":
        return (f"Plafond de dépense mensuel du projet Google atteint{named} : plus aucun appel payant "
                f"dans cette exécution ; il se réinitialise au début du mois prochain, ou relevez-le "
                f"(palier supérieur) dans AI Studio, puis relancez doit.")
    if server_delay is not None:
        when = f"dans {server_delay:.0f} s environ (vers {_local_time(now + timedelta(seconds=server_delay))})"
    else:
        when = "dans au plus 10 minutes (plafond glissant sur 10 minutes)"
    return (f"Plafond de dépense du projet Google atteint{named} (palier 1 : 10 $ par 10 minutes "
            f"glissantes) : plus aucun appel payant dans cette exécution ; il se libère {when}. "
            f"Réglez GEMINI_SPEND_PER_10MIN (ex. 10 au palier 1) pour que doit reste dessous, "
            f"puis relancez doit.")


def _run_stop_for_account(reason: str, where: str, message: str) -> str:
    said = f" (« {message} »)" if message else ""
    return (f"Compte Google restreint : Gemini refuse de générer (finishReason={reason}){said}, "
            f"constaté sur {where}. Plus aucun appel payant dans cette exécution. Ouvrez AI Studio "
            f"(https://aistudio.google.com) avec le compte du projet : vérifiez la facturation et "
            f"les avertissements de règles d'utilisation, faites lever la restriction, puis relancez doit.")


class GeminiGenerator:
    BACKOFF_INITIAL = 2.0     # seconds, first retry without a server-given delay
    BACKOFF_MAX = 60.0

    def __init__(self, settings, ledger: Ledger, limiter: RateLimiter | None = None, *,
                 backoff_initial: float | None = None, backoff_max: float | None = None,
                 sleep=time.sleep, clock=time.monotonic):
        self.settings = settings
        self.ledger = ledger
        self.limiter = limiter
        self.backoff_initial = self.BACKOFF_INITIAL if backoff_initial is None else backoff_initial
        self.backoff_max = self.BACKOFF_MAX if backoff_max is None else backoff_max
        self._sleep = sleep
        self._clock = clock
        self._scrub = _Scrubber(settings.gemini_api_key)
        self._client: genai.Client | None = None
        self._client_lock = threading.Lock()
        self._stopped: str | None = None

    def __repr__(self) -> str:
        return f"GeminiGenerator(model={self.settings.model!r})"

    @property
    def stopped(self) -> str | None:
        """The message of the limit that stopped paid calls for this run, if any."""
        return self._stopped

    # The client is created on first use (the SDK reads GOOGLE_GEMINI_BASE_URL then).
    def client(self) -> genai.Client:
        with self._client_lock:
            if self._client is None:
                if not self.settings.gemini_api_key:
                    raise GenerationError("GEMINI_API_KEY est vide : ajoutez la clé dans .env, "
                                          "ou GENERATOR=local pour l'aperçu hors ligne.")
                try:
                    self._client = _make_client(self.settings)
                except ValueError as exc:
                    raise GenerationError(f"Client Gemini impossible à créer : {self._scrub(exc)}") from None
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None

    def _stop_run(self, message: str) -> None:
        """No new paid call in this run: say why (once per view asking) and postpone the rest."""
        with self._client_lock:
            if self._stopped is None:
                self._stopped = message
        if self.limiter is not None:
            self.limiter.close(self._stopped)
        raise RunStopped(self._stopped)

    # --- public --------------------------------------------------------------------------------

    def generate(self, request: ImageRequest, *, folder: str, view: str) -> ImageAnswer:
        """Generate one view; raises `GenerationError` (French) or `BudgetExceeded` (MAX_COST, or
        `RunStopped`: a limit that does not clear within the run).

        GEMINI_MAX_WAIT is a wall-clock bound: from the view's first retryable failure, no new
        attempt starts after `max_wait` seconds, whatever delays it (its own back-off, a pause
        another worker's 429 imposed, the limiter's queue)."""
        t_start = self._clock()
        if self._stopped is not None:
            raise RunStopped(self._stopped)
        key = request.key()
        estimate = models.estimate_call_cost(request.model, request.image_size, len(request.images))
        max_wait = self.settings.gemini_max_wait
        deadline: float | None = None
        attempt = transient = answer_retries = 0
        where = f"{folder} / {view}"
        paid_before = 0.0
        while True:
            attempt += 1
            try:
                with self.ledger.reserve(estimate):      # raises BudgetExceeded before any call
                    answer = self._attempt(request, key=key, folder=folder, view=view, where=where,
                                           attempt=attempt, estimate=estimate, deadline=deadline)
            except _AnswerRetry as r:
                paid_before += r.cost
                answer_retries += 1
                if answer_retries > 1:
                    raise GenerationError(
                        f"{r.message} (2 essais, tous deux facturés : {paid_before:.3f} $ en "
                        f"tout).") from None
                continue                                 # one new attempt, at once
            except _Retry as r:
                now = self._clock()
                if deadline is None:
                    deadline = now + max_wait
                delay = r.server_delay if r.server_delay is not None else self._backoff(attempt)
                if r.kind != "rate_limited":
                    transient += 1
                    if transient >= MAX_TRANSIENT_ATTEMPTS:
                        raise GenerationError(
                            f"{where} : Gemini indisponible après {attempt} essai(s) ({r.detail}). "
                            f"Relancez plus tard ; vérifiez le réseau et GEMINI_TIMEOUT.") from None
                if now + delay > deadline:
                    raise self._max_wait_error(where, attempt, r.detail, delay) from None
                if r.kind == "rate_limited" and self.limiter is not None:
                    self.limiter.penalize(delay)         # everybody waits, not only this worker
                else:
                    self._sleep(delay)
                continue
            except DeadlineExceeded as d:
                raise self._max_wait_error(where, attempt - 1, "quota dépassé (429)",
                                           max(0.0, d.ready_at - self._clock())) from None
            answer.seconds = round(self._clock() - t_start, 3)
            answer.attempts = attempt
            return answer

    def _max_wait_error(self, where: str, attempts: int, detail: str, delay: float) -> GenerationError:
        nxt = f"prochain essai possible dans {delay:.1f} s" if delay != float("inf") else "file d'attente pleine"
        return GenerationError(
            f"{where} : Gemini indisponible après {attempts} essai(s) ({detail}) ; attente limitée à "
            f"{self.settings.gemini_max_wait:g} s depuis le premier échec (GEMINI_MAX_WAIT), {nxt}. "
            f"Relancez plus tard ou réduisez GEMINI_RPM / GEMINI_CONCURRENCY.")

    # --- one attempt ---------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)   # "equal jitter": never 0, never above base

    def _contents(self, request: ImageRequest):
        contents = [types.Part.from_bytes(data=data, mime_type=mime) for data, mime in request.images]
        contents.append(types.Part.from_text(text=request.instruction))
        config = types.GenerateContentConfig(
            response_modalities=list(RESPONSE_MODALITIES),
            image_config=types.ImageConfig(aspect_ratio=request.aspect_ratio,
                                           image_size=request.image_size),
            seed=int(request.seed),
            # The raw body: the SDK's parsing drops finishMessage (python-genai#2049).
            should_return_http_response=True,
        )
        return contents, config

    def _call(self, request: ImageRequest, contents, config) -> dict:
        """One generateContent, bounded by GEMINI_TIMEOUT in wall-clock time (the SDK's timeout
        bounds each read only: a server sending a byte a second would hold it for ever). The SDK
        call runs in a daemon thread; past the deadline it is abandoned (it ends by itself at the
        SDK's per-read timeout) and `_CallTimeout` is raised. Returns the raw answer (dict)."""
        client = self.client()
        box: dict = {}
        done = threading.Event()

        def run():
            try:
                box["resp"] = client.models.generate_content(model=request.model, contents=contents,
                                                             config=config)
            except BaseException as e:   # noqa: BLE001 - handed over to the caller's thread
                box["exc"] = e
            finally:
                done.set()

        threading.Thread(target=run, name="gemini-call", daemon=True).start()
        if not done.wait(self.settings.gemini_timeout):
            raise _CallTimeout()
        if "exc" in box:
            raise box["exc"]
        resp = box["resp"]
        raw = getattr(getattr(resp, "sdk_http_response", None), "body", None)
        if raw is None:     # an SDK that ignores should_return_http_response: rebuild the body
            return resp.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.loads(raw) if raw else {}

    def _attempt(self, request: ImageRequest, *, key: str, folder: str, view: str, where: str,
                 attempt: int, estimate: float, deadline: float | None) -> ImageAnswer:
        base = dict(folder=folder, view=view, model=request.model, image_size=request.image_size,
                    request_key=key, attempt=attempt)
        scrub = self._scrub
        record = self._recorder(self.ledger, base)

        self.client()   # created (or failed) before taking a slot: the slot's start is the call's start
        contents, config = self._contents(request)   # encoded before the start, too
        try:
            slot = (self.limiter.slot(estimate, deadline) if self.limiter is not None
                    else _nullslot())
        except LimiterClosed as e:
            raise RunStopped(str(e)) from None
        with slot:
            t0 = self._clock()
            try:
                body = self._call(request, contents, config)
                exc = None
            except _CallTimeout as e:
                body, exc = None, e
            except genai_errors.APIError as e:
                body, exc = None, e
            except TRANSPORT_ERRORS as e:
                body, exc = None, e
            except (ValueError, json.JSONDecodeError) as e:   # malformed 200 body, pydantic errors
                body, exc = None, e
            seconds = self._clock() - t0

        if exc is not None:
            slot.settle(0.0)     # not billed
            self._handle_exception(exc, request, where=where, seconds=seconds, record=record)
        try:
            answer = self._read_answer(body, request, where=where, seconds=seconds, record=record,
                                       slot=slot)
        except (ValueError, TypeError) as e:   # a 200 body that is no GenerateContentResponse
            slot.settle(0.0)
            record("bad_response", seconds, detail=f"{type(e).__name__}: {e}")
            raise GenerationError(f"{where} : réponse illisible de Gemini ({type(e).__name__} : "
                                  f"{_shorten(scrub(e), 200)}).") from None
        if self.limiter is not None:
            self.limiter.on_success()
        return answer

    def _recorder(self, ledger: Ledger, base: dict):
        """record(outcome, seconds, counts=, cost=, images=, detail=): one ledger line of a call."""
        scrub = self._scrub

        def record(outcome: str, seconds: float, *, counts: dict | None = None,
                   cost: models.CallCost | None = None, images: int = 0, detail: str | None = None):
            extra = {"detail": _shorten(scrub(detail), 200)} if detail else {}
            counts = counts or {}
            ledger.record(**base, input_tokens=counts.get("input_tokens", 0),
                          output_tokens=counts.get("output_tokens", 0),
                          thought_tokens=counts.get("thought_tokens", 0),
                          text_output_tokens=counts.get("text_output_tokens", 0),
                          image_output_tokens=counts.get("image_output_tokens", 0),
                          images=images, **(cost.fields() if cost else {}),
                          cost_usd=cost.total if cost else 0.0, seconds=round(seconds, 3),
                          outcome=outcome, **extra)

        return record

    def check_answer(self, body, request: ImageRequest, *, folder: str, view: str, seconds: float,
                     ledger: Ledger, batch: bool = True, extra: dict | None = None) -> ImageAnswer:
        """The checks of `generate`, for an answer received another way (a Batch API result):
        billed at the batch price when `batch`, one line in `ledger` (plus the `extra` fields),
        the same French errors. Raises `GenerationError`, `RetryableAnswer` (worth one new
        request: NO_IMAGE, IMAGE_OTHER, ...) or `RunStopped` (an account restriction)."""
        base = dict(folder=folder, view=view, model=request.model, image_size=request.image_size,
                    request_key=request.key(), **(extra or {}))
        record = self._recorder(ledger, base)
        where = f"{folder} / {view}"
        try:
            return self._read_answer(body, request, where=where, seconds=seconds, record=record,
                                     slot=_nullslot(), batch=batch)
        except (ValueError, TypeError) as e:   # a result that is no GenerateContentResponse
            record("bad_response", seconds, detail=f"{type(e).__name__}: {e}")
            raise GenerationError(f"{where} : réponse illisible de Gemini ({type(e).__name__} : "
                                  f"{_shorten(self._scrub(e), 200)}).") from None

    def _handle_exception(self, exc, request: ImageRequest, *, where: str, seconds: float, record):
        """Raise `_Retry` for a retryable failure, `GenerationError` otherwise (never returns)."""
        scrub = self._scrub
        if isinstance(exc, _CallTimeout):
            record("timeout", seconds, detail=f"no complete answer in {self.settings.gemini_timeout:g} s")
            raise _Retry("timeout", f"pas de réponse complète en {self.settings.gemini_timeout:g} s "
                                    f"(GEMINI_TIMEOUT)")
        if isinstance(exc, genai_errors.APIError):
            code = exc.code or 0
            status = exc.status or ""
            message = _shorten(scrub(exc.message or ""), 300)
            if code == 429:
                delay = retry_delay_seconds(exc)
                kind, quota_id = quota_violation(exc)
                record("rate_limited" if kind in ("minute", "unknown") else f"quota_{kind}", seconds,
                       detail=f"{quota_id} {message}".strip())
                if kind in ("day", "spend", "month"):
                    self._stop_run(quota_stop_message(kind, quota_id, delay))
                raise _Retry("rate_limited", f"quota dépassé (429 {status})", delay)
            if code >= 500 or code in RETRYABLE_STATUS:
                record("server_error", seconds, detail=f"{code} {status} {message}")
                raise _Retry("server_error", f"erreur serveur {code} {status}".strip())
            reason = _error_reason(exc)
            if code in (401,) or reason == "API_KEY_INVALID" or (
                    code == 400 and "api key" in (exc.message or "").lower()):
                record("invalid_key", seconds, detail=message)
                raise GenerationError(
                    f"{where} : la clé GEMINI_API_KEY est refusée par Google ({code} {status} : "
                    f"« {message} ») : vérifiez GEMINI_API_KEY dans .env (clé à créer sur "
                    f"https://aistudio.google.com/apikey).") from None
            if code == 403:
                record("permission_denied", seconds, detail=message)
                raise GenerationError(
                    f"{where} : accès refusé par Google (403 {status} : « {message} ») : la clé "
                    f"GEMINI_API_KEY n'a pas accès au modèle « {request.model} » (facturation activée ? "
                    f"API Gemini activée pour le projet ?).") from None
            if code == 404:
                record("model_not_found", seconds, detail=message)
                raise GenerationError(
                    f"{where} : modèle « {request.model} » introuvable (API {models.API_VERSION}, "
                    f"404 {status} : « {message} ») : corrigez GEMINI_MODEL (pro, flash ou un "
                    f"identifiant complet) ; l'identifiant essayé était « {request.model} ».") from None
            record("bad_request" if code == 400 else "client_error", seconds, detail=message)
            raise GenerationError(
                f"{where} : requête refusée par Google ({code} {status}) : « {message} ».") from None
        if FATAL_TRANSPORT_ERRORS and isinstance(exc, FATAL_TRANSPORT_ERRORS):
            record("network", seconds, detail=f"{type(exc).__name__}: {exc}")
            raise GenerationError(
                f"{where} : adresse de l'API Gemini inutilisable ({_shorten(scrub(exc), 160)}) : "
                f"vérifiez GOOGLE_GEMINI_BASE_URL (ou retirez-la).") from None
        if TIMEOUT_ERRORS and isinstance(exc, TIMEOUT_ERRORS):
            record("timeout", seconds, detail=type(exc).__name__)
            raise _Retry("timeout", f"pas de réponse en {self.settings.gemini_timeout:g} s "
                                    f"(GEMINI_TIMEOUT)")
        if TRANSPORT_ERRORS and isinstance(exc, TRANSPORT_ERRORS):
            record("network", seconds, detail=f"{type(exc).__name__}: {exc}")
            raise _Retry("network", f"erreur réseau ({type(exc).__name__}: {_shorten(scrub(exc), 120)})")
        record("bad_response", seconds, detail=f"{type(exc).__name__}: {exc}")
        raise GenerationError(
            f"{where} : réponse illisible de Gemini ({type(exc).__name__} : "
            f"{_shorten(scrub(exc), 200)}).") from None

    def _read_answer(self, body: dict, request: ImageRequest, *, where: str, seconds: float,
                     record, slot, batch: bool = False) -> ImageAnswer:
        """Read the raw answer as Gemini sent it (finishMessage included), bill it (at the batch
        price when `batch`), check it."""
        if not isinstance(body, dict):
            raise ValueError("the answer is not a JSON object")
        resp = types.GenerateContentResponse.model_validate(body)
        raw_cands = body.get("candidates") if isinstance(body.get("candidates"), list) else []
        raw_cand = raw_cands[0] if raw_cands and isinstance(raw_cands[0], dict) else {}
        cand = resp.candidates[0] if resp.candidates else None
        parts = list(cand.content.parts or []) if cand is not None and cand.content is not None else []
        text = " ".join(p.text for p in parts if p.text and not p.thought)
        images = [p for p in parts
                  if p.inline_data is not None and p.inline_data.data
                  and (p.inline_data.mime_type or "").startswith("image/")]
        final = [p for p in images if not p.thought]
        counts = _usage_counts(body.get("usageMetadata"), len(final))
        cost = models.call_cost(request.model, input_tokens=counts["input_tokens"],
                                thought_tokens=counts["thought_tokens"],
                                text_output_tokens=counts["text_output_tokens"],
                                image_output_tokens=counts["image_output_tokens"], batch=batch)
        slot.settle(cost.total)
        paid = f" Cet appel a été facturé ({cost.total:.3f} $)." if cost.total >= 0.0005 else ""
        finish = _enum_name(cand.finish_reason) if cand is not None else None
        finish_message = str(raw_cand.get("finishMessage") or "").strip()

        def fail(outcome: str, reason: str, advice: str) -> None:
            record(outcome, seconds, counts=counts, cost=cost, images=len(final),
                   detail=reason + (f" | {text}" if text else ""))
            said = f" Texte du modèle : « {_shorten(self._scrub(text), 200)} »." if text else ""
            raise GenerationError(f"{where} : Gemini n'a pas produit d'image ({reason}).{said}{paid} "
                                  f"{advice}")

        def refusal(outcome: str, reason: str, code: str) -> None:
            cause = REFUSAL_CAUSES.get(code)
            fail(outcome, reason,
                 f"C'est un refus : pas de nouvel essai automatique (il se répéterait). Cause probable "
                 f"dans la photo : {cause}. Recadrez la photo sur le vêtement posé à plat, retirez "
                 f"ce qui est en cause, puis relancez doit." if cause else
                 "C'est un refus : pas de nouvel essai automatique ; changez la photo, puis relancez doit.")

        retry_advice = ("La vue est en échec, les autres continuent ; réessayez avec une autre graine "
                        "ou une autre photo.")
        pf = resp.prompt_feedback
        if pf is not None and pf.block_reason is not None:
            code = _enum_name(pf.block_reason)
            msg = f" : {pf.block_reason_message}" if pf.block_reason_message else ""
            reason = f"demande bloquée, blockReason={code}{msg}"
            if code in REFUSAL_CAUSES:
                refusal("blocked", reason, code)
            fail("blocked", reason, retry_advice)
        if cand is None:
            fail("no_candidates", "réponse sans aucun candidat", retry_advice)
        if finish not in (None, "STOP"):
            reason = f"finishReason={finish}" + (f", « {_shorten(self._scrub(finish_message), 200)} »"
                                                 if finish_message else "")
            outcome = "no_image" if finish == "NO_IMAGE" else "finish_" + finish.lower()
            if finish in ACCOUNT_RESTRICTED_REASONS:
                record(outcome, seconds, counts=counts, cost=cost, images=len(final), detail=reason)
                self._stop_run(_run_stop_for_account(finish, where, _shorten(self._scrub(finish_message), 200)))
            if finish in REFUSAL_CAUSES:
                refusal(outcome, reason, finish)
            if finish in RETRY_ONCE_REASONS:
                record(outcome, seconds, counts=counts, cost=cost, images=len(final), detail=reason)
                said = f" Texte du modèle : « {_shorten(self._scrub(text), 200)} »." if text else ""
                raise _AnswerRetry(f"{where} : Gemini n'a pas produit d'image ({reason}).{said} "
                                   f"La vue est en échec, les autres continuent ; réessayez avec une "
                                   f"autre graine ou une autre photo", cost.total)
            fail(outcome, reason, retry_advice)
        if not final:
            if images:
                fail("thought_only", "seulement des brouillons (images « thought »), pas d'image finale",
                     retry_advice)
            if text:
                fail("text_only", "réponse en texte seul", retry_advice)
            fail("no_image", f"aucune image dans la réponse (finishReason={finish})", retry_advice)
        blob = final[-1].inline_data
        record("ok", seconds, counts=counts, cost=cost, images=len(final))
        return ImageAnswer(data=blob.data, mime=blob.mime_type, input_tokens=counts["input_tokens"],
                           output_tokens=counts["output_tokens"], cost_usd=cost.total,
                           seconds=round(seconds, 3), model_text=_shorten(self._scrub(text)),
                           model_version=resp.model_version or "",
                           thought_tokens=counts["thought_tokens"],
                           image_output_tokens=counts["image_output_tokens"],
                           text_output_tokens=counts["text_output_tokens"], images=len(final),
                           finish_message=finish_message)


class _nullslot:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def settle(self, actual_cost: float) -> None:
        pass


# --- check_api and the process-wide instance -----------------------------------------------------

def check_api(settings) -> tuple[bool, str]:
    """Key valid? model reachable? rate-limited? Generates nothing (one `models.get`)."""
    if not settings.gemini_api_key:
        return False, ("GEMINI_API_KEY est vide : ajoutez la clé dans .env "
                       "(https://aistudio.google.com/apikey), ou GENERATOR=local.")
    scrub = _Scrubber(settings.gemini_api_key)
    model = settings.model
    try:
        with _make_client(settings) as client:
            info = client.models.get(model=model)
    except genai_errors.APIError as e:
        code, status = e.code or 0, e.status or ""
        message = _shorten(scrub(e.message or ""), 300)
        if code == 429:
            delay = retry_delay_seconds(e)
            when = f" ; réessayer dans {delay:.0f} s" if delay is not None else ""
            return False, (f"Clé valide et modèle « {model} » joignable, mais quota atteint en ce moment "
                           f"(429 {status}{when}) : limité. « {message} »")
        if code == 401 or _error_reason(e) == "API_KEY_INVALID" or (
                code == 400 and "api key" in (e.message or "").lower()):
            return False, (f"Clé refusée par Google ({code} {status} : « {message} ») : "
                           f"vérifiez GEMINI_API_KEY dans .env.")
        if code == 403:
            return False, (f"Accès refusé (403 {status} : « {message} ») : la clé GEMINI_API_KEY n'a pas "
                           f"accès au modèle « {model} » (facturation, API activée ?).")
        if code == 404:
            return False, (f"Modèle « {model} » introuvable (API {models.API_VERSION}) : corrigez "
                           f"GEMINI_MODEL (pro, flash ou un identifiant complet). « {message} »")
        return False, f"L'API Gemini a répondu {code} {status} : « {message} »."
    except TRANSPORT_ERRORS as e:
        return False, (f"API Gemini injoignable ({type(e).__name__} : {_shorten(scrub(e), 160)}) : "
                       f"vérifiez le réseau (ou GOOGLE_GEMINI_BASE_URL).")
    except ValueError as e:
        return False, f"Client Gemini impossible à créer : {scrub(e)}"
    actions = list(info.supported_actions or [])
    if actions and "generateContent" not in actions:
        return False, (f"Le modèle « {model} » existe mais ne sait pas faire generateContent "
                       f"({', '.join(actions)}) : choisissez un modèle d'image dans GEMINI_MODEL.")
    name = info.display_name or model
    return True, (f"Clé valide ; modèle « {model} » joignable ({name}, API {models.API_VERSION}) ; "
                  f"pas de limitation de débit signalée. Aucune image générée.")


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def shared_generator(settings) -> GeminiGenerator:
    """One generator per process and settings: one client, one limiter, one ledger for all
    doit worker threads."""
    with _SHARED_LOCK:
        gen = _SHARED.get(settings)
        if gen is None:
            ledger = Ledger(ledger_path(settings), settings.max_cost)
            limiter = RateLimiter(settings.gemini_concurrency, settings.gemini_rpm,
                                  window=settings.gemini_quota_window,
                                  spend_per_window=settings.gemini_spend_per_10min,
                                  spend_window=10 * settings.gemini_quota_window)
            gen = _SHARED[settings] = GeminiGenerator(settings, ledger, limiter)
        return gen


def reset_shared_generators() -> None:
    """Forget the process-wide instances (tests)."""
    with _SHARED_LOCK:
        for gen in _SHARED.values():
            gen.close()
        _SHARED.clear()
