#!/usr/bin/env python3
"""Calibrate the quality gate (`catalogue/qa.py`) on a labelled set of good and bad views.

    python scripts/calibrate_qa.py [--shop ../shared/data/shop] [--no-shop] [--details] [--json out.json]

GOOD cases (should be kept):
  * local    the local renderer's views of the bundled samples (photos/*, refs/*): 1_face, 2_back,
             3_detail_logo, source = the real input (raw photo, or the finished face);
  * hoodie   (shop data) the local renderer's views of the shop's real iPhone photos (navy hoodie
             on a hanger in front of a window: busy background), with the shop's style references;
  * gemini   (shop data) the shop's real, accepted Gemini outputs (outputs/<ref>/{1_face,2_back,
             1_face_2,2_back_2}.png), finished as the pipeline does (`finishing.finish`). Their source
             photos are NOT available, so the `source` is a synthetic phone photo made from the output
             itself: the garment cut out, rotated +-4 degrees, rescaled, moved, on an uneven off-white
             background with noise, its colours changed like a phone's (exposure +-8 %, white balance
             +-3 % per channel), blurred, JPEG. This measures the mask + median + ΔE chain and the margin
             against lighting differences of that size; the true ΔE between a real photo and a real
             Gemini output is not measurable with the data at hand. back_vs_face is measured on the
             real face/back pairs (no synthesis). The detail view is the local renderer's crop of the
             real face (the shop has no Gemini detail outputs).

BAD cases (should be held), generated from every good view of the three families:
  colour_shift (ΔE2000 10, 15, 25 on the garment: hue rotation, tint, lightness), style_copy (the
  style reference's garment, finished, slightly moved and re-lit), blank (grey, 225, white, a faint
  shadow only), wrong_background (225 grey, white, gradients, vignette, warm off-white),
  off_centre (moved 12-20 % of the frame), wrong_scale (x0.5, x1.6), other_garment (another
  reference's view for the same photo), other_back (2_back from another reference: back vs face),
  and the shop's rejected outputs (refs/errors/bad/: bad fold, bad framing).

Prints the confusion matrix per family and failure type, the misclassified cases with their values,
the spread of every check's value on the good cases, and the timing per view.
The shop's data is read only when present; nothing of it is written anywhere.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from catalogue.core.views import VIEW_NAMES  # noqa: E402
from catalogue.generation.local_renderer import render_view  # noqa: E402
from catalogue.imaging import checks as qa  # noqa: E402
from catalogue.imaging.colour import delta_e, lab_to_rgb, rgb_to_lab  # noqa: E402
from catalogue.imaging.decode import HOUSE_GREY, open_image  # noqa: E402
from catalogue.imaging.finishing import finish  # noqa: E402
from catalogue.imaging.masks import dilate, on_grey_mask  # noqa: E402

SIZE = (864, 1184)
MAXPX = 200_000_000
GREY = HOUSE_GREY[0]


@dataclass
class Case:
    label: str                 # "good" | "bad"
    family: str                # local | hoodie | gemini | shop_rejected
    kind: str                  # good kind or failure type
    name: str
    view: str
    image: Image.Image
    source: Image.Image
    style: Image.Image
    face: Image.Image | None = None
    report: qa.QAReport | None = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Image manipulations

def garment_alpha(img: Image.Image, grow: int = 0) -> np.ndarray:
    """Garment (+ its shadow) of a finished view as a float alpha at full size."""
    small = np.asarray(img.convert("RGB").resize((img.width // 2, img.height // 2), Image.BOX))
    m = on_grey_mask(small, level=8.0)
    if grow:
        m = dilate(m, grow)
    a = Image.fromarray(m.astype(np.uint8) * 255, "L").resize(img.size, Image.BILINEAR)
    a = a.filter(ImageFilter.GaussianBlur(1.0))
    return np.asarray(a, dtype=np.float32)[..., None] / 255.0


def phone_photo(view_img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A synthetic phone photo of the garment of a finished view (see the module docstring)."""
    img = view_img.convert("RGB")
    a = garment_alpha(img)[..., 0]
    ys, xs = np.nonzero(a > 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    crop = np.asarray(img, dtype=np.float32)[y0:y1, x0:x1]
    alpha = a[y0:y1, x0:x1]
    gain = rng.uniform(0.92, 1.08)
    wb = rng.uniform(0.97, 1.03, 3)
    crop = np.clip(crop * gain * wb, 0, 255)
    W, H = (900, 1200) if rng.random() < 0.8 else (1200, 900)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.array([(236, 232, 226), (240, 238, 233), (228, 226, 222), (232, 233, 235)][rng.integers(4)], np.float32)
    light = 1.0 - 0.08 * (xx / W) * rng.uniform(0.5, 1.5) - 0.05 * (yy / H)
    vign = 1.0 - 0.06 * (((xx / W - 0.5) ** 2 + (yy / H - 0.5) ** 2) / 0.5)
    bg = base[None, None, :] * (light * vign)[..., None] + rng.normal(0, 2.0, (H, W, 1))
    gw, gh = x1 - x0, y1 - y0
    scale = rng.uniform(0.55, 0.72) * min(W / gw, H / gh)
    g = Image.fromarray(crop.astype(np.uint8)).resize((max(1, int(gw * scale)), max(1, int(gh * scale))), Image.LANCZOS)
    al = Image.fromarray((alpha * 255).astype(np.uint8), "L").resize(g.size, Image.BILINEAR)
    angle = rng.uniform(-4, 4)
    g = g.rotate(angle, Image.BILINEAR, expand=True, fillcolor=(0, 0, 0))
    al = al.rotate(angle, Image.BILINEAR, expand=True, fillcolor=0)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    left = int((W - g.width) / 2 + rng.uniform(-0.05, 0.05) * W)
    top = int((H - g.height) / 2 + rng.uniform(-0.05, 0.05) * H)
    canvas.paste(g, (left, top), al)
    arr = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32)
    arr += rng.normal(0, 2.0, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _median_de(img_a: Image.Image, img_b: Image.Image) -> float:
    ga, gb = qa.flat_lay_garment(img_a), qa.flat_lay_garment(img_b)
    return delta_e(ga.lab, gb.lab) or 0.0


def colour_shift(img: Image.Image, target: float, mode: str) -> tuple[Image.Image, float]:
    """The garment's colours changed so that its median moves by about `target` ΔE2000."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float64)
    a = garment_alpha(img)
    lab = rgb_to_lab(arr)
    g = qa.flat_lay_garment(img)
    chroma = float(np.hypot(*g.lab[1:])) if g.lab is not None else 0.0
    if mode == "hue" and chroma < 12:
        mode = "tint"

    def apply(s: float) -> np.ndarray:
        out = lab.copy()
        if mode == "hue":
            t = math.radians(s)
            A, B = out[..., 1], out[..., 2]
            out[..., 1], out[..., 2] = A * math.cos(t) - B * math.sin(t), A * math.sin(t) + B * math.cos(t)
        elif mode == "tint":
            out[..., 1] += s * 0.8
            out[..., 2] -= s * 0.6
        else:  # light
            sign = 1.0 if g.lab is not None and g.lab[0] < 50 else -1.0
            out[..., 0] = np.clip(out[..., 0] + sign * s, 0, 100)
        rgb = np.clip(lab_to_rgb(out), 0, 255)
        return arr * (1 - a) + rgb * a

    lo, hi = 0.0, 180.0 if mode == "hue" else 80.0
    best = None
    for _ in range(18):
        mid = (lo + hi) / 2
        cand = Image.fromarray(np.clip(np.rint(apply(mid)), 0, 255).astype(np.uint8))
        de = _median_de(img, cand)
        best = (cand, de)
        if de < target:
            lo = mid
        else:
            hi = mid
        if abs(de - target) < 0.3:
            break
    return best


def replace_background(img: Image.Image, kind: str) -> Image.Image:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    a = garment_alpha(img)
    H, W = arr.shape[:2]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    if kind == "grey225":
        bg = np.full((H, W, 3), 225.0)
    elif kind == "white":
        bg = np.full((H, W, 3), 255.0)
    elif kind == "warm":
        bg = np.ones((H, W, 3)) * np.array([246.0, 240.0, 229.0])
    elif kind == "gradient_v":
        bg = np.repeat((222 + 30 * yy / H)[..., None], 3, axis=2)
    elif kind == "gradient_h":
        bg = np.repeat((250 - 22 * xx / W)[..., None], 3, axis=2)
    else:  # vignette
        r2 = ((xx / W - 0.5) ** 2 + (yy / H - 0.5) ** 2) / 0.5
        bg = np.repeat((246 - 30 * r2)[..., None], 3, axis=2)
    shade = np.clip(arr / GREY, 0, 1.2)       # keeps the contact shadow as shading
    out = arr * a + np.clip(bg * shade, 0, 255) * (1 - a)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def replace_garment(img: Image.Image, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0) -> Image.Image:
    """The garment (with its shadow) moved by (dx, dy) shares of the frame and/or rescaled."""
    a = garment_alpha(img, grow=4)[..., 0]
    ys, xs = np.nonzero(a > 0.02)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    g = img.crop((x0, y0, x1, y1))
    al = Image.fromarray((a[y0:y1, x0:x1] * 255).astype(np.uint8), "L")
    if scale != 1.0:
        size = (max(1, int(g.width * scale)), max(1, int(g.height * scale)))
        g, al = g.resize(size, Image.LANCZOS), al.resize(size, Image.BILINEAR)
    W, H = img.size
    cx, cy = (x0 + x1) / 2 + dx * W, (y0 + y1) / 2 + dy * H
    canvas = Image.new("RGB", img.size, HOUSE_GREY)
    canvas.paste(g, (int(cx - g.width / 2), int(cy - g.height / 2)), al)
    return canvas


def jitter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A copy of a flat lay slightly moved and re-lit (a generator re-drawing it)."""
    out = replace_garment(img, rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), rng.uniform(0.95, 1.05))
    arr = np.asarray(out, dtype=np.float32)
    a = garment_alpha(out)
    arr = arr * (1 - a) + np.clip(arr * rng.uniform(0.96, 1.04), 0, 255) * a
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def blank(kind: str) -> Image.Image:
    if kind == "grey":
        return Image.new("RGB", SIZE, HOUSE_GREY)
    if kind == "grey225":
        return Image.new("RGB", SIZE, (225, 225, 225))
    if kind == "white":
        return Image.new("RGB", SIZE, (255, 255, 255))
    arr = np.full((SIZE[1], SIZE[0], 3), float(GREY))
    yy, xx = np.mgrid[0:SIZE[1], 0:SIZE[0]].astype(np.float32)
    arr -= 10 * np.exp(-(((xx - SIZE[0] / 2) / 250) ** 2 + ((yy - SIZE[1] * 0.7) / 30) ** 2))[..., None]
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------------------------
# The labelled set

