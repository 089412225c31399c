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
from ..imaging.leftovers import clean_cutout
from ..imaging.masks import (bbox, box_sum, close_mask, dilate, erode, garment_mask, label,
                              on_grey_mask, open_mask)

GREY = HOUSE_GREY[0]
# The views made from a raw photo (the others are cut from a finished view).
_FROM_PHOTO = tuple(v.name for v in VIEWS if v.source in PHOTO_NAMES)
SHADOW_STRENGTH = 0.16   # darkest shadow = 16 % below the house grey, under the garment's edge
DETAIL_WIDTH_SHARE = 0.46  # detail crop width, share of the garment's width
DETAIL_SEARCH_SIDE = 900  # the face is searched for its logo at this long side (a sleeve badge is small)
CHEST_PREFERENCE = 0.8    # a patch off the chest wins only when larger than the chest's by 1 / this
BACKGROUND_NEAR = 30       # a patch near the outline this close to a background colour is background
BACKGROUND_REACH = 0.05    # "near the outline": within this share of the garment's width (wedges of window)

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
                out_size: tuple[int, int] | None = None, *, photo: "FacePhoto | None" = None) -> RenderResult:
    """Render one catalogue view locally. `source` is the raw photo (or the finished 1_face for
    3_detail_logo; with `photo`, the detail's pixels come from the photo itself)."""
    t0 = time.perf_counter()
    size = _ref_size(style_ref, out_size)
    if view == "3_detail_logo":
        result = _render_detail(source.convert("RGB"), size, photo)
    elif view in _FROM_PHOTO:
        result = _render_flat(source.convert("RGB"), measure_framing(style_ref), size)
    else:
        raise ValueError(f"unknown view {view!r}")
    result.metrics["seconds"] = round(time.perf_counter() - t0, 3)
    result.metrics["size"] = list(size)
    return result


# ----------------------------------------------------------------------------------------------
# 1_face, 2_back

@dataclass
class Cutout:
    """The garment of a photo, segmented and cleaned, and where it goes on a view's canvas."""

    mask: np.ndarray                 # bool, the size of the photo it was computed on
    box: tuple[int, int, int, int]   # garment box in that photo
    dest: tuple[int, int, int, int]  # (left, top, width, height) on the canvas
    notes: list[str]
    uncertain: bool
    metrics: dict
    wall: np.ndarray | None = None   # colours of the photo's background (a sample of its border), (n, 3)


def cut_out(src: Image.Image, framing: Framing, size: tuple[int, int]) -> Cutout:
    """Segment the garment of `src` and place it with the style reference's framing on `size`."""
    seg = garment_mask(src)
    notes = [seg.reason] if seg.reason else []
    cleanup = clean_cutout(src, seg.mask, busy=seg.busy)
    # The wall's shadow, wedges of wall, the hanger's hook: removed (and said when sizeable).
    mask = cleanup.mask
    box = bbox(mask) or seg.box
    notes += cleanup.notes
    (nw, nh), (left, top) = placement(box, framing, size)
    W, H = size
    metrics = {
        "mask_share_source": round(float(mask.mean()), 4),
        "garment_box_share": [round(nw / W, 4), round(nh / H, 4)],
        "garment_centre": [round((left + nw / 2) / W, 4), round((top + nh / 2) / H, 4)],
        "framing_ref": [round(framing.cx, 4), round(framing.cy, 4), round(framing.width, 4),
                        round(framing.height, 4)],
        "segmentation": seg.stats,
        "busy_background": seg.busy,
        "cleanup": cleanup.metrics,
    }
    if not framing.measured:
        notes.append("cadrage de la référence de style illisible : cadrage par défaut")
    return Cutout(mask, box, (left, top, nw, nh), notes, seg.uncertain or bool(cleanup.notes), metrics,
                  _border_palette(src))


