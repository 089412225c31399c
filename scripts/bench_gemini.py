#!/usr/bin/env python
"""Benchmark: a season (69 references x 3 views = 207 images) against the fake Gemini server.

Time is scaled down so that a run takes about a minute: with `--scale 20`, one quota minute
lasts 60 / 20 = 3 s of wall time, and every duration of the real world is divided by 20
(image latency, the seed's 2 s delay between references and its 60 s sleep on a 429).

Two runs, at the same time, each against its own fake server with the same latency and quota
(a sliding window: at most `--quota` accepted requests in any scaled minute, else 429 with
RetryInfo):

- ours: `GeminiGenerator` with one shared `RateLimiter` (GEMINI_CONCURRENCY = workers,
  GEMINI_RPM = the quota) and a pool of `--workers` threads dispatching the 207 view tasks the
  way `doit -n N -P thread` does (in task order; 2_back and 3_detail_logo of a reference wait for
  its 1_face, whose answer they send as an input image);
- the seed's method: one view after another, `--delay 2` s between references, on a 429 sleep
  60 s and try again (both scaled).

Printed: each makespan, the quota's lower bound (no schedule that respects the quota can finish
earlier: the last of N starts cannot happen before floor((N-1)/Q) windows, then one latency;
nor faster than N x latency / workers), and their ratio (goal for ours: <= 1.10).

    python scripts/bench_gemini.py                       # defaults: about 2 minutes in all
    python scripts/bench_gemini.py --refs 20 --scale 60  # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from google import genai  # noqa: E402
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from catalogue.core import models  # noqa: E402

from catalogue.generation import prompts  # noqa: E402
from catalogue.core.errors import GenerationError  # noqa: E402
from catalogue.generation.gemini import GeminiGenerator, ImageRequest  # noqa: E402
from catalogue.generation.ledger import Ledger  # noqa: E402
from catalogue.generation.rate_limiter import RateLimiter  # noqa: E402
from catalogue.core.settings import load_settings  # noqa: E402
from catalogue.core.views import VIEW_NAMES  # noqa: E402
from fakes.gemini_server import DEFAULT_KEY, FakeGemini  # noqa: E402

VIEWS = VIEW_NAMES


def jpeg(colour, size=(240, 320), logo=True) -> bytes:
    img = Image.new("RGB", size, (236, 232, 226))
    d = ImageDraw.Draw(img)
    w, h = size
    d.rectangle([w * 0.2, h * 0.2, w * 0.8, h * 0.85], fill=colour)
    if logo:
        d.rectangle([w * 0.55, h * 0.3, w * 0.65, h * 0.36], fill=(230, 200, 30))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png(view, size=(216, 296)) -> bytes:
    img = Image.new("RGB", size, (243, 243, 243))
    ImageDraw.Draw(img).rectangle([30, 35, 186, 260], fill=(120, 120, 124) if view != "3_detail_logo" else (90, 90, 90))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def season(n_refs: int):
    refs = [f"REF{i:03d}" for i in range(n_refs)]
    photos = {r: {"face": jpeg((20 + 3 * i % 200, 60, 140)), "back": jpeg((20 + 3 * i % 200, 60, 140), logo=False)}
              for i, r in enumerate(refs)}
    styles = {v: (png(v), "image/png") for v in VIEWS}
    return refs, photos, styles


def request_for(model, view, ref, photos, styles, face_answer, size="2K") -> ImageRequest:
    if view == "1_face":
        imgs = ((photos[ref]["face"], "image/jpeg"), styles[view])
    elif view == "2_back":
        imgs = ((photos[ref]["back"], "image/jpeg"), styles[view], face_answer)
    else:
        imgs = (face_answer, styles[view])
    return ImageRequest(model=model, images=imgs,
                        instruction=prompts.instruction_for(view, has_anchor=view == "2_back"),
                        aspect_ratio="3:4", image_size=size, seed=0)


def lower_bound(n: int, quota: int, window: float, latency: float, workers: int) -> float:
    by_quota = math.floor((n - 1) / quota) * window + latency
    by_workers = math.ceil(n / workers) * latency
    return max(by_quota, by_workers)


# --- ours: GeminiGenerator + shared limiter + doit-like thread pool -----------------------------

def run_ours(settings, refs, photos, styles, workers: int, result: dict) -> None:
    ledger = Ledger(settings.state_dir / "ledger.jsonl", None)
    limiter = RateLimiter(settings.gemini_concurrency, settings.gemini_rpm)
    gen = GeminiGenerator(settings, ledger, limiter)
    gen.client()   # created now, while GOOGLE_GEMINI_BASE_URL points at our fake
    tasks = [(r, v) for r in refs for v in VIEWS]          # doit's task order
    state = {t: "todo" for t in tasks}
    faces: dict[str, tuple[bytes, str]] = {}
    failures: list[str] = []
    cond = threading.Condition()

    def ready(t):
        r, v = t
        return state[t] == "todo" and (v == "1_face" or state[(r, "1_face")] == "done")

    def worker():
        while True:
            with cond:
                while True:
                    t = next((t for t in tasks if ready(t)), None)
                    if t is not None or all(s != "todo" for s in state.values()):
                        break
                    cond.wait()
                if t is None:
                    return
                state[t] = "running"
                r, v = t
                face = faces.get(r)
            try:
                ans = gen.generate(request_for(settings.model, v, r, photos, styles, face), folder=r, view=v)
                outcome = "done"
            except GenerationError as e:
                failures.append(f"{r} {v}: {e}")
                outcome = "failed"
            with cond:
                if outcome == "done" and v == "1_face":
                    faces[r] = (ans.data, ans.mime)
                if outcome == "failed" and v == "1_face":   # its dependants cannot run
                    state[(r, "2_back")] = state[(r, "3_detail_logo")] = "failed"
                state[t] = outcome
                cond.notify_all()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.update(makespan=time.monotonic() - t0, failures=failures,
                  done=sum(1 for s in state.values() if s == "done"),
                  rate_limited=sum(1 for line in ledger.read() if line["outcome"] == "rate_limited"),
                  max_in_flight=limiter.max_in_flight)
    gen.close()


# --- the seed's method: sequential, fixed delay, 60 s on 429 -------------------------------------

def run_seed(client, model, refs, photos, styles, scale: float, result: dict, delay=2.0, wait_429=60.0,
             tries=4) -> None:
    done = rate_limited = 0
    failures = []
    t0 = time.monotonic()
    for i, ref in enumerate(refs):
        face = None
        for view in VIEWS:
            req = request_for(model, view, ref, photos, styles, face)
            contents = [types.Part.from_bytes(data=d, mime_type=m) for d, m in req.images]
            contents.append(req.instruction)
            config = types.GenerateContentConfig(response_modalities=["IMAGE"],
                                                 image_config=types.ImageConfig(aspect_ratio="3:4", image_size="2K"))
            for attempt in range(tries):
                try:
                    resp = client.models.generate_content(model=model, contents=contents, config=config)
                except genai_errors.APIError as e:
                    if e.code == 429 and attempt + 1 < tries:
                        rate_limited += 1
                        time.sleep(wait_429 / scale)
                        continue
                    failures.append(f"{ref} {view}: {e.code}")
                    break
                part = [p for p in resp.parts or [] if p.inline_data and not p.thought][-1]
                if view == "1_face":
                    face = (part.inline_data.data, part.inline_data.mime_type)
                done += 1
                break
            if view == "1_face" and face is None:
                break
        if i + 1 < len(refs):
            time.sleep(delay / scale)
    result.update(makespan=time.monotonic() - t0, failures=failures, done=done, rate_limited=rate_limited)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refs", type=int, default=69, help="references in the season (3 views each)")
    ap.add_argument("--workers", type=int, default=4, help="doit -n N threads = GEMINI_CONCURRENCY")
    ap.add_argument("--quota", type=int, default=10, help="the server's quota: requests per (scaled) minute")
    ap.add_argument("--rpm", type=float, default=None,
                    help="GEMINI_RPM (default: 2 %% under the quota, as an operator would set it: requests "
                         "reach the server a few ms after the limiter starts them, and that jitter would "
                         "otherwise cost a 429 now and then; the lower bound is computed on the quota)")
    ap.add_argument("--latency", type=float, default=10.0, help="real-world seconds per image")
    ap.add_argument("--scale", type=float, default=20.0, help="time compression (1 minute = 60/scale s)")
    ap.add_argument("--only", choices=("ours", "seed"), default=None, help="run one method only")
    args = ap.parse_args(argv)

    window = 60.0 / args.scale
    latency = args.latency / args.scale
    n = args.refs * len(VIEWS)
    refs, photos, styles = season(args.refs)
    rpm = args.rpm if args.rpm is not None else args.quota * 0.98
    print(f"Season: {args.refs} references x 3 views = {n} requests. Time scale 1/{args.scale:g}: "
          f"1 quota minute = {window:g} s, latency {args.latency:g} s -> {latency:g} s, "
          f"quota {args.quota}/min (sliding window), {args.workers} workers, GEMINI_RPM={rpm:g}.")
    lb = lower_bound(n, args.quota, window, latency, args.workers)
    print(f"Quota lower bound: {lb:.1f} s  (= {lb * args.scale / 60:.1f} real minutes)")

    for name in ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_API_VERSION"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    results: dict[str, dict] = {"ours": {}, "seed": {}}
    threads = []
    with tempfile.TemporaryDirectory() as tmp, \
            FakeGemini(latency=latency, quota=(args.quota, window)) as fake_ours, \
            FakeGemini(latency=latency, quota=(args.quota, window)) as fake_seed:
        base = load_settings(Path(tmp), environ={"GEMINI_API_KEY": DEFAULT_KEY, "GEMINI_MODEL": "pro",
                                                 "IMAGE_SIZE": "2K"})
        settings = dataclasses.replace(base, gemini_concurrency=args.workers,
                                       gemini_rpm=rpm * args.scale,           # per wall-clock minute
                                       gemini_max_wait=3600.0, gemini_timeout=60.0)
        if args.only in (None, "ours"):
            os.environ["GOOGLE_GEMINI_BASE_URL"] = fake_ours.url
            threads.append(threading.Thread(target=run_ours, args=(settings, refs, photos, styles,
                                                                   args.workers, results["ours"])))
            threads[-1].start()
            time.sleep(0.5)   # the client reads GOOGLE_GEMINI_BASE_URL when created
        if args.only in (None, "seed"):
            os.environ["GOOGLE_GEMINI_BASE_URL"] = fake_seed.url
            client = genai.Client(api_key=DEFAULT_KEY,
                                  http_options=types.HttpOptions(api_version=models.API_VERSION, timeout=60_000))
            threads.append(threading.Thread(target=run_seed, args=(client, base.model, refs, photos, styles,
                                                                   args.scale, results["seed"])))
            threads[-1].start()
        for t in threads:
            t.join()
        served = {"ours": fake_ours, "seed": fake_seed}

    print()
    print(f"{'method':<44} {'makespan':>9} {'ratio':>6} {'done':>5} {'429s':>5} {'max in flight':>14}")
    for name, label in (("ours", f"ours (shared limiter, {args.workers} threads)"),
                        ("seed", "seed (sequential, 2 s delay, 60 s on 429)")):
        r = results[name]
        if not r:
            continue
        fake = served[name]
        print(f"{label:<44} {r['makespan']:>8.1f}s {r['makespan'] / lb:>6.2f} {r['done']:>5} "
              f"{r['rate_limited']:>5} {fake.max_in_flight:>14}")
        for f in r["failures"][:5]:
            print("   failure:", f)
    if results["ours"]:
        ok = results["ours"]["makespan"] / lb <= 1.10 and results["ours"]["done"] == n
        print(f"\nGoal (ours <= 1.10 x lower bound, every view done): {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
