"""Deterministic retouching steps, at no API cost: `color-fix` and `background-fix`.

`color-fix` (the shop's « caler les couleurs du dos sur la face »): the garment of this view takes
the colour of the garment of a reference image (the finished `1_face` by default). Both garments
are found with the quality gate's masks (`masks.on_grey_mask` on the house grey; `checks.photo_garment`
for a raw photo); their robust statistics in CIELAB (median and 1.4826 × MAD per channel, so a
logo or a zip does not pull them) are matched: every garment pixel is mapped
`(x - median_view) × k + median_ref` per channel, `k` = ratio of the spreads clipped to
[`SPREAD_MIN`, `SPREAD_MAX`]. L is mapped affinely, so folds and shading keep their relative
depth. Only garment pixels move (a feathered mask); pixels of the exact house grey stay exact.

`background-fix`: the background normalised to exactly #F3F3F3 by `finishing.finish` (the same
post-processing every generator answer gets), checked afterwards: the garment's area is measured
before and after with a light-aware mask (distance to a smooth background surface fitted on the
border, not to the house grey), and a fix that shrinks it by more than `LIGHT_AREA_LOSS_MAX` (a
white or cream garment taken for background) is not applied.

A garment as light as the background is never recoloured either: `color-fix` skips when the
garment's median is within `LIGHT_DELTA_E` of the house grey, with a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .checks import _core, photo_garment
from .colour import ciede2000, lab_to_rgb, rgb_to_lab
from .decode import HOUSE_GREY, work_copy
from .finishing import FLAG_LIGHT, finish
from .masks import _border_band, border_grey, close_mask, fill_holes, fit_background, keep_largest, on_grey_mask

# Long side of the copy the garment masks are computed on (the weight is upscaled, feathered).
MASK_SIDE = 640
# Ratio of the spreads (per CIELAB channel) applied by color-fix, clipped: a near-uniform garment
# must not have its noise amplified tenfold, nor its folds flattened.
SPREAD_MIN, SPREAD_MAX = 0.5, 2.0
# A garment whose median colour is within this ΔE2000 of #F3F3F3 is "as light as the background":
# its mask cannot be trusted (color-fix skips it, with a note).
LIGHT_DELTA_E = 6.0
# background-fix: largest share of the garment's area (light-aware mask) it may remove.
LIGHT_AREA_LOSS_MAX = 0.05


@dataclass
class FixResult:
    image: Image.Image
    applied: bool
    note: str = ""
    uncertain: bool = False
    metrics: dict = field(default_factory=dict)


# --- garment statistics ---------------------------------------------------------------------------

def garment_stats(img: Image.Image, *, photo: bool | None = None) -> dict | None:
    """Robust CIELAB statistics of the garment of `img`: median, spread, ΔE to the house grey.

    `photo`: True for a raw photo (segmentation of `qa.photo_garment`), False for a flat lay on
    the house grey; None decides from the border (near the house grey: a flat lay).
    """
    small = work_copy(img, MASK_SIDE)
    arr = np.asarray(small)
    if photo is None:
        photo = border_grey(arr) is None
    if photo:
        g = photo_garment(img)
        mask, arr = g.mask, g.arr
    else:
        mask = on_grey_mask(arr, border_grey(arr))  # far from its own grey, else from #F3F3F3
    if mask is None or mask.sum() < 50:
        return None
    core = _core(mask)
    lab = rgb_to_lab(arr[core])
    med = np.median(lab, axis=0)
    spread = np.median(np.abs(lab - med), axis=0) * 1.4826 + 0.5
    grey = rgb_to_lab(np.asarray(HOUSE_GREY, dtype=np.float64))
    return {"median": med, "spread": spread, "share": float(mask.mean()),
            "delta_e_grey": float(ciede2000(med, grey)), "mask": mask}


def median_delta_e(a: dict | None, b: dict | None) -> float | None:
    if a is None or b is None:
        return None
    return float(ciede2000(a["median"], b["median"]))


# --- color-fix --------------------------------------------------------------------------------------

def color_transfer(image: Image.Image, reference: Image.Image, *, reference_is_photo: bool | None = None,
                   what: str = "la référence") -> FixResult:
    """This view's garment recoloured to the reference's garment (see the module docstring)."""
    image = image.convert("RGB")
    target = garment_stats(image, photo=False)
    source = garment_stats(reference, photo=reference_is_photo)
    if target is None:
        return FixResult(image, False, "correction de couleur non appliquée : aucun vêtement trouvé sur "
                                       "la vue", uncertain=True)
    if source is None:
        return FixResult(image, False, f"correction de couleur non appliquée : aucun vêtement trouvé sur "
                                       f"{what}", uncertain=True)
    for stats, who in ((target, "la vue"), (source, what)):
        if stats["delta_e_grey"] < LIGHT_DELTA_E:
            return FixResult(image, False,
                             f"correction de couleur non appliquée : vêtement de {who} aussi clair que le "
                             f"fond (ΔE2000 {stats['delta_e_grey']:.1f} du gris maison, min "
                             f"{LIGHT_DELTA_E:g}) : son contour n'est pas fiable, à vérifier",
                             uncertain=True, metrics={"light_garment": True})
    before = median_delta_e(target, source)

    k = np.clip(source["spread"] / target["spread"], SPREAD_MIN, SPREAD_MAX)
    # The weight: the garment mask upscaled (soft edge), zero on pixels of the exact house grey.
    W, H = image.size
    mask_img = Image.fromarray(target["mask"].astype(np.uint8) * 255, "L").resize((W, H), Image.BILINEAR)
    weight = np.asarray(mask_img, dtype=np.float32) / 255.0
    orig = np.asarray(image)
    weight[(orig == HOUSE_GREY[0]).all(-1)] = 0.0
    sel = weight > 0
    out = orig.astype(np.float32).copy()
    if sel.any():
        lab = rgb_to_lab(orig[sel])
        mapped = (lab - target["median"]) * k + source["median"]
        mapped[:, 0] = np.clip(mapped[:, 0], 0.0, 100.0)
        rgb = np.clip(lab_to_rgb(mapped), 0.0, 255.0)
        w = weight[sel][:, None]
        out[sel] = orig[sel] * (1.0 - w) + rgb * w
    result = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")
    after = median_delta_e(garment_stats(result, photo=False), source)
    metrics = {"delta_e_before": round(before, 2) if before is not None else None,
               "delta_e_after": round(after, 2) if after is not None else None,
               "spread_ratio": [round(float(v), 3) for v in k]}
    note = (f"couleur du vêtement calée sur {what} : ΔE2000 {metrics['delta_e_before']} → "
            f"{metrics['delta_e_after']}")
    return FixResult(result, True, note, metrics=metrics)


# --- background-fix ----------------------------------------------------------------------------------

def light_aware_area(img: Image.Image) -> float:
    """Share of the frame taken by the garment, measured against a smooth background surface fitted
    on the border (so a white garment on a grey, or on an off-white drifting background, counts)."""
    arr = np.asarray(work_copy(img, MASK_SIDE), dtype=np.float32)
    h, w = arr.shape[:2]
    band = _border_band(h, w, max(2, round(max(h, w) * 0.02)))
    model, res = fit_background(arr, band)
    dev = np.abs(arr - model).max(-1)
    noise = float(np.median(dev[band])) * 1.4826 + 0.5
    fg = dev > max(4.0, 4.0 * noise)
    if not fg.any():
        return 0.0
    r = max(1, round(max(h, w) * 0.006))
    fg = keep_largest(fill_holes(close_mask(fg, r)), min_rel=0.05, min_share=0.001)
    return float(fg.mean())


def background_fix(image: Image.Image, size: tuple[int, int]) -> FixResult:
    """The background normalised to exactly #F3F3F3 (`finishing.finish`), never at the garment's cost."""
    image = image.convert("RGB")
    done = finish(image, size)
    before = light_aware_area(image)
    after = light_aware_area(done.image)
    metrics = {"garment_area_before": round(before, 4), "garment_area_after": round(after, 4),
               "finish": done.metrics}
    if before > 0 and after < (1.0 - LIGHT_AREA_LOSS_MAX) * before:
        return FixResult(image, False,
                         f"normalisation du fond non appliquée : elle effaçait une partie du vêtement "
                         f"(surface {before:.1%} → {after:.1%} de l'image, perte max "
                         f"{LIGHT_AREA_LOSS_MAX:.0%}) ; vêtement aussi clair que le fond, à vérifier",
                         uncertain=True, metrics=metrics)
    flags = list(done.flags)
    note = "fond normalisé au gris maison #F3F3F3"
    if flags:
        note += " — " + " ; ".join(flags)
    return FixResult(done.image, True, note, uncertain=FLAG_LIGHT in flags or bool(flags), metrics=metrics)
