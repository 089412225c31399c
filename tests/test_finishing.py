"""Finishing a generator's raw answer: exact #F3F3F3 background, exact size, garment untouched."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from catalogue.imaging.finishing import FLAG_LIGHT, FLAG_PADDED, finish
from catalogue.imaging.masks import dilate, erode

GREY = 243
SIZE = (864, 1184)


def garment_mask(size=SIZE) -> np.ndarray:
    w, h = size
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    d.polygon([(0.33 * w, 0.25 * h), (0.67 * w, 0.25 * h), (0.68 * w, 0.72 * h), (0.32 * w, 0.72 * h)], fill=255)
    d.polygon([(0.33 * w, 0.25 * h), (0.16 * w, 0.6 * h), (0.22 * w, 0.62 * h), (0.35 * w, 0.38 * h)], fill=255)
    d.polygon([(0.67 * w, 0.25 * h), (0.84 * w, 0.6 * h), (0.78 * w, 0.62 * h), (0.65 * w, 0.38 * h)], fill=255)
    return np.asarray(m) > 127


def gemini_like(garment_rgb, bg=234.0, size=SIZE, folds=5.0, seed=0, tint=(0, 0, 0)) -> tuple[Image.Image, np.ndarray]:
    """What Gemini sends back: a drifting grey with a vignette, noise, a soft shadow, the garment."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = -4.0 * (((xx / w) - 0.5) ** 2 + ((yy / h) - 0.5) ** 2)
    arr = (bg + vignette)[..., None] + np.asarray(tint, np.float32) + rng.normal(0, 0.7, (h, w, 3))
    mask = garment_mask(size)
    shadow = Image.fromarray(mask.astype(np.uint8) * 255, "L").filter(ImageFilter.GaussianBlur(6))
    shadow = np.roll(np.asarray(shadow, np.float32) / 255.0, 5, axis=0)
    arr *= (1.0 - 0.12 * shadow)[..., None]
    fabric = (np.asarray(garment_rgb, np.float32) + folds * np.sin(xx / 19.0)[..., None] * np.cos(yy / 31.0)[..., None]
              + rng.normal(0, 1.5, (h, w, 3)))
    arr[mask] = fabric[mask]
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8)), mask


def test_drifted_grey_becomes_exact_house_grey_and_dark_garment_is_untouched():
    raw, mask = gemini_like((28, 32, 58))
    res = finish(raw, SIZE)
    out = np.asarray(res.image)
    assert res.image.size == SIZE and res.flags == []
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1), (10, SIZE[0] // 2)):
        assert tuple(out[y, x]) == (GREY, GREY, GREY)
    far = ~dilate(mask, 40)
    assert (out[far] == GREY).all(), "background away from the garment is not exactly #F3F3F3"
    inside = erode(mask, 3)
    assert np.array_equal(out[inside], np.asarray(raw)[inside]), "garment pixels were changed"
    assert abs(res.metrics["border_grey_before"][0] - 234) <= 2
    assert 0.5 < res.metrics["share_changed"] < 0.95


def test_soft_shadow_is_kept_and_continuous():
    raw, mask = gemini_like((28, 32, 58))
    out = np.asarray(finish(raw, SIZE).image).astype(int)
    # Just below the garment's hem: darker than the house grey, and no hard step down the column.
    col = int(SIZE[0] * 0.5)
    hem = int(np.flatnonzero(mask[:, col])[-1])
    below = out[hem + 3: hem + 40, col, 1]
    assert below[0] < GREY - 5
    assert below[-1] == GREY
    assert np.abs(np.diff(below)).max() <= 6


def test_warm_tinted_background_is_neutralised():
    raw, _ = gemini_like((28, 32, 58), bg=228.0, tint=(2, 2, -4))
    out = np.asarray(finish(raw, SIZE).image)
    assert tuple(out[0, 0]) == (GREY, GREY, GREY)
    assert tuple(out[-1, -1]) == (GREY, GREY, GREY)


def test_white_garment_stays_whole():
    raw, mask = gemini_like((252, 252, 251), folds=2.0)
    res = finish(raw, SIZE)
    before = np.asarray(raw).astype(int)
    after = np.asarray(res.image).astype(int)
    white_before = (before > 246).all(-1).sum()
    white_after = (after > 246).all(-1).sum()
    assert abs(white_after - white_before) / white_before < 0.02
    inside = erode(mask, 3)
    assert np.array_equal(after[inside], before[inside])
    assert tuple(after[0, 0]) == (GREY, GREY, GREY)


def test_garment_as_light_as_background_is_flagged_not_eaten():
    raw, mask = gemini_like((236, 235, 233), folds=4.0)
    res = finish(raw, SIZE)
    assert FLAG_LIGHT in res.flags
    before = np.asarray(raw)
    after = np.asarray(res.image)
    inside = erode(mask, 3)
    assert np.array_equal(after[inside], before[inside]), "the light garment was retouched"
    assert tuple(after[0, 0]) == (GREY, GREY, GREY)


def test_size_is_fixed_by_cover_or_padding():
    raw, _ = gemini_like((28, 32, 58), size=(896, 1152))      # Gemini's 4:5-ish answer
    res = finish(raw, SIZE)
    assert res.image.size == SIZE and FLAG_PADDED not in res.flags
    square, _ = gemini_like((28, 32, 58), size=(1024, 1024))  # wrong aspect: padded, flagged
    res = finish(square, SIZE)
    out = np.asarray(res.image)
    assert res.image.size == SIZE and FLAG_PADDED in res.flags
    assert tuple(out[0, 0]) == (GREY, GREY, GREY) and tuple(out[-1, SIZE[0] // 2]) == (GREY, GREY, GREY)


def test_finishing_is_deterministic():
    raw, _ = gemini_like((120, 30, 40))
    assert finish(raw, SIZE).image.tobytes() == finish(raw, SIZE).image.tobytes()
