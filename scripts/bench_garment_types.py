#!/usr/bin/env python3
"""Accuracy of the weight-free garment-type inference (imaging/silhouette.py): a benchmark figure.

    python scripts/bench_garment_types.py [--shop ../shared/data/shop]

Prints, per image, the truth, the inferred type, its confidence (unsure under 0.6: the pipeline
flags those INCERTAIN) and the accuracy over: the shop's real style references and photos (truth
from the shop's description: face.jpg, face/face_2.jpg, back.jpg, back/back_2.jpg, 3-detail.jpg,
details/detail_4.jpg, details/details_2.jpg are jackets, face/face_b.jpg, back/back-3.jpg,
details/details_3.jpg trousers, the photos a hoodie; refs/errors/ is left out), the bundled samples
(photos/, refs/), and a synthetic set of flat lays and photos drawn here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from catalogue.imaging.decode import open_image  # noqa: E402
from catalogue.imaging.silhouette import infer_garment  # noqa: E402

SHOP_TRUTH = {
    "refs/face.jpg": "tops", "refs/face/face_2.jpg": "tops", "refs/face/face_b.jpg": "bottoms",
    "refs/back.jpg": "tops", "refs/back/back_2.jpg": "tops", "refs/back/back-3.jpg": "bottoms",
    "refs/3-detail.jpg": "tops", "refs/details/detail_4.jpg": "tops", "refs/details/details_2.jpg": "tops",
    "refs/details/details_3.jpg": "bottoms",
}
SAMPLE_BOTTOMS = ("R300010-V05", "T500040-V02", "bottoms")


def synthetic(out: Path) -> dict[Path, str]:
    rng = np.random.default_rng(12)
    truth = {}
    for i in range(24):
        kind = ("tops", "bottoms")[i % 2]
        w, h = 360, 480
        flat = i % 4 >= 2
        bg = (243, 243, 243) if flat else tuple(int(v) for v in rng.integers(215, 245, 3))
        colour = tuple(int(v) for v in rng.integers(10, 200, 3))
        img = Image.new("RGB", (w, h), bg)
        cx, s = w / 2 + rng.uniform(-20, 20), rng.uniform(0.8, 1.05)
        if kind == "bottoms":
            crotch = rng.uniform(0.35, 0.6)
            poly = [(cx - 0.2 * w * s, 0.08 * h), (cx + 0.2 * w * s, 0.08 * h), (cx + 0.23 * w * s, 0.92 * h),
                    (cx + 0.04 * w * s, 0.92 * h), (cx, crotch * h), (cx - 0.04 * w * s, 0.92 * h),
                    (cx - 0.23 * w * s, 0.92 * h)]
        else:
            poly = [(cx - 0.2 * w * s, 0.2 * h), (cx - 0.42 * w * s, 0.36 * h), (cx - 0.34 * w * s, 0.48 * h),
                    (cx - 0.22 * w * s, 0.4 * h), (cx - 0.22 * w * s, 0.82 * h), (cx + 0.22 * w * s, 0.82 * h),
                    (cx + 0.22 * w * s, 0.4 * h), (cx + 0.34 * w * s, 0.48 * h), (cx + 0.42 * w * s, 0.36 * h),
                    (cx + 0.2 * w * s, 0.2 * h)]
        mask = Image.new("L", (w, h), 0)
        ImageDraw.Draw(mask).polygon(poly, fill=255)
        cloth = np.array(colour)[None, None, :] + rng.normal(0, 0 if flat else 6, (h, w, 1))
        img.paste(Image.fromarray(cloth.clip(0, 255).astype(np.uint8)), mask=mask.filter(ImageFilter.GaussianBlur(1)))
        path = out / f"synthetic_{i:02d}_{kind}.jpg"
        img.save(path, quality=90)
        truth[path] = kind
    return truth


def run(name: str, truth: dict[Path, str]) -> tuple[int, int, int]:
    ok = unsure = 0
    print(f"\n{name}")
    for path, want in truth.items():
        inf = infer_garment(open_image(path, max_pixels=200_000_000, max_side=800))
        good = inf.family == want
        ok += good
        unsure += not inf.sure
        print(f"  {'ok ' if good else 'BAD'} {path.name:28s} truth {want:8s} -> {inf.family:8s} "
              f"{inf.confidence:.2f}{'' if inf.sure else ' (incertain)'}  {inf.mode}")
    print(f"  accuracy {ok}/{len(truth)} = {ok / len(truth):.0%}, unsure {unsure}")
    return ok, len(truth), unsure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shop", type=Path, default=ROOT.parent / "shared" / "data" / "shop")
    args = parser.parse_args()
    totals = []
    if args.shop.is_dir():
        shop = {args.shop / rel: fam for rel, fam in SHOP_TRUTH.items() if (args.shop / rel).exists()}
        shop.update({p: "tops" for p in sorted((args.shop / "photos").iterdir()) if p.is_file()})
        totals.append(run(f"shop ({args.shop})", shop))
    samples = {p: ("bottoms" if any(b in p.parts for b in SAMPLE_BOTTOMS) else "tops")
               for p in sorted((ROOT / "photos").glob("*/*")) + sorted((ROOT / "refs").glob("*/*.png"))
               if p.suffix.lower() in (".jpg", ".png")}
    totals.append(run("bundled samples (photos/, refs/)", samples))
    with tempfile.TemporaryDirectory() as tmp:
        totals.append(run("synthetic (drawn here)", synthetic(Path(tmp))))
    ok, n, unsure = (sum(t[i] for t in totals) for i in range(3))
    print(f"\nall: {ok}/{n} = {ok / n:.0%} right, {unsure} unsure (flagged INCERTAIN)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
