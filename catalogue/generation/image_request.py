"""What is sent to an image model and what comes back, without the SDK: the request (its images
prepared, its key: the answer store's address), the answer, and the aspect ratio asked.

Light enough for a local-renderer run to import: google-genai (0.5 s to import) is loaded only by
`gemini` and the batch modules, when a paid call or a batch job is made.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..core import models
from ..core.provenance import now_iso
from ..imaging.decode import jpeg_bytes, open_image

RESPONSE_MODALITIES = ("TEXT", "IMAGE")
KEY_SCHEME = "catalogue.gemini.ImageRequest/1"  # part of every stored answer's key: never rename

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
        Computed once per request (the paid path, the batch queue and the ledger all ask for it).
        """
        cached = self.__dict__.get("_key")
        if cached is None:
            cached = self._digest()
            object.__setattr__(self, "_key", cached)   # frozen: the fields never change
        return cached

    def _digest(self) -> str:
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
    thought_tokens: int = 0
    image_output_tokens: int = 0
    text_output_tokens: int = 0
    images: int = 1              # final images the call returned (the last one is used)
    finish_message: str = ""

    def stored_fields(self, model: str, *, folder: str, view: str, extra: dict | None = None) -> dict:
        """The metadata the answer store keeps with this answer (read back by `paid_call`)."""
        return {"mime": self.mime, "model": model, "folder": folder, "view": view, **(extra or {}),
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": self.cost_usd, "seconds": self.seconds, "model_text": self.model_text,
                "created_at": now_iso()}


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
