"""A protocol-faithful fake of the Gemini Developer API (REST), on 127.0.0.1.

Speaks what the real `google-genai` SDK sends and parses (see ../shared/notes/gemini.md §2–§3):

- `POST /{v1|v1beta}/models/<model>:generateContent` with the key in `x-goog-api-key`; image
  parts under `inlineData` (or `inline_data`) with `mimeType` or `mime_type`, data in either
  base64 alphabet; text parts; `generationConfig` (`responseModalities`, `imageConfig`, `seed`).
- `GET /{v1|v1beta}/models/<model>`: a Model resource, or Google's 404 NOT_FOUND.
- Answers exactly 200 with the `GenerateContentResponse` JSON shape; errors in the
  `google.rpc.Status` shape (`{"error": {code, message, status, details}}`).

The image it returns is a real PNG derived from the first input image (scaled onto a grey
#EAEAEA canvas of the requested aspect ratio and size), so downstream code sees a plausible
product picture.

Scriptable: `push(*scenarios)` queues per-request scenarios (then `default` applies); a scenario
is a name or a dict `{"kind": name, ...params}`:

    ok                 final image (params: mime "image/png"|"image/jpeg", text; recolour [r, g, b]:
                       the garment of the first image, i.e. what differs from its border, is
                       repainted in that colour, its shading kept: a retouch that changed colour)
    draft              a thought text, a thought (draft) image, then the final image
    thought_only       only thought images
    rate_limited       429 with QuotaFailure, Help and RetryInfo (params retry_delay, default
                       "1.5s"; limit minute|day|spend: the quotaId; details full|no_retry_info|bare)
    rate_limited_bare  429 without details
    server_error       500 INTERNAL          unavailable   503 UNAVAILABLE
    blocked            promptFeedback.blockReason (param reason, default PROHIBITED_CONTENT)
    image_safety       candidates [{finishReason: IMAGE_SAFETY, finishMessage}], no content
    no_image           candidates [{finishReason: NO_IMAGE, finishMessage}], no content
    finish             candidates [{finishReason: <reason>, finishMessage: <message>}], no content
    no_candidates      200 with usageMetadata only
    text_only          a text part only, finishReason STOP (param text)
    slow               sleep `seconds`, then the scenario `then` (default "ok")
    drip               the answer of `then` (default "ok"), one byte every `interval` s (1.0)
    bad_request        400 INVALID_ARGUMENT (param message)
    forbidden          403 PERMISSION_DENIED
    not_found          404 NOT_FOUND for the model
    non_json           200 with an HTML body

Answers follow the real ones: the image at the size the model returns for the asked
aspectRatio and imageSize (`answer_size`), `usageMetadata` with the model's image tokens per
imageSize (`candidatesTokensDetails`, one IMAGE entry summing the images; param `images` for
several), `thoughtsTokenCount` (param `thoughts`), input images at 1,120 tokens; `imageSize`
validated as the API does (`1K`/`2K`/`4K` upper-case, `512` on 3.1 Flash only: else 400).

Limits, as Google applies them (each 429 with Google's body, `quota_details` full |
no_retry_info | bare): `quota=(n, window_s)`: at most n accepted generateContent requests in any
window [t - window_s, t] (both ends counted; RetryInfo = when the oldest leaves);
`daily_quota=n`: n accepted requests in the fake's life (quotaId ...PerDay...);
`spend_cap=(usd, window_s)`: the price of the accepted requests in any window (quotaId
ProjectSpendCap...). `latency` (seconds before every image answer). It records every request
(`requests`), start times, accepted times, quota refusals (`rejected`), and the maximum number
of generateContent requests in flight (`max_in_flight`).

The Batch API (`models/{m}:batchGenerateContent`, `batches/...`) and the Files API (resumable
upload, `files/{id}`, `files/{id}:download`) are served by `fake.batch` (fakes/gemini_batch.py).

Usage: `with FakeGemini() as fake: ... fake.url ...`, or `start()` / `stop()`; the pytest
fixture `fake_gemini` (below) also points `GOOGLE_GEMINI_BASE_URL` at it.
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import hashlib
import io
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from .gemini_batch import FakeBatchAPI

DEFAULT_KEY = "fake-gemini-key-0123456789abcdef"
DEFAULT_MODELS = ("gemini-3-pro-image", "gemini-3.1-flash-image", "gemini-2.5-flash-image")
CANVAS_GREY = (234, 234, 234)   # #EAEAEA: Gemini's greys drift off the house #F3F3F3

# What the real models answer (ai.google.dev image-generation and pricing pages, Vertex model
# pages; 2026-09): the size of the image at 1K per aspect ratio (2K doubles it, 4K quadruples it,
# 512 halves it), the output tokens of one image by model and imageSize, the imageSizes each
# model accepts, a typical thinking length, and the tokens of one input image (Gemini 3, default
# high media resolution). The fake keeps its own copy: it must not agree with the pipeline's
# price table by construction.
SIZE_1K = {"1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
           "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
           "16:9": (1376, 768), "21:9": (1584, 672)}
SIZE_FACTOR = {"512": 0.5, "1K": 1, "2K": 2, "4K": 4}
IMAGE_TOKENS = {"gemini-3-pro-image": {"1K": 1120, "2K": 1120, "4K": 2000},
                "gemini-3.1-flash-image": {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
                # shut down 2026-10-02; one 1024 px image whatever the size asked
                "gemini-2.5-flash-image": {"1K": 1290, "2K": 1290, "4K": 1290}}
THOUGHT_TOKENS = {"gemini-3-pro-image": 264, "gemini-3.1-flash-image": 171, "gemini-2.5-flash-image": 0}
TOKENS_PER_INPUT_IMAGE = 1120
# USD per million tokens (input, text/thinking output, image output): the fake's spend cap
# counts what each accepted call costs.
PRICES = {"gemini-3-pro-image": (2.0, 12.0, 120.0), "gemini-3.1-flash-image": (0.5, 3.0, 60.0),
          "gemini-2.5-flash-image": (0.3, 2.5, 30.0)}

ROUTE = re.compile(r"^/(?P<ver>v1|v1beta)/models/(?P<model>[^/:?]+)(?::(?P<method>[A-Za-z]+))?/?$")


def status_body(code: int, status: str, message: str, details: list | None = None) -> dict:
    err = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return {"error": err}


def invalid_key_body() -> dict:
    msg = "API key not valid. Please pass a valid API key."
    return status_body(400, "INVALID_ARGUMENT", msg, [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
         "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg},
    ])


QUOTA_IDS = {
    "minute": ("generate_content_paid_tier_requests", "GenerateRequestsPerMinutePerProjectPerModel"),
    "day": ("generate_content_paid_tier_requests", "GenerateRequestsPerDayPerProjectPerModel"),
    "spend": ("project_spend", "ProjectSpendCapPer10MinutesPerProject"),
}


def rate_limited_body(retry_delay: str | None, model: str, *, limit: str = "minute",
                      quota_value: int | float = 20, details: str = "full") -> dict:
    """A 429 as Google sends it. `limit`: minute | day | spend (the QuotaFailure's quotaId);
    `details`: full (QuotaFailure, Help, RetryInfo), no_retry_info (QuotaFailure, Help) or bare
    (no details at all, as Google also answers)."""
    metric, quota_id = QUOTA_IDS[limit]
    msg = ("You exceeded your current quota, please check your plan and billing details. For more "
           "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
           "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit.")
    if limit == "spend":
        msg = ("Your project has exceeded its spend cap for the rolling 10-minute window. Requests are "
               "blocked until spending falls below the cap. Manage your spend caps in AI Studio: "
               "https://aistudio.google.com/usage.")
    if details == "bare" or retry_delay is None and details == "full":
        return status_body(429, "RESOURCE_EXHAUSTED", msg)
    dets = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"quotaMetric": f"generativelanguage.googleapis.com/{metric}",
                         "quotaId": quota_id,
                         "quotaDimensions": {"location": "global", "model": model},
                         "quotaValue": str(quota_value)}]},
        {"@type": "type.googleapis.com/google.rpc.Help",
         "links": [{"description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
    ]
    if details == "no_retry_info" or retry_delay is None:
        return status_body(429, "RESOURCE_EXHAUSTED", msg, dets)
    dets.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    return status_body(429, "RESOURCE_EXHAUSTED", f"{msg} Please retry in {retry_delay}.", dets)


def image_size_error(image_size, model: str) -> str | None:
    """The 400 message for an imageSize the model does not accept (None when accepted)."""
    if image_size is None:
        return None
    allowed = tuple(IMAGE_TOKENS.get(model, {"1K": 0, "2K": 0, "4K": 0}))
    if image_size in allowed:
        return None
    return (f"Invalid value at 'generation_config.image_config.image_size' ({image_size!r}): "
            f"supported values for {model} are {', '.join(allowed)}.")


def answer_size(aspect: str | None, image_size: str | None) -> tuple[int, int]:
    """The pixel size of the image the real model returns for this aspectRatio and imageSize."""
    w, h = SIZE_1K.get(aspect or "1:1", SIZE_1K["1:1"])
    f = SIZE_FACTOR.get(image_size or "1K", 1)
    return max(1, round(w * f)), max(1, round(h * f))


def call_price(model: str, prompt_tokens: int, thought_tokens: int, image_tokens: int) -> float:
    inp, text, img = PRICES.get(model, PRICES["gemini-3-pro-image"])
    return (prompt_tokens * inp + thought_tokens * text + image_tokens * img) / 1e6


def model_resource(model: str) -> dict:
    return {
        "name": f"models/{model}",
        "version": "3.0",
        "displayName": "Nano Banana (fake) " + model,
        "description": "Fake Gemini image model served by tests/fakes/gemini_server.py",
        "inputTokenLimit": 65536,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent"],   # the only method the fake serves
        "temperature": 1.0, "topP": 0.95, "topK": 64, "maxTemperature": 2.0, "thinking": True,
    }


def _b64decode(s: str) -> bytes:
    s = s.strip().replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _recolour(src: Image.Image, colour) -> Image.Image:
    """Pixels farther than 30 from the image's border median repainted in `colour`, shading kept."""
    import numpy as np

    arr = np.asarray(src, dtype=np.float32)
    band = np.concatenate([arr[:2].reshape(-1, 3), arr[-2:].reshape(-1, 3),
                           arr[:, :2].reshape(-1, 3), arr[:, -2:].reshape(-1, 3)])
    border = np.median(band, axis=0)
    fg = np.abs(arr - border).max(-1) > 30
    if fg.any():
        lum = arr.mean(-1)
        shade = lum / max(float(np.median(lum[fg])), 1.0)
        arr[fg] = np.clip(np.asarray(colour, np.float32)[None, :] * shade[fg][:, None], 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def render_answer(first_image: bytes | None, aspect: str | None, image_size: str | None = "1K", *,
                  mime: str = "image/png", shade: int | None = None, recolour=None) -> bytes:
    """The fake's 'generated' picture, at the size the real model returns for `aspect` and
    `image_size`: the first input image scaled onto a grey canvas."""
    size = answer_size(aspect, image_size)
    canvas = Image.new("RGB", size, CANVAS_GREY if shade is None else (shade,) * 3)
    if first_image is not None and shade is None:
        with Image.open(io.BytesIO(first_image)) as src:
            src = src.convert("RGB")
            if recolour is not None:
                src = _recolour(src, recolour)
            scale = min(size[0] * 0.8 / src.width, size[1] * 0.8 / src.height)
            src = src.resize((max(1, round(src.width * scale)), max(1, round(src.height * scale))),
                             Image.BILINEAR)
            canvas.paste(src, ((size[0] - src.width) // 2, (size[1] - src.height) // 2))
    buf = io.BytesIO()
    if mime == "image/jpeg":
        canvas.save(buf, format="JPEG", quality=90)
    else:
        canvas.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class Drip:
    """A JSON body the handler sends one byte every `interval` seconds (a stalling server)."""
    data: bytes
    interval: float
    fake: "FakeGemini"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class FakeGemini:
    def __init__(self, *, api_key: str = DEFAULT_KEY, models=DEFAULT_MODELS, default="ok",
                 latency: float = 0.0, quota: tuple[int, float] | None = None,
                 daily_quota: int | None = None, spend_cap: tuple[float, float] | None = None,
                 quota_details: str = "full", host: str = "127.0.0.1", port: int = 0):
        self.api_key = api_key
        self.models = set(models)
        self.default = default
        self.latency = latency
        self.quota = quota                   # (n, window_s): per-minute sliding window
        self.daily_quota = daily_quota       # n accepted requests per "day" (the fake's lifetime)
        self.spend_cap = spend_cap           # (usd, window_s): spend in any rolling window
        self.quota_details = quota_details   # full | no_retry_info | bare (the 429 bodies)
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self._get_queue: collections.deque = collections.deque()
        self._stop = threading.Event()
        self.batch = FakeBatchAPI(self)   # the Batch and Files APIs (fakes/gemini_batch.py)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "FakeGemini":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._stop.clear()
        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-gemini",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()   # wakes up slow scenarios
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeGemini":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeGemini not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- scripting -----------------------------------------------------------------------------

    def push(self, *scenarios, route: str = "generate") -> None:
        """Queue scenarios for the next requests of `route` ("generate" or "get"; "batch": the
        requests of the next Batch API jobs, in order; see fakes/gemini_batch.py)."""
        if route == "batch":
            return self.batch.push_requests(*scenarios)
        with self._lock:
            (self._queue if route == "generate" else self._get_queue).extend(scenarios)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._get_queue.clear()
            self.requests: list[dict] = []
            self.start_times: list[float] = []       # time.monotonic() of every generateContent
            self.accepted_times: list[float] = []    # those counted against the quota
            self.in_flight = 0
            self.max_in_flight = 0
            self.rejected: list[tuple[float, str]] = []   # (time, limit) of every quota 429
            self._window: collections.deque = collections.deque()
            self._spend: collections.deque = collections.deque()   # (time, usd) accepted
            self._day_count = 0
        if hasattr(self, "batch"):
            self.batch.reset()

    @property
    def generate_requests(self) -> list[dict]:
        return [r for r in self.requests if r.get("method") == "generateContent"]

    def _next(self, route: str):
        with self._lock:
            q = self._queue if route == "generate" else self._get_queue
            scenario = q.popleft() if q else (self.default if route == "generate" else "ok")
        if isinstance(scenario, str):
            scenario = {"kind": scenario}
        return dict(scenario)

    def _quota_check(self, now: float, price: float) -> tuple[str, float | None] | None:
        """None when accepted (then counted); else (limit, seconds until it clears or None).

        The per-minute window is sliding and counts both ends: a request at t is refused when
        `n` accepted requests lie in [t - window, t]. The per-day quota counts every accepted
        request of the fake's life. The spend cap sums the price of the accepted requests in
        [t - window, t] and refuses a request that would pass it."""
        with self._lock:
            if self.daily_quota is not None and self._day_count >= self.daily_quota:
                self.rejected.append((now, "day"))
                return "day", None
            if self.quota:
                n, window = self.quota
                while self._window and self._window[0] < now - window:
                    self._window.popleft()
                if len(self._window) >= n:
                    self.rejected.append((now, "minute"))
                    return "minute", max(0.001, self._window[-n] + window - now)
            if self.spend_cap:
                cap, window = self.spend_cap
                while self._spend and self._spend[0][0] < now - window:
                    self._spend.popleft()
                spent = sum(usd for _, usd in self._spend)
                if spent + price > cap + 1e-9:
                    self.rejected.append((now, "spend"))
                    return "spend", max(0.001, self._spend[0][0] + window - now) if self._spend else None
                self._spend.append((now, price))
            if self.quota:
                self._window.append(now)
            self._day_count += 1
            self.accepted_times.append(now)
            return None

    def quota_body(self, limit: str, wait: float | None, model: str) -> dict:
        value = {"minute": (self.quota or (0,))[0], "day": self.daily_quota,
                 "spend": (self.spend_cap or (0,))[0]}[limit]
        if limit == "day":   # Google's RetryInfo then points at the next midnight, Pacific time
            wait = wait if wait is not None else 3600.0 * 7
        return rate_limited_body(None if wait is None else f"{wait:.3f}s", model, limit=limit,
                                 quota_value=value, details=self.quota_details)

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops; False when interrupted."""
        return not self._stop.wait(seconds)

    # --- answers -------------------------------------------------------------------------------

    def answer_generate(self, model: str, body: dict, record: dict, scenario: dict | None = None,
                        latency: bool = True) -> tuple[int, dict | bytes]:
        """The answer to one generateContent `body` (or, for the Batch API, one request of a job:
        `scenario` given, no `latency`: the job's own delay stands for it)."""
        if scenario is None:
            scenario = self._next("generate")
        record["scenario"] = scenario.get("kind")
        kind = scenario.get("kind", "ok")
        if kind == "slow":
            if not self.sleep(float(scenario.get("seconds", 2.0))):
                return 503, status_body(503, "UNAVAILABLE", "Server shutting down.")
            then = scenario.get("then", "ok")
            scenario = dict(then) if isinstance(then, dict) else {"kind": then}
            kind = scenario["kind"]
        images = [p for p in record["parts"] if p["kind"] == "image"]
        first = images[0]["data"] if images else None
        image_config = record["generation_config"].get("imageConfig") or {}
        aspect, image_size = image_config.get("aspectRatio"), image_config.get("imageSize") or "1K"
        prompt_tokens = prompt_token_count(record["parts"])
        thoughts = int(scenario.get("thoughts", THOUGHT_TOKENS.get(model, 0)))
        per_image = IMAGE_TOKENS.get(model, IMAGE_TOKENS["gemini-3-pro-image"]).get(image_size, 1120)
        n_images = int(scenario.get("images", 1))
        text_tokens = len(scenario.get("text") or "") // 4

        def usage_for(image_tokens: int, text: int = 0) -> dict:
            u = {"promptTokenCount": prompt_tokens,
                 "candidatesTokenCount": image_tokens + text,
                 "totalTokenCount": prompt_tokens + image_tokens + text + thoughts,
                 "promptTokensDetails": [
                     {"modality": "TEXT", "tokenCount": prompt_tokens - TOKENS_PER_INPUT_IMAGE * len(images)},
                     {"modality": "IMAGE", "tokenCount": TOKENS_PER_INPUT_IMAGE * len(images)}]}
            if thoughts:
                u["thoughtsTokenCount"] = thoughts
            details = ([{"modality": "TEXT", "tokenCount": text}] if text else []) + (
                [{"modality": "IMAGE", "tokenCount": image_tokens}] if image_tokens else [])
            if details:
                u["candidatesTokensDetails"] = details
            return u

        usage = usage_for(per_image * n_images, text_tokens)
        envelope = {"modelVersion": model, "responseId": hashlib.sha1(
            str(time.monotonic()).encode()).hexdigest()[:20]}

        if kind == "rate_limited":
            return 429, rate_limited_body(scenario.get("retry_delay", "1.5s"), model,
                                          limit=scenario.get("limit", "minute"),
                                          details=scenario.get("details", "full"))
        if kind == "rate_limited_bare":
            return 429, rate_limited_body(None, model, details="bare")
        if kind == "server_error":
            return 500, status_body(500, "INTERNAL", "An internal error has occurred. Please retry or "
                                    "report in https://developers.generativeai.google/guide/troubleshooting")
        if kind == "unavailable":
            return 503, status_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if kind == "bad_request":
            return 400, status_body(400, "INVALID_ARGUMENT",
                                    scenario.get("message", "Request contains an invalid argument."))
        if kind == "forbidden":
            return 403, status_body(403, "PERMISSION_DENIED", scenario.get(
                "message", "The caller does not have permission"))
        if kind == "not_found":
            return 404, status_body(404, "NOT_FOUND", not_found_message(model, record["api_version"]))
        if kind == "drip":    # a valid answer, sent one byte every `interval` seconds
            then = scenario.get("then", "ok")
            self._queue.appendleft(dict(then) if isinstance(then, dict) else {"kind": then})
            code, answer = self.answer_generate(model, body, record)
            return code, Drip(json.dumps(answer).encode("utf-8"), float(scenario.get("interval", 1.0)),
                              self)
        if kind == "non_json":
            return 200, b"<html><body>Bad Gateway</body></html>"
        if kind == "blocked":
            return 200, {"promptFeedback": {"blockReason": scenario.get("reason", "PROHIBITED_CONTENT")},
                         "usageMetadata": {"promptTokenCount": prompt_tokens,
                                           "totalTokenCount": prompt_tokens}, **envelope}
        if kind in ("image_safety", "no_image", "finish"):
            # The model thought, then drew nothing (or it was withheld): the thinking is billed.
            reason = {"image_safety": "IMAGE_SAFETY", "no_image": "NO_IMAGE"}.get(
                kind, scenario.get("reason", "OTHER"))
            cand = {"finishReason": reason, "index": 0}
            message = scenario.get("message", FINISH_MESSAGES.get(reason))
            if message:
                cand["finishMessage"] = message
            return 200, {"candidates": [cand], "usageMetadata": usage_for(0), **envelope}
        if kind == "no_candidates":
            return 200, {"usageMetadata": {"promptTokenCount": prompt_tokens,
                                           "totalTokenCount": prompt_tokens}, **envelope}
        if kind == "text_only":
            text = scenario.get("text", "I can't generate this image, but here is a description of "
                                        "the garment: a navy crew-neck sweatshirt with a small chest logo.")
            return 200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                         "finishReason": "STOP", "index": 0}],
                         "usageMetadata": usage_for(0, len(text) // 4), **envelope}

        # Image answers.
        if latency and self.latency and not self.sleep(self.latency):
            return 503, status_body(503, "UNAVAILABLE", "Server shutting down.")
        mime = scenario.get("mime", "image/png")
        parts = []
        if kind in ("draft", "thought_only"):
            parts.append({"text": "Planning the flat lay: centring the garment.", "thought": True})
            parts.append({"inlineData": {"mimeType": "image/png",
                                         "data": _b64(render_answer(first, aspect, image_size, shade=120))},
                          "thought": True})
        if kind == "thought_only":
            parts.append({"inlineData": {"mimeType": "image/png",
                                         "data": _b64(render_answer(first, aspect, image_size, shade=90))},
                          "thought": True})
            usage = usage_for(0)     # the drafts are thinking: billed as thoughtsTokenCount
        else:
            if scenario.get("text"):
                parts.append({"text": scenario["text"]})
            final = _b64(render_answer(first, aspect, image_size, mime=mime, recolour=scenario.get("recolour")))
            for _ in range(n_images):
                parts.append({"inlineData": {"mimeType": mime, "data": final},
                              "thoughtSignature": _b64(b"fake-signature")})
        return 200, {"candidates": [{"content": {"role": "model", "parts": parts},
                                     "finishReason": "STOP", "index": 0}],
                     "usageMetadata": usage, **envelope}

    def answer_get(self, model: str, api_version: str) -> tuple[int, dict]:
        scenario = self._next("get")
        kind = scenario.get("kind", "ok")
        if kind == "rate_limited":
            return 429, rate_limited_body(scenario.get("retry_delay", "30s"), model)
        if kind == "forbidden":
            return 403, status_body(403, "PERMISSION_DENIED", "The caller does not have permission")
        if kind == "server_error":
            return 500, status_body(500, "INTERNAL", "An internal error has occurred.")
        if model not in self.models or kind == "not_found":
            return 404, status_body(404, "NOT_FOUND", f"models/{model} is not found for API version "
                                                      f"{api_version}.")
        return 200, model_resource(model)


FINISH_MESSAGES = {
    "NO_IMAGE": "Unable to show the generated image.",
    "IMAGE_SAFETY": "Unable to show the generated image. The image was filtered out because it "
                    "violated Google's Generative AI Prohibited Use policy.",
    "IMAGE_OTHER": "Unable to show the generated image.",
    "PUP_LIMITED_DISABLED": "This project's access to image generation is limited. Please review "
                            "the Generative AI Prohibited Use Policy.",
}


def prompt_token_count(parts: list[dict]) -> int:
    images = sum(1 for p in parts if p["kind"] == "image")
    return TOKENS_PER_INPUT_IMAGE * images + sum(len(p["text"]) // 4 for p in parts if p["kind"] == "text")


def not_found_message(model: str, api_version: str) -> str:
    return (f"models/{model} is not found for API version {api_version}, or is not supported for "
            f"generateContent. Call ListModels to see the list of available models and their "
            f"supported methods.")


def _parse_parts(body: dict) -> list[dict]:
    """contents[*].parts[*] -> [{"kind": "image", mime, data, size, width, height, sha256,
    mime_key, alphabet} | {"kind": "text", text}]; raises ValueError on a malformed part."""
    out = []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            blob = part.get("inlineData") or part.get("inline_data")
            if blob is not None:
                mime_key = "mimeType" if "mimeType" in blob else "mime_type"
                mime = blob.get(mime_key)
                raw = blob.get("data") or ""
                try:
                    data = _b64decode(raw)
                except (binascii.Error, ValueError):
                    raise ValueError("Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), "
                                     "Base64 decoding failed")
                try:
                    with Image.open(io.BytesIO(data)) as im:
                        width, height = im.size
                        im.load()
                except Exception:
                    raise ValueError("Unable to process input image. Please retry or report in "
                                     "https://developers.generativeai.google/guide/troubleshooting")
                out.append({"kind": "image", "mime": mime, "mime_key": mime_key, "data": data,
                            "size": len(data), "width": width, "height": height,
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "alphabet": "urlsafe" if ("-" in raw or "_" in raw) else
                            ("standard" if ("+" in raw or "/" in raw) else "either")})
            elif "text" in part:
                out.append({"kind": "text", "text": part["text"]})
    return out


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeGemini
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:   # quiet
        pass

    def _send(self, code: int, body) -> None:
        if isinstance(body, Drip):
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(body.data)))
                self.end_headers()
                self.wfile.flush()
                for i in range(len(body.data)):
                    self.wfile.write(body.data[i:i + 1])
                    self.wfile.flush()
                    if not body.fake.sleep(body.interval):
                        break
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
            return
        if isinstance(body, (bytes, bytearray)):
            data, ctype = bytes(body), "text/html; charset=UTF-8"
        else:
            data, ctype = json.dumps(body).encode("utf-8"), "application/json; charset=UTF-8"
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):   # the client timed out and left
            self.close_connection = True

    def _route(self):
        path = self.path.split("?", 1)[0]
        m = ROUTE.match(path)
        return (m.group("ver"), m.group("model"), m.group("method")) if m else (None, None, None)

    def _headers_without_key(self) -> dict:
        return {k.lower(): v for k, v in self.headers.items() if k.lower() != "x-goog-api-key"}

    def _key_error(self):
        key = self.headers.get("x-goog-api-key")
        if key is None:
            return 403, status_body(403, "PERMISSION_DENIED",
                                    "Method doesn't allow unregistered callers (callers without "
                                    "established identity). Please use API Key or other form of API "
                                    "consumer identity to call this API.")
        if key.strip() != self.server_fake.api_key:
            return 400, invalid_key_body()
        return None

    def do_DELETE(self) -> None:
        if not self.server_fake.batch.handle(self, "DELETE"):
            self._send(404, status_body(404, "NOT_FOUND", f"Method not found: {self.path}"))

    def _send_raw(self, code: int, data: bytes, ctype: str, headers: dict | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        fake = self.server_fake
        if fake.batch.handle(self, "GET"):
            return
        ver, model, method = self._route()
        record = {"method": "GET", "path": self.path, "api_version": ver, "model": model,
                  "headers": self._headers_without_key(), "key_ok": None}
        with fake._lock:
            fake.requests.append(record)
        if ver is None or method is not None:
            return self._send(404, status_body(404, "NOT_FOUND", "Not found."))
        err = self._key_error()
        record["key_ok"] = err is None
        if err:
            return self._send(*err)
        self._send(*fake.answer_get(model, ver))

    def do_POST(self) -> None:
        fake = self.server_fake
        if fake.batch.handle(self, "POST"):
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ver, model, method = self._route()
        now = time.monotonic()
        record = {"method": method or "POST", "path": self.path, "api_version": ver, "model": model,
                  "headers": self._headers_without_key(), "time": now, "parts": [],
                  "generation_config": {}, "key_ok": None}
        with fake._lock:
            fake.requests.append(record)
        if ver is None or method != "generateContent":
            return self._send(404, status_body(404, "NOT_FOUND", f"Method not found: {self.path}"))
        with fake._lock:
            fake.start_times.append(now)
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            err = self._key_error()
            record["key_ok"] = err is None
            if err:
                return self._send(*err)
            try:
                body = json.loads(raw or b"{}")
                record["generation_config"] = copy.deepcopy(body.get("generationConfig") or {})
                record["top_level_keys"] = sorted(body)
                record["parts"] = _parse_parts(body)
            except json.JSONDecodeError:
                return self._send(400, status_body(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
            except ValueError as e:
                return self._send(400, status_body(400, "INVALID_ARGUMENT", str(e)))
            if model not in fake.models:
                return self._send(404, status_body(404, "NOT_FOUND", not_found_message(model, ver)))
            image_size = (record["generation_config"].get("imageConfig") or {}).get("imageSize")
            size_error = image_size_error(image_size, model)
            if size_error:
                return self._send(400, status_body(400, "INVALID_ARGUMENT", size_error))
            size = image_size or "1K"
            price = call_price(model, prompt_token_count(record["parts"]), THOUGHT_TOKENS.get(model, 0),
                               IMAGE_TOKENS.get(model, IMAGE_TOKENS["gemini-3-pro-image"]).get(size, 1120))
            refused = fake._quota_check(now, price)
            if refused is not None:
                limit, wait = refused
                record["scenario"] = f"quota_{limit}"
                return self._send(429, fake.quota_body(limit, wait, model))
            self._send(*fake.answer_generate(model, body, record))
        finally:
            with fake._lock:
                fake.in_flight -= 1


try:  # the pytest fixture (pytest is only needed by the test suite)
    import pytest

    @pytest.fixture
    def fake_gemini(monkeypatch):
        """A started FakeGemini; the SDK reaches it through GOOGLE_GEMINI_BASE_URL."""
        for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI",
                     "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_API_VERSION", "GOOGLE_GENAI_HTTP_CLIENT",
                     "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        with FakeGemini() as fake:
            monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
            yield fake
except ImportError:  # pragma: no cover - scripts without pytest
    pass
