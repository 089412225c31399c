"""Gemini model ids and prices: the one place to update when Google renames or reprices a model.

Ids per Google's deprecation page (mid-2026): the `-preview` ids were shut down on 2026-06-25 in
favour of the GA ids below. Prices are USD per output image (image tokens billed at the model's
rate; 1K and 2K cost the same on Pro) plus input tokens; confirm both with a real key and invoice.
"""

API_VERSION = "v1beta"

MODEL_ALIASES = {
    "pro": "gemini-3-pro-image",
    "flash": "gemini-3.1-flash-image",
}

# USD per output image, by model id and IMAGE_SIZE.
IMAGE_PRICES = {
    "gemini-3-pro-image": {"1K": 0.134, "2K": 0.134, "4K": 0.24},
    "gemini-3.1-flash-image": {"1K": 0.067, "2K": 0.101, "4K": 0.151},
}
# USD per million input tokens (text and images), by model id.
INPUT_TOKEN_PRICES = {
    "gemini-3-pro-image": 2.00,
    "gemini-3.1-flash-image": 0.50,
}
# Used for a model id missing from the tables above: the most expensive known price, so that a
# budget is never under-estimated.
FALLBACK_IMAGE_PRICE = 0.24
FALLBACK_INPUT_TOKEN_PRICE = 2.00

# Input tokens assumed per input image when estimating a call before it is made (budget check,
# `doit plan`): Gemini 3 bills an image at up to 1120 tokens at its default (high) media
# resolution; the instruction adds a few hundred. Erring high keeps the budget safe.
INPUT_TOKENS_PER_IMAGE_ESTIMATE = 1120
INSTRUCTION_TOKENS_ESTIMATE = 400

# Aspect ratios the image models accept in `imageConfig.aspectRatio`.
SUPPORTED_ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


def resolve_model(name: str) -> str:
    """`pro` / `flash` -> the current model id; a full id passes through unchanged."""
    name = (name or "pro").strip()
    return MODEL_ALIASES.get(name.lower(), name)


def image_price(model_id: str, image_size: str) -> float:
    return IMAGE_PRICES.get(model_id, {}).get(image_size, FALLBACK_IMAGE_PRICE)


def call_cost(model_id: str, image_size: str, input_tokens: int, output_images: int = 1) -> float:
    """Cost in USD of one call that returned `output_images` images."""
    per_mtok = INPUT_TOKEN_PRICES.get(model_id, FALLBACK_INPUT_TOKEN_PRICE)
    return round(output_images * image_price(model_id, image_size) + input_tokens * per_mtok / 1e6, 6)


def estimate_call_cost(model_id: str, image_size: str, input_images: int) -> float:
    """Cost in USD expected for one call with `input_images` images, before it is made."""
    tokens = input_images * INPUT_TOKENS_PER_IMAGE_ESTIMATE + INSTRUCTION_TOKENS_ESTIMATE
    return call_cost(model_id, image_size, tokens, output_images=1)
