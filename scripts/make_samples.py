#!/usr/bin/env python3
"""Generate the bundled sample data: raw product photos and house-style references.

    python scripts/make_samples.py [--out ROOT]

writes, under ROOT (default: the repository root):

  photos/<folder>/face.jpg, back.jpg   synthetic phone photos of garments (JPEG, EXIF "Apple iPhone")
  refs/tops/, refs/bottoms/{1_face,2_back,3_detail_logo}.png   house-style references, one family
                                       per garment type (flat lay on #F3F3F3)

Everything is drawn procedurally with Pillow + numpy from fixed seeds, so the output is the same
on every run (byte-identical with the same library versions). Nothing is copied from the shop's
real material: the garments are polygons in "garment units" (body half-width = 1) given relief by
a height field (puffy parts, folds, seams, knit/twill texture) lit by a directional light, then
composited on a procedural background (off-white wall or sheet, or a window and a wall) and passed
through a small "phone camera" (lens softness, sensor noise, sharpening, JPEG).
"""

from __future__ import annotations

import argparse
import io
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PHOTO_SIZE = (900, 1200)          # (width, height) of the upright sample photos
REF_SIZE = (864, 1184)            # the shop's output size
HOUSE_GREY = 243                  # #F3F3F3
JPEG_QUALITY = 85
SUPERSAMPLE = 3                   # polygons are drawn at 3x and reduced (anti-aliasing)

Point = tuple[float, float]
Poly = list[Point]


# --------------------------------------------------------------------------------------------
# Numeric helpers (numpy only)
# --------------------------------------------------------------------------------------------

