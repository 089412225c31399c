#!/usr/bin/env python
"""Benchmark: real `doit -n 4` runs against the fake Gemini server, at quota speed and no faster.

Each run is a real doit process in a temporary project (the repository's dodo.py, generated
photos: face.jpg + back.jpg per reference, i.e. 3 views), pointed at a fake Gemini whose quota is
a sliding minute counted at both ends (`FakeGemini(quota=(Q, window))`: a request is refused
when Q accepted requests lie in [t - window, t]). `GEMINI_RPM` is set to exactly Q.

Time is scaled so that the whole benchmark takes about 7 minutes: the quota "minute" lasts 30 s
for the 36-view run, 15 s for the 207-view run and 3 s for the spend-capped run, and the pipeline
is told so with GEMINI_QUOTA_WINDOW (its limiter and its 10-minute spend window scale with it);
the image latency (0.5 s) is scaled alike; IMAGE_SIZE=1K keeps the fake's drawing cheap. The
limiter's margin is at least 0.2 s per window (the arrival jitter does not shrink with the
window), and the pipeline's own work after the last answer (a few seconds on 2 cores) does not
scale either, so the scaled ratios are slightly pessimistic.

Printed for each run: makespan (first request to last answer, at the fake), the lower bound
(no schedule that respects the quota can finish earlier: the last of N starts cannot come before
floor((N - 1) / Q) windows, then one latency), their ratio (goal <= 1.10), and the 429 count
(goal 0). Then a spend-capped run: the fake refuses (429, spend cap) any request that would pass
`--cap` USD in its rolling window (10 quota windows = Google's 10 minutes, scaled), the pipeline
runs with GEMINI_SPEND_PER_10MIN = the same cap: it must finish without a 429. Prices are the
real Pro prices; the cap is scaled down with the time (Tier 1: $10 per 10 minutes).

    python scripts/bench_gemini.py                 # 36 and 207 views, then the spend cap
    python scripts/bench_gemini.py --only 36
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakes.gemini_server import DEFAULT_KEY, FakeGemini  # noqa: E402
from helpers import SETTING_NAMES, garment_photo, new_project  # noqa: E402


def make_project(tmp: Path, refs: int) -> Path:
    root = new_project(tmp / "shop")
    for i in range(refs):
        colour = (20 + (37 * i) % 200, 40 + (53 * i) % 150, 90 + (71 * i) % 140)
        garment_photo(root / "photos" / f"REF{i:03d}" / "face.jpg", colour=colour, seed=2 * i)
        garment_photo(root / "photos" / f"REF{i:03d}" / "back.jpg", colour=colour, seed=2 * i + 1, logo=False)
    return root


def run_doit(root: Path, fake: FakeGemini, env_extra: dict, workers: int) -> tuple[int, float, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""), NO_PROXY="127.0.0.1,localhost",
               GEMINI_API_KEY=DEFAULT_KEY, GOOGLE_GEMINI_BASE_URL=fake.url, GEMINI_MAX_WAIT="3600",
               GEMINI_CONCURRENCY=str(workers), IMAGE_SIZE="1K", **env_extra)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "doit", "-n", str(workers)], cwd=root, env=env,
                          capture_output=True, text=True)
    return proc.returncode, time.monotonic() - t0, proc.stdout + proc.stderr


def quota_run(refs: int, quota: int, window: float, latency: float, workers: int) -> dict:
    n = 3 * refs
    with tempfile.TemporaryDirectory() as tmp, FakeGemini(latency=latency, quota=(quota, window)) as fake:
        root = make_project(Path(tmp), refs)
        code, wall, out = run_doit(root, fake, {"GEMINI_RPM": str(quota), "GEMINI_QUOTA_WINDOW": str(window)},
                                   workers)
        starts = sorted(fake.accepted_times)
        makespan = (starts[-1] - starts[0] + latency) if starts else float("nan")
        bound = math.floor((n - 1) / quota) * window + latency
        return {"views": n, "code": code, "wall": wall, "makespan": makespan, "bound": bound,
                "ratio": makespan / bound, "429": len(fake.rejected), "accepted": len(starts),
                "max_in_flight": fake.max_in_flight, "tail": out.strip().splitlines()[-3:]}


def spend_run(refs: int, cap: float, window: float, latency: float, workers: int) -> dict:
    spend_window = 10 * window
    with tempfile.TemporaryDirectory() as tmp, \
            FakeGemini(latency=latency, spend_cap=(cap, spend_window)) as fake:
        root = make_project(Path(tmp), refs)
        code, wall, out = run_doit(root, fake, {"GEMINI_RPM": "1000", "GEMINI_QUOTA_WINDOW": str(window),
                                                "GEMINI_SPEND_PER_10MIN": str(cap)}, workers)
        starts = sorted(fake.accepted_times)
        span = starts[-1] - starts[0] if starts else 0.0
        per_window = max(sum(1 for u in starts[i:] if u <= v + spend_window) for i, v in enumerate(starts))
        return {"views": 3 * refs, "code": code, "wall": wall, "429": len(fake.rejected),
                "accepted": len(starts), "span": span, "most_in_spend_window": per_window,
                "rate_per_10min": (len(starts) - 1) / span * spend_window if span else 0.0,
                "tail": out.strip().splitlines()[-3:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quota", type=int, default=12, help="server quota per (scaled) minute = GEMINI_RPM")
    ap.add_argument("--window", type=float, default=15.0,
                    help="seconds of one quota minute (scaled time) for the 207-view run")
    ap.add_argument("--window-36", type=float, default=30.0,
                    help="the same for the 36-view run (its ratio is more sensitive to the pipeline's "
                         "own few seconds of work after the last answer, which do not scale)")
    ap.add_argument("--latency", type=float, default=0.5, help="real seconds per image (scaled with the window)")
    ap.add_argument("--workers", type=int, default=4, help="doit -n N = GEMINI_CONCURRENCY")
    ap.add_argument("--cap", type=float, default=1.5, help="spend cap per 10 scaled minutes, USD")
    ap.add_argument("--spend-window", type=float, default=3.0,
                    help="seconds of one quota minute in the spend-capped run (its 10 minutes = 10 x this)")
    ap.add_argument("--spend-refs", type=int, default=8, help="references of the spend-capped run")
    ap.add_argument("--only", choices=("36", "207", "spend"), default=None)
    args = ap.parse_args(argv)
    print(f"Time scaled: one quota minute = {args.window_36:g} s (36 views), {args.window:g} s (207 views), "
          f"{args.spend_window:g} s (spend cap); latency {args.latency:g} s scaled alike; quota {args.quota} "
          f"per minute (sliding, both ends) = GEMINI_RPM; doit -n {args.workers}; IMAGE_SIZE=1K.")
    ok = True
    print(f"\n{'views':>6} {'makespan':>9} {'bound':>8} {'ratio':>6} {'429s':>5} {'done':>5} {'exit':>5} {'in flight':>9}")
    for refs in (12, 69):
        if args.only not in (None, str(3 * refs)):
            continue
        window = args.window_36 if refs == 12 else args.window
        scale = 60.0 / window
        latency = args.latency / scale
        r = quota_run(refs, args.quota, window, latency, args.workers)
        print(f"{r['views']:>6} {r['makespan']:>8.1f}s {r['bound']:>7.1f}s {r['ratio']:>6.3f} {r['429']:>5} "
              f"{r['accepted']:>5} {r['code']:>5} {r['max_in_flight']:>9}   (real-time equivalent: "
              f"{r['makespan'] * scale / 60:.1f} min for a bound of {r['bound'] * scale / 60:.1f} min)")
        ok &= r["ratio"] <= 1.10 and r["429"] == 0 and r["accepted"] == r["views"] and r["code"] == 0
        if r["code"] != 0:
            print("   ", *r["tail"], sep="\n    ")
    if args.only in (None, "spend"):
        latency = args.latency * args.spend_window / 60.0
        r = spend_run(args.spend_refs, args.cap, args.spend_window, latency, args.workers)
        print(f"\nSpend cap ${args.cap:g} per {10 * args.spend_window:g} s (10 scaled minutes), Pro prices, "
              f"GEMINI_SPEND_PER_10MIN={args.cap:g}: {r['accepted']}/{r['views']} views in {r['span']:.1f} s, "
              f"{r['429']} 429s, exit {r['code']}; at most {r['most_in_spend_window']} calls in any spend "
              f"window; pace {r['rate_per_10min']:.1f} views per 10 (scaled) minutes.")
        ok &= r["429"] == 0 and r["accepted"] == r["views"] and r["code"] == 0
        if r["code"] != 0:
            print("   ", *r["tail"], sep="\n    ")
    print(f"\nGoal (ratio <= 1.10, zero 429s, every view made, spend cap never hit): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
