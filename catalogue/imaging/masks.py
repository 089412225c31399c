"""Garment mask of a raw product photo, weight-free (Pillow + numpy only).

Two regimes:

* **Plain background** (studio paper, a table, a wall): the background colour is modelled from the
  frame's border with a smooth quadratic surface per channel (so uneven light, a vignette or a
  gradient from a window is part of the model, not of the garment), every pixel's distance to that
  model is thresholded, the garment's outline is reinforced with the edge map (a cream garment on an
  off-white table differs little in colour but always has an outline), then morphology: closing,
  hole filling (anything not connected to the border is garment), largest component(s).
* **Busy background** (hanger in front of a window, a wall, furniture: the border is not uniform):
  a best effort seeded from the centre of the frame — colour clusters of the centre against colour
  clusters of the border, the component that holds the centre — flagged as uncertain with a French
  reason for the operator.

Everything runs on a reduced copy (long side `WORK_SIDE`) and the mask is upscaled, so a
24-megapixel photo segments in a fraction of a second. The morphology helpers (`dilate`, `erode`,
`close_mask`, `label`, `fill_holes`, `keep_largest`) are shared by `framing` and `finishing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage as ndi

from .decode import HOUSE_GREY, work_copy

WORK_SIDE = 640

REASON_BUSY = "fond chargé (cintre, fenêtre ?) : détourage approximatif, à vérifier"
REASON_EMPTY = "vêtement introuvable sur la photo : cadrage par défaut, à vérifier"
REASON_TOO_BIG = "vêtement indiscernable du fond (masque couvrant toute la photo) : cadrage par défaut, à vérifier"
REASON_TOUCHES = "le vêtement touche le bord de la photo : il est peut-être coupé, à vérifier"


@dataclass
class Segmentation:
    mask: np.ndarray                      # bool, shape (height, width) of the input image
    uncertain: bool
    reason: str                           # French, "" when certain
    background_rgb: tuple[int, int, int]  # median colour of the border
    busy: bool = False                    # the border was not a plain background
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 (exclusive) in image pixels
    stats: dict = field(default_factory=dict)

    @property
    def area_share(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


# ----------------------------------------------------------------------------------------------
# Morphology and connected components on boolean arrays (scipy.ndimage)

_STRUCTURE = {4: ndi.generate_binary_structure(2, 1), 8: ndi.generate_binary_structure(2, 2)}


def box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)×(2r+1) square around each pixel (zeros outside the array), int32.

    Float input is truncated to integers first (as it always was; `finishing` relies on it).
    """
    a = a.astype(np.int32)
    if r <= 0:
        return a
    for axis in (0, 1):
        b = np.moveaxis(a, axis, 0)
        c = np.cumsum(np.pad(b, [(r + 1, r)] + [(0, 0)] * (b.ndim - 1)), axis=0, dtype=np.int32)
        a = np.moveaxis(c[2 * r + 1:] - c[:-2 * r - 1], 0, axis)
    return a


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilation by a (2r+1)-square (a separable running maximum)."""
    if r <= 0:
        return mask.copy()
    return ndi.maximum_filter(mask, size=2 * r + 1, mode="constant", cval=False)


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Erosion by a square; the outside of the array counts as foreground (no eating from the frame)."""
    if r <= 0:
        return mask.copy()
    return ndi.minimum_filter(mask, size=2 * r + 1, mode="constant", cval=True)


def close_mask(mask: np.ndarray, r: int) -> np.ndarray:
    return erode(dilate(mask, r), r)


def open_mask(mask: np.ndarray, r: int) -> np.ndarray:
    return dilate(erode(mask, r), r) & mask


