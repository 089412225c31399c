"""The house framing, measured on a style reference, and the placement of a cut-out to match it.

A style reference is a flat lay on the house grey (#F3F3F3; real references drift a little, e.g.
240): the garment is whatever is not close to the reference's own border grey. Its bounding box, as
fractions of the frame, is the framing every generated view copies: same centre, garment fitted
inside the same box keeping its own aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .decode import work_copy
from .masks import GARMENT_LEVEL, bbox, border_grey, on_grey_mask

MEASURE_SIDE = 400


@dataclass(frozen=True)
class Framing:
    cx: float       # centre of the garment box, share of the frame width
    cy: float       # centre, share of the frame height
    width: float    # box width, share of the frame width
    height: float   # box height, share of the frame height
    measured: bool = True  # False: the reference gave nothing usable, defaults used

    def box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The target box (x0, y0, x1, y1) in pixels of a frame of `size`."""
        w, h = size
        bw, bh = self.width * w, self.height * h
        return self.cx * w - bw / 2, self.cy * h - bh / 2, self.cx * w + bw / 2, self.cy * h + bh / 2


DEFAULT_FRAMING = Framing(cx=0.5, cy=0.5, width=0.62, height=0.56, measured=False)


def measure_framing(style_ref: Image.Image, *, tolerance: float = GARMENT_LEVEL) -> Framing:
    """Garment box of a flat-lay style reference, as shares of its frame."""
    small = work_copy(style_ref, MEASURE_SIDE)
    arr = np.asarray(small, dtype=np.float32)
    h, w = arr.shape[:2]
    if h < 8 or w < 8:
        return DEFAULT_FRAMING
    # The house grey, or the reference's own grey when it drifted (real references measure ~240).
    fg = on_grey_mask(arr, border_grey(arr), tolerance)
    share = fg.mean()
    b = bbox(fg)
    if b is None or share < 0.01 or share > 0.95:
        return DEFAULT_FRAMING
    x0, y0, x1, y1 = b
    return Framing(cx=(x0 + x1) / 2 / w, cy=(y0 + y1) / 2 / h, width=(x1 - x0) / w, height=(y1 - y0) / h)


def fit_into(box_size: tuple[float, float], target: tuple[float, float, float, float]) -> tuple[float, float, float]:
    """Scale and top-left corner that fit a (w, h) box inside `target`, same centre, aspect kept."""
    bw, bh = box_size
    tx0, ty0, tx1, ty1 = target
    scale = min((tx1 - tx0) / max(bw, 1e-6), (ty1 - ty0) / max(bh, 1e-6))
    cx, cy = (tx0 + tx1) / 2, (ty0 + ty1) / 2
    return scale, cx - bw * scale / 2, cy - bh * scale / 2


def placement(garment_box: tuple[int, int, int, int], framing: Framing,
              out_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a garment whose box in its photo is `garment_box` goes in an `out_size` frame.

    Returns ((new_w, new_h), (left, top)) in output pixels, integers.
    """
    x0, y0, x1, y1 = garment_box
    scale, left, top = fit_into((x1 - x0, y1 - y0), framing.box(out_size))
    nw = max(1, round((x1 - x0) * scale))
    nh = max(1, round((y1 - y0) * scale))
    return (nw, nh), (round(left), round(top))


def measure_box(img: Image.Image, *, tolerance: float = GARMENT_LEVEL) -> Framing:
    """Framing of any flat lay on the house grey (used by tests and QA to compare with a reference)."""
    return measure_framing(img, tolerance=tolerance)
