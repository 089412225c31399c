"""Micro-benchmark: the field libraries against the hand-written code they replaced.

    python scripts/bench_imaging.py [--repeat 20]

* labelling, hole filling, square dilation/erosion: `scipy.ndimage` (catalogue.imaging.masks)
  against the former numpy run-length labelling and cumulative-sum morphology (copied below);
* CIEDE2000: scikit-image's `deltaE_ciede2000` (catalogue.imaging.colour) against the former
  hand-written formula; CIELAB: ours (kept) against skimage's `rgb2lab` (not adopted);
* end to end: `garment_mask` and `finish` with the old morphology patched back in.

Inputs: the garment masks of the sample photos under photos/ at the work size (plus the same
masks with 2 % salt-and-pepper noise: many small components). Every result is compared with the
old one (identical components, max ΔE difference) and the speed printed as old / new.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skimage.color import rgb2lab  # noqa: E402

from catalogue.core.views import IMAGE_SUFFIXES  # noqa: E402
from catalogue.imaging import colour, finishing, masks  # noqa: E402
from catalogue.imaging.decode import open_image  # noqa: E402

# ----------------------------------------------------------------------------------------------
# The replaced hand-written code (as it was before scipy / scikit-image), the baseline


def old_box_sum(a: np.ndarray, r: int) -> np.ndarray:
    a = a.astype(np.int32)
    for axis in (0, 1):
        b = np.moveaxis(a, axis, 0)
        c = np.cumsum(np.pad(b, [(r + 1, r)] + [(0, 0)] * (b.ndim - 1)), axis=0, dtype=np.int32)
        a = np.moveaxis(c[2 * r + 1:] - c[:-2 * r - 1], 0, axis)
    return a


def old_dilate(mask, r):
    return mask.copy() if r <= 0 else old_box_sum(mask, r) > 0


def old_erode(mask, r):
    return mask.copy() if r <= 0 else old_box_sum(~mask, r) == 0


def old_label(mask: np.ndarray, connectivity: int = 8):
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    if not mask.any():
        return labels, np.zeros(1, dtype=np.int64)
    m = mask.astype(np.int8)
    d = np.diff(np.pad(m, ((0, 0), (1, 1))), axis=1)
    sr, sc = np.nonzero(d == 1)
    er, ec = np.nonzero(d == -1)
    n = sr.size
    stride = w + 2
    skey = sr.astype(np.int64) * stride + sc
    ekey = er.astype(np.int64) * stride + ec
    grow = 1 if connectivity == 8 else 0
    prev_row = sr.astype(np.int64) - 1
    lo = np.searchsorted(ekey, prev_row * stride + sc - grow, side="right")
    hi = np.searchsorted(skey, prev_row * stride + ec + grow, side="left")
    row_lo = np.searchsorted(sr, prev_row, side="left")
    row_hi = np.searchsorted(sr, prev_row, side="right")
    lo = np.maximum(lo, row_lo)
    hi = np.minimum(hi, row_hi)
    counts = np.maximum(hi - lo, 0)
    parent = np.arange(n, dtype=np.int64)
    if counts.sum():
        a = np.repeat(np.arange(n), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        b = np.repeat(lo, counts) + offsets
        while True:
            pa, pb = parent[a], parent[b]
            mn = np.minimum(pa, pb)
            new = parent.copy()
            np.minimum.at(new, pa, mn)
            np.minimum.at(new, pb, mn)
            while True:
                nxt = new[new]
                if np.array_equal(nxt, new):
                    break
                new = nxt
            if np.array_equal(new, parent):
                break
            parent = new
    roots, run_label = np.unique(parent, return_inverse=True)
    run_label = run_label.astype(np.int32) + 1
    lengths = (ec - sc).astype(np.int64)
    sizes = np.bincount(run_label, weights=lengths, minlength=roots.size + 1).astype(np.int64)
    flat = np.zeros(h * w + 1, dtype=np.int32)
    np.add.at(flat, sr.astype(np.int64) * w + sc, run_label)
    np.add.at(flat, er.astype(np.int64) * w + ec, -run_label)
    labels = np.cumsum(flat[:-1], dtype=np.int32).reshape(h, w)
    return labels, sizes


def old_fill_holes(mask, max_size=None):
    bg_labels, sizes = old_label(~mask, connectivity=4)
    outside = np.zeros(sizes.size, dtype=bool)
    outside[masks._border_labels(bg_labels)] = True
    if max_size is not None:
        outside |= sizes > max_size
    outside[0] = False
    return mask | ~outside[bg_labels]


def old_ciede2000(lab1, lab2, kL=1.0, kC=1.0, kH=1.0):
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    C1 = np.hypot(a1, b1)
    C2 = np.hypot(a2, b2)
    Cbar7 = ((C1 + C2) / 2) ** 7
    G = 0.5 * (1 - np.sqrt(Cbar7 / (Cbar7 + 25.0 ** 7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    h1p = np.where((a1p == 0) & (b1 == 0), 0.0, h1p)
    h2p = np.where((a2p == 0) & (b2 == 0), 0.0, h2p)
    dLp = L2 - L1
    dCp = C2p - C1p
    zero = (C1p * C2p) == 0
    dh = h2p - h1p
    dhp = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dhp = np.where(zero, 0.0, dhp)
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dhp) / 2)
    Lbp = (L1 + L2) / 2
    Cbp = (C1p + C2p) / 2
    hsum = h1p + h2p
    hbp = np.where(np.abs(h1p - h2p) <= 180, hsum / 2, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2))
    hbp = np.where(zero, hsum, hbp)
    T = (1 - 0.17 * np.cos(np.radians(hbp - 30)) + 0.24 * np.cos(np.radians(2 * hbp))
         + 0.32 * np.cos(np.radians(3 * hbp + 6)) - 0.20 * np.cos(np.radians(4 * hbp - 63)))
    dtheta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))
    Cbp7 = Cbp ** 7
    RC = 2 * np.sqrt(Cbp7 / (Cbp7 + 25.0 ** 7))
    SL = 1 + 0.015 * (Lbp - 50) ** 2 / np.sqrt(20 + (Lbp - 50) ** 2)
    SC = 1 + 0.045 * Cbp
    SH = 1 + 0.015 * Cbp * T
    RT = -np.sin(np.radians(2 * dtheta)) * RC
    tl, tc, th = dLp / (kL * SL), dCp / (kC * SC), dHp / (kH * SH)
    return np.sqrt(tl ** 2 + tc ** 2 + th ** 2 + RT * tc * th)


# ----------------------------------------------------------------------------------------------

def best_ms(fn, repeat: int) -> tuple[float, float]:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000, statistics.median(times) * 1000


def row(name: str, old, new, repeat: int, same: str) -> None:
    (ob, om), (nb, nm) = best_ms(old, repeat), best_ms(new, repeat)
    print(f"{name:<34} old {ob:7.2f} ms  new {nb:7.2f} ms  ratio {ob / nb:5.1f}x  (median {om / nm:4.1f}x)  {same}")


def sample_masks() -> list[tuple[str, np.ndarray, Image.Image]]:
    out = []
    photos = sorted(p for p in (ROOT / "photos").glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for p in photos[:6]:
        img = open_image(p, max_pixels=60_000_000, max_side=1600)
        m = masks.garment_mask(img).mask
        small = np.asarray(Image.fromarray(m).resize(masks.work_copy(img, masks.WORK_SIDE).size, Image.NEAREST))
        out.append((f"{p.parent.name}/{p.name}", small, img))
    if not out:  # no samples: a synthetic blob
        yy, xx = np.mgrid[0:640, 0:480]
        m = ((xx - 240) ** 2 / 150 ** 2 + (yy - 320) ** 2 / 220 ** 2) < 1
        out.append(("synthetic", m, Image.fromarray(np.where(m[..., None], 40, 243).astype(np.uint8).repeat(3, -1))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    samples = sample_masks()
    print(f"{len(samples)} garment masks from photos/ at the work size (long side {masks.WORK_SIDE}), "
          f"best of {args.repeat}\n")
    results: dict[str, list[tuple[float, float, bool]]] = {}

    def measure(key, old, new, same):
        (ob, _), (nb, _) = best_ms(old, args.repeat), best_ms(new, args.repeat)
        results.setdefault(key, []).append((ob, nb, bool(same)))

    for _, m, _ in samples:
        noisy = m ^ (rng.random(m.shape) < 0.02)
        for kind, a in (("mask", m), ("noisy mask", noisy)):
            for conn in (8, 4):
                (l0, s0), (l1, s1) = old_label(a, conn), masks.label(a, conn)
                measure(f"label {conn}-conn, {kind}", lambda: old_label(a, conn), lambda: masks.label(a, conn),
                        np.array_equal(l0, l1) and np.array_equal(s0, s1))
            measure(f"fill_holes, {kind}", lambda: old_fill_holes(a), lambda: masks.fill_holes(a),
                    np.array_equal(old_fill_holes(a), masks.fill_holes(a)))
            for r in (1, 4, 12):
                measure(f"dilate+erode r={r}, {kind}", lambda: (old_dilate(a, r), old_erode(a, r)),
                        lambda: (masks.dilate(a, r), masks.erode(a, r)),
                        np.array_equal(old_dilate(a, r), masks.dilate(a, r))
                        and np.array_equal(old_erode(a, r), masks.erode(a, r)))
    print(f"{'operation':<34} {'old ms':>8} {'new ms':>8}  ratio old/new (min-max over masks)")
    for key, rows in results.items():
        ob, nb = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        rs = [r[0] / r[1] for r in rows]
        same = "identical" if all(r[2] for r in rows) else "DIFFERENT"
        print(f"{key:<34} {ob:8.2f} {nb:8.2f}  {statistics.median(rs):4.1f}x ({min(rs):.1f}-{max(rs):.1f})  {same}")

    print("\ncolour (200,000 random pixels)")
    px = rng.integers(0, 256, (200_000, 3)).astype(np.uint8)
    px2 = rng.integers(0, 256, (200_000, 3)).astype(np.uint8)
    la, lb = colour.rgb_to_lab(px), colour.rgb_to_lab(px2)
    d = np.abs(old_ciede2000(la, lb) - colour.ciede2000(la, lb)).max()
    row("CIEDE2000 skimage vs old", lambda: old_ciede2000(la, lb), lambda: colour.ciede2000(la, lb), 5,
        f"max |diff| {d:.1e}")
    grey = colour.rgb_to_lab(np.array([243.0, 243, 243]))
    d = np.abs(old_ciede2000(la, grey) - colour.ciede2000(la, grey)).max()
    row("CIEDE2000 against one colour", lambda: old_ciede2000(la, grey), lambda: colour.ciede2000(la, grey), 5,
        f"max |diff| {d:.1e}")
    sk = rgb2lab(px.reshape(-1, 1, 3)).reshape(-1, 3)
    d = np.abs(sk - colour.rgb_to_lab(px)).max()
    row("CIELAB: ours (old) vs skimage (new)", lambda: colour.rgb_to_lab(px), lambda: rgb2lab(px.reshape(-1, 1, 3)),
        5, f"max |diff| {d:.1e}: not adopted (rounded constants)")

    print("\nend to end (old morphology patched back in)")
    img = samples[0][2]
    new_fns = {n: getattr(masks, n) for n in ("label", "dilate", "erode", "fill_holes")}
    old_fns = {"label": old_label, "dilate": old_dilate, "erode": old_erode, "fill_holes": old_fill_holes}
    def patched(fns):
        for mod in (masks, finishing):
            for n, f in fns.items():
                if hasattr(mod, n):
                    setattr(mod, n, f)

    def run(fn, fns):
        patched(fns)
        try:
            return fn()
        finally:
            patched(new_fns)

    same = np.array_equal(run(lambda: masks.garment_mask(img).mask, old_fns), masks.garment_mask(img).mask)
    row("garment_mask", lambda: run(lambda: masks.garment_mask(img), old_fns), lambda: masks.garment_mask(img),
        max(3, args.repeat // 4), "identical" if same else "DIFFERENT")
    out = (864, 1184)
    a0 = np.asarray(run(lambda: finishing.finish(img, out).image, old_fns))
    same = np.array_equal(a0, np.asarray(finishing.finish(img, out).image))
    row("finish", lambda: run(lambda: finishing.finish(img, out), old_fns), lambda: finishing.finish(img, out),
        max(3, args.repeat // 4), "identical" if same else "DIFFERENT")


if __name__ == "__main__":
    main()
