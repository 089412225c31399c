"""Garment masks on synthetic photos: plain, light-on-light, busy, degenerate, large."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from catalogue.imaging.masks import fill_holes, garment_mask, label

W, H = 900, 1200


def shirt_parts(w: int = W, h: int = H) -> dict[str, list[tuple[float, float]]]:
    """Polygons of a long-sleeved top laid flat: body and two sleeves."""
    def p(pts):
        return [(x * w, y * h) for x, y in pts]
    return {
        "body": p([(0.33, 0.22), (0.44, 0.20), (0.50, 0.24), (0.56, 0.20), (0.67, 0.22),
                   (0.68, 0.78), (0.32, 0.78)]),
        "left_sleeve": p([(0.33, 0.22), (0.35, 0.34), (0.22, 0.66), (0.14, 0.64)]),
        "right_sleeve": p([(0.67, 0.22), (0.65, 0.34), (0.78, 0.66), (0.86, 0.64)]),
    }


def draw_mask(parts, keys=None, size=(W, H)) -> np.ndarray:
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    for k, poly in parts.items():
        if keys is None or k in keys:
            d.polygon(poly, fill=255)
    return np.asarray(m) > 127


def gradient_background(rgb, size=(W, H), strength=10.0, seed=0) -> np.ndarray:
    """Plain backdrop lit unevenly (a window on one side) with sensor noise."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = strength * ((xx / w) - 0.5) + 0.5 * strength * ((yy / h) - 0.5) ** 2
    rng = np.random.default_rng(seed)
    bg = np.asarray(rgb, np.float32)[None, None, :] + light[..., None]
    return bg + rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)