def _photos(folder: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(folder.iterdir()):
        stem = p.stem.lower()
        if stem in ("face", "1_face"):
            out["face"] = p
        elif stem in ("back", "2_back"):
            out["back"] = p
    return out


def good_local(photos_dir: Path, refs: dict[str, Image.Image]) -> dict[str, dict]:
    """{ref: {view: (image, source)}} rendered by the local renderer from the samples."""
    sets = {}
    for folder in sorted(p for p in photos_dir.iterdir() if p.is_dir() and p.name[0] not in "._"):
        ph = _photos(folder)
        if "face" not in ph:
            continue
        views = {}
        face_src = open_image(ph["face"], max_pixels=MAXPX, max_side=1900)
        face = render_view("1_face", face_src, refs["1_face"], out_size=SIZE).image
        views["1_face"] = (face, face_src)
        if "back" in ph:
            back_src = open_image(ph["back"], max_pixels=MAXPX, max_side=1900)
            views["2_back"] = (render_view("2_back", back_src, refs["2_back"], out_size=SIZE).image, back_src)
        views["3_detail_logo"] = (render_view("3_detail_logo", face, refs["3_detail_logo"], out_size=SIZE).image, face)
        sets[folder.name] = views
    return sets


def build_cases(shop: Path | None, rng: np.random.Generator) -> list[Case]:
    cases: list[Case] = []
    repo_refs = {v: open_image(ROOT / "refs" / f"{v}.png", max_pixels=MAXPX) for v in VIEW_NAMES}
    families: list[tuple[str, dict, dict]] = [("local", good_local(ROOT / "photos", repo_refs), repo_refs)]

    if shop and shop.is_dir():
        shop_refs = {"1_face": open_image(shop / "refs/face.jpg", max_pixels=MAXPX, max_side=1600),
                     "2_back": open_image(shop / "refs/back.jpg", max_pixels=MAXPX, max_side=1600),
                     "3_detail_logo": open_image(shop / "refs/3-detail.jpg", max_pixels=MAXPX, max_side=1600)}
        # Real iPhone photos on a hanger in front of a window (busy background), local renderer.
        hoodie = {}
        fsrc = open_image(shop / "photos/face.jpg", max_pixels=MAXPX, max_side=1900)
        bsrc = open_image(shop / "photos/back.jpg", max_pixels=MAXPX, max_side=1900)
        hface = render_view("1_face", fsrc, shop_refs["1_face"], out_size=SIZE).image
        hoodie["hoodie"] = {
            "1_face": (hface, fsrc),
            "2_back": (render_view("2_back", bsrc, shop_refs["2_back"], out_size=SIZE).image, bsrc),
            "3_detail_logo": (render_view("3_detail_logo", hface, shop_refs["3_detail_logo"], out_size=SIZE).image, hface),
        }
        families.append(("hoodie", hoodie, shop_refs))
        # Real accepted Gemini outputs, finished like the pipeline does; synthetic photos as sources.
        gem = {}
        for d in sorted((shop / "outputs").iterdir()):
            for suffix in ("", "_2"):
                f, b = d / f"1_face{suffix}.png", d / f"2_back{suffix}.png"
                if not f.exists():
                    continue
                face = finish(Image.open(f).convert("RGB"), SIZE).image
                views = {"1_face": (face, phone_photo(face, rng))}
                if b.exists():
                    back = finish(Image.open(b).convert("RGB"), SIZE).image
                    views["2_back"] = (back, phone_photo(back, rng))
                views["3_detail_logo"] = (render_view("3_detail_logo", face, shop_refs["3_detail_logo"],
                                                      out_size=SIZE).image, face)
                gem[f"{d.name}{suffix}"] = views
        families.append(("gemini", gem, shop_refs))

    for family, sets, refs in families:
        names = list(sets)
        for i, ref in enumerate(names):
            views = sets[ref]
            face = views["1_face"][0]
            # another reference (not the second attempt of the same one: "<ref>_2" is the same garment)
            base = ref.removesuffix("_2")
            others = [n for n in names[i + 1:] + names[:i] if n.removesuffix("_2") != base]
            other = sets[others[0]] if others else None
            for view, (img, src) in views.items():
                style = refs[view]
                fc = face if view == "2_back" else None

                def add(label, kind, image, source=src, face=fc, extra=None, _view=view, _style=style, _ref=ref):
                    cases.append(Case(label, family, kind, f"{_ref}/{_view}", _view, image, source, _style, face,
                                      extra=extra or {}))

                add("good", "good", img)
                modes = ("hue", "tint", "light")
                for k, target in enumerate((10.0, 15.0, 25.0)):
                    shifted, de = colour_shift(img, target, modes[(k + i) % 3])
                    add("bad", "colour_shift", shifted, extra={"applied_de": round(de, 1), "mode": modes[(k + i) % 3]})
                styled = finish(style, SIZE).image   # the reference's garment, as the pipeline would finish it
                add("bad", "style_copy", jitter(styled, rng) if view != "3_detail_logo" else styled)
                add("bad", "blank", blank(["grey", "grey225", "white", "shadow"][(i + len(view)) % 4]))
                if view != "3_detail_logo":
                    for kind in ("grey225", "white", "warm", "gradient_v", "gradient_h", "vignette"):
                        add("bad", "wrong_background", replace_background(img, kind), extra={"bg": kind})
                    for dx, dy in ((0.15, 0.0), (0.0, -0.14), (-0.12, 0.12)):
                        add("bad", "off_centre", replace_garment(img, dx, dy), extra={"shift": [dx, dy]})
                    for s in (0.5, 1.6):
                        add("bad", "wrong_scale", replace_garment(img, scale=s), extra={"scale": s})
                if other is not None and view in other:
                    add("bad", "other_garment", other[view][0])
                    if view == "2_back":
                        # the back of another reference, judged against our face (and our photo)
                        add("bad", "other_back", other["2_back"][0], source=src)

    if shop and (shop / "refs/errors/bad").is_dir():
        shop_refs_face = open_image(shop / "refs/face.jpg", max_pixels=MAXPX, max_side=1600)
        shop_refs_back = open_image(shop / "refs/back.jpg", max_pixels=MAXPX, max_side=1600)
        for p in sorted((shop / "refs/errors/bad").glob("*.png")):
            view = "2_back" if "back" in p.name else "1_face"
            img = finish(Image.open(p).convert("RGB"), SIZE).image
            kind = "rejected_bad_fold" if "fold" in p.name else "rejected_framing"
            face = None
            if view == "2_back" and "fold" in p.name:
                face = finish(Image.open(shop / "refs/errors/bad/1200005-V05G-bad-fold-face.png").convert("RGB"), SIZE).image
            cases.append(Case("bad", "shop_rejected", kind, p.name, view, img, phone_photo(img, rng),
                              shop_refs_back if view == "2_back" else shop_refs_face, face))
    return cases


# ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shop", default=str(ROOT.parent / "shared" / "data" / "shop"))
    ap.add_argument("--no-shop", action="store_true")
    ap.add_argument("--details", action="store_true", help="print every case")
    ap.add_argument("--json", help="write every case's report to this file")
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args(argv)
    shop = None if args.no_shop else Path(args.shop)
    if shop and not shop.is_dir():
        print(f"(shop data absent at {shop}: bundled samples only)")
        shop = None

    t0 = time.perf_counter()
    cases = build_cases(shop, np.random.default_rng(args.seed))
    print(f"{len(cases)} cases built in {time.perf_counter() - t0:.0f} s")
    times = defaultdict(list)
    for c in cases:
        qa._CACHE.clear()   # time every view cold (no memoised style / source measure)
        t = time.perf_counter()
        c.report = qa.check_view(c.view, c.image, source=c.source, style=c.style, face=c.face, expected_size=SIZE)
        times[c.view].append(time.perf_counter() - t)

    # Confusion matrix
    table = defaultdict(lambda: [0, 0])   # (label, family, kind) -> [held, kept]
    for c in cases:
        table[(c.label, c.family, c.kind)][0 if c.report.verdict == "held" else 1] += 1
    print("\nlabel  family         kind                  n   held  kept")
    tot = {"good": [0, 0], "bad": [0, 0]}
    for (label, family, kind), (held, kept) in sorted(table.items()):
        print(f"{label:6} {family:14} {kind:20} {held + kept:3} {held:6} {kept:5}")
        tot[label][0] += held
        tot[label][1] += kept
    gh, gk = tot["good"]
    bh, bk = tot["bad"]
    print(f"\nGOOD: kept {gk}, held {gh} ({gh / max(gh + gk, 1):.1%}; goal <= 5 %)")
    print(f"BAD:  held {bh}, kept {bk} (goal: 0 kept)")
    by_kind = defaultdict(lambda: [0, 0])
    for c in cases:
        if c.label == "bad":
            by_kind[c.kind][0 if c.report.verdict == "held" else 1] += 1
    print("bad per failure type: " + ", ".join(f"{k} {h}/{h + m}" for k, (h, m) in sorted(by_kind.items())))

    print("\nMisclassified:")
    for c in cases:
        wrong = (c.label == "good") == (c.report.verdict == "held")
        if wrong or args.details:
            vals = {ch.name: ch.value for ch in c.report.checks if ch.name not in ("decode", "size")}
            mark = "WRONG" if wrong else "     "
            print(f"  {mark} {c.label} {c.family}/{c.kind} {c.name} {c.extra or ''} -> {c.report.verdict}: "
                  f"{[ch.name for ch in c.report.failed]} {vals}")

    print("\nSpread of the values on GOOD cases (min .. max):")
    spread = defaultdict(list)
    for c in cases:
        if c.label != "good":
            continue
        for ch in c.report.checks:
            if isinstance(ch.value, (int, float)):
                spread[(ch.name, c.view == "3_detail_logo")].append(ch.value)
            elif isinstance(ch.value, list) and ch.name in ("border", "style_copy", "framing", "back_vs_face"):
                for j, v in enumerate(ch.value):
                    if isinstance(v, (int, float)):
                        spread[(f"{ch.name}[{j}]", c.view == "3_detail_logo")].append(v)
    for (name, det), vals in sorted(spread.items()):
        print(f"  {name:16} {'detail' if det else 'face/back':9} n={len(vals):3}  {min(vals):8.3f} .. {max(vals):8.3f}")
    print("\nSmallest margin of the colour checks on BAD cases (values):")
    for kind in ("colour_shift", "other_garment", "other_back", "style_copy"):
        vals = [(c.report.check("colour").value, c.name, c.family) for c in cases
                if c.kind == kind and c.report.check("colour") is not None]
        vals = [v for v in vals if v[0] is not None]
        if vals:
            print(f"  {kind:14} colour ΔE min {min(vals)[0]:.1f} ({min(vals)[1]}, {min(vals)[2]})")

    print("\nTiming per view (cold: style and source measured too), ms:")
    for view, ts in sorted(times.items()):
        ts = sorted(ts)
        print(f"  {view:14} n={len(ts):3} median {1000 * ts[len(ts) // 2]:.0f}  p95 {1000 * ts[int(len(ts) * 0.95)]:.0f}  "
              f"max {1000 * ts[-1]:.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps([{"label": c.label, "family": c.family, "kind": c.kind, "name": c.name,
                                                "view": c.view, "extra": c.extra, "qa": c.report.to_json()}
                                               for c in cases], ensure_ascii=False, indent=1))
    return 0 if (bk == 0 and gh <= (gh + gk) / 20) else 1


if __name__ == "__main__":
    sys.exit(main())
