#!/usr/bin/env python
"""Benchmark: a season of 207 views (69 references x face, back, detail) against the fake Gemini,
through the Batch API (`GEMINI_MODE=batch`, repeated runs as cron would make them) and
interactively (one run), with real `doit -n 4` processes in temporary projects.

Printed for each mode: paid requests (interactive generateContent, or requests inside jobs), the
other API calls, the cost from the ledger (goal: batch = half of interactive), the runs needed,
and per run the wall time of the doit process, the time the pipeline spends collecting and
submitting (its own « Lots : … en X s » lines), beside the fake's answer delay (a job is over
`--delay` seconds after its creation; the interactive fake answers each image after `--latency`).

    python scripts/bench_batch.py                 # 69 references (207 views)
    python scripts/bench_batch.py --refs 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakes.gemini_server import DEFAULT_KEY, FakeGemini  # noqa: E402
from helpers import SETTING_NAMES  # noqa: E402

from bench_gemini import make_project  # noqa: E402  (the same season: 69 references, face and back)


def env_for(fake: FakeGemini, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(GEMINI_API_KEY=DEFAULT_KEY, GOOGLE_GEMINI_BASE_URL=fake.url, NO_PROXY="127.0.0.1,localhost",
               IMAGE_SIZE="1K", GEMINI_RPM="10000", GEMINI_CONCURRENCY="4", GEMINI_MAX_WAIT="60", **extra)
    return env


def ledger_cost(root: Path) -> tuple[float, int]:
    lines = [json.loads(ln) for ln in (root / "output/.state/ledger.jsonl").read_text().splitlines()]
    ok = [e for e in lines if e["outcome"] == "ok"]
    return sum(e["cost_usd"] for e in ok), len(ok)


def doit(root: Path, env: dict) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "doit", "-n", "4"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=3600)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"doit -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return took, proc.stdout


def bench_batch(refs: int, delay: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, FakeGemini() as fake:
        root = make_project(Path(tmp), refs)
        fake.batch.delay = delay
        env = env_for(fake, GEMINI_MODE="batch")
        runs = []
        while len(runs) < 10:
            took, out = doit(root, env)
            collect = re.search(r"Lots : (\d+) réponse\(s\) relevée\(s\).*\((\d+\.\d+) s\)\.", out)
            submit = re.search(r"Lots : (\d+) lot\(s\) soumis pour (\d+) vue\(s\) en (\d+\.\d+) s", out)
            waiting = re.search(r"échecs?, (\d+) en attente", out)
            made = re.search(r"Terminé : (\d+) générée", out)
            runs.append({"wall": took, "collected": int(collect[1]) if collect else 0,
                         "collect_s": float(collect[2]) if collect else 0.0,
                         "jobs": int(submit[1]) if submit else 0, "submitted": int(submit[2]) if submit else 0,
                         "submit_s": float(submit[3]) if submit else 0.0, "made": int(made[1]) if made else 0,
                         "waiting": int(waiting[1]) if waiting else 0})
            if not waiting:
                break
            time.sleep(delay + 0.2)   # the jobs end `delay` s after their creation
        cost, paid = ledger_cost(root)
        files = [c for c in fake.batch.created if c["file_input"]]
        return {"runs": runs, "cost": cost, "paid": paid, "interactive_requests": len(fake.generate_requests),
                "batch_requests": fake.batch.requests_submitted(), "jobs": len(fake.batch.created),
                "file_jobs": len(files), "api_calls": len(fake.batch.calls),
                "live_jobs": len(fake.batch.live_jobs), "files_left": len(fake.batch.files)}


def bench_interactive(refs: int, latency: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, FakeGemini(latency=latency) as fake:
        root = make_project(Path(tmp), refs)
        took, out = doit(root, env_for(fake))
        cost, paid = ledger_cost(root)
        return {"wall": took, "cost": cost, "paid": paid, "requests": len(fake.generate_requests),
                "made": int(re.search(r"Terminé : (\d+) générée", out)[1])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--refs", type=int, default=69)
    ap.add_argument("--delay", type=float, default=5.0, help="seconds before a job ends (the fake's answer delay)")
    ap.add_argument("--latency", type=float, default=0.5, help="seconds per interactive answer")
    args = ap.parse_args()
    views = args.refs * 3
    print(f"Season: {args.refs} references, {views} views (face, back, detail), IMAGE_SIZE=1K, doit -n 4")
    inter = bench_interactive(args.refs, args.latency)
    print(f"\ninteractive: 1 run, {inter['wall']:.1f} s wall (fake latency {args.latency} s per image, "
          f"4 in flight); {inter['requests']} generateContent requests, {inter['paid']} paid answers, "
          f"ledger cost {inter['cost']:.2f} $, {inter['made']} views made")
    batch = bench_batch(args.refs, args.delay)
    print(f"\nbatch: {len(batch['runs'])} runs, {batch['jobs']} jobs ({batch['file_jobs']} through a JSONL file), "
          f"{batch['batch_requests']} paid requests inside jobs, {batch['interactive_requests']} interactive "
          f"requests, {batch['api_calls']} free Batch/Files API calls; ledger cost {batch['cost']:.2f} $ "
          f"({batch['paid']} paid answers) = {batch['cost'] / inter['cost']:.3f} x interactive; "
          f"left on the server: {batch['live_jobs']} jobs, {batch['files_left']} files")
    print(f"{'run':>4} {'wall s':>7} {'collected':>9} {'collect s':>9} {'made':>5} {'submitted':>9} "
          f"{'jobs':>4} {'submit s':>8} {'waiting':>7}   (fake answer delay {args.delay} s per job)")
    for i, r in enumerate(batch["runs"], 1):
        print(f"{i:>4} {r['wall']:>7.1f} {r['collected']:>9} {r['collect_s']:>9.2f} {r['made']:>5} "
              f"{r['submitted']:>9} {r['jobs']:>4} {r['submit_s']:>8.2f} {r['waiting']:>7}")


if __name__ == "__main__":
    main()
