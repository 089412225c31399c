"""Garment type from the image itself, weight-free: a top (shoulders, sleeves) or a bottom (two legs
and a crotch gap).

Two regimes, like the images the shop has:

* **A whole garment** (flat lay, on a hanger, the house style): the garment mask (`masks.garment_mask`)
  is read row by row in the lower half of its bounding box. Trousers and shorts split into two legs
  there, with background between them near the middle (the crotch gap); a top stays one solid
  body in its middle, whatever its sleeves do at the sides. Score = the share of those rows that
  show a central gap; the box's shape (trousers are tall and narrow) breaks near ties.
* **A worn crop** (the detail references: a person wearing the garment, tight crop, the garment
  fills the frame): the subject is the garment at the centre of the frame. Its colour is followed
  row by row: a top's colour fills the upper rows and gives way to another garment (trousers)
  at the bottom; a bottom's colour fills the lower rows, with the top's hem above it.

Returns a family ("tops" | "bottoms"), a confidence in 0..1 and a French reason. A confidence under
`SURE` means "best guess": the pipeline flags the choice INCERTAIN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..core.garment_types import SILHOUETTE_VERSION, TYPE_SURE as SURE
from .masks import bbox, garment_mask, work_copy

# SILHOUETTE_VERSION (core.garment_types): bump it when the inference changes, cached answers
# (output/.state/garment_types.json) are then redone.
WORK = 480


@dataclass(frozen=True)
class Inference:
    family: str          # "tops" | "bottoms"
    confidence: float    # 0..1
    reason: str          # French
    mode: str            # "silhouette" | "worn"

    @property
    def sure(self) -> bool:
        return self.confidence >= SURE

    def to_json(self) -> dict:
        return {"family": self.family, "confidence": round(self.confidence, 3), "reason": self.reason,
                "mode": self.mode, "version": SILHOUETTE_VERSION}


def infer_garment(img: Image.Image) -> Inference:
    """The garment type of one image (a photo, a style reference, a worn crop)."""
    small = work_copy(img.convert("RGB"), WORK)
    rgb = np.asarray(small, dtype=np.float64)
    subject = _subject(rgb)
    if sum(subject["edges"]) > CROP_EDGES and not subject["like_background"]:
        return _worn(subject)                # the centre garment runs off the frame: a worn crop
    mask = np.asarray(garment_mask(small).mask, dtype=bool)
    box = bbox(mask)
    if box is None:
        return _worn(subject)
    # The crotch gap is narrow on a hanging pair of trousers: the mask's closing may fill it, so the
    # rows are read on the raw difference from the background too, and the larger count wins.
    raw = subject["unlike_background"] & _box_mask(mask.shape, box)
    return max((_silhouette(m, box) for m in (mask, raw)), key=lambda inf: (inf.family == "bottoms", inf.confidence))


def _box_mask(shape, box) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = True
    return out


# Sum over the four edges of the share of edge pixels in the centre garment's colour above which
# the image is a crop (whole garments: 0.0 on the shop's references and photos; crops: 0.6 to 1.6).
CROP_EDGES = 0.4


def _subject(rgb: np.ndarray) -> dict:
    """Where the colour of the garment at the centre of the frame is: per row, and on each edge."""
    h, w, _ = rgb.shape
    centre = rgb[int(0.35 * h):int(0.65 * h), int(0.3 * w):int(0.7 * w)].reshape(-1, 3)
    colour = np.median(centre, axis=0)
    spread = float(np.median(np.sqrt(((centre - colour) ** 2).sum(axis=1))))
    close = np.sqrt(((rgb - colour) ** 2).sum(axis=2)) < max(28.0, 2.5 * spread)
    k = max(1, h // 50)
    edges = (float(close[:k].mean()), float(close[-k:].mean()),
             float(close[:, :k].mean()), float(close[:, -k:].mean()))
    border = np.concatenate([rgb[:k].reshape(-1, 3), rgb[-k:].reshape(-1, 3), rgb[:, :k].reshape(-1, 3),
                             rgb[:, -k:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    noise = float(np.median(np.sqrt(((border - background) ** 2).sum(axis=1))))
    unlike = np.sqrt(((rgb - background) ** 2).sum(axis=2)) > max(18.0, 3.0 * noise)
    return {"profile": close.mean(axis=1), "edges": edges, "unlike_background": unlike,
            # a cream garment on an off-white sheet: "its colour on the edges" is the background's
            "like_background": float(np.sqrt(((colour - background) ** 2).sum())) < 25.0}


def _crotch_run(crop: np.ndarray, bw: int, cx: float) -> int:
    """Rows, from the hem up, with background at the middle between two sizeable runs (a few misses
    allowed): the crotch gap of a pair of trousers is one tall slit, not scattered holes."""
    bh = crop.shape[0]
    run = misses = 0
    for r in range(int(0.97 * bh), int(0.3 * bh), -1):
        runs = [(a, b) for a, b in _runs(crop[r]) if b - a >= 0.04 * bw]
        ok = any(a1 <= cx + 0.15 * bw and b0 >= cx - 0.15 * bw and a1 - a0 >= 0.18 * bw and b1 - b0 >= 0.18 * bw
                 for (a0, a1), (b0, b1) in zip(runs, runs[1:]))
        if ok:
            run, misses = run + 1 + misses, 0
        elif run:
            misses += 1
            if misses > max(2, bh // 60):
                break
    return run


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], row, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2], edges[1::2]))


def _silhouette(mask: np.ndarray, box: tuple[int, int, int, int]) -> Inference:
    x0, y0, x1, y1 = box
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    crop = mask[y0:y1, x0:x1]
    cx = bw / 2
    gaps = rows = 0
    for r in range(int(0.5 * bh), int(0.97 * bh)):
        runs = [(a, b) for a, b in _runs(crop[r]) if b - a >= 0.04 * bw]
        if not runs:
            continue
        rows += 1
        # A gap between two runs, around the middle (the crotch), both runs sizeable (two legs).
        for (a0, a1), (b0, b1) in zip(runs, runs[1:]):
            if a1 <= cx + 0.15 * bw and b0 >= cx - 0.15 * bw and a1 - a0 >= 0.18 * bw and b1 - b0 >= 0.18 * bw:
                gaps += 1
                break
    legs = gaps / rows if rows else 0.0
    legs = min(legs, 2.0 * _crotch_run(crop, bw, cx) / max(1, int(0.47 * bh)) if legs else 0.0)
    aspect = bh / bw
    # Score in -1 (top) .. 1 (bottom): the legs first, the shape a little.
    score = 2.2 * (legs - 0.2) + 0.35 * np.clip(aspect - 1.35, -1, 1)
    family = "bottoms" if score > 0 else "tops"
    confidence = float(np.clip(abs(score) / 0.5, 0, 1))
    if family == "bottoms":
        reason = f"deux jambes séparées sur {legs:.0%} du bas de la silhouette"
    else:
        reason = f"silhouette d'un seul tenant (jambes séparées sur {legs:.0%} du bas seulement)"
    return Inference(family, confidence, reason + f", hauteur/largeur {aspect:.2f}", "silhouette")


def _worn(subject: dict) -> Inference:
    """A worn crop: is the centre garment's colour in the upper rows (a top, trousers below it) or
    in the lower rows (a bottom, the top's hem above it)? Rows and the top/bottom edges both vote."""
    profile = subject["profile"]
    band = max(1, int(0.2 * len(profile)))
    top, bottom = float(profile[:band].mean()), float(profile[-band:].mean())
    edge_top, edge_bottom = subject["edges"][0], subject["edges"][1]
    score = (bottom - top) + (edge_bottom - edge_top)    # > 0: the subject sits low (a bottom)
    family = "bottoms" if score > 0 else "tops"
    confidence = float(np.clip(abs(score) / 0.5, 0, 1))
    where = "le bas" if family == "bottoms" else "le haut"
    reason = (f"recadrage porté : la couleur du vêtement central occupe surtout {where} du cadre "
              f"(lignes du haut {top:.0%}, du bas {bottom:.0%})")
    return Inference(family, confidence, reason, "worn")
