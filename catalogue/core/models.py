"""Gemini model ids and prices: the one place to update when Google renames or reprices a model.

Ids per Google's deprecation page (mid-2026): the `-preview` ids were shut down on 2026-06-25 in
favour of the GA ids below.

Prices (`PRICES`): Gemini Developer API, paid tier, standard (not batch), USD per million tokens.
Source: https://ai.google.dev/gemini-api/docs/pricing as transcribed on 2026-09-20
(`PRICES_AS_OF`), with the tokens per output image from the same page (Pro) and the Vertex AI
model page of Gemini 3.1 Flash Image. A call is billed as

    input tokens x input rate
  + (thinking tokens + text output tokens) x text-output rate
  + image output tokens x image-output rate

where the image output tokens are the IMAGE entries of `usageMetadata.candidatesTokensDetails`
(one entry per answer, summing every image the call returned). Confirm with an invoice when
Google reprices; `doit plan` and the budget use the same table (`estimate_call_cost`).

Batch API (`GEMINI_MODE=batch`): half of each price of this table (`BATCH_DISCOUNT`; pricing
page: "Batch: half of each"), applied by `call_cost(..., batch=True)` and `estimate_call_cost`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

API_VERSION = "v1beta"

MODEL_ALIASES = {
    "pro": "gemini-3-pro-image",
    "flash": "gemini-3.1-flash-image",
}

PRICES_AS_OF = "2026-09-20"
PRICES_SOURCE = ("https://ai.google.dev/gemini-api/docs/pricing (paid tier, standard), transcribed "
                 "2026-09-20; tokens per image: same page (Pro), Vertex AI model page (3.1 Flash Image)")


@dataclass(frozen=True)
class ModelPrice:
    input_per_mtok: float            # USD per million input tokens (text and images)
    text_output_per_mtok: float      # USD per million text output tokens, thinking included
    image_output_per_mtok: float     # USD per million image output tokens
    image_tokens: dict = field(default_factory=dict)   # IMAGE_SIZE -> tokens of one output image

    def image_cost(self, image_size: str) -> float:
        return self.image_tokens[image_size] * self.image_output_per_mtok / 1e6


# The Batch API bills every token at this share of the interactive price (same table, no second one).
BATCH_DISCOUNT = 0.5

PRICES: dict[str, ModelPrice] = {
    # $0.134 per 1K/2K image (1,120 tokens), $0.24 per 4K image (2,000 tokens).
    "gemini-3-pro-image": ModelPrice(2.00, 12.00, 120.00, {"1K": 1120, "2K": 1120, "4K": 2000}),
    # $0.045 (512 px, 747 tokens), $0.067 (1K, 1,120), $0.101 (2K, 1,680), $0.151 (4K, 2,520).
    "gemini-3.1-flash-image": ModelPrice(0.50, 3.00, 60.00,
                                         {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}),
}
# A model id missing from the table is priced as the most expensive known one (Pro at 4K for the
# image), so that a budget is never under-estimated.
FALLBACK_PRICE = ModelPrice(2.00, 12.00, 120.00, {"512": 2000, "1K": 2000, "2K": 2000, "4K": 2000})

# Image sizes each model accepts in `imageConfig.imageSize` (upper-case K; 512 on 3.1 Flash only).
IMAGE_SIZES_BY_MODEL = {
    "gemini-3-pro-image": ("1K", "2K", "4K"),
    "gemini-3.1-flash-image": ("512", "1K", "2K", "4K"),
}

# Estimates for a call not made yet (budget reservation, spend pacing, `doit plan`): Gemini 3
# bills an input image at up to 1,120 tokens at its default (high) media resolution; the
# instruction adds a few hundred; the model always thinks before drawing (a few hundred tokens
# seen on Pro). Erring high keeps the budget safe.
INPUT_TOKENS_PER_IMAGE_ESTIMATE = 1120
INSTRUCTION_TOKENS_ESTIMATE = 400
THOUGHT_TOKENS_ESTIMATE = 400

# Aspect ratios the image models accept in `imageConfig.aspectRatio`.
SUPPORTED_ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

# Seconds to wait for one answer (GEMINI_TIMEOUT's default) by IMAGE_SIZE: 4K answers of Pro
# often take longer than three minutes.
DEFAULT_TIMEOUTS = {"512": 120.0, "1K": 120.0, "2K": 180.0, "4K": 420.0}


def resolve_model(name: str) -> str:
    """`pro` / `flash` -> the current model id; a full id passes through unchanged."""
    name = (name or "pro").strip()
    return MODEL_ALIASES.get(name.lower(), name)


def price(model_id: str) -> ModelPrice:
    return PRICES.get(model_id, FALLBACK_PRICE)


def image_tokens(model_id: str, image_size: str) -> int:
    """Tokens of one output image of `model_id` at `image_size` (what Google bills)."""
    p = price(model_id)
    return p.image_tokens.get(image_size, max(p.image_tokens.values()))


def image_price(model_id: str, image_size: str) -> float:
    """USD of one output image."""
    return image_tokens(model_id, image_size) * price(model_id).image_output_per_mtok / 1e6


@dataclass(frozen=True)
class CallCost:
    """What one call costs, by component (USD), as Google bills it."""
    input_usd: float
    text_output_usd: float           # thinking + text output
    image_usd: float

    @property
    def total(self) -> float:
        return round(self.input_usd + self.text_output_usd + self.image_usd, 6)

    def fields(self) -> dict:
        """The ledger's cost fields."""
        return {"input_cost_usd": round(self.input_usd, 6),
                "text_output_cost_usd": round(self.text_output_usd, 6),
                "image_cost_usd": round(self.image_usd, 6)}


def call_cost(model_id: str, *, input_tokens: int = 0, thought_tokens: int = 0,
              text_output_tokens: int = 0, image_output_tokens: int = 0, batch: bool = False) -> CallCost:
    """The cost of one call from its token counts (see the module docstring); `batch`: answered
    through the Batch API, at `BATCH_DISCOUNT` of the interactive price."""
    p = price(model_id)
    share = BATCH_DISCOUNT if batch else 1.0
    return CallCost(input_usd=share * input_tokens * p.input_per_mtok / 1e6,
                    text_output_usd=share * (thought_tokens + text_output_tokens) * p.text_output_per_mtok / 1e6,
                    image_usd=share * image_output_tokens * p.image_output_per_mtok / 1e6)


def estimate_call_cost(model_id: str, image_size: str, input_images: int, *, batch: bool = False) -> float:
    """Cost in USD expected for one call with `input_images` images, before it is made."""
    tokens = input_images * INPUT_TOKENS_PER_IMAGE_ESTIMATE + INSTRUCTION_TOKENS_ESTIMATE
    return call_cost(model_id, input_tokens=tokens, thought_tokens=THOUGHT_TOKENS_ESTIMATE,
                     image_output_tokens=image_tokens(model_id, image_size), batch=batch).total


def default_timeout(image_size: str) -> float:
    return DEFAULT_TIMEOUTS.get(image_size, max(DEFAULT_TIMEOUTS.values()))