def _box_blur_axis(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Running mean of width 2r+1 along one axis, edges replicated."""
    if r < 1:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis)
    n = a.shape[axis]
    hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / (2 * r + 1)


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-like blur of a 2-D float array (three box passes per axis)."""
    if sigma <= 0.3:
        return a
    r = max(1, int(round((math.sqrt(4 * sigma * sigma + 1) - 1) / 2)))
    out = a.astype(np.float64)
    for axis in (0, 1):
        for _ in range(3):
            out = _box_blur_axis(out, r, axis)
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth random field with features about `cell` pixels wide, unit standard deviation."""
    h, w = shape
    gh, gw = int(h / cell) + 3, int(w / cell) + 3
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    big = Image.fromarray(small, mode="F").resize((int(gw * cell), int(gh * cell)), Image.BICUBIC)
    a = np.asarray(big, dtype=np.float64)[:h, :w]
    return (a - a.mean()) / (a.std() + 1e-9)


def chaikin(poly: Poly, iterations: int = 2, closed: bool = True) -> Poly:
    """Round the corners of a polygon (or polyline) by corner cutting."""
    pts = list(poly)
    for _ in range(iterations):
        out: Poly = [] if closed else [pts[0]]
        n = len(pts)
        for i in range(n if closed else n - 1):
            (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
            out.append((0.75 * x0 + 0.25 * x1, 0.75 * y0 + 0.25 * y1))
            out.append((0.25 * x0 + 0.75 * x1, 0.25 * y0 + 0.75 * y1))
        if not closed:
            out.append(pts[-1])
        pts = out
    return pts


def densify(poly: Poly, step: float, closed: bool = True) -> Poly:
    """Insert points so that no segment is longer than `step` (keeps rounding local to corners)."""
    out: Poly = []
    n = len(poly)
    for i in range(n if closed else n - 1):
        (x0, y0), (x1, y1) = poly[i], poly[(i + 1) % n]
        k = max(1, int(math.ceil(math.hypot(x1 - x0, y1 - y0) / step)))
        out.extend((x0 + (x1 - x0) * j / k, y0 + (y1 - y0) * j / k) for j in range(k))
    if not closed:
        out.append(poly[-1])
    return out


def bezier(p0: Point, p1: Point, p2: Point, n: int = 20) -> Poly:
    """Points of a quadratic Bezier curve."""
    pts = []
    for i in range(n + 1):
        t = i / n
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t * t
        pts.append((a * p0[0] + b * p1[0] + c * p2[0], a * p0[1] + b * p1[1] + c * p2[1]))
    return pts


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> Poly:
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n))
            for i in range(n)]


def mirror(poly: Poly) -> Poly:
    """Mirror a shape drawn on the image-left side to the image-right side."""
    return [(-u, v) for u, v in poly]


def rect(u0: float, v0: float, u1: float, v1: float) -> Poly:
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


# --------------------------------------------------------------------------------------------
# Rasterising shapes
# --------------------------------------------------------------------------------------------

def poly_mask(size: tuple[int, int], polys: list[list[Point]]) -> np.ndarray:
    """Anti-aliased coverage (0..1) of filled pixel-space polygons."""
    w, h = size
    ss = SUPERSAMPLE
    img = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(img)
    for poly in polys:
        draw.polygon([(x * ss, y * ss) for x, y in poly], fill=255)
    return np.asarray(img.reduce(ss), dtype=np.float64) / 255.0


def line_mask(size: tuple[int, int], lines: list[list[Point]], width: float,
              dash: float = 0.0) -> np.ndarray:
    """Anti-aliased coverage of pixel-space polylines (optionally dashed, dash length in px)."""
    w, h = size
    ss = SUPERSAMPLE
    img = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(img)
    lw = max(1, int(round(width * ss)))
    for line in lines:
        pts = [(x * ss, y * ss) for x, y in line]
        if dash <= 0:
            draw.line(pts, fill=255, width=lw, joint="curve")
            continue
        # Dashed: walk along the polyline, drawing every other dash.
        on, left = True, dash * ss
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            seg = math.hypot(x1 - x0, y1 - y0)
            t = 0.0
            while t < seg:
                step = min(left, seg - t)
                if on:
                    a, b = t / seg, (t + step) / seg
                    draw.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)),
                               (x0 + b * (x1 - x0), y0 + b * (y1 - y0))], fill=255, width=lw)
                t += step
                left -= step
                if left <= 1e-9:
                    on, left = not on, dash * ss
    return np.asarray(img.reduce(ss), dtype=np.float64) / 255.0


# --------------------------------------------------------------------------------------------
# Garments, described in garment units (u to the image right, v down; body half-width = 1,
# v = 0 at the shoulder line). Drawn in painter's order.
# --------------------------------------------------------------------------------------------

@dataclass
class Part:
    name: str
    poly: Poly
    tone: float = 1.0                      # brightness of the fabric relative to the garment colour
    colour: tuple[int, int, int] | None = None   # own colour (badge, hanger, cords...)
    texture: str = "knit"                  # knit | rib | twill | jersey | smooth | metal
    puff: float = 0.12                     # how rounded the part looks (blur radius, units)
    rounding: int = 2                      # corner-cutting iterations
    lift: float = 1.0                      # relief amplitude multiplier


@dataclass
class Garment:
    colour: tuple[int, int, int]
    parts: list[Part]
    seams: list[Poly] = field(default_factory=list)       # sewn seams (grooves, darker)
    stitches: list[Poly] = field(default_factory=list)    # visible top-stitching (dashed)
    openings: list[Poly] = field(default_factory=list)    # pocket mouths (deep dark lines)
    kind: str = "hoodie"                                  # for the fold generator
    sheen: float = 0.0                                    # specular strength (nylon, satin)


def badge(cx: float, cy: float, w: float, h: float, style: str) -> list[Part]:
    """A small brand badge: a coloured patch with an emblem."""
    if style == "compass":     # black patch, yellow-green roundel (a sportswear sleeve badge)
        return [Part("badge", rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                     colour=(28, 28, 26), texture="smooth", puff=0.015, rounding=1, lift=0.6),
                Part("badge_roundel", ellipse(cx, cy, h * 0.3, h * 0.3, 20),
                     colour=(196, 178, 52), texture="smooth", puff=0.01, rounding=0, lift=0.3)]
    if style == "orange":      # orange woven label with a white bar
        return [Part("badge", rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                     colour=(222, 104, 36), texture="smooth", puff=0.012, rounding=1, lift=0.5),
                Part("badge_mark", rect(cx - w * 0.3, cy - h * 0.12, cx + w * 0.3, cy + h * 0.12),
                     colour=(244, 236, 220), texture="smooth", puff=0.008, rounding=0, lift=0.2)]
    if style == "red":         # red rubber patch with a white ring
        return [Part("badge", rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                     colour=(178, 34, 40), texture="smooth", puff=0.012, rounding=1, lift=0.5),
                Part("badge_ring", ellipse(cx, cy, h * 0.32, h * 0.32, 20),
                     colour=(236, 232, 226), texture="smooth", puff=0.006, rounding=0, lift=0.2),
                Part("badge_dot", ellipse(cx, cy, h * 0.18, h * 0.18, 16),
                     colour=(178, 34, 40), texture="smooth", puff=0.006, rounding=0, lift=0.2)]
    # "navy": a navy woven tab with an off-white letter-like mark
    return [Part("badge", rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                 colour=(36, 44, 84), texture="smooth", puff=0.012, rounding=1, lift=0.5),
            Part("badge_mark", [(cx - w * 0.25, cy + h * 0.25), (cx, cy - h * 0.3),
                                (cx + w * 0.25, cy + h * 0.25), (cx + w * 0.12, cy + h * 0.25),
                                (cx, cy - h * 0.02), (cx - w * 0.12, cy + h * 0.25)],
                 colour=(236, 228, 206), texture="smooth", puff=0.006, rounding=0, lift=0.2)]


def long_sleeve_hanging() -> Poly:
    """Image-left long sleeve hanging along the body (on a hanger, or the house flat lay)."""
    # The inner edge overlaps the body a little so that no background shows at the armhole.
    return [(-0.88, 0.0), (-1.12, 0.1), (-1.28, 0.3), (-1.38, 0.7), (-1.42, 1.6), (-1.44, 2.28),
            (-1.14, 2.3), (-1.1, 1.6), (-1.01, 0.95), (-0.9, 0.55)]


def long_sleeve_cuff() -> Poly:
    return [(-1.45, 2.26), (-1.12, 2.28), (-1.14, 2.5), (-1.43, 2.5)]


def hoodie(colour, view: str, logo: str | None, logo_at: Point = (0.0, 0.5)) -> Garment:
    """A pull-over hoodie: hood, raglan sleeves, kangaroo pocket, drawstrings, ribbed hem."""
    body = [(-0.94, 0.04), (-0.5, -0.04), (0.5, -0.04), (0.94, 0.04), (1.0, 0.6),
            (1.03, 2.32), (-1.03, 2.32), (-1.0, 0.6)]
    hem = [(-1.02, 2.3), (1.02, 2.3), (0.98, 2.56), (-0.98, 2.56)]
    parts: list[Part] = []
    seams: list[Poly] = []
    stitches: list[Poly] = [[(-1.0, 2.28), (1.0, 2.28)]]
    openings: list[Poly] = []
    if view == "face":
        parts.append(Part("hood_back", [(-0.62, 0.12), (-0.6, -0.16), (-0.42, -0.34), (0, -0.4),
                                        (0.42, -0.34), (0.6, -0.16), (0.62, 0.12)], puff=0.14))
    parts.append(Part("body", body, puff=0.22))
    for side in (1, -1):
        flip = (lambda p: p) if side == 1 else mirror
        parts.append(Part("sleeve", flip(long_sleeve_hanging()), puff=0.14))
        parts.append(Part("cuff", flip(long_sleeve_cuff()), tone=0.94, texture="rib", puff=0.06))
        seams.append(flip([(-0.46, -0.02), (-0.7, 0.22), (-0.94, 0.55)]))     # raglan seam
        seams.append(flip([(-1.44, 2.28), (-1.13, 2.3)]))                     # cuff seam
    parts.append(Part("hem", hem, tone=0.94, texture="rib", puff=0.06))
    seams.append([(-1.02, 2.31), (1.02, 2.31)])
    if view == "face":
        parts.append(Part("hood_inside", [(-0.42, -0.1), (0.42, -0.1), (0.03, 0.38), (-0.03, 0.38)],
                          tone=0.5, puff=0.08, lift=0.6))
        parts.append(Part("hood_rim_l", [(-0.56, -0.08), (-0.4, -0.14), (0.06, 0.36), (0.0, 0.42)],
                          tone=1.02, puff=0.05))
        parts.append(Part("hood_rim_r", [(0.56, -0.08), (0.4, -0.14), (-0.06, 0.36), (0.0, 0.42)],
                          tone=1.0, puff=0.05))
        pocket = [(-0.58, 1.5), (0.58, 1.5), (0.62, 1.56), (0.8, 2.02), (0.8, 2.26),
                  (-0.8, 2.26), (-0.8, 2.02), (-0.62, 1.56)]
        parts.append(Part("pocket", pocket, puff=0.07, lift=0.7))
        stitches.append([(-0.56, 1.53), (0.56, 1.53)])
        openings.append(bezier((-0.62, 1.56), (-0.74, 1.74), (-0.8, 2.02)))
        openings.append(bezier((0.62, 1.56), (0.74, 1.74), (0.8, 2.02)))
        for side in (-1, 1):     # drawstrings with metal tips
            cord = [(side * 0.13, 0.22), (side * 0.15, 0.55), (side * 0.14, 0.9)]
            parts.append(Part("cord", _thicken(cord, 0.022), tone=1.12, texture="smooth",
                              puff=0.012, rounding=0, lift=0.8))
            parts.append(Part("aglet", rect(side * 0.14 - 0.02, 0.9, side * 0.14 + 0.02, 0.99),
                              colour=(168, 166, 160), texture="metal", puff=0.01, rounding=0))
    else:
        hood = [(-0.55, 0.04), (-0.6, -0.12), (-0.5, -0.3), (-0.26, -0.4), (0, -0.42),
                (0.26, -0.4), (0.5, -0.3), (0.6, -0.12), (0.55, 0.04), (0.57, 0.45),
                (0.44, 0.8), (0.18, 1.0), (0, 1.03), (-0.18, 1.0), (-0.44, 0.8), (-0.57, 0.45)]
        parts.append(Part("hood", hood, puff=0.12, lift=1.1))
        seams.append(bezier((0, -0.37), (0.02, 0.35), (0, 1.04)))
    if logo and view == "face":
        parts.extend(badge(logo_at[0], logo_at[1], 0.2, 0.12, logo))
    return Garment(colour, parts, seams, stitches, openings, kind="hanging")


def crew(colour, view: str, logo: str | None, sleeves: str = "long", texture: str = "knit",
         logo_at: Point = (0.0, 0.45)) -> Garment:
    """A crew-neck sweatshirt/sweater (long sleeves) or t-shirt (short sleeves)."""
    neck_w = 0.3 if sleeves == "long" else 0.32
    body = [(-0.93, 0.03), (-neck_w, -0.07), (neck_w, -0.07), (0.93, 0.03), (1.0, 0.7),
            (1.02, 2.38), (-1.02, 2.38), (-1.0, 0.7)]
    parts: list[Part] = [Part("body", body, puff=0.2, texture=texture)]
    seams: list[Poly] = []
    stitches: list[Poly] = []
    for side in (1, -1):
        flip = (lambda p: p) if side == 1 else mirror
        if sleeves == "long":
            parts.append(Part("sleeve", flip(long_sleeve_hanging()), puff=0.13, texture=texture))
            parts.append(Part("cuff", flip(long_sleeve_cuff()), tone=0.95, texture="rib", puff=0.05))
            seams.append(flip([(-1.44, 2.28), (-1.13, 2.3)]))
            seams.append(flip(bezier((-0.93, 0.03), (-1.02, 0.3), (-1.0, 0.62))))
        else:
            sleeve = [(-0.87, 0.01), (-1.22, 0.14), (-1.6, 0.62), (-1.38, 0.9), (-0.97, 0.76)]
            parts.append(Part("sleeve", flip(sleeve), puff=0.1, texture=texture))
            stitches.append(flip([(-1.55, 0.67), (-1.36, 0.84)]))
            seams.append(flip(bezier((-0.93, 0.03), (-1.03, 0.4), (-1.04, 0.74))))
        seams.append(flip([(-neck_w, -0.07), (-0.93, 0.03)]))                 # shoulder seam
    if sleeves == "long":
        parts.append(Part("hem", rect(-1.0, 2.36, 1.0, 2.6), tone=0.95, texture="rib", puff=0.05))
        seams.append([(-1.01, 2.37), (1.01, 2.37)])
    else:
        stitches.append([(-1.0, 2.3), (1.0, 2.3)])
        stitches.append([(-1.0, 2.33), (1.0, 2.33)])
    if view == "face":
        inside = bezier((-neck_w, -0.07), (0, 0.3), (neck_w, -0.07), 16)
        parts.append(Part("neck_inside", inside, tone=0.6, puff=0.05, lift=0.5, rounding=1))
        outer = bezier((-neck_w - 0.02, -0.08), (0, 0.36), (neck_w + 0.02, -0.08), 16)
        inner = bezier((neck_w - 0.06, -0.06), (0, 0.22), (-neck_w + 0.06, -0.06), 16)
        parts.append(Part("collar", outer + inner, tone=0.96, texture="rib", puff=0.03, rounding=1))
        if logo:
            parts.extend(badge(logo_at[0], logo_at[1], 0.2, 0.12, logo))
    else:
        collar = [(-neck_w - 0.02, -0.09), (neck_w + 0.02, -0.09), (neck_w - 0.02, -0.0),
                  (-neck_w + 0.02, -0.0)]
        parts.append(Part("collar", collar, tone=0.96, texture="rib", puff=0.03, rounding=1))
    kind = "flat" if sleeves == "short" else "hanging"
    return Garment(colour, parts, seams, stitches, [], kind=kind)


def jacket(colour, view: str, logo: str | None) -> Garment:
    """A zip jacket in twill: stand collar, zip, zipped chest pocket, welt pockets, sleeve badge."""
    body = [(-0.95, 0.04), (-0.36, -0.05), (0.36, -0.05), (0.95, 0.04), (1.02, 0.7),
            (1.05, 2.2), (-1.05, 2.2), (-1.02, 0.7)]
    sleeve = [(-0.89, 0.01), (-1.24, 0.18), (-1.46, 0.7), (-1.56, 1.6), (-1.6, 2.22),
              (-1.27, 2.26), (-1.2, 1.6), (-1.03, 1.0), (-0.93, 0.6)]
    parts = [Part("body", body, puff=0.18, texture="twill")]
    seams: list[Poly] = []
    stitches: list[Poly] = []
    openings: list[Poly] = []
    for side in (1, -1):
        flip = (lambda p: p) if side == 1 else mirror
        parts.append(Part("sleeve", flip(sleeve), puff=0.12, texture="twill"))
        parts.append(Part("cuff", flip([(-1.61, 2.2), (-1.26, 2.24), (-1.27, 2.36), (-1.6, 2.34)]),
                          tone=0.93, texture="twill", puff=0.04))
        seams.append(flip(bezier((-0.95, 0.04), (-1.06, 0.35), (-0.98, 0.6))))
        seams.append(flip([(-0.36, -0.05), (-0.95, 0.04)]))
        stitches.append(flip([(-1.6, 2.18), (-1.27, 2.22)]))
    parts.append(Part("hem", rect(-1.05, 2.18, 1.05, 2.34), tone=0.93, texture="twill", puff=0.04))
    stitches.append([(-1.04, 2.2), (1.04, 2.2)])
    if view == "face":
        parts.append(Part("collar_l", [(-0.38, -0.05), (-0.37, -0.27), (0.0, -0.24), (0.0, 0.02)],
                          tone=0.97, texture="twill", puff=0.05))
        parts.append(Part("collar_r", [(0.38, -0.05), (0.37, -0.27), (0.0, -0.24), (0.0, 0.02)],
                          tone=1.0, texture="twill", puff=0.05))
        zip_line = [(0.0, -0.24), (0.0, 2.33)]
        parts.append(Part("zip", _thicken(zip_line, 0.03), colour=(58, 58, 56), texture="metal",
                          puff=0.01, rounding=0, lift=0.5))
        parts.append(Part("puller", rect(-0.03, -0.2, 0.03, -0.05), colour=(150, 150, 146),
                          texture="metal", puff=0.01, rounding=1))
        stitches += [[(-0.05, -0.2), (-0.05, 2.3)], [(0.05, -0.2), (0.05, 2.3)]]
        openings.append([(0.3, 0.42), (0.7, 0.36)])                   # chest pocket zip
        parts.append(Part("pocket_zip", _thicken([(0.3, 0.42), (0.7, 0.36)], 0.018),
                          colour=(58, 58, 56), texture="metal", puff=0.01, rounding=0, lift=0.3))
        for side in (-1, 1):                                          # slanted welt pockets
            openings.append([(side * 0.62, 1.25), (side * 0.78, 1.85)])
            stitches.append([(side * 0.57, 1.25), (side * 0.73, 1.85)])
    else:
        parts.append(Part("collar", [(-0.38, -0.05), (-0.37, -0.27), (0.37, -0.27), (0.38, -0.05)],
                          tone=0.97, texture="twill", puff=0.05))
        seams.append(bezier((-0.97, 0.48), (0, 0.56), (0.97, 0.48)))  # back yoke
        stitches.append(bezier((-0.97, 0.52), (0, 0.6), (0.97, 0.52)))
    if logo:
        u = -1.3 if view == "face" else 1.3     # the wearer's left sleeve
        parts.extend(badge(u, 0.62, 0.2, 0.15, logo))
    return Garment(colour, parts, seams, stitches, openings, kind="flat", sheen=0.08)


def shorts(colour, logo: str | None) -> Garment:
    """Chino/cargo shorts: waistband with loops, fly, slanted pockets, cargo pocket with badge."""
    legs = [(-1.0, 0.16), (1.0, 0.16), (1.06, 0.8), (1.12, 1.62), (0.1, 1.7), (0.02, 0.86),
            (-0.02, 0.86), (-0.1, 1.7), (-1.12, 1.62), (-1.06, 0.8)]
    parts = [Part("legs", legs, puff=0.16, texture="twill"),
             Part("waistband", rect(-1.0, 0.0, 1.0, 0.18), tone=0.96, texture="twill", puff=0.04)]
    for u in (-0.82, -0.4, 0.4, 0.82):
        parts.append(Part("loop", rect(u - 0.04, -0.01, u + 0.04, 0.22), tone=1.02, texture="twill",
                          puff=0.015, rounding=1))
    parts.append(Part("button", ellipse(0.06, 0.09, 0.035, 0.035, 16), colour=(60, 56, 50),
                      texture="metal", puff=0.01, rounding=0))
    cargo = rect(0.6, 0.82, 1.02, 1.32)
    parts.append(Part("cargo", cargo, tone=1.0, texture="twill", puff=0.05, lift=0.7))
    parts.append(Part("flap", rect(0.58, 0.78, 1.04, 0.92), tone=0.98, texture="twill", puff=0.03))
    seams = [[(-1.0, 0.17), (1.0, 0.17)], [(0.0, 0.18), (0.0, 0.84)],
             [(-1.07, 0.2), (-1.12, 1.6)], [(1.07, 0.2), (1.12, 1.6)]]
    stitches = [bezier((0.02, 0.2), (0.16, 0.5), (0.02, 0.7)), [(-1.1, 1.52), (-0.1, 1.6)],
                [(0.1, 1.6), (1.1, 1.52)]]
    openings = [bezier((-0.62, 0.18), (-0.9, 0.32), (-1.04, 0.6)),
                bezier((0.62, 0.18), (0.9, 0.32), (1.04, 0.6))]
    if logo:
        parts.extend(badge(0.81, 1.08, 0.16, 0.12, logo))
    return Garment(colour, parts, seams, stitches, openings, kind="flat")


def trousers(colour, view: str, logo: str | None) -> Garment:
    """Cargo trousers: waistband with loops, fly or back pockets, a cargo pocket with a badge on the
    thigh, cuffed hems; the crotch at v = 1.05, the hem at v = 3.25."""
    legs = [(-1.0, 0.16), (1.0, 0.16), (1.06, 0.8), (1.0, 1.9), (0.92, 3.12), (0.12, 3.12), (0.03, 1.05),
            (-0.03, 1.05), (-0.12, 3.12), (-0.92, 3.12), (-1.0, 1.9), (-1.06, 0.8)]
    parts = [Part("legs", legs, puff=0.16, texture="twill"),
             Part("waistband", rect(-1.0, 0.0, 1.0, 0.18), tone=0.96, texture="twill", puff=0.04)]
    for side in (-1, 1):
        flip = (lambda p: p) if side == 1 else mirror
        parts.append(Part("hem", flip([(-0.93, 3.08), (-0.11, 3.08), (-0.1, 3.26), (-0.94, 3.26)]),
                          tone=0.93, texture="rib", puff=0.04))
    for u in (-0.82, -0.4, 0.4, 0.82):
        parts.append(Part("loop", rect(u - 0.04, -0.01, u + 0.04, 0.22), tone=1.02, texture="twill",
                          puff=0.015, rounding=1))
    seams = [[(-1.0, 0.17), (1.0, 0.17)], [(-1.06, 0.2), (-0.93, 3.1)], [(1.06, 0.2), (0.93, 3.1)],
             [(0.0, 0.18), (0.0, 1.05)]]
    stitches: list[Poly] = []
    openings: list[Poly] = []
    if view == "face":
        parts.append(Part("button", ellipse(0.06, 0.09, 0.035, 0.035, 16), colour=(60, 56, 50),
                          texture="metal", puff=0.01, rounding=0))
        parts.append(Part("cargo", rect(0.48, 1.35, 0.98, 1.95), tone=1.0, texture="twill", puff=0.05, lift=0.7))
        parts.append(Part("flap", rect(0.46, 1.3, 1.0, 1.45), tone=0.98, texture="twill", puff=0.03))
        stitches.append(bezier((0.02, 0.2), (0.16, 0.5), (0.02, 0.8)))
        openings += [bezier((-0.62, 0.18), (-0.9, 0.32), (-1.04, 0.6)),
                     bezier((0.62, 0.18), (0.9, 0.32), (1.04, 0.6))]
        if logo:
            parts.extend(badge(0.73, 1.66, 0.2, 0.14, logo))
    else:
        for side in (-1, 1):                       # two flap back pockets
            parts.append(Part("back_pocket", rect(side * 0.2 if side > 0 else -0.8, 0.4,
                                                  0.8 if side > 0 else -0.2, 0.95), tone=1.0,
                              texture="twill", puff=0.04, lift=0.6))
            parts.append(Part("back_flap", rect(side * 0.18 if side > 0 else -0.82, 0.36,
                                                0.82 if side > 0 else -0.18, 0.5), tone=0.97,
                              texture="twill", puff=0.03))
        seams.append(bezier((-1.03, 0.45), (0, 0.6), (1.03, 0.45)))   # back yoke

    def narrow(poly: Poly) -> Poly:   # drawn 1 unit per hip side, worn slimmer
        return [(0.8 * u, v) for u, v in poly]
    for part in parts:
        part.poly = narrow(part.poly)
    return Garment(colour, parts, [narrow(p) for p in seams], [narrow(p) for p in stitches],
                   [narrow(p) for p in openings], kind="flat")


def trouser_hanger(garment: Garment) -> Garment:
    """The trousers hung by their waistband from a clip hanger: bar and two clips in front."""
    bar = Part("bar", _thicken([(-1.05, -0.04), (1.05, -0.04)], 0.04), colour=(150, 150, 148),
               texture="metal", puff=0.01, rounding=0, lift=0.6)
    clips = [Part("clip", rect(u - 0.07, -0.08, u + 0.07, 0.14), colour=(120, 118, 112), texture="metal",
                  puff=0.01, rounding=1) for u in (-0.78, 0.78)]
    return Garment(garment.colour, list(garment.parts) + [bar] + clips, garment.seams, garment.stitches,
                   garment.openings, garment.kind, garment.sheen)


def hanger_hook(peg: str) -> list[Part]:
    """The visible top of a wire hanger: its hook, hung on a wall peg or a window handle."""
    hook = [(0.0, -0.02), (0.0, -0.3)] + bezier((0.0, -0.3), (0.0, -0.62), (-0.12, -0.62), 8)[1:] + \
        bezier((-0.12, -0.62), (-0.24, -0.6), (-0.22, -0.48), 6)[1:]
    if peg == "handle":       # a cream plastic window handle, pointing down
        holder = [Part("handle_base", rect(-0.17, -0.76, -0.07, -0.6), colour=(226, 218, 196),
                       texture="smooth", puff=0.03, rounding=2),
                  Part("handle", rect(-0.15, -0.66, -0.09, -0.3), colour=(232, 224, 200),
                       texture="smooth", puff=0.025, rounding=2)]
    else:                     # a small chrome wall hook
        holder = [Part("peg", rect(-0.16, -0.7, -0.08, -0.58), colour=(120, 118, 112),
                       texture="metal", puff=0.02, rounding=2)]
    return holder + [Part("hook", _thicken(hook, 0.026), colour=(160, 160, 158), texture="metal",
                          puff=0.01, rounding=0, lift=0.6)]


def with_hanger_bar(garment: Garment) -> Garment:
    """The same garment with the hanger's bar visible inside its neck opening."""
    bar = Part("bar", _thicken([(-0.3, -0.01), (0.3, -0.01)], 0.035), colour=(150, 150, 148),
               texture="metal", puff=0.01, rounding=0, lift=0.6)
    parts = list(garment.parts)
    names = [p.name for p in parts]
    inside = next(n for n in ("neck_inside", "hood_inside") if n in names)
    parts.insert(names.index(inside) + 1, bar)
    return Garment(garment.colour, parts, garment.seams, garment.stitches, garment.openings,
                   garment.kind, garment.sheen)


def _thicken(line: Poly, width: float) -> Poly:
    """Turn a polyline into a thin closed polygon (a cord, a wire)."""
    left, right = [], []
    for i, (x, y) in enumerate(line):
        x0, y0 = line[max(i - 1, 0)]
        x1, y1 = line[min(i + 1, len(line) - 1)]
        dx, dy = x1 - x0, y1 - y0
        n = math.hypot(dx, dy) or 1.0
        nx, ny = -dy / n * width / 2, dx / n * width / 2
        left.append((x + nx, y + ny))
        right.append((x - nx, y - ny))
    return left + right[::-1]


# --------------------------------------------------------------------------------------------
# Rendering a garment: height field -> normals -> lit colour
# --------------------------------------------------------------------------------------------

@dataclass
class Pose:
    cx: float                  # pixel position of the garment origin (neck centre, shoulder line)
    cy: float
    scale: float               # pixels per garment unit
    angle: float = 0.0         # degrees, clockwise on screen
    wobble: float = 0.012      # irregularity of the outline (units)

    def mapper(self, rng: np.random.Generator):
        """Return a function mapping garment units to pixels, with a gentle random wobble."""
        a = math.radians(self.angle)
        ca, sa = math.cos(a), math.sin(a)
        ph = rng.uniform(0, 2 * math.pi, 4)
        k = self.wobble

        def to_px(p: Point) -> Point:
            u, v = p
            u += k * math.sin(2.7 * v + ph[0]) + 0.6 * k * math.sin(6.1 * v + ph[1])
            v += k * math.sin(2.1 * u + ph[2]) + 0.6 * k * math.sin(5.3 * u + ph[3])
            return (self.cx + self.scale * (u * ca - v * sa), self.cy + self.scale * (u * sa + v * ca))
        return to_px


def _texture(kind: str, xx: np.ndarray, yy: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Small relief of the fabric (pixel units of height)."""
    if kind == "rib":
        return 0.55 * np.sin(2 * np.pi * xx / 4.2) + 0.15 * fine
    if kind == "twill":
        return 0.14 * np.sin(2 * np.pi * (xx + yy) / 3.6) + 0.05 * fine
    if kind == "knit":
        return 0.07 * fine + 0.05 * np.sin(2 * np.pi * xx / 2.6)
    if kind == "jersey":
        return 0.05 * fine
    return np.zeros_like(xx)


def _folds(garment: Garment, rng: np.random.Generator, to_px, size, scale: float) -> np.ndarray:
    """Soft ridges and valleys of the cloth, as a height field."""
    strokes: list[tuple[Poly, float, float]] = []   # (pixel polyline, amplitude, blur sigma)
    if garment.kind == "hanging":
        # Gravity: long near-vertical drapes in the body, diagonal pulls from the shoulders,
        # bunching across the sleeves above the cuffs.
        for _ in range(7):
            u = rng.uniform(-0.85, 0.85)
            v0 = rng.uniform(0.9, 1.5)
            line = bezier((u, v0), (u + rng.uniform(-0.15, 0.15), (v0 + 2.3) / 2),
                          (u + rng.uniform(-0.2, 0.2), 2.3))
            strokes.append((line, rng.uniform(-1, 1) * 0.2, 0.07))
        for side in (-1, 1):
            for _ in range(2):
                u0 = side * rng.uniform(0.45, 0.75)
                line = bezier((u0, 0.08), (side * 0.85, 0.5), (side * rng.uniform(0.6, 0.95), 1.1))
                strokes.append((line, rng.uniform(0.05, 0.1), 0.06))
            for _ in range(3):
                v = rng.uniform(1.5, 2.15)
                line = [(side * 1.42, v), (side * 1.12, v + rng.uniform(-0.08, 0.08))]
                strokes.append((line, rng.uniform(-1, 1) * 0.12, 0.035))
    else:
        # Flat lay: a few long diagonal creases and some small rumples.
        for _ in range(6):
            p0 = (rng.uniform(-1, 1), rng.uniform(0.1, 2.2))
            ang = rng.uniform(-0.8, 0.8) + (math.pi / 2 if rng.random() < 0.5 else 0)
            ln = rng.uniform(0.4, 1.1)
            p2 = (p0[0] + ln * math.cos(ang), p0[1] + ln * math.sin(ang))
            p1 = ((p0[0] + p2[0]) / 2 + rng.uniform(-0.1, 0.1), (p0[1] + p2[1]) / 2)
            strokes.append((bezier(p0, p1, p2), rng.uniform(-1, 1) * 0.08, 0.06))
    h = np.zeros((size[1], size[0]))
    for line, amp, sig in strokes:
        m = line_mask(size, [[to_px(p) for p in line]], width=max(2.0, sig * scale * 0.6))
        h += amp * scale * blur(m, sig * scale)
    return h


def render_garment(garment: Garment, pose: Pose, size: tuple[int, int], rng: np.random.Generator,
                   light: tuple[float, float, float] = (-0.45, -0.6, 0.66),
                   behind: tuple[Part, ...] = (), shadow_fill: float = 0.45,
                   texture_gain: float = 1.0, fold_gain: float = 1.0, mottle: float = 0.025):
    """Render a garment; returns (rgb float HxWx3 in 0..1, alpha HxW)."""
    w, h = size
    to_px = pose.mapper(rng)
    s = pose.scale
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    fine = blur(rng.standard_normal((h, w)), 0.7)
    fine /= fine.std() + 1e-9

    height = np.zeros((h, w))
    albedo = np.zeros((h, w, 3))
    alpha = np.zeros((h, w))
    metal = np.zeros((h, w))
    base = np.array(garment.colour, dtype=np.float64) / 255.0
    for part in list(behind) + garment.parts:
        pts = chaikin(densify(part.poly, 0.05), part.rounding) if part.rounding else part.poly
        m = poly_mask(size, [[to_px(p) for p in pts]])
        if m.max() == 0:
            continue
        puff = blur(m, part.puff * s)
        relief = part.lift * 0.3 * part.puff * s * np.sqrt(np.clip(puff, 0, 1))
        relief += texture_gain * _texture(part.texture, xx, yy, fine)
        height = height * (1 - m) + relief * m
        col = np.array(part.colour, dtype=np.float64) / 255.0 if part.colour else base * part.tone
        albedo = albedo * (1 - m[..., None]) + col * m[..., None]
        metal = metal * (1 - m) + (1.0 if part.texture == "metal" else 0.0) * m
        alpha = np.maximum(alpha, m)

    height += fold_gain * _folds(garment, rng, to_px, size, s) * alpha
    height += 0.12 * s * np.sqrt(blur(alpha, 0.35 * s)) * alpha     # the garment's overall volume
    # Seams: a groove and a slightly darker thread line; top-stitching: a dashed thread line.
    seam = line_mask(size, [[to_px(p) for p in chaikin(l, 1, closed=False)] for l in garment.seams],
                     width=1.4)
    height -= 0.9 * blur(seam, 1.2) * s / 100
    stitch = line_mask(size, [[to_px(p) for p in l] for l in garment.stitches], width=1.1,
                       dash=max(2.5, s * 0.018))
    opening = line_mask(size, [[to_px(p) for p in l] for l in garment.openings], width=2.2)
    height -= 2.5 * blur(opening, 2.0) * s / 100

    # Colour unevenness of real cloth (dye, wear) and the lighting.
    albedo *= (1 + mottle * smooth_noise(rng, (h, w), 90))[..., None]
    albedo *= (1 - 0.2 * seam - 0.12 * stitch - 0.45 * opening)[..., None]

    gy, gx = np.gradient(height)
    norm = np.sqrt(gx * gx + gy * gy + 1)
    lx, ly, lz = light
    ll = math.sqrt(lx * lx + ly * ly + lz * lz)
    lx, ly, lz = lx / ll, ly / ll, lz / ll
    ndotl = (-gx * lx - gy * ly + lz) / norm
    diffuse = np.clip(ndotl, 0, None) / lz
    occlusion = np.clip(blur(height, 0.08 * s) - height, 0, None) / (0.05 * s)
    shade = (shadow_fill + (1 - shadow_fill) * diffuse) * (1 - 0.35 * np.clip(occlusion, 0, 1))
    # Specular highlights (metal parts; a faint sheen on technical fabrics).
    hx, hy, hz = lx, ly, lz + 1
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    spec = np.clip((-gx * hx - gy * hy + hz) / (norm * hn), 0, 1)
    spec = (metal * 0.6 * spec ** 30 + garment.sheen * spec ** 8 * (1 - metal))[..., None]
    rgb = np.clip(albedo * shade[..., None] + spec, 0, 1)
    return rgb, alpha


# --------------------------------------------------------------------------------------------
# Backgrounds (float RGB 0..1) and the phone camera
# --------------------------------------------------------------------------------------------

def light_falloff(size, centre: Point, strength: float, vignette: float) -> np.ndarray:
    """Uneven room light: brighter near `centre` (fractions of the frame), darker corners."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.hypot(xx / w - centre[0], yy / h - centre[1])
    r = np.hypot((xx / w - 0.5) * 1.2, yy / h - 0.5)
    return (1 - strength * d) * (1 - vignette * r ** 2.2)


def plain_backdrop(size, rng, colour=(238, 235, 228), light_at=(0.15, 0.1), surface="wall"):
    """An off-white wall or sheet, unevenly lit, with a faint surface texture."""
    w, h = size
    base = np.array(colour, dtype=np.float64) / 255.0
    lum = light_falloff(size, light_at, 0.1, 0.22) * (1 + 0.012 * smooth_noise(rng, (h, w), 160))
    if surface == "wall":      # fine plaster stipple
        lum *= 1 + 0.008 * blur(rng.standard_normal((h, w)), 1.2) / 0.25
    else:                      # a sheet: a few very soft wrinkles, shaded like relief
        relief = 12 * smooth_noise(rng, (h, w), 180) + 3 * smooth_noise(rng, (h, w), 60)
        gy, gx = np.gradient(relief)
        lum *= 1 + 0.1 * (-0.6 * gx - 0.8 * gy)
    tint = 1 + 0.01 * smooth_noise(rng, (h, w), 300)[..., None] * np.array([1.0, 0.2, -1.0])
    return np.clip(base * lum[..., None] * tint, 0, 1)


def window_and_wall(size, rng, split: int):
    """A bright window (panes, PVC frame bars) on the left, a beige wall with a frieze on the right."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # Window panes: overexposed sky, hazy blurred shapes outside, a grey sheen across the glass.
    pane = np.ones((h, w, 3)) * np.array([0.9, 0.92, 0.92])
    pane += (0.08 * (1 - yy / h))[..., None]
    outside = np.zeros((h, w))
    for _ in range(5):   # blurred trees/buildings
        cx, cy = rng.uniform(0, split), rng.uniform(0.45 * h, 1.0 * h)
        outside += np.exp(-(((xx - cx) / rng.uniform(60, 140)) ** 2 + ((yy - cy) / rng.uniform(80, 200)) ** 2))
    outside = np.clip(outside, 0, 1)
    pane = pane * (1 - 0.35 * outside[..., None]) + 0.35 * outside[..., None] * np.array([0.52, 0.6, 0.45])
    pane *= (1 - 0.08 * np.clip(smooth_noise(rng, (h, w), 120), -1, 2))[..., None]     # dirty glass
    specks = (blur((rng.random((h, w)) > 0.9996).astype(np.float64), 1.0) * 5).clip(0, 1)
    pane *= (1 - 0.25 * specks)[..., None]
    img = pane

    # Wall: warm beige with a stippled paint texture, darker away from the window.
    wall_col = np.array([214, 195, 158]) / 255.0
    stipple = blur(rng.standard_normal((h, w)), 1.6)
    stipple = stipple / (stipple.std() + 1e-9)
    wall_l = (1.05 - 0.22 * (xx - split) / (w - split)) * (1 + 0.035 * stipple) * \
        (1 - 0.12 * (yy / h) ** 2)
    wall = wall_col * wall_l[..., None]
    # A frieze band and wainscot panels on the lower part of the wall.
    band0, band1 = int(0.69 * h), int(0.77 * h)
    leaves = []
    for i in range(8):
        cx = split + 40 + i * 70
        leaves.append(ellipse(cx, (band0 + band1) / 2, 24, 11, 16))
    frieze_mask = poly_mask(size, [[(x, y + 0.35 * (x - lx0)) for x, y in leaf]
                                   for leaf in leaves for lx0 in [leaf[0][0] - 24]])
    band = ((yy >= band0) & (yy < band1)).astype(np.float64)
    wall = wall * (1 - band[..., None]) + band[..., None] * np.array([0.9, 0.86, 0.78]) * wall_l[..., None]
    wall = wall * (1 - (frieze_mask * band)[..., None]) + \
        (frieze_mask * band)[..., None] * np.array([0.62, 0.5, 0.34]) * wall_l[..., None]
    edges = line_mask(size, [[(split, band0), (w, band0)], [(split, band1), (w, band1)]], 2)
    panels = line_mask(size, [[(x, band1), (x, h)] for x in range(split + 90, w, 120)], 2)
    wall *= (1 - 0.25 * edges - 0.3 * panels * (yy > band1))[..., None]
    wall_zone = (xx >= split).astype(np.float64)[..., None]
    img = img * (1 - wall_zone) + wall * wall_zone

    # PVC window frame: the casement bar next to the wall, a thin sash bar, a transom.
    frame = np.array([0.9, 0.89, 0.85])
    bars = [(split - 70, split, "v"), (150, 168, "v"), (int(0.63 * h), int(0.7 * h), "h")]
    for a, b, o in bars:
        coord = xx if o == "v" else yy
        m = ((coord >= a) & (coord < b)).astype(np.float64)
        if o == "h":
            m *= (xx < split)
        t = (coord - a) / max(b - a, 1)
        # Flat PVC profile: a shadowed rebate near the glass, dark joints at both edges.
        shade = 1 - 0.08 * ((t > 0.12) & (t < 0.2)) - 0.25 * ((t < 0.03) | (t > 0.97))
        img = img * (1 - m[..., None]) + m[..., None] * frame * shade[..., None]
    return np.clip(img, 0, 1)


def shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate a 2-D array by whole pixels, filling with zeros (no wrap-around)."""
    out = np.zeros_like(a)
    h, w = a.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        a[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def drop_shadow(bg: np.ndarray, alpha: np.ndarray, offset: Point, sigma: float,
                strength: float) -> np.ndarray:
    """Darken the background under/behind the garment."""
    dx, dy = int(round(offset[0])), int(round(offset[1]))
    shifted = shift(alpha, dx, dy)
    return bg * (1 - strength * blur(shifted, sigma))[..., None]


def phone_camera(rgb: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Lens softness, a little vignetting, sensor noise (luma + blotchy chroma), sharpening."""
    h, w, _ = rgb.shape
    soft = np.stack([blur(rgb[..., c], 0.6) for c in range(3)], axis=-1)
    soft *= light_falloff((w, h), (0.5, 0.5), 0.0, 0.12)[..., None]
    luma = rng.standard_normal((h, w)) * 0.006
    chroma = np.stack([blur(rng.standard_normal((h, w)), 1.5) for _ in range(3)], axis=-1) * 0.01
    out = np.clip(soft + luma[..., None] + chroma, 0, 1)
    img = Image.fromarray((out * 255 + 0.5).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.UnsharpMask(radius=1.4, percent=55, threshold=2))


def jpeg_bytes(img: Image.Image, orientation: int = 1) -> bytes:
    """Encode as an iPhone-like JPEG with EXIF (make, model, orientation, date)."""
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15 Pro"
    exif[0x0112] = orientation
    exif[0x0131] = "17.4.1"
    exif[0x0132] = "2024:05:14 10:32:07"
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True, subsampling=2, exif=exif.tobytes())
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# The samples
# --------------------------------------------------------------------------------------------

NAVY = (28, 34, 70)
BURGUNDY = (110, 34, 46)
OLIVE_KHAKI = (92, 94, 66)
CREAM = (236, 229, 212)
SLATE = (88, 104, 120)
BOTTLE_GREEN = (30, 74, 56)
SAND = (176, 156, 118)
REF_GREY = (150, 152, 154)


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


def photo(name: str, garment: Garment, pose: Pose, backdrop: str, *, hanger: bool = False,
          shadow=((22, 16), 26, 0.32), light_at=(0.15, 0.1),
          bg_colour=(238, 235, 228), light=(-0.45, -0.6, 0.66)) -> Image.Image:
    """Render one upright phone photo."""
    rng = np.random.default_rng(seed_of(name))
    size = PHOTO_SIZE
    if backdrop == "window":
        bg = window_and_wall(size, rng, split=int(pose.cx + 20))
    else:
        bg = plain_backdrop(size, rng, bg_colour, light_at, surface=backdrop)
    behind = tuple(hanger_hook("handle" if backdrop == "window" else "peg")) if hanger else ()
    rgb, alpha = render_garment(garment, pose, size, rng, light=light, behind=behind)
    bg = drop_shadow(bg, alpha, shadow[0], shadow[1], shadow[2])
    if backdrop != "window" and backdrop != "wall":
        bg = drop_shadow(bg, alpha, (2, 3), 4, 0.25)       # contact shadow of a flat lay
    # The room light falls on the garment too.
    glow = light_falloff(size, light_at, 0.12, 0.25)[..., None]
    out = bg * (1 - alpha[..., None]) + rgb * glow * alpha[..., None]
    return phone_camera(out, rng)


def sample_photos() -> dict[str, Image.Image | tuple[Image.Image, int]]:
    """Every sample photo, keyed by its path under photos/."""
    out: dict[str, Image.Image | tuple[Image.Image, int]] = {}

    # L100001-V09A: navy hoodie on a hanger against a plain off-white wall, face and back.
    pose = Pose(cx=452, cy=372, scale=192, angle=0.8)
    out["L100001-V09A/face.jpg"] = photo("L100001-V09A/face", hoodie(NAVY, "face", "orange", (0.42, 0.52)),
                                         pose, "wall", hanger=True)
    out["L100001-V09A/back.jpg"] = photo("L100001-V09A/back", hoodie(NAVY, "back", None),
                                         Pose(cx=446, cy=380, scale=192, angle=-0.6), "wall",
                                         hanger=True)

    # B100004-V20: burgundy t-shirt laid flat on a sheet, face only (named Face.JPG).
    out["B100004-V20/Face.JPG"] = photo(
        "B100004-V20/face", crew(BURGUNDY, "face", "navy", sleeves="short", texture="jersey",
                                 logo_at=(0.45, 0.42)),
        Pose(cx=455, cy=300, scale=232, angle=-2.0), "sheet", shadow=((5, 7), 10, 0.22),
        light_at=(0.3, 0.0), bg_colour=(236, 234, 230), light=(-0.3, -0.5, 0.8))

    # SI-8015-V0029: khaki twill jacket flat, face and back (reference containing a dash).
    jk = dict(shadow=((5, 7), 10, 0.22), light_at=(0.7, 0.05), bg_colour=(235, 233, 229),
              light=(0.35, -0.55, 0.75))
    out["SI-8015-V0029/face.jpg"] = photo("SI-8015-V0029/face", jacket(OLIVE_KHAKI, "face", "compass"),
                                          Pose(cx=450, cy=330, scale=200, angle=1.2), "sheet", **jk)
    out["SI-8015-V0029/back.jpg"] = photo("SI-8015-V0029/back", jacket(OLIVE_KHAKI, "back", "compass"),
                                          Pose(cx=448, cy=335, scale=200, angle=-1.0), "sheet", **jk)

    # W200300-V01: a cream sweater on an off-white sheet: barely darker than the background.
    out["W200300-V01/face.jpg"] = photo(
        "W200300-V01/face", crew(CREAM, "face", None, sleeves="long", texture="knit"),
        Pose(cx=450, cy=300, scale=232, angle=0.5), "sheet", shadow=((6, 9), 12, 0.3),
        light_at=(0.2, 0.0), bg_colour=(250, 249, 246), light=(-0.3, -0.5, 0.8))

    # R300010-V05: slate cargo shorts, shot with the phone sideways (stored rotated, EXIF 6).
    upright = photo("R300010-V05/face", shorts(SLATE, "red"), Pose(cx=450, cy=330, scale=300, angle=-1.5),
                    "sheet", shadow=((5, 7), 10, 0.22), light_at=(0.2, 0.2), bg_colour=(234, 233, 230),
                    light=(-0.3, -0.5, 0.8))
    out["R300010-V05/face.jpg"] = (upright.transpose(Image.Transpose.ROTATE_90), 6)

    # H400020-V12: bottle-green hoodie on a hanger hooked on a window frame, window left, wall right.
    win = dict(shadow=((26, 14), 24, 0.3), light_at=(0.0, 0.3), light=(-0.7, -0.4, 0.6))
    green_face = with_hanger_bar(hoodie(BOTTLE_GREEN, "face", "compass", (-0.4, 0.5)))
    out["H400020-V12/face.jpg"] = photo("H400020-V12/face", green_face,
                                        Pose(cx=468, cy=468, scale=170, angle=1.5), "window",
                                        hanger=True, **win)
    out["H400020-V12/back.jpg"] = photo("H400020-V12/back", hoodie(BOTTLE_GREEN, "back", None),
                                        Pose(cx=470, cy=470, scale=170, angle=-1.0), "window",
                                        hanger=True, **win)
    # T500040-V02: sand cargo trousers on a clip hanger against the wall, face and back.
    trouser_pose = dict(scale=240, wobble=0.01)
    out["T500040-V02/face.jpg"] = photo("T500040-V02/face", trouser_hanger(trousers(SAND, "face", "compass")),
                                        Pose(cx=452, cy=215, angle=0.6, **trouser_pose), "wall", hanger=True)
    out["T500040-V02/back.jpg"] = photo("T500040-V02/back", trouser_hanger(trousers(SAND, "back", None)),
                                        Pose(cx=448, cy=220, angle=-0.5, **trouser_pose), "wall", hanger=True)
    return out


def house_reference(view: str, family: str = "tops") -> Image.Image:
    """A house-style reference: a grey sweatshirt laid flat on exact #F3F3F3, soft contact shadow."""
    rng = np.random.default_rng(seed_of("ref/" + view + ("" if family == "tops" else "/" + family)))
    w, h = REF_SIZE
    if family == "bottoms":
        return _bottoms_reference(view, rng)
    garment = crew(REF_GREY, "face" if view != "back" else "back", "red" if view != "back" else None,
                   sleeves="long", texture="knit", logo_at=(0.0, 0.48))
    if view == "detail":
        # Close crop on the chest: the badge large in the frame, collar and shoulders visible.
        pose = Pose(cx=w / 2, cy=h * 0.5 - 0.48 * 760 + 60, scale=760, wobble=0.004)
        gains = dict(fold_gain=0.35, mottle=0.006)
    else:
        # Tight framing: garment about 75 % of the width, centred.
        scale = 0.75 * w / 2.9
        pose = Pose(cx=w / 2, cy=h / 2 - 1.1 * scale, scale=scale, wobble=0.006)
        gains = dict(fold_gain=0.8, mottle=0.01)
    return _flat_lay(garment, pose, rng, gains)


def _bottoms_reference(view: str, rng: np.random.Generator) -> Image.Image:
    """The house style for bottoms: grey trousers laid flat, legs straight, on exact #F3F3F3."""
    w, h = REF_SIZE
    garment = trousers(REF_GREY, "face" if view != "back" else "back", "red" if view != "back" else None)
    if view == "detail":   # close crop on the thigh's cargo pocket and its badge
        scale = 700
        pose = Pose(cx=w / 2 - 0.8 * 0.73 * scale, cy=h * 0.5 - 1.62 * scale, scale=scale, wobble=0.004)
        gains = dict(fold_gain=0.35, mottle=0.006)
    else:                  # the trousers about 86 % of the height, centred
        scale = 0.86 * h / 3.26
        pose = Pose(cx=w / 2, cy=h / 2 - 1.63 * scale, scale=scale, wobble=0.006)
        gains = dict(fold_gain=0.8, mottle=0.01)
    return _flat_lay(garment, pose, rng, gains)


def _flat_lay(garment: Garment, pose: Pose, rng: np.random.Generator, gains: dict) -> Image.Image:
    w, h = REF_SIZE
    garment.kind = "flat"
    rgb, alpha = render_garment(garment, pose, REF_SIZE, rng, light=(-0.1, -0.5, 0.86),
                                shadow_fill=0.6, texture_gain=0.0, **gains)   # smooth: small PNGs
    # Contact shadow (tight, slightly below) and a faint ambient shadow; exact grey elsewhere.
    shadow = 0.18 * blur(shift(alpha, 0, 5), 5) + 0.07 * blur(alpha, 18)
    bg = HOUSE_GREY / 255.0 * (1 - shadow)
    out = bg[..., None] * (1 - alpha[..., None]) + rgb * alpha[..., None]
    arr = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    arr[(alpha == 0) & (shadow * HOUSE_GREY < 0.5)] = HOUSE_GREY
    return Image.fromarray(arr, "RGB")


def sample_refs() -> dict[str, Image.Image]:
    """One family of house-style references per garment type: refs/tops/, refs/bottoms/."""
    out = {}
    for family in ("tops", "bottoms"):
        out.update({f"{family}/1_face.png": house_reference("face", family),
                    f"{family}/2_back.png": house_reference("back", family),
                    f"{family}/3_detail_logo.png": house_reference("detail", family)})
    return out


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"wrote {path}  ({len(data) / 1024:.0f} KB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="root folder to write photos/ and refs/ into (default: the repo root)")
    args = parser.parse_args(argv)
    total = 0
    for rel, item in sample_photos().items():
        img, orientation = item if isinstance(item, tuple) else (item, 1)
        data = jpeg_bytes(img, orientation)
        write(args.out / "photos" / rel, data)
        total += len(data)
    for rel, img in sample_refs().items():
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=True)
        write(args.out / "refs" / rel, buf.getvalue())
        total += len(buf.getvalue())
    print(f"total {total / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
