"""The offline generator: the photo's own garment, cut out and placed in the house style.

Zero cost, deterministic (same inputs -> same bytes), fast enough to preview a whole season:

* `1_face`, `2_back`: segment the garment of the raw photo (`segmentation.garment_mask`), scale it
  so its box fits the style reference's framing (same centre, aspect kept), paste it on exactly
  #F3F3F3 with a soft contact shadow. The garment's pixels are the photo's pixels, resampled only:
  no colour change inside the mask; the edge is anti-aliased by a slightly feathered mask.
* `3_detail_logo`: a tight crop of the finished `1_face` on the chest, centred on the logo when a
  small contrasting patch is found in the upper half of the garment.

It does not turn a garment on a hanger into a flat lay: on busy backgrounds the cut-out is
approximate and the view is marked uncertain for the operator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from ..core.views import PHOTO_NAMES, VIEWS
from ..imaging.decode import HOUSE_GREY, work_copy
from ..imaging.framing import Framing, measure_framing, placement
from ..imaging.masks import bbox, box_sum, erode, garment_mask, on_grey_mask, open_mask

GREY = HOUSE_GREY[0]
# The views made from a raw photo (the others are cut from a finished view).
_FROM_PHOTO = tuple(v.name for v in VIEWS if v.source in PHOTO_NAMES)
SHADOW_STRENGTH = 0.16   # darkest shadow = 16 % below the house grey, under the garment's edge
DETAIL_WIDTH_SHARE = 0.46  # detail crop width, share of the garment's width

NOTE_NO_LOGO = "aucun logo repéré : recadrage sur le haut de la poitrine, à vérifier"
NOTE_NO_GARMENT = "vêtement introuvable sur la vue de face : recadrage au centre, à vérifier"


@dataclass
class RenderResult:
    image: Image.Image
    uncertain: bool = False
    notes: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def _ref_size(style_ref: Image.Image, out_size: tuple[int, int] | None) -> tuple[int, int]:
    if out_size:
        return int(out_size[0]), int(out_size[1])
    return style_ref.size


def render_view(view: str, source: Image.Image, style_ref: Image.Image,
                out_size: tuple[int, int] | None = None) -> RenderResult:
    """Render one catalogue view locally. `source` is the raw photo (or the finished 1_face for 3_detail_logo)."""
    t0 = time.perf_counter()
    size = _ref_size(style_ref, out_size)
    if view == "3_detail_logo":
        result = _render_detail(source.convert("RGB"), size)
    elif view in _FROM_PHOTO:
        result = _render_flat(source.convert("RGB"), measure_framing(style_ref), size)
    else:
        raise ValueError(f"unknown view {view!r}")
    result.metrics["seconds"] = round(time.perf_counter() - t0, 3)
    result.metrics["size"] = list(size)
    return result


# ----------------------------------------------------------------------------------------------
# 1_face, 2_back

def _render_flat(src: Image.Image, framing: Framing, size: tuple[int, int]) -> RenderResult:
    seg = garment_mask(src)
    notes = [seg.reason] if seg.reason else []
    x0, y0, x1, y1 = seg.box
    (nw, nh), (left, top) = placement(seg.box, framing, size)
    W, H = size

    crop = src.crop(seg.box)
    alpha = Image.fromarray(seg.mask[y0:y1, x0:x1].astype(np.uint8) * 255, "L")
    # Downscale once with a reducing gap (fast on 24 Mpx), then exact size with a good filter.
    garment = crop.resize((nw, nh), Image.LANCZOS, reducing_gap=2.0)
    alpha = alpha.resize((nw, nh), Image.BILINEAR, reducing_gap=2.0)
    feather = max(0.6, min(nw, nh) / 900)
    alpha = alpha.filter(ImageFilter.GaussianBlur(feather))
    # Keep the garment's inside fully opaque: feathering only softens the outer edge.
    a = np.asarray(alpha)
    inner = np.asarray(Image.fromarray(seg.mask[y0:y1, x0:x1].astype(np.uint8) * 255, "L")
                       .resize((nw, nh), Image.NEAREST)) > 0
    inner = erode(inner, 2)
    a = np.where(inner, 255, a).astype(np.uint8)

    # Work window: garment placement plus the shadow's reach, clipped to the frame.
    blur = max(2.0, 0.018 * max(nw, nh))
    offset = max(1, round(0.008 * nh))
    margin = int(blur * 3 + offset + 2)
    wx0, wy0 = max(0, left - margin), max(0, top - margin)
    wx1, wy1 = min(W, left + nw + margin), min(H, top + nh + margin)
    ww, wh = wx1 - wx0, wy1 - wy0

    canvas = Image.new("RGB", size, HOUSE_GREY)
    if ww <= 0 or wh <= 0:
        return RenderResult(canvas, True, notes + ["vêtement hors cadre"], {})

    # Soft contact shadow, computed at a quarter of the resolution (fast), offset a little down.
    q = 4
    sw, sh = max(1, ww // q), max(1, wh // q)
    shadow_src = Image.new("L", (ww, wh), 0)
    shadow_src.paste(Image.fromarray(a, "L"), (left - wx0, top - wy0 + offset))
    shadow = shadow_src.resize((sw, sh), Image.BOX).filter(ImageFilter.GaussianBlur(blur / q))
    shadow = shadow.resize((ww, wh), Image.BILINEAR)
    s = np.asarray(shadow, dtype=np.uint32)
    dark = (s * int(round(SHADOW_STRENGTH * GREY * 256)) + (1 << 15)) >> 16   # 0..~39 levels
    window = np.full((wh, ww, 3), GREY, dtype=np.uint8)
    window -= dark.astype(np.uint8)[..., None]
    win = Image.fromarray(window, "RGB")

    win.paste(garment, (left - wx0, top - wy0), Image.fromarray(a, "L"))
    canvas.paste(win, (wx0, wy0))

    metrics = {
        "mask_share_source": round(seg.area_share, 4),
        "garment_box_share": [round(nw / W, 4), round(nh / H, 4)],
        "garment_centre": [round((left + nw / 2) / W, 4), round((top + nh / 2) / H, 4)],
        "framing_ref": [round(framing.cx, 4), round(framing.cy, 4), round(framing.width, 4),
                        round(framing.height, 4)],
        "segmentation": seg.stats,
        "busy_background": seg.busy,
    }
    if not framing.measured:
        notes.append("cadrage de la référence de style illisible : cadrage par défaut")
    return RenderResult(canvas, seg.uncertain, notes, metrics)


# ----------------------------------------------------------------------------------------------
# 3_detail_logo

def _garment_on_grey(arr: np.ndarray) -> np.ndarray:
    """Garment of the finished face (exact house grey): a little looser than the checks' mask."""
    return on_grey_mask(arr, None, 12, close_share=0.005, min_share=0.002)