def garment_texture(rgb, mask, seed=1, folds=6.0) -> np.ndarray:
    """Fabric colour with soft folds and noise."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = folds * np.sin(xx / 37.0) * np.cos(yy / 53.0)
    rng = np.random.default_rng(seed)
    return np.asarray(rgb, np.float32)[None, None, :] + shade[..., None] + rng.normal(0, 2.0, (h, w, 1))


def compose(bg: np.ndarray, fg: np.ndarray, mask: np.ndarray, shadow: float = 0.0) -> Image.Image:
    out = bg.copy()
    if shadow:
        s = Image.fromarray(mask.astype(np.uint8) * 255, "L").filter(ImageFilter.GaussianBlur(8))
        s = np.roll(np.asarray(s, np.float32) / 255.0, 6, axis=0)
        out *= (1.0 - shadow * s)[..., None]
    out[mask] = fg[mask]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_plain_background_mask_matches_the_drawn_garment():
    parts = shirt_parts()
    truth = draw_mask(parts)
    img = compose(gradient_background((238, 238, 236)), garment_texture((40, 52, 110), truth), truth)
    seg = garment_mask(img)
    assert seg.mask.shape == (H, W)
    assert not seg.uncertain and seg.reason == ""
    assert iou(seg.mask, truth) > 0.95
    assert all(abs(c - 238) < 12 for c in seg.background_rgb)


def test_light_garment_on_light_background_is_whole():
    """Cream top on an off-white table: no holes in the garment, both sleeves there."""
    parts = shirt_parts()
    truth = draw_mask(parts)
    bg = gradient_background((246, 244, 239), strength=8.0)
    fg = garment_texture((236, 229, 214), truth, folds=3.0)
    img = compose(bg, fg, truth, shadow=0.05)
    seg = garment_mask(img)
    m = seg.mask
    assert iou(m, truth) > 0.9
    assert not (fill_holes(m) & ~m).any(), "the garment mask has holes"
    for sleeve in ("left_sleeve", "right_sleeve"):
        s = draw_mask(parts, keys={sleeve}) & ~draw_mask(parts, keys={"body"})
        assert (m & s).sum() / s.sum() > 0.85, f"{sleeve} missing"


def test_busy_background_is_flagged_and_best_effort():
    rng = np.random.default_rng(3)
    bg = np.zeros((H, W, 3), np.float32)
    # window (bright, bluish), wall (beige, textured), a dark frame, a hanger-like bar
    bg[:, : W // 2] = (205, 215, 225)
    bg[:, W // 2:] = (200, 180, 140)
    bg[:, W // 2 - 20: W // 2 + 20] = (60, 55, 50)
    bg[int(H * 0.7):, :] = (150, 120, 90)
    bg += rng.normal(0, 8, (H, W, 1))
    truth = draw_mask(shirt_parts())
    img = compose(bg, garment_texture((170, 30, 40), truth), truth)
    seg = garment_mask(img)
    assert seg.uncertain and seg.busy
    assert "fond chargé" in seg.reason
    assert seg.mask.any()
    assert iou(seg.mask, truth) > 0.7


def test_degenerate_images_never_crash():
    for img in (Image.new("RGB", (300, 400), (243, 243, 243)),
                Image.new("RGB", (5, 3), (10, 10, 10)),
                Image.new("L", (200, 100), 0)):
        seg = garment_mask(img)
        assert seg.uncertain and seg.reason
        assert seg.mask.shape == (img.size[1], img.size[0]) and seg.mask.any()


def test_large_photo_segments_fast():
    w, h = 6000, 4000  # 24 Mpx
    truth_small = draw_mask(shirt_parts(600, 400), size=(600, 400))
    small = compose(gradient_background((240, 240, 240), size=(600, 400)),
                    garment_texture((30, 90, 40), truth_small), truth_small)
    big = small.resize((w, h), Image.BILINEAR)
    seg = garment_mask(big)
    assert seg.mask.shape == (h, w)
    # Measured on a work copy, whatever the photo's size (speed: scripts/bench_renderer.py).
    assert max(seg.stats["work_size"]) <= 640


@pytest.mark.parametrize("conn", [4, 8])
def test_label_counts_components(conn):
    m = np.zeros((20, 20), bool)
    m[2:5, 2:5] = True
    m[5:8, 5:8] = True     # touches the first one only diagonally
    m[10:12, 0:20] = True
    labels, sizes = label(m, connectivity=conn)
    assert labels.max() == (3 if conn == 4 else 2)
    assert sizes[1:].sum() == m.sum()


def _flood_labels(m: np.ndarray, conn: int) -> np.ndarray:
    """Reference labelling: breadth-first flood fill, labels in raster order of first pixel."""
    h, w = m.shape
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)] + ([(-1, -1), (-1, 1), (1, -1), (1, 1)] if conn == 8 else [])
    out = np.zeros((h, w), np.int32)
    n = 0
    for y in range(h):
        for x in range(w):
            if m[y, x] and not out[y, x]:
                n += 1
                out[y, x] = n
                todo = [(y, x)]
                while todo:
                    cy, cx = todo.pop()
                    for dy, dx in steps:
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and m[ny, nx] and not out[ny, nx]:
                            out[ny, nx] = n
                            todo.append((ny, nx))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_label_and_fill_holes_match_a_flood_fill(seed):
    rng = np.random.default_rng(seed)
    m = rng.random((37, 29)) < (0.3 + 0.08 * seed)
    for conn in (4, 8):
        labels, sizes = label(m, connectivity=conn)
        want = _flood_labels(m, conn)
        assert np.array_equal(labels, want)
        assert sizes[0] == 0 and np.array_equal(sizes[1:], np.bincount(want.ravel())[1:])
    bg = _flood_labels(~m, 4)
    outside = set(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]).tolist())
    holes = ~m & ~np.isin(bg, list(outside))
    assert np.array_equal(fill_holes(m), m | holes)
    small = holes & np.isin(bg, [k for k in range(1, bg.max() + 1) if (bg == k).sum() <= 2])
    assert np.array_equal(fill_holes(m, max_size=2), m | small)