def label(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of `mask`: (labels int32 array, 0 = background; sizes indexed by label).

    Labels are numbered in raster order of each component's first pixel; `sizes[0]` is 0.
    """
    labels, n = ndi.label(mask, structure=_STRUCTURE[connectivity], output=np.int32)
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.int64)
    sizes[0] = 0
    return labels, sizes


def _border_labels(labels: np.ndarray) -> np.ndarray:
    return np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))


def fill_holes(mask: np.ndarray, max_size: int | None = None) -> np.ndarray:
    """Background regions (4-connected) not connected to the frame's border become foreground.

    With `max_size`, only holes of at most that many pixels are filled. (Labelling the background
    once is faster here than `ndimage.binary_fill_holes`' iterated dilation, same result.)
    """
    bg_labels, sizes = label(~mask, connectivity=4)
    outside = np.zeros(sizes.size, dtype=bool)
    outside[_border_labels(bg_labels)] = True
    if max_size is not None:
        outside |= sizes > max_size
    outside[0] = False
    return mask | ~outside[bg_labels]


def keep_largest(mask: np.ndarray, min_rel: float = 0.2, min_share: float = 0.002,
                 prefer: np.ndarray | None = None) -> np.ndarray:
    """Keep the largest component and those at least `min_rel` of its size (and `min_share` of the frame).

    With `prefer` (a boolean array), the "largest" is the component with most pixels in `prefer`.
    """
    labels, sizes = label(mask)
    if sizes.size <= 1:
        return mask.copy()
    score = sizes.astype(np.float64).copy()
    score[0] = -1
    if prefer is not None:
        hits = np.bincount(labels[prefer], minlength=sizes.size).astype(np.float64)
        hits[0] = -1
        if hits.max() > 0:
            best = int(np.argmax(hits))
            keep = np.zeros(sizes.size, dtype=bool)
            keep[best] = True
            keep |= (sizes >= max(min_rel * sizes[best], min_share * mask.size)) & (hits > 0)
            keep[0] = False
            return keep[labels]
    best = int(np.argmax(score))
    keep = sizes >= max(min_rel * sizes[best], min_share * mask.size)
    keep[best] = True
    keep[0] = False
    return keep[labels]


# ----------------------------------------------------------------------------------------------
# Flat lays on the house grey (finished views, style references): one rule, one mask

# A frame whose border median is within this (max |RGB - 243|) of #F3F3F3 is a flat lay on the
# house grey, its own grey drifted (real style references measure ~240, some with a vignette);
# anything farther is another background (a raw photo).
GREY_DRIFT_MAX = 25.0
# What is farther than this (max |RGB - grey|) from the grey is garment (finishing snaps the
# background to exactly 243; the quality gate's "garment_level").
GARMENT_LEVEL = 14.0


def border_grey(arr: np.ndarray) -> np.ndarray | None:
    """The median of the frame's border (1 % band) when it is the house grey, drifted or not; else None."""
    h, w = arr.shape[:2]
    band = _border_band(h, w, max(2, round(max(h, w) * 0.01)))
    border = np.median(arr[band].astype(np.float32), axis=0)
    return border if np.abs(border - np.asarray(HOUSE_GREY)).max() < GREY_DRIFT_MAX else None


def on_grey_mask(arr: np.ndarray, grey=None, level: float = GARMENT_LEVEL, *, close_share: float = 0.006,
                 min_share: float = 0.001) -> np.ndarray:
    """Garment of a flat lay on the house grey (`grey`: its own, from `border_grey`; None: #F3F3F3):
    what is farther than `level` from the grey, closed (radius `close_share` of the long side),
    holes filled, the largest parts kept (those of at least 5 % of the largest, `min_share` of the frame)."""
    g = np.asarray(HOUSE_GREY if grey is None else grey, dtype=np.float32)
    fg = np.abs(arr.astype(np.float32) - g).max(-1) > level
    if not fg.any():
        return fg
    r = max(1, round(max(arr.shape[:2]) * close_share))
    return keep_largest(fill_holes(close_mask(fg, r)), min_rel=0.05, min_share=min_share)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) with exclusive ends, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# ----------------------------------------------------------------------------------------------
# Colour helpers

def to_opponent(rgb: np.ndarray) -> np.ndarray:
    """RGB float -> (luminance, red-green, yellow-blue) with chroma weighted up.

    A cheap perceptual-ish space: a cream garment on an off-white table differs mostly in the
    yellow-blue axis, which plain RGB distance under-weights.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    rg = (r - g) * 1.2
    yb = ((r + g) * 0.5 - b) * 1.2
    return np.stack([lum, rg, yb], axis=-1)


def _border_band(h: int, w: int, band: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[:band] = m[-band:] = True
    m[:, :band] = m[:, -band:] = True
    return m


def _design(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(xs), xs, ys, xs * ys, xs * xs, ys * ys], axis=-1)


def _evaluate(coef: np.ndarray, h: int, w: int) -> np.ndarray:
    """The fitted surface on the whole h x w grid (float32 HxWxC), term by term: the quadratic
    separates into a row part, a column part and one product, so no HxWx6 design matrix is built."""
    gx = np.linspace(-1, 1, w)
    gy = np.linspace(-1, 1, h)
    rows = gy[:, None] * coef[2] + (gy * gy)[:, None] * coef[5]                  # (h, c)
    cols = coef[0] + gx[:, None] * coef[1] + (gx * gx)[:, None] * coef[4]        # (w, c)
    return (rows[:, None, :] + cols[None, :, :] + np.outer(gy, gx)[:, :, None] * coef[3]).astype(np.float32)


def fit_background(arr: np.ndarray, sample: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Smooth quadratic background surface per channel fitted robustly on the `sample` pixels.

    Returns (model image float32 HxWxC, per-sample residual distances of the final inliers).
    """
    h, w, c = arr.shape
    yy, xx = np.nonzero(sample)
    xs = xx / max(w - 1, 1) * 2 - 1
    ys = yy / max(h - 1, 1) * 2 - 1
    A = _design(xs, ys)
    vals = arr[yy, xx].astype(np.float64)
    keep = np.ones(len(vals), dtype=bool)
    coef = np.zeros((A.shape[1], c))
    for _ in range(iterations):
        if keep.sum() < A.shape[1] * 4:
            keep[:] = True
        coef, *_ = np.linalg.lstsq(A[keep], vals[keep], rcond=None)
        res = np.linalg.norm(vals - A @ coef, axis=1)
        med = np.median(res[keep])
        mad = np.median(np.abs(res[keep] - med)) * 1.4826 + 0.5
        keep = res < med + 3.0 * mad + 2.0
    model = _evaluate(coef, h, w)
    res = np.linalg.norm(vals - A @ coef, axis=1)
    return model, res


def _kmeans(points: np.ndarray, k: int, iterations: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means (initialised on luminance quantiles). Returns (centres, weights)."""
    if len(points) == 0:
        return np.zeros((0, points.shape[1])), np.zeros(0)
    k = max(1, min(k, len(points)))
    order = np.argsort(points[:, 0], kind="stable")
    centres = points[order[((np.arange(k) + 0.5) / k * len(points)).astype(int)]].astype(np.float64)
    assign = np.zeros(len(points), dtype=np.int64)
    for _ in range(iterations):
        d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        assign = d.argmin(1)
        for j in range(k):
            sel = assign == j
            if sel.any():
                centres[j] = points[sel].mean(0)
    weights = np.bincount(assign, minlength=k) / len(points)
    return centres, weights


def _min_dist(arr: np.ndarray, centres: np.ndarray) -> np.ndarray:
    best = None
    for c in centres:
        d = np.sqrt(((arr - c.astype(np.float32)) ** 2).sum(-1))
        best = d if best is None else np.minimum(best, d)
    return best


def _gradient(lum: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(lum)
    gy = np.zeros_like(lum)
    gx[:, 1:-1] = lum[:, 2:] - lum[:, :-2]
    gy[1:-1] = lum[2:] - lum[:-2]
    return np.hypot(gx, gy) * 0.5


# ----------------------------------------------------------------------------------------------

def _plain(opp: np.ndarray, model: np.ndarray, noise: float, band: np.ndarray, r: int) -> np.ndarray:
    diff = opp - model
    dist = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2)
    thr = max(9.0, 3.5 * noise)
    raw = dist > thr
    # Outline from the edge map: catches light garments on light backgrounds.
    grad = _gradient(opp[..., 0] - model[..., 0])
    gnoise = float(np.median(grad[band])) * 1.4826 + 0.3
    edges = grad > max(3.0, 5.0 * gnoise)
    rc = max(2, r // 2)
    fg = fill_holes(close_mask(raw | edges, rc))
    fg = keep_largest(open_mask(fg, 1))
    # Put the outline back at mid-contrast: the blur, the edge map and the closing all fatten it
    # (and fill the narrow wedge between a sleeve and the body).
    inside = fg & raw
    level = max(thr, 0.5 * float(np.median(dist[inside]))) if inside.any() else thr
    band = fg & ~erode(fg, rc + 1)
    fg &= ~(band & (dist <= level))
    fg = keep_largest(fg)
    return fill_holes(fg, max_size=max(4, int(fg.size * 0.0005)))


def _busy(opp: np.ndarray, band: np.ndarray, r: int) -> np.ndarray:
    h, w = opp.shape[:2]
    centre = np.zeros((h, w), dtype=bool)
    centre[int(h * 0.38):int(h * 0.62), int(w * 0.38):int(w * 0.62)] = True
    step_b = max(1, int(band.sum() // 4000))
    step_c = max(1, int(centre.sum() // 3000))
    bpts = opp[band][::step_b]
    cpts = opp[centre][::step_c]
    bg_c, _ = _kmeans(bpts, 10)
    fg_c, fg_w = _kmeans(cpts, 4)
    # Centre clusters that look like the border are background showing through: drop them.
    if len(bg_c):
        gap = np.sqrt(((fg_c[:, None] - bg_c[None]) ** 2).sum(-1)).min(1)
        keep = (gap > 10) & (fg_w > 0.08)
        if keep.any():
            fg_c = fg_c[keep]
    d_fg = _min_dist(opp, fg_c)
    d_bg = _min_dist(opp, bg_c) if len(bg_c) else np.full((h, w), 1e9, np.float32)
    raw = (d_fg < d_bg * 0.85) & (d_fg < 60)
    fg = close_mask(raw, r)
    fg = keep_largest(fg, min_rel=0.5, prefer=centre)
    filled = fill_holes(fg)
    # Holes that clearly look like the background (the window seen between an arm and the body,
    # through the hood) stay background; dark folds that merely resemble it get filled.
    confident_bg = d_bg * 1.5 < d_fg
    holes = filled & ~fg
    if holes.any():
        hl, hs = label(holes, connectivity=4)
        bg_hits = np.bincount(hl[confident_bg & holes], minlength=hs.size)
        reopen = (bg_hits >= 0.7 * np.maximum(hs, 1)) & (hs >= 0.001 * fg.size)
        reopen[0] = False
        filled &= ~reopen[hl]
    fg = filled
    # Cut thin attachments (hanger hook, cables), then keep the central body again.
    fg = open_mask(fg, max(2, r))
    fg = keep_largest(fg, min_rel=0.5, prefer=centre)
    return refine_edge(fg, raw, r)


def refine_edge(fg: np.ndarray, raw: np.ndarray, r: int) -> np.ndarray:
    """Square-kernel morphology leaves staircase outlines: near the outline, trust the per-pixel
    classification again, then smooth the outline (majority of a small neighbourhood)."""
    band = dilate(fg, r) & ~erode(fg, r)
    core = fg & ~band
    fg = core | (band & close_mask(raw, 1))
    fg = keep_largest(fg, min_rel=0.2)
    return fill_holes(fg, max_size=max(4, int(fg.size * 0.0005)))
    return fg


def _upscale_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Smooth the work-size outline (Gaussian, then majority) and upscale it to `size`."""
    m = Image.fromarray(mask.astype(np.uint8) * 255, "L").filter(ImageFilter.GaussianBlur(1.2))
    if m.size != tuple(size):
        m = m.resize(size, Image.BILINEAR)
    return np.asarray(m) > 127


def _fallback(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    m = np.zeros((h, w), dtype=bool)
    m[int(h * 0.2):int(h * 0.8), int(w * 0.25):int(w * 0.75)] = True
    return m


def garment_mask(img: Image.Image) -> Segmentation:
    """Mask of the garment in `img` (any size, RGB). Never raises on odd content."""
    img = img.convert("RGB")
    W, H = img.size
    if W < 8 or H < 8:
        m = _fallback((W, H))
        return Segmentation(m, True, REASON_EMPTY, (243, 243, 243), box=bbox(m) or (0, 0, W, H))
    small = work_copy(img, WORK_SIDE).filter(ImageFilter.GaussianBlur(1.0))
    arr = np.asarray(small, dtype=np.float32)
    h, w = arr.shape[:2]
    opp = to_opponent(arr)
    bw = max(2, round(max(h, w) * 0.015))
    band = _border_band(h, w, bw)
    bg_rgb = tuple(int(v) for v in np.median(arr[band], axis=0).round())
    model, res = fit_background(opp, band)
    noise = float(np.median(res)) * 1.4826 + 0.5
    outlier_share = float((res > max(25.0, 4 * noise)).mean())
    busy = outlier_share > 0.2 or noise > 9.0
    r = max(2, round(max(h, w) * 0.008))
    stats = {"border_noise": round(noise, 2), "border_outliers": round(outlier_share, 3),
             "work_size": [w, h]}

    try:
        fg = _busy(opp, band, r) if busy else _plain(opp, model, noise, band, r)
    except Exception as exc:  # pragma: no cover - defensive: never crash the batch on a mask
        stats["error"] = repr(exc)
        fg = np.zeros((h, w), dtype=bool)

    share = float(fg.mean())
    uncertain, reason = busy, (REASON_BUSY if busy else "")
    if share < 0.005:
        m = _fallback((W, H))
        return Segmentation(m, True, REASON_EMPTY, bg_rgb, busy, bbox(m), stats | {"share": share})
    if share > 0.97:
        m = _fallback((W, H))
        return Segmentation(m, True, REASON_TOO_BIG, bg_rgb, busy, bbox(m), stats | {"share": share})
    edge_touch = float(np.concatenate([fg[0], fg[-1], fg[:, 0], fg[:, -1]]).mean())
    if not busy and edge_touch > 0.05:
        uncertain, reason = True, REASON_TOUCHES
    stats |= {"share": round(share, 4), "edge_touch": round(edge_touch, 3)}
    mask = _upscale_mask(fg, (W, H))
    return Segmentation(mask, uncertain, reason, bg_rgb, busy, bbox(mask) or (0, 0, W, H), stats)
