"""Limits Google applies beyond the per-minute quota: per-day quotas and spend caps stop the run
(the rest postponed, as for MAX_COST); GEMINI_SPEND_PER_10MIN paces calls under a spend cap;
GEMINI_MAX_WAIT bounds a view's retrying in wall-clock time. Real SDK, fake Gemini server."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from fakes.gemini_server import DEFAULT_KEY
from helpers import garment_photo, style_ref

from catalogue.core.errors import BudgetExceeded, GenerationError
from catalogue.core.settings import load_settings
from catalogue.generation import prompts
from catalogue.generation.gemini import GeminiGenerator, RunStopped
from catalogue.generation.image_request import ImageRequest, prepare_image
from catalogue.generation.ledger import Ledger
from catalogue.generation.rate_limiter import RateLimiter


def settings_for(tmp_path, **env):
    return load_settings(tmp_path, environ={"GEMINI_API_KEY": DEFAULT_KEY, **{k: str(v) for k, v in env.items()}})


def generator(s, limiter=None, **kw):
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 0.2)
    return GeminiGenerator(s, Ledger(s.state_dir / "ledger.jsonl", s.max_cost), limiter, **kw)


@pytest.fixture
def request_for(tmp_path):
    d = tmp_path / "in"
    face = prepare_image(garment_photo(d / "face.jpg", seed=1), max_pixels=60_000_000)
    ref = prepare_image(style_ref(d / "1_face.png", "1_face"), max_pixels=60_000_000)

    def make(seed: int) -> ImageRequest:
        return ImageRequest(model="gemini-3-pro-image", images=(face, ref),
                            instruction=prompts.instruction_for("1_face", has_anchor=False),
                            aspect_ratio="3:4", image_size="2K", seed=seed)
    return make


def ledger_lines(s):
    return [json.loads(x) for x in (s.state_dir / "ledger.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("details", ["full", "no_retry_info"])
def test_a_daily_quota_stops_paid_calls_for_the_run(fake_gemini, tmp_path, request_for, details):
    fake_gemini.daily_quota = 2
    fake_gemini.quota_details = details
    s = settings_for(tmp_path, GEMINI_MAX_WAIT=3600)
    gen = generator(s, RateLimiter(4, 6000))
    gen.generate(request_for(1), folder="A", view="1_face")
    gen.generate(request_for(2), folder="B", view="1_face")
    with pytest.raises(RunStopped) as ei:
        gen.generate(request_for(3), folder="C", view="1_face")
    msg = str(ei.value)
    assert isinstance(ei.value, BudgetExceeded)
    assert "Quota journalier" in msg and "PerDay" in msg and "minuit heure du Pacifique" in msg
    with pytest.raises(RunStopped) as again:
        gen.generate(request_for(4), folder="D", view="1_face")
    assert str(again.value) == msg
    assert len(fake_gemini.generate_requests) == 3     # not waited out, nothing retried
    assert [line["outcome"] for line in ledger_lines(s)] == ["ok", "ok", "quota_day"]


def test_a_spend_cap_stops_paid_calls_for_the_run(fake_gemini, tmp_path, request_for):
    fake_gemini.spend_cap = (0.30, 600.0)
    s = settings_for(tmp_path, GEMINI_MAX_WAIT=3600)
    gen = generator(s)
    gen.generate(request_for(1), folder="A", view="1_face")
    gen.generate(request_for(2), folder="B", view="1_face")
    with pytest.raises(RunStopped) as ei:
        gen.generate(request_for(3), folder="C", view="1_face")
    assert "Plafond de dépense" in str(ei.value) and "GEMINI_SPEND_PER_10MIN" in str(ei.value)
    assert "se libère dans" in str(ei.value)
    assert len(fake_gemini.generate_requests) == 3


def test_a_bare_429_is_a_per_minute_limit_bounded_by_max_wait(fake_gemini, tmp_path, request_for):
    """16 bare 429s (no details) on 4 parallel views, GEMINI_MAX_WAIT=1.5: every view gives up
    at most GEMINI_MAX_WAIT after its first failure, shared pauses included."""
    fake_gemini.default = "rate_limited_bare"
    s = settings_for(tmp_path, GEMINI_MAX_WAIT=1.5, GEMINI_CONCURRENCY=4, GEMINI_RPM=6000)
    gen = generator(s, RateLimiter(4, 6000), backoff_initial=0.3, backoff_max=0.6)
    spans, errors = {}, []

    def view(i):
        t0 = time.monotonic()
        try:
            gen.generate(request_for(i), folder=f"R{i}", view="1_face")
        except GenerationError as e:
            errors.append(str(e))
        spans[i] = time.monotonic() - t0

    threads = [threading.Thread(target=view, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 4 and all("GEMINI_MAX_WAIT" in e for e in errors)
    by_view: dict = {}
    for line in ledger_lines(s):
        by_view.setdefault(line["folder"], []).append(line)
    for folder, lines in by_view.items():
        assert all(x["outcome"] == "rate_limited" for x in lines)
    # wall clock: first failure to giving up <= GEMINI_MAX_WAIT (+ the first attempt itself)
    assert max(spans.values()) <= 1.5 + 1.0, spans


def test_spend_pacing_finishes_under_a_spend_cap_without_a_429(fake_gemini, tmp_path, request_for):
    """A (scaled) spend cap of $0.60 per 3 s at the fake, GEMINI_SPEND_PER_10MIN=0.6 with a
    0.3-second quota 'minute' (so 10 of them = the fake's 3 s): no 429, every view made."""
    fake_gemini.spend_cap = (0.60, 3.0)
    s = settings_for(tmp_path, GEMINI_SPEND_PER_10MIN=0.6, GEMINI_QUOTA_WINDOW=0.3,
                     GEMINI_CONCURRENCY=4, GEMINI_RPM=1000)
    lim = RateLimiter(4, s.gemini_rpm, window=s.gemini_quota_window,
                      spend_per_window=s.gemini_spend_per_10min, spend_window=10 * s.gemini_quota_window)
    gen = generator(s, lim)
    errors = []

    def worker(seeds):
        for i in seeds:
            try:
                gen.generate(request_for(i), folder=f"R{i}", view="1_face")
            except GenerationError as e:
                errors.append(str(e))

    threads = [threading.Thread(target=worker, args=(range(k, 10, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and fake_gemini.rejected == []
    assert len(fake_gemini.accepted_times) == 10
    # paced, not bursting: no 3-second window at the server holds more than the cap
    costs = [x["cost_usd"] for x in ledger_lines(s)]
    t = sorted(fake_gemini.accepted_times)
    per_call = max(costs)
    most = max(sum(1 for u in t[i:] if u <= v + 3.0) for i, v in enumerate(t))
    assert most * per_call <= 0.60 + 1e-9


def test_budget_exceeded_and_a_run_stop_are_reported_alike(project, fake_gemini_for):
    """Through doit: a daily quota reached mid-run postpones the rest (« reporté »), says once
    which limit and when it resets, exits 1 as for MAX_COST; the next run resumes."""
    fake = fake_gemini_for
    for ref in ("A-1", "B-2", "C-3"):
        project.photo(ref, "face.jpg", seed=len(ref))
    fake.daily_quota = 1
    run = project.doit("-n", "1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.count("Quota journalier Gemini atteint") == 1
    assert re.search(r"Quota journalier Gemini atteint .*minuit heure du Pacifique.* \d+ vues? "
                     r"reportées? à la prochaine exécution", run.stdout), run.stdout
    assert "reporté" in run.stdout and "ÉCHEC" not in run.stdout
    assert len(fake.generate_requests) == 2          # one made, one refused, none waited out
    fake.daily_quota = None
    again = project.doit("-n", "1")
    assert again.returncode == 0, again.stdout + again.stderr