def find_logo(arr: np.ndarray, fg: np.ndarray) -> tuple[float, float, float] | None:
    """Centre (x, y) and strength of a small contrasting patch in the garment's upper half, or None.

    `arr` is RGB uint8 of a flat lay on the house grey, `fg` its garment mask (same grid).
    """
    b = bbox(fg)
    if b is None:
        return None
    x0, y0, x1, y1 = b
    gw, gh = x1 - x0, y1 - y0
    inner = erode(fg, max(2, round(min(gw, gh) * 0.03)))
    f = arr.astype(np.float32)
    base = np.median(f[inner], axis=0) if inner.any() else np.median(f[fg], axis=0)
    contrast = np.sqrt(((f - base) ** 2).sum(-1))
    # Region of interest: upper-middle of the garment, away from its outline (hood, collar, seams).
    roi = np.zeros_like(fg)
    roi[y0 + int(gh * 0.08):y0 + int(gh * 0.55), x0 + int(gw * 0.15):x1 - int(gw * 0.15)] = True
    roi &= inner
    spread = float(np.median(contrast[inner])) if inner.any() else 0.0
    hot = roi & (contrast > max(45.0, 4.0 * spread + 20.0))
    # A logo is a compact patch; seams and fold lines are thin: an opening removes those.
    hot = open_mask(hot, max(1, round(gw * 0.008)))
    if hot.sum() < 6:
        return None
    win = max(2, round(gw * 0.05))
    density = box_sum(hot, win).astype(np.float32)
    # Prefer the centre line of the chest slightly: logos sit there more often than seams do.
    xs = np.arange(arr.shape[1], dtype=np.float32)
    density *= (1.0 - 0.3 * np.abs(xs - (x0 + x1) / 2) / max(gw / 2, 1))[None, :]
    y, x = np.unravel_index(int(np.argmax(density)), density.shape)
    peak = float(density[y, x])
    if peak < 6:
        return None
    # Centre of mass of the hot pixels in the densest window.
    sel = hot[max(0, y - win):y + win + 1, max(0, x - win):x + win + 1]
    ys, xs_ = np.nonzero(sel)
    return float(xs_.mean() + max(0, x - win)), float(ys.mean() + max(0, y - win)), peak


def _render_detail(face: Image.Image, size: tuple[int, int]) -> RenderResult:
    W, H = face.size
    small = work_copy(face, 600)
    arr = np.asarray(small)
    k = W / small.size[0]
    fg = _garment_on_grey(arr)
    notes: list[str] = []
    uncertain = False
    b = bbox(fg)
    if b is None or fg.mean() < 0.005:
        gx0, gy0, gx1, gy1 = 0, 0, W, H
        notes.append(NOTE_NO_GARMENT)
        uncertain = True
        logo = None
    else:
        gx0, gy0, gx1, gy1 = (v * k for v in b)
        logo = find_logo(arr, fg)
    gw, gh = gx1 - gx0, gy1 - gy0
    if logo is not None:
        cx, cy = logo[0] * k, logo[1] * k
    else:
        cx, cy = (gx0 + gx1) / 2, gy0 + gh * 0.3
        if not uncertain:
            notes.append(NOTE_NO_LOGO)
    aspect = size[0] / size[1]
    cw = max(gw * DETAIL_WIDTH_SHARE, 32.0)
    ch = cw / aspect
    if ch > H:
        ch, cw = float(H), H * aspect
    if cw > W:
        cw, ch = float(W), W / aspect
    left = min(max(cx - cw / 2, 0.0), W - cw)
    top = min(max(cy - ch / 2, 0.0), H - ch)
    box = (left, top, left + cw, top + ch)
    out = face.resize(size, Image.LANCZOS, box=box, reducing_gap=None)
    metrics = {
        "logo_found": logo is not None,
        "logo_centre": [round(cx / W, 4), round(cy / H, 4)] if logo is not None else None,
        "crop_box": [round(v, 1) for v in box],
    }
    return RenderResult(out, uncertain, notes, metrics)
