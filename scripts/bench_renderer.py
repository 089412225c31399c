"""Time the local renderer (and finishing) per view, with the memory peak.

    python scripts/bench_renderer.py [--repeat 3]

Uses the sample photos under photos/ when there are any (face photo + refs/), else synthesises a
photo of a top on an unevenly lit table and a flat-lay style reference. Sizes: the sample size
(~900x1200) and a 2000x2500 phone-sized input.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalogue.imaging.finishing import finish  # noqa: E402
from catalogue.imaging.decode import open_image  # noqa: E402
from catalogue.core.views import IMAGE_SUFFIXES  # noqa: E402
from catalogue.generation.local_renderer import render_view  # noqa: E402


def synthetic_photo(size: tuple[int, int]) -> Image.Image:
    w, h = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.repeat((236 + 8 * (xx / w - 0.5))[..., None], 3, axis=2) + rng.normal(0, 1.5, (h, w, 1))
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    d.polygon([(0.3 * w, 0.2 * h), (0.7 * w, 0.2 * h), (0.72 * w, 0.75 * h), (0.28 * w, 0.75 * h)], fill=255)
    d.polygon([(0.3 * w, 0.2 * h), (0.12 * w, 0.6 * h), (0.19 * w, 0.62 * h), (0.33 * w, 0.35 * h)], fill=255)
    d.polygon([(0.7 * w, 0.2 * h), (0.88 * w, 0.6 * h), (0.81 * w, 0.62 * h), (0.67 * w, 0.35 * h)], fill=255)
    mask = np.asarray(m) > 127
    arr[mask] = np.array([40, 52, 110], np.float32) + rng.normal(0, 3, (int(mask.sum()), 1))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    ImageDraw.Draw(img).rectangle((0.46 * w, 0.3 * h, 0.54 * w, 0.34 * h), fill=(235, 220, 60))
    return img


def synthetic_ref(size=(900, 1200)) -> Image.Image:
    img = Image.new("RGB", size, (243, 243, 243))
    w, h = size
    ImageDraw.Draw(img).rectangle((0.2 * w, 0.2 * h, 0.8 * w, 0.76 * h), fill=(20, 20, 22))
    return img


def find_samples() -> tuple[Image.Image, Image.Image] | None:
    photos, refs = ROOT / "photos", ROOT / "refs"
    if not photos.is_dir() or not refs.is_dir():
        return None
    face = next((p for p in sorted(photos.glob("*/*")) if p.stem.lower() in ("face", "1_face")
                 and p.suffix.lower() in IMAGE_SUFFIXES), None)
    ref = next((p for p in sorted(refs.rglob("*")) if p.stem.lower() in ("1_face", "face")
                and p.suffix.lower() in IMAGE_SUFFIXES), None)
    if face is None or ref is None:
        return None
    return (open_image(face, max_pixels=60_000_000, max_side=1600),
            open_image(ref, max_pixels=60_000_000, max_side=1600))


def bench(label: str, photo: Image.Image, ref: Image.Image, out_size, repeat: int) -> None:
    detail_ref = Image.new("RGB", (out_size[0], out_size[1]))
    face = render_view("1_face", photo, ref, out_size).image
    steps = {
        "1_face": lambda: render_view("1_face", photo, ref, out_size),
        "3_detail_logo": lambda: render_view("3_detail_logo", face, detail_ref, out_size),
        "finish": lambda: finish(face, out_size),
    }
    for view, step in steps.items():
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        tracemalloc.start()  # a separate traced run: tracing slows numpy down
        step()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        times.sort()
        print(f"{label:<20} {view:<14} best {times[0] * 1000:6.0f} ms   median {times[len(times) // 2] * 1000:6.0f} ms"
              f"   traced peak {peak / 1e6:6.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    samples = find_samples()
    if samples:
        photo, ref = samples
        print(f"sample photo {photo.size[0]}x{photo.size[1]} from photos/, ref {ref.size[0]}x{ref.size[1]}")
    else:
        photo, ref = synthetic_photo((900, 1200)), synthetic_ref()
        print("no photos/ samples: synthetic photo and style reference")
    out_size = (864, 1184)
    small = photo if max(photo.size) <= 1300 else photo.resize((900, round(900 * photo.size[1] / photo.size[0])))
    bench(f"{small.size[0]}x{small.size[1]} input", small, ref, out_size, args.repeat)
    big = photo.resize((2000, 2500), Image.BICUBIC)
    bench("2000x2500 input", big, ref, out_size, args.repeat)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
