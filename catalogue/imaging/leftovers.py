"""Photo background left in a garment's cut-out: the wall's shadow along one side, the hanger's hook.

A cut-out on a plain background can keep pixels of that background where they are darker than it
(a cast shadow is the wall's colour, only darker, so the colour distance alone calls it garment), and
a hanger hook above the collar, and wedges of wall between a sleeve and the body. `clean_cutout` finds
them on the photo's work copy and removes them from the mask; when they were a sizeable part of the
cut-out (or a hook), it says so and the view is flagged for a look (the removal is a heuristic).

* shadow / wall: pixels inside the mask whose chroma is the background's (opponent colour axes), no
  lighter than it but clearly lighter than a darker garment (its black zip or print stays), far from
  the garment's own colour, in regions thicker than anti-aliasing,
  touching the outline. Not looked for when the garment's colour is itself close to the background
  (a light grey garment on a light wall: nothing distinguishes them).
* hook: the mask's top rows narrower than `HOOK_WIDTH_SHARE` of the garment's width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from .decode import work_copy
from .masks import WORK_SIDE, _border_band, bbox, dilate, erode, fit_background, keep_largest, label, open_mask, to_opponent

# Calibrated on the bundled samples and the shop's photos (data/shop/photos): the sample with a wall
# shadow measures 0.11 of the garment's area, clean cut-outs 0.00-0.03.
LEFTOVER_SHARE_MIN = 0.05
SHADOW_LUM_SHARE = 0.3           # a shadow is lighter than the garment by this share of the wall-garment gap
NEAR_OUTLINE_SHARE = 0.012       # "at the outline": within this share of the photo's size of it
LEFTOVER_PIECE_MIN = 0.001       # pieces smaller than this share of the garment are anti-aliasing
GARMENT_BG_DISTANCE_MIN = 60.0   # opponent-colour distance under which garment and wall are alike
GARMENT_DISTANCE_MIN = 25.0      # a leftover pixel is at least this far from the garment's colour
HOOK_WIDTH_SHARE = 0.08          # rows narrower than this share of the garment's width are a hook
HOOK_ROWS_MIN_SHARE = 0.012      # ... over at least this share of the garment's height

NOTE_SHADOW = ("fond de la photo (ombre sur le mur ?) resté le long du vêtement : retiré du détourage "
               "({share} du vêtement), à vérifier")
NOTE_HOOK = "crochet du cintre resté en haut du vêtement : retiré du détourage, à vérifier"


@dataclass
class Cleanup:
    mask: np.ndarray                        # the cleaned mask, the size of the photo
    notes: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def _shadow_leftovers(opp: np.ndarray, m: np.ndarray, band: np.ndarray) -> tuple[np.ndarray, float, float]:
    model, res = fit_background(opp, band)
    noise = float(np.median(res)) * 1.4826 + 0.5
    core = erode(m, max(2, round(max(m.shape) * 0.02)))
    garment = np.median(opp[core if core.any() else m], axis=0)
    wall = np.median(model[m], axis=0)
    apart = float(np.sqrt(((garment - wall) ** 2).sum()))
    if apart < GARMENT_BG_DISTANCE_MIN:
        return np.zeros_like(m), 0.0, apart
    chroma = np.hypot(opp[..., 1] - model[..., 1], opp[..., 2] - model[..., 2])
    far = np.sqrt(((opp - garment) ** 2).sum(-1)) > GARMENT_DISTANCE_MIN
    lum, wall_lum = opp[..., 0], model[..., 0]
    if garment[0] < wall[0]:  # a shadow on the wall: no lighter than the wall, clearly lighter than the garment
        lum_ok = (lum - wall_lum < 3 * noise) & (lum > garment[0] + SHADOW_LUM_SHARE * (wall[0] - garment[0]))
    else:  # a garment lighter than the wall: only the wall itself (its dark prints stay)
        lum_ok = np.abs(lum - wall_lum) < 3 * noise
    like_wall = m & (chroma < max(6.0, 2.5 * noise)) & far & lum_ok
    thick = open_mask(like_wall, 1)
    # Only regions at the outline (a wedge of wall between a sleeve and the body hugs it): inside the
    # garment, a grey print stays the garment's.
    outline = m & dilate(~m, max(1, round(max(m.shape) * NEAR_OUTLINE_SHARE)))
    touching = thick
    if thick.any():
        labels, sizes = label(thick)
        hit = np.unique(labels[outline & thick])
        hit = hit[(hit > 0) & (sizes[hit] >= LEFTOVER_PIECE_MIN * m.sum())]
        touching = np.isin(labels, hit)
    share = float(touching.sum()) / max(1, int(m.sum()))
    return touching, share, apart


def _hook_rows(m: np.ndarray) -> int:
    rows = m.sum(1)
    if not rows.any():
        return 0
    top, widest = int(np.argmax(rows > 0)), int(rows.max())
    n = 0
    while top + n < len(rows) and 0 < rows[top + n] < HOOK_WIDTH_SHARE * widest:
        n += 1
    return n


def clean_cutout(photo: Image.Image, mask: np.ndarray, *, busy: bool) -> Cleanup:
    """`mask` (the photo's size) without the background left along its outline and the hook."""
    small = work_copy(photo.convert("RGB"), WORK_SIDE).filter(ImageFilter.GaussianBlur(1.0))
    arr = np.asarray(small, dtype=np.float32)
    h, w = arr.shape[:2]
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)) > 127
    out = Cleanup(mask)
    if not m.any():
        return out
    remove = np.zeros_like(m)
    if not busy:  # on a busy background the cut-out is flagged approximate already
        band = _border_band(h, w, max(2, round(max(h, w) * 0.015)))
        leftovers, share, apart = _shadow_leftovers(to_opponent(arr), m, band)
        out.metrics.update(leftover_share=round(share, 4), garment_wall_distance=round(apart, 1))
        remove |= leftovers  # wall pixels: removed whatever their amount; a large amount is said
        if share >= LEFTOVER_SHARE_MIN:
            out.notes.append(NOTE_SHADOW.format(share=f"{100 * share:.0f} %"))
    b = bbox(m)
    rows = _hook_rows(m)
    out.metrics["hook_rows"] = rows
    if b is not None and rows >= max(3, HOOK_ROWS_MIN_SHARE * (b[3] - b[1])):
        remove[: b[1] + rows] |= m[: b[1] + rows]
        out.notes.append(NOTE_HOOK)
    if remove.any():
        big = np.asarray(Image.fromarray(remove.astype(np.uint8) * 255).resize(mask.shape[::-1], Image.BILINEAR)) > 127
        cleaned = keep_largest(mask & ~big)
        out.mask = cleaned if cleaned.any() else mask
    return out
