#!/usr/bin/env python3
"""Benchmark: a no-op `doit` (everything up to date) on 1,000 and 5,000 synthetic references.

Prints milliseconds per reference for our configuration and, in the same run, for doit's
out-of-the-box configuration (dbm backend, console reporter). Goal: under 0.5 ms per reference,
linear. Usage: python scripts/bench_noop.py [N ...]   (default: 1000 5000)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from catalogue.core.views import VIEW_NAMES  # noqa: E402


def make_project(root: Path, n: int) -> None:
    shutil.copy(REPO / "dodo.py", root / "dodo.py")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "refs").mkdir()
    for view in VIEW_NAMES:
        ref = Image.new("RGB", (64, 80), (243, 243, 243))
        ImageDraw.Draw(ref).rectangle([12, 10, 52, 70], fill=(120, 120, 124))
        ref.save(root / "refs" / f"{view}.png")
    photo = Image.new("RGB", (120, 160), (235, 232, 228))
    ImageDraw.Draw(photo).rectangle([30, 30, 90, 140], fill=(40, 60, 120))
    photo.save(root / "face.jpg", quality=85)
    for i in range(n):
        folder = root / "photos" / f"B{i:06d}-V01"
        folder.mkdir(parents=True)
        os.link(root / "face.jpg", folder / "face.jpg")


def doit(root: Path, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "GENERATOR": "local", "OUTPUT_SIZE": "64x80"}
    env.pop("GEMINI_API_KEY", None)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=root, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"doit {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def median_of(root: Path, runs: int, *args: str) -> float:
    return statistics.median(doit(root, *args) for _ in range(runs))


def main(sizes: list[int]) -> None:
    print(f"{'refs':>6} {'tasks':>6} {'full build':>11} {'no-op ours':>11} {'ms/ref':>7} "
          f"{'no-op doit defaults':>20} {'ms/ref':>7}")
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_project(root, n)
            build = doit(root, "-n", "2")
            ours = median_of(root, 3)
            # doit out of the box: dbm backend, console reporter (first run records its state)
            defaults = ("--backend", "dbm", "--db-file", ".doit-defaults.db", "--reporter", "console")
            doit(root, *defaults)
            plain = median_of(root, 3, *defaults)
            results.append((n, ours, plain))
            print(f"{n:>6} {3 * n:>6} {build:>10.1f}s {ours:>10.2f}s {1000 * ours / n:>7.2f} "
                  f"{plain:>19.2f}s {1000 * plain / n:>7.2f}", flush=True)
    if len(results) >= 2:  # the cost of one more reference, start-up excluded: is it linear?
        (n0, o0, p0), (n1, o1, p1) = results[0], results[-1]
        print(f"marginal cost per reference between {n0} and {n1}: ours {1000 * (o1 - o0) / (n1 - n0):.3f} ms, "
              f"doit defaults {1000 * (p1 - p0) / (n1 - n0):.3f} ms")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 5000])
