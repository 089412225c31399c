"""Post-processing of any generator's raw answer: the exact size and an exact #F3F3F3 background.

Gemini's backgrounds drift (the shop's real outputs measure 224-238 grey, sometimes warm, with a
vignette), and its sizes follow its own aspect table. `finish`:

1. fits the answer to the asked size: cover + centre crop when the aspect is close, otherwise fit
   inside and pad with the answer's own background (normalised with the rest in step 2);
2. models the background as a smooth surface (quadratic + heavily smoothed residual, per channel)
   and maps it to exactly (243, 243, 243): each background-ish pixel is scaled by 243 / model, so
   the model's soft shadow keeps its relative depth, and pixels within the noise of the model snap
   to exactly 243 (continuous ramp, no seam);
3. leaves the garment alone: it is found as what is neither background nor neutral smooth shadow,
   closed and hole-filled (its outline protects a smooth light garment), and weighted out with a
   feathered mask. A garment as light as the background is not eaten: the background around it is
   left as it was and the view is flagged for review.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .decode import HOUSE_GREY
from .masks import _border_band, box_sum, close_mask, dilate, erode, fill_holes, fit_background, keep_largest, label

GREY = float(HOUSE_GREY[0])
WORK_SIDE = 480
COVER_MAX_LOG_ASPECT = 0.08   # up to ~8 % aspect difference: cover + centre crop; beyond: pad

FLAG_LIGHT = "vêtement aussi clair que le fond : fond non retouché autour du vêtement, à vérifier"
FLAG_PADDED = "format de l'image reçue différent de celui demandé : complétée par du fond, à vérifier"
FLAG_NO_GARMENT = "aucun vêtement distinct du fond : image peut-être vide, à vérifier"
FLAG_BUSY = "fond irrégulier dans la réponse du générateur : normalisation partielle, à vérifier"


@dataclass
class FinishResult:
    image: Image.Image
    flags: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def _fit_size(raw: Image.Image, out_size: tuple[int, int]) -> tuple[Image.Image, bool]:
    W, H = out_size
    w, h = raw.size
    if (w, h) == (W, H):
        return raw, False
    log_aspect = abs(math.log((w / h) / (W / H)))
    if log_aspect <= COVER_MAX_LOG_ASPECT:
        # Cover: the largest centred box of the target aspect, resized in one step.
        if w / h > W / H:
            cw, ch = h * W / H, float(h)
        else:
            cw, ch = float(w), w * H / W
        box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
        return raw.resize((W, H), Image.LANCZOS, box=box), False
    scale = min(W / w, H / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    arr = np.asarray(raw)
    band = _border_band(h, w, max(1, round(max(h, w) * 0.01)))
    fill = tuple(int(v) for v in np.median(arr[band], axis=0).round())
    canvas = Image.new("RGB", (W, H), fill)
    canvas.paste(raw.resize((nw, nh), Image.LANCZOS), ((W - nw) // 2, (H - nh) // 2))
    return canvas, True


def _box_f(a: np.ndarray, r: int) -> np.ndarray:
    for axis in (0, 1):
        b = np.moveaxis(a, axis, 0)
        p = np.pad(b, [(r + 1, r)] + [(0, 0)] * (b.ndim - 1))
        c = np.cumsum(p, axis=0, dtype=np.float64)
        a = np.moveaxis(c[2 * r + 1:] - c[:-2 * r - 1], 0, axis)
    return a


def _blur_f(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-like blur of a float array (three box passes), edge-normalised."""
    r = max(1, int(round((math.sqrt(12 * sigma * sigma / 3 + 1) - 1) / 2)))
    num = a.astype(np.float64)
    den = np.ones_like(num)
    for _ in range(3):
        num, den = _box_f(num, r), _box_f(den, r)
    return (num / den).astype(np.float32)


def _resize_f(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize(size, Image.BILINEAR))


