"""The Gemini generator: the real `google-genai` SDK, answer checks, retries, rate limit, ledger.

One `GeminiGenerator` per process (`shared_generator`) serves every doit worker thread: it owns
the SDK client, the shared `RateLimiter` and the `Ledger`.

Request (`ImageRequest`): the images in order (product or source, style reference, [colour
anchor]), then the instruction text last; `responseModalities` TEXT+IMAGE (so that a refusal
comes back as text we can show), `imageConfig` {aspectRatio, imageSize}, and the seed. The API
version is pinned (`models.API_VERSION`); the base URL is never set here: the SDK reads
`GOOGLE_GEMINI_BASE_URL` itself (tests point it at the fake server).

Answer: the last non-thought inline image of candidate 0, raw bytes as received. Anything else
(no candidates, a block reason, a finish reason other than STOP, text only, draft images only)
is a `GenerationError` with a French message naming the folder, the view, the reason and the
model's text, shortened.

Retries are ours (SDK retries stay off: the SDK ignores `RetryInfo`): a 429 waits the server's
`RetryInfo.retryDelay` (else exponential backoff with jitter) and pauses the whole shared limiter;
5xx, 408 and transport failures (timeouts, refused connections: `httpx2` exceptions, not
`APIError`) back off the same way in the worker; the total waiting per view is bounded by
`GEMINI_MAX_WAIT`. Other 4xx fail at once with what to do. The API key is scrubbed from every
message this module produces.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image

from ..core import models
from ..core.errors import GenerationError
from ..core.paths import ledger_path
from ..imaging.decode import jpeg_bytes, open_image
from .ledger import Ledger
from .rate_limiter import RateLimiter

try:  # the SDK's default HTTP backend in 3.x
    import httpx2 as _httpx2
except ImportError:  # pragma: no cover
    _httpx2 = None
try:  # used instead when GOOGLE_GENAI_HTTP_CLIENT=httpx
    import httpx as _httpx
except ImportError:
    _httpx = None

RESPONSE_MODALITIES = ("TEXT", "IMAGE")
KEY_SCHEME = "catalogue.gemini.ImageRequest/1"
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

# Passed-through files (sent as read, no re-encoding) must be at most this big.
PASSTHROUGH_MAX_BYTES = 4 * 1024 * 1024
JPEG_QUALITY = 92


# --- Request and answer --------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRequest:
    model: str                               # full model id
    images: tuple[tuple[bytes, str], ...]    # (data, mime): product/source, style ref, [anchor]
    instruction: str
    aspect_ratio: str                        # e.g. "3:4"
    image_size: str                          # "1K" | "2K" | "4K"
    seed: int = 0

    def key(self) -> str:
        """SHA-256 (hex) of everything that determines the answer.

        Hashed: the UTF-8 JSON (sorted keys, no spaces) of
        `{"scheme": KEY_SCHEME, "api_version": models.API_VERSION, "model", "instruction",
        "aspect_ratio", "image_size", "seed", "response_modalities": [...],
        "images": [[sha256(data), mime], ...]}` (images in request order). Stable across runs
        and processes; any change of model, wording, image bytes, config or seed changes it.
        """
        doc = {
            "scheme": KEY_SCHEME,
            "api_version": models.API_VERSION,
            "model": self.model,
            "instruction": self.instruction,
            "aspect_ratio": self.aspect_ratio,
            "image_size": self.image_size,
            "seed": int(self.seed),
            "response_modalities": list(RESPONSE_MODALITIES),
            "images": [[hashlib.sha256(data).hexdigest(), mime] for data, mime in self.images],
        }
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class ImageAnswer:
    data: bytes                  # the final image, raw as received
    mime: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    seconds: float               # wall time of generate(): waits and retries included
    model_text: str              # non-thought text the model returned (shortened)
    attempts: int = 1
    model_version: str = ""


# --- Input images --------------------------------------------------------------------------------

def prepare_image(path, *, max_pixels: int, long_side: int = 2048) -> tuple[bytes, str]:
    """The bytes to send for one input image: upright, at most `long_side` px on the long side.

    A JPEG or PNG that is already upright, RGB or grey, small enough and at most 4 MB is sent as
    is (its bytes never depend on the Pillow version, so cache keys stay stable). Anything else
    (24 Mpx phone photos, HEIC, EXIF-rotated, CMYK, alpha, 16-bit) is decoded by
    `imaging.open_image`, downscaled and sent as a high-quality JPEG (quality 92, 4:4:4):
    deterministic bytes for the same file and library versions.
    """
    path = Path(path)
    img = open_image(path, max_pixels=max_pixels, max_side=long_side)  # validates (French errors)
    try:
        with Image.open(path) as raw:
            fmt, mode, size = raw.format, raw.mode, raw.size
            orientation = raw.getexif().get(0x0112, 1)
            has_alpha = "transparency" in raw.info
    except Exception:  # pragma: no cover - open_image already decoded it
        fmt = None
    if (fmt in ("JPEG", "PNG") and mode in ("RGB", "L") and not has_alpha and orientation in (0, 1)
            and max(size) <= long_side and path.stat().st_size <= PASSTHROUGH_MAX_BYTES):
        return path.read_bytes(), "image/jpeg" if fmt == "JPEG" else "image/png"
    return jpeg_bytes(img, quality=JPEG_QUALITY), "image/jpeg"


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The supported `aspectRatio` closest to width:height (compared on a log scale)."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(v) for v in ratio.split(":"))
        return abs(math.log(w / h) - target)

    return min(models.SUPPORTED_ASPECT_RATIOS, key=distance)


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

class _Retry(Exception):
    """Internal: the attempt failed in a retryable way."""

    def __init__(self, kind: str, detail: str, server_delay: float | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.server_delay = server_delay


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

    def __repr__(self) -> str:
        return f"GeminiGenerator(model={self.settings.model!r})"

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

    # --- public --------------------------------------------------------------------------------

    def generate(self, request: ImageRequest, *, folder: str, view: str) -> ImageAnswer:
        """Generate one view; raises `GenerationError` (French) or `BudgetExceeded`."""
        t_start = self._clock()
        key = request.key()
        estimate = models.estimate_call_cost(request.model, request.image_size, len(request.images))
        waited = 0.0
        attempt = transient = 0
        where = f"{folder} / {view}"
        while True:
            attempt += 1
            try:
                with self.ledger.reserve(estimate):      # raises BudgetExceeded before any call
                    answer = self._attempt(request, key=key, folder=folder, view=view,
                                           where=where, attempt=attempt)
            except _Retry as r:
                delay = r.server_delay if r.server_delay is not None else self._backoff(attempt)
                if r.kind != "rate_limited":
                    transient += 1
                    if transient >= MAX_TRANSIENT_ATTEMPTS:
                        raise GenerationError(
                            f"{where} : Gemini indisponible après {attempt} essai(s) ({r.detail}). "
                            f"Relancez plus tard ; vérifiez le réseau et GEMINI_TIMEOUT.") from None
                if waited + delay > self.settings.gemini_max_wait:
                    raise GenerationError(
                        f"{where} : Gemini indisponible après {attempt} essai(s) ({r.detail}) ; "
                        f"attente totale limitée à {self.settings.gemini_max_wait:g} s "
                        f"(GEMINI_MAX_WAIT), prochaine attente {delay:.1f} s. "
                        f"Relancez plus tard ou réduisez GEMINI_RPM / GEMINI_CONCURRENCY.") from None
                waited += delay
                if r.kind == "rate_limited" and self.limiter is not None:
                    self.limiter.penalize(delay)         # everybody waits, not only this worker
                else:
                    self._sleep(delay)
                continue
            answer.seconds = round(self._clock() - t_start, 3)
            answer.attempts = attempt
            return answer

    # --- one attempt ---------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)   # "equal jitter": never 0, never above base

    def _call(self, request: ImageRequest):
        contents = [types.Part.from_bytes(data=data, mime_type=mime) for data, mime in request.images]
        contents.append(types.Part.from_text(text=request.instruction))
        config = types.GenerateContentConfig(
            response_modalities=list(RESPONSE_MODALITIES),
            image_config=types.ImageConfig(aspect_ratio=request.aspect_ratio,
                                           image_size=request.image_size),
            seed=int(request.seed),
        )
        return self.client().models.generate_content(model=request.model, contents=contents, config=config)

    def _attempt(self, request: ImageRequest, *, key: str, folder: str, view: str, where: str,
                 attempt: int) -> ImageAnswer:
        base = dict(folder=folder, view=view, model=request.model, image_size=request.image_size,
                    request_key=key, attempt=attempt)
        scrub = self._scrub

        def record(outcome: str, seconds: float, *, input_tokens=0, output_tokens=0, cost=0.0,
                   detail: str | None = None):
            extra = {"detail": _shorten(scrub(detail), 200)} if detail else {}
            self.ledger.record(**base, input_tokens=input_tokens, output_tokens=output_tokens,
                               cost_usd=cost, seconds=round(seconds, 3), outcome=outcome, **extra)

        self.client()   # created (or failed) before taking a slot: the slot's start is the call's start
        slot = self.limiter.slot() if self.limiter is not None else _nullslot()
        with slot:
            t0 = self._clock()
            try:
                resp = self._call(request)
                exc = None
            except genai_errors.APIError as e:
                resp, exc = None, e
            except TRANSPORT_ERRORS as e:
                resp, exc = None, e
            except (ValueError, json.JSONDecodeError) as e:   # malformed 200 body, pydantic errors
                resp, exc = None, e
            seconds = self._clock() - t0

        if exc is not None:
            self._handle_exception(exc, request, where=where, seconds=seconds, record=record)
        if self.limiter is not None:
            self.limiter.on_success()
        return self._read_answer(resp, request, where=where, seconds=seconds, record=record)

    def _handle_exception(self, exc, request: ImageRequest, *, where: str, seconds: float, record):
        """Raise `_Retry` for a retryable failure, `GenerationError` otherwise (never returns)."""
        scrub = self._scrub
        if isinstance(exc, genai_errors.APIError):
            code = exc.code or 0
            status = exc.status or ""
            message = _shorten(scrub(exc.message or ""), 300)
            if code == 429:
                delay = retry_delay_seconds(exc)
                record("rate_limited", seconds, detail=message)
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

    def _read_answer(self, resp, request: ImageRequest, *, where: str, seconds: float,
                     record) -> ImageAnswer:
        usage = resp.usage_metadata
        input_tokens = int(getattr(usage, "prompt_token_count", None) or 0)
        output_tokens = int(getattr(usage, "candidates_token_count", None) or 0)
        no_image_cost = models.call_cost(request.model, request.image_size, input_tokens, output_images=0)

        def fail(outcome: str, reason: str, text: str = "") -> None:
            record(outcome, seconds, input_tokens=input_tokens, output_tokens=output_tokens,
                   cost=no_image_cost, detail=reason + (f" | {text}" if text else ""))
            said = f" Texte du modèle : « {_shorten(self._scrub(text), 200)} »." if text else ""
            raise GenerationError(f"{where} : Gemini n'a pas produit d'image ({reason}).{said} "
                                  f"La vue est en échec, les autres continuent ; réessayez avec "
                                  f"une autre graine ou une autre photo.")

        pf = resp.prompt_feedback
        if pf is not None and pf.block_reason is not None:
            msg = f" : {pf.block_reason_message}" if pf.block_reason_message else ""
            fail("blocked", f"demande bloquée, blockReason={_enum_name(pf.block_reason)}{msg}")
        if not resp.candidates:
            fail("no_candidates", "réponse sans aucun candidat")
        cand = resp.candidates[0]
        parts = list(cand.content.parts or []) if cand.content is not None else []
        text = " ".join(p.text for p in parts if p.text and not p.thought)
        finish = _enum_name(cand.finish_reason)
        images = [p for p in parts
                  if p.inline_data is not None and p.inline_data.data
                  and (p.inline_data.mime_type or "").startswith("image/")]
        final = [p for p in images if not p.thought]
        if finish not in (None, "STOP"):
            extra = f", {cand.finish_message}" if cand.finish_message else ""
            fail("no_image" if finish == "NO_IMAGE" else "finish_" + finish.lower(),
                 f"finishReason={finish}{extra}", text)
        if not final:
            if images:
                fail("thought_only", "seulement des brouillons (images « thought »), pas d'image finale", text)
            if text:
                fail("text_only", "réponse en texte seul", text)
            fail("no_image", f"aucune image dans la réponse (finishReason={finish})")
        blob = final[-1].inline_data
        cost = models.call_cost(request.model, request.image_size, input_tokens, output_images=1)
        record("ok", seconds, input_tokens=input_tokens, output_tokens=output_tokens, cost=cost)
        return ImageAnswer(data=blob.data, mime=blob.mime_type, input_tokens=input_tokens,
                           output_tokens=output_tokens, cost_usd=cost, seconds=round(seconds, 3),
                           model_text=_shorten(self._scrub(text)),
                           model_version=resp.model_version or "")


class _nullslot:
    def __enter__(self):
        return 0.0

    def __exit__(self, *exc):
        return False


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
            limiter = RateLimiter(settings.gemini_concurrency, settings.gemini_rpm)
            gen = _SHARED[settings] = GeminiGenerator(settings, ledger, limiter)
        return gen


def reset_shared_generators() -> None:
    """Forget the process-wide instances (tests)."""
    with _SHARED_LOCK:
        for gen in _SHARED.values():
            gen.close()
        _SHARED.clear()