def _border_palette(src: Image.Image, n: int = 400) -> np.ndarray:
    """A sample of the colours along the photo's border: what its background looks like."""
    arr = np.asarray(work_copy(src, 160), dtype=np.float32)
    band = np.concatenate([arr[:4].reshape(-1, 3), arr[-4:].reshape(-1, 3), arr[:, :4].reshape(-1, 3),
                           arr[:, -4:].reshape(-1, 3)])
    return band[:: max(1, len(band) // n)]


def compose(src: Image.Image, cut: Cutout, window: tuple[float, float, float, float],
            out_size: tuple[int, int], *, mask_src: Image.Image | None = None) -> Image.Image:
    """The part `window` (canvas coordinates) of the view `cut` describes, rendered at `out_size`.

    `src` gives the garment's pixels: the photo the cut-out was computed on, or the same photo at a
    higher resolution (its box scaled accordingly), so that a close crop is as sharp as the photo.
    The whole view is `window = (0, 0, W, H)`, `out_size = (W, H)`.
    """
    W, H = out_size
    wx0, wy0, wx1, wy1 = window
    z = W / (wx1 - wx0)
    left, top, nw, nh = cut.dest
    k = src.size[0] / cut.mask.shape[1]  # src pixels per mask pixel
    bx0, by0, bx1, by1 = (v * k for v in cut.box)
    # The garment's rectangle in output pixels, and the part of it inside the output.
    gx0, gy0 = (left - wx0) * z, (top - wy0) * z
    gw, gh = nw * z, nh * z
    vx0, vy0 = max(0.0, gx0), max(0.0, gy0)
    vx1, vy1 = min(float(W), gx0 + gw), min(float(H), gy0 + gh)
    canvas = Image.new("RGB", out_size, HOUSE_GREY)
    if vx1 - vx0 < 1 or vy1 - vy0 < 1:
        return canvas
    ix0, iy0 = int(np.floor(vx0)), int(np.floor(vy0))
    iw, ih = max(1, int(np.ceil(vx1)) - ix0), max(1, int(np.ceil(vy1)) - iy0)
    sx = (bx1 - bx0) / gw
    sy = (by1 - by0) / gh
    src_box = (bx0 + (ix0 - gx0) * sx, by0 + (iy0 - gy0) * sy, bx0 + (ix0 + iw - gx0) * sx,
               by0 + (iy0 + ih - gy0) * sy)
    # Downscale with a reducing gap (fast on 24 Mpx), upscale (a close crop) with a good filter.
    garment = src.resize((iw, ih), Image.LANCZOS, box=src_box, reducing_gap=2.0)
    mask_img = mask_src or Image.fromarray(cut.mask.astype(np.uint8) * 255, "L")
    mk = mask_img.size[0] / src.size[0]
    mbox = tuple(v * mk for v in src_box)
    alpha = mask_img.resize((iw, ih), Image.BILINEAR, box=mbox, reducing_gap=2.0)
    feather = max(0.6, min(gw, gh) / 900)
    alpha = alpha.filter(ImageFilter.GaussianBlur(feather))
    # Keep the garment's inside fully opaque: feathering only softens the outer edge.
    inner = erode(np.asarray(mask_img.resize((iw, ih), Image.NEAREST, box=mbox)) > 127, 2)
    a = np.where(inner, 255, np.asarray(alpha)).astype(np.uint8)

    # Soft contact shadow, computed at a quarter of the resolution (fast), offset a little down.
    blur = max(2.0, 0.018 * max(gw, gh))
    offset = max(1, round(0.008 * gh))
    margin = int(blur * 3 + offset + 2)
    wx, wy = max(0, ix0 - margin), max(0, iy0 - margin)
    ww, wh = min(W, ix0 + iw + margin) - wx, min(H, iy0 + ih + margin) - wy
    q = 4
    shadow_src = Image.new("L", (ww, wh), 0)
    shadow_src.paste(Image.fromarray(a, "L"), (ix0 - wx, iy0 - wy + offset))
    shadow = shadow_src.resize((max(1, ww // q), max(1, wh // q)), Image.BOX).filter(ImageFilter.GaussianBlur(blur / q))
    s = np.asarray(shadow.resize((ww, wh), Image.BILINEAR), dtype=np.uint32)
    dark = (s * int(round(SHADOW_STRENGTH * GREY * 256)) + (1 << 15)) >> 16   # 0..~39 levels
    window_img = np.full((wh, ww, 3), GREY, dtype=np.uint8)
    window_img -= dark.astype(np.uint8)[..., None]
    win = Image.fromarray(window_img, "RGB")
    win.paste(garment, (ix0 - wx, iy0 - wy), Image.fromarray(a, "L"))
    canvas.paste(win, (wx, wy))
    return canvas


def _render_flat(src: Image.Image, framing: Framing, size: tuple[int, int]) -> RenderResult:
    cut = cut_out(src, framing, size)
    image = compose(src, cut, (0, 0, size[0], size[1]), size)
    return RenderResult(image, cut.uncertain, cut.notes, cut.metrics)


# ----------------------------------------------------------------------------------------------
# 3_detail_logo

@dataclass(frozen=True)
class FacePhoto:
    """What the detail view needs to be cut from the front photo through the face's own placement."""

    work: Image.Image        # the photo decoded exactly as for 1_face (same cut-out, same placement)
    full: Image.Image        # the photo at full resolution (the detail's pixels)
    face_style: Image.Image  # 1_face's style reference (its framing)


def _garment_on_grey(arr: np.ndarray) -> np.ndarray:
    """Garment of the finished face (exact house grey): a little looser than the checks' mask."""
    return on_grey_mask(arr, None, 12, close_share=0.005, min_share=0.002)


def find_logo(arr: np.ndarray, fg: np.ndarray, backgrounds=(HOUSE_GREY,),
              busy: bool = False) -> tuple[float, float, float] | None:
    """Centre (x, y) and strength of the most logo-like patch on the garment, or None.

    `arr` is RGB uint8 of a flat lay on the house grey, `fg` its garment mask (same grid). The whole
    garment is searched (a badge on a sleeve, a patch on a pocket); the chest wins when comparable.
    `backgrounds`: colours of background that may show at the garment's outline (not logos): the
    house grey, and the photo's own background colours. `busy`: the photo's background was busy, so
    its cut-out is approximate (window may show between an arm and the body): the chest only.
    """
    backgrounds = np.asarray(backgrounds, dtype=np.float32).reshape(-1, 3)
    b = bbox(fg)
    if b is None:
        return None
    x0, y0, x1, y1 = b
    gw, gh = x1 - x0, y1 - y0
    inner = erode(fg, 2)  # the outline only: a badge may sit at a sleeve's edge
    if not inner.any():
        return None
    f = arr.astype(np.float32)
    # Contrast with the garment around (a sleeve in shade is not a logo): the garment's mean colour
    # within a radius of 12 % of its width, computed over the garment's pixels only.
    r = max(3, round(gw * 0.12))
    weight = box_sum(inner, r).astype(np.float32)
    sums = np.stack([box_sum(np.where(inner, f[..., c], 0.0), r) for c in range(3)], -1)
    local = sums / np.maximum(weight, 1)[..., None]
    contrast = np.sqrt(((f - local) ** 2).sum(-1))
    spread = float(np.median(contrast[inner]))
    hot = inner & (contrast > max(45.0, 4.0 * spread + 20.0))
    # A logo is a compact patch; seams and fold lines are thin: an opening removes those; the
    # strokes of one emblem are then joined.
    hot = close_mask(open_mask(hot, max(1, round(gw * 0.004))), max(1, round(gw * 0.01))) & inner
    patches = _compact_patches(hot, arr, inner, max_area=0.03 * float(inner.sum()), backgrounds=backgrounds)
    # The chest (upper-middle of the garment) first when comparable: logos sit there most often.
    chest = (x0 + 0.15 * gw, y0 + 0.08 * gh, x1 - 0.15 * gw, y0 + 0.55 * gh)
    best = None
    for x, y, area in patches:
        on_chest = chest[0] <= x <= chest[2] and chest[1] <= y <= chest[3]
        if busy and not on_chest:
            continue
        score = area * (1.0 if on_chest else CHEST_PREFERENCE)
        if score >= 6 and (best is None or score > best[2]):
            best = (x, y, score)
    return best


def _mask_on_canvas(cut: Cutout, canvas: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The cut-out's mask where it lies on the view's canvas, at `size`."""
    left, top, nw, nh = cut.dest
    x0, y0, x1, y1 = cut.box
    piece = Image.fromarray(cut.mask[y0:y1, x0:x1].astype(np.uint8) * 255, "L").resize((nw, nh), Image.BILINEAR)
    full = Image.new("L", canvas, 0)
    full.paste(piece, (left, top))
    return np.asarray(full.resize(size, Image.BILINEAR)) > 127


def _compact_patches(hot: np.ndarray, arr: np.ndarray, inner: np.ndarray, *, max_area: float,
                     backgrounds) -> list[tuple[float, float, int]]:
    """(x, y, area) of the patches of `hot` that can be a logo: not larger than `max_area`, not a long
    line, and not background showing at the garment's outline (an armpit corner of wall or grey).
    The area leaves out the outline band, so that a badge at a sleeve's edge counts what it covers."""
    labels, sizes = label(hot)
    edge = dilate(~inner, max(2, round(inner.shape[1] * 0.01)))
    near = dilate(~inner, max(2, round(inner.shape[1] * BACKGROUND_REACH)))
    out = []
    for i in range(1, len(sizes)):
        if sizes[i] > max_area:
            continue
        sel = labels == i
        ys, xs = np.nonzero(sel)
        h, w = int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1
        if max(h, w) > 5 * min(h, w):
            continue
        if (sel & near).any() and len(backgrounds):
            colour = arr[sel].astype(np.float32).mean(0)
            if float(np.abs(backgrounds - colour).max(-1).min()) < BACKGROUND_NEAR:
                continue
        out.append((float(xs.mean()), float(ys.mean()), int((sel & ~edge).sum())))
    return out


def logo_place(x: float, y: float, box: tuple[float, float, float, float]) -> str:
    """Where on the garment (French, as seen on the image), from the logo's centre and the garment's box."""
    x0, y0, x1, y1 = box
    u, v = (x - x0) / max(x1 - x0, 1), (y - y0) / max(y1 - y0, 1)
    vertical = "en haut" if v < 0.4 else ("au milieu" if v < 0.7 else "en bas")
    horizontal = "à gauche" if u < 0.3 else ("au centre" if u <= 0.7 else "à droite")
    return f"{vertical} {horizontal}"


def _render_detail(face: Image.Image, size: tuple[int, int], photo: FacePhoto | None = None) -> RenderResult:
    W, H = face.size
    small = work_copy(face, DETAIL_SEARCH_SIDE)
    arr = np.asarray(small)
    k = W / small.size[0]
    cut = cut_out(photo.work, measure_framing(photo.face_style), (W, H)) if photo is not None else None
    # Where the garment is on the face: its own cut-out when known (the house grey seen between a
    # sleeve and the body is no logo), else what differs from the house grey.
    fg = _mask_on_canvas(cut, (W, H), small.size) if cut is not None else _garment_on_grey(arr)
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
        walls = [cut.wall] if cut is not None and cut.wall is not None else []
        palette = np.vstack([np.asarray([HOUSE_GREY], np.float32)] + walls)
        logo = find_logo(arr, fg, backgrounds=palette, busy=bool(cut and cut.metrics.get("busy_background")))
    gw, gh = gx1 - gx0, gy1 - gy0
    where = None
    if logo is not None:
        cx, cy = logo[0] * k, logo[1] * k
        where = logo_place(cx, cy, (gx0, gy0, gx1, gy1))
    else:
        cx, cy = (gx0 + gx1) / 2, gy0 + gh * 0.3
        if not uncertain:
            notes.append(NOTE_NO_LOGO)
            uncertain = True
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
    if cut is not None:  # the photo's own pixels, through the face's placement: as sharp as it allows
        out = compose(photo.full, cut, box, size)
    else:
        out = face.resize(size, Image.LANCZOS, box=box, reducing_gap=None)
    metrics = {
        "logo_found": logo is not None,
        "logo_centre": [round(cx / W, 4), round(cy / H, 4)] if logo is not None else None,
        "logo_place": where,
        "crop_box": [round(v, 1) for v in box],
        "from_photo": photo is not None,
        "enlargement": round(size[0] / (cw * (photo.full.size[0] / photo.work.size[0]) * (
            (cut.box[2] - cut.box[0]) / max(cut.dest[2], 1))), 2) if photo is not None else round(size[0] / cw, 2),
    }
    if where and where != "en haut au centre":  # off the chest: say where the detail was taken
        notes.append(f"logo repéré {where} du vêtement (sur l'image)")
    return RenderResult(out, uncertain, notes, metrics)