def _background_model(arr: np.ndarray, band: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Smooth background surface (h, w, 3), noise level, and the pixels used as background."""
    h, w = arr.shape[:2]
    model, res = fit_background(arr, band)
    noise = float(np.median(res)) * 1.4826 + 0.3
    # Second pass: every pixel close to the first model is background; refit on them.
    cand = np.abs(arr - model).max(-1) < max(6.0, 4 * noise)
    cand &= ~dilate(~cand, 2)
    sample = cand.copy()
    step = max(1, int(math.sqrt(cand.sum() / 20000)))
    if step > 1:
        grid = np.zeros_like(cand)
        grid[::step, ::step] = True
        sample &= grid
    if sample.sum() > 100:
        model, _ = fit_background(arr, sample | (band & cand), iterations=2)
    # Smooth residual where background is seen (normalised convolution): vignettes, light falloff.
    radius = max(h, w) * 0.04
    weight = _blur_f(cand.astype(np.float32), radius)
    for c in range(3):
        res_c = np.where(cand, arr[..., c] - model[..., c], 0.0)
        corr = _blur_f(res_c, radius) / np.maximum(weight, 1e-3)
        model[..., c] += np.where(weight > 0.05, corr, corr * weight / 0.05)
    return np.clip(model, 1.0, 255.0), noise, cand


def finish(raw: Image.Image, out_size: tuple[int, int]) -> FinishResult:
    """Fit `raw` to `out_size` and normalise its background to exactly #F3F3F3."""
    out_size = (int(out_size[0]), int(out_size[1]))
    flags: list[str] = []
    img, padded = _fit_size(raw.convert("RGB"), out_size)
    if padded:
        flags.append(FLAG_PADDED)
    W, H = out_size

    scale = min(1.0, WORK_SIDE / max(W, H))
    sw, sh = max(8, round(W * scale)), max(8, round(H * scale))
    small = np.asarray(img.resize((sw, sh), Image.BOX), dtype=np.float32)
    band = _border_band(sh, sw, max(2, round(max(sw, sh) * 0.015)))
    border_grey = [int(v) for v in np.median(small[band], axis=0).round()]

    model, noise, cand = _background_model(small, band)
    ratio = small / model
    lum_ratio = ratio.mean(-1)
    neutral = np.abs(ratio - lum_ratio[..., None]).max(-1) < 0.035
    tol = max(3.0, 3.5 * noise) / float(model.mean())
    bg_like = np.abs(ratio - 1.0).max(-1) < tol
    # Smooth, neutral darkening: the generator's soft shadow.
    # NOTE: box_sum truncates to integers, so this is the variance of int(ratio) (0 or 1), not of
    # the ratio: `smooth` means "the whole 5×5 window is darker than the model". Kept as it was
    # calibrated; a real local variance changes 3-5 % of the pixels of some views (see notes/lib.md).
    mean = box_sum(lum_ratio, 2) / 25.0
    var = box_sum(lum_ratio ** 2, 2) / 25.0 - mean ** 2
    smooth = var < 0.012 ** 2
    shadow_like = neutral & smooth & (lum_ratio > 0.72) & (lum_ratio < 1.0)
    r = max(2, round(max(sw, sh) * 0.006))

    bgish = bg_like | shadow_like
    strong_raw = ~bgish
    # Regions really enclosed by the garment (a smooth light garment inside its own outline)...
    tight = keep_largest(close_mask(strong_raw, 1), min_rel=0.05, min_share=0.0005)
    enclosed = fill_holes(tight)
    holes = enclosed & ~tight
    if holes.any():  # ...except plain background seen through (between an arm and the body)
        hl, hs = label(holes, connectivity=4)
        bg_hits = np.bincount(hl[bgish & holes], minlength=hs.size)
        reopen = (bg_hits >= 0.9 * np.maximum(hs, 1)) & (hs >= 0.002 * holes.size)
        reopen[0] = False
        enclosed &= ~reopen[hl]
    # ...plus what a wider closing bridges, minus what is plainly background or shadow there.
    bridged = fill_holes(keep_largest(close_mask(strong_raw, r), min_rel=0.05, min_share=0.0005))
    garment = enclosed | (bridged & ~bgish)
    garment = close_mask(garment, 1)

    garment_share = float(garment.mean())
    edge_share = float(np.concatenate([garment[0], garment[-1], garment[:, 0], garment[:, -1]]).mean())
    light = False
    extra = np.zeros_like(garment)
    if garment_share < 0.003 and not bridged.any():
        flags.append(FLAG_NO_GARMENT)
    inner = erode(bridged, 2)
    if inner.any():
        near_bg = np.abs(lum_ratio[inner] - 1.0) < 0.05
        light = float(near_bg.mean()) > 0.3
    # A garment as light as the background shows as texture (folds, seams) rather than colour:
    # local deviation energy well above the background's, away from the garment found so far.
    R = max(3, round(0.015 * max(sw, sh)))
    lum_dev = np.abs(small.mean(-1) - model.mean(-1))
    energy = _box_f(lum_dev.astype(np.float64), R) / (2 * R + 1) ** 2
    thr_e = max(1.0, 3.0 * float(np.median(energy[band])))
    textured = energy > thr_e
    light_zone = textured & ~dilate(garment, 3 * R)
    if light_zone.sum() > 0.01 * light_zone.size:
        light = True
        extra = keep_largest(fill_holes(close_mask(textured, R)), min_rel=0.2, prefer=light_zone)
    if edge_share > 0.3:
        flags.append(FLAG_BUSY)

    # Weight of the correction: 1 on background and shadow, 0 on the garment (with one work pixel
    # of margin), feathered outwards only, so the garment's own pixels are never touched.
    protect = dilate(garment, 1)
    feather = max(1.0, r * 0.5)
    if light:
        flags.append(FLAG_LIGHT)
        protect = dilate(garment | bridged | extra, r * 3)
        feather = r * 2.0
    w_small = 1.0 - _blur_f(protect.astype(np.float32), feather)
    w_small = np.where(protect, 0.0, w_small)
    w_small = np.where(dilate(protect, max(2, int(feather * 3))), w_small, 1.0)

    # Full resolution: model and weight upscaled (both smooth), then the per-pixel mapping.
    orig = np.asarray(img, dtype=np.float32)
    model_full = np.stack([_resize_f(model[..., c], (W, H)) for c in range(3)], axis=-1)
    wf = np.clip(_resize_f(w_small, (W, H)), 0.0, 1.0)
    if (W, H) != (sw, sh):
        # The upscaled weight must stay exactly 0 on the garment and exactly 1 far from it.
        inside = np.asarray(Image.fromarray(protect.astype(np.uint8) * 255, "L")
                            .resize((W, H), Image.NEAREST)) > 0
        wf = np.where(inside, 0.0, wf)
        wf = np.where(wf > 0.995, 1.0, wf)
    rr = orig / model_full
    rr -= 1.0
    dev = np.maximum(np.maximum(np.abs(rr[..., 0]), np.abs(rr[..., 1])), np.abs(rr[..., 2]))
    a, b = tol, tol * 3.0
    s = np.clip((dev - a) / (b - a), 0.0, 1.0)[..., None]
    snapped = GREY * (1.0 + rr * s)
    wf3 = wf.astype(np.float32)[..., None]
    out = orig + wf3 * (snapped - orig)
    out8 = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    result = Image.fromarray(out8, "RGB")

    orig8 = np.asarray(img)
    changed = float((out8 != orig8).any(-1).mean())
    exact = float((out8 == 243).all(-1).mean())
    metrics = {
        "border_grey_before": border_grey,
        "background_model_range": [round(float(model.mean(-1).min()), 1), round(float(model.mean(-1).max()), 1)],
        "noise": round(noise, 2),
        "share_changed": round(changed, 4),
        "share_exact_house_grey": round(exact, 4),
        "garment_share": round(garment_share, 4),
        "light_garment": light,
        "padded": padded,
        "input_size": list(raw.size),
    }
    return FinishResult(result, flags, metrics)
