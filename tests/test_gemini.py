"""The Gemini generator through the real google-genai SDK, against the fake server on 127.0.0.1.

The SDK reaches the fake through GOOGLE_GEMINI_BASE_URL (set by the `fake_gemini` fixture); the
key is a dummy. Waits are kept short through the settings and the generator's backoff knobs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import threading
import time
import traceback
import urllib.request

import pytest
from fakes.gemini_server import DEFAULT_KEY, FakeGemini, render_answer
from helpers import garment_photo, style_ref
from PIL import Image

from catalogue.core import models
from catalogue.core.errors import BudgetExceeded, GenerationError
from catalogue.core.settings import load_settings
from catalogue.generation import prompts
from catalogue.generation.gemini import (
    GeminiGenerator,
    check_api,
    reset_shared_generators,
    shared_generator,
)
from catalogue.generation.image_request import ImageAnswer, ImageRequest, nearest_aspect_ratio, prepare_image
from catalogue.generation.ledger import Ledger, budget_message
from catalogue.generation.rate_limiter import RateLimiter

KEY = DEFAULT_KEY


# --- helpers -------------------------------------------------------------------------------------

def make_settings(tmp_path, *, timeout: float | None = None, max_wait: float | None = None, **env):
    environ = {"GEMINI_API_KEY": KEY, **{k: str(v) for k, v in env.items()}}
    s = load_settings(tmp_path, environ=environ)
    changes = {}
    if timeout is not None:
        changes["gemini_timeout"] = timeout     # below the 1 s floor of GEMINI_TIMEOUT, for speed
    if max_wait is not None:
        changes["gemini_max_wait"] = max_wait
    return dataclasses.replace(s, **changes) if changes else s


def make_generator(settings, limiter=None, **kw):
    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 0.2)
    return GeminiGenerator(settings, Ledger(settings.state_dir / "ledger.jsonl", settings.max_cost),
                           limiter, **kw)


@pytest.fixture
def images(tmp_path):
    """Prepared inputs of the three views: product photos, style refs, the finished face."""
    d = tmp_path / "in"
    face = garment_photo(d / "face.jpg", seed=1)
    back = garment_photo(d / "back.jpg", seed=2, logo=False)
    refs = {v: style_ref(d / f"{v}.png", v) for v in ("1_face", "2_back", "3_detail_logo")}
    finished_face = d / "1_face.png"
    Image.new("RGB", (216, 296), (243, 243, 243)).save(finished_face)
    prep = lambda p: prepare_image(p, max_pixels=60_000_000)  # noqa: E731
    return {"face": prep(face), "back": prep(back), "finished_face": prep(finished_face),
            **{f"ref_{v}": prep(p) for v, p in refs.items()}}


def view_request(view: str, images: dict, model="gemini-3-pro-image", seed=0, size="2K") -> ImageRequest:
    if view == "1_face":
        imgs = (images["face"], images["ref_1_face"])
    elif view == "2_back":
        imgs = (images["back"], images["ref_2_back"], images["finished_face"])
    else:
        imgs = (images["finished_face"], images["ref_3_detail_logo"])
    return ImageRequest(model=model, images=imgs,
                        instruction=prompts.instruction_for(view, has_anchor=view == "2_back"),
                        aspect_ratio="3:4", image_size=size, seed=seed)


def ledger_lines(settings) -> list[dict]:
    p = settings.state_dir / "ledger.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


# --- requests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("view", ["1_face", "2_back", "3_detail_logo"])
def test_request_parts_in_order_then_instruction_and_config(fake_gemini, tmp_path, images, view):
    s = make_settings(tmp_path)
    req = view_request(view, images, seed=42)
    make_generator(s).generate(req, folder="L100001-V09A", view=view)

    (r,) = fake_gemini.generate_requests
    assert r["path"] == "/v1beta/models/gemini-3-pro-image:generateContent"   # API version pinned
    assert r["key_ok"] and "x-goog-api-key" not in r["headers"]
    kinds = [p["kind"] for p in r["parts"]]
    assert kinds == ["image"] * len(req.images) + ["text"]                     # instruction last
    for part, (data, mime) in zip(r["parts"], req.images):                     # product, style, anchor
        assert part["sha256"] == hashlib.sha256(data).hexdigest()
        assert part["mime"] == mime
    assert r["parts"][-1]["text"] == req.instruction
    assert r["generation_config"] == {"responseModalities": ["TEXT", "IMAGE"],
                                      "imageConfig": {"aspectRatio": "3:4", "imageSize": "2K"},
                                      "seed": 42}
    if view == "2_back":
        assert r["parts"][2]["sha256"] == hashlib.sha256(images["finished_face"][0]).hexdigest()
    if view == "3_detail_logo":   # made from the finished face, not from the photo
        assert r["parts"][0]["sha256"] == hashlib.sha256(images["finished_face"][0]).hexdigest()


def test_prompt_rules():
    assert isinstance(prompts.PROMPT_VERSION, str) and prompts.PROMPT_VERSION
    face = prompts.instruction_for("1_face", has_anchor=False)
    back = prompts.instruction_for("2_back", has_anchor=False)
    anchored = prompts.instruction_for("2_back", has_anchor=True)
    detail = prompts.instruction_for("3_detail_logo", has_anchor=False)
    for text in (face, back, anchored, detail):
        low = text.lower()
        assert "image 1" in low and "image 2" in low
        assert "only garment" in low and "never output, copy or blend in the garment of image 2" in low
        for word in ("framing", "fold", "alignment", "light", "background"):
            assert word in low
        assert "exact same colour" in low
        assert "never invent" in low and all(w in low for w in ("logo", "badge", "patch", "hood"))
        assert "#f3f3f3" in low
        assert text.isascii()
    assert "image 3" not in face.lower() and "image 3" not in back.lower() and "image 3" not in detail.lower()
    assert "image 3 is the finished front view" in anchored.lower() and "match its colours exactly" in anchored.lower()
    assert "back" in back.lower() and "front" in face.lower()
    assert "tight close-up crop on the chest" in detail.lower() and "image 1 is the finished front view" in detail.lower()
    assert len({face, back, anchored, detail}) == 4
    with pytest.raises(ValueError):
        prompts.instruction_for("4_side", has_anchor=False)
    with pytest.raises(ValueError):
        prompts.instruction_for("1_face", has_anchor=True)


@pytest.mark.parametrize("name,expected", [("pro", "gemini-3-pro-image"), ("flash", "gemini-3.1-flash-image"),
                                           ("FLASH", "gemini-3.1-flash-image"),
                                           ("gemini-2.5-flash-image", "gemini-2.5-flash-image")])
def test_model_alias_mapping_reaches_the_wire(fake_gemini, tmp_path, images, name, expected):
    s = make_settings(tmp_path, GEMINI_MODEL=name)
    assert s.model == expected
    assert load_settings(tmp_path, environ={"GEMINI_API_KEY": KEY, "GEMINI_MODEL": "pro"},
                         model_override=name).model == expected   # `doit model=flash`
    make_generator(s).generate(view_request("1_face", images, model=s.model), folder="F", view="1_face")
    assert fake_gemini.generate_requests[0]["model"] == expected


# --- answers -------------------------------------------------------------------------------------

def test_success_answer_and_ledger(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path)
    req = view_request("1_face", images)
    ans = make_generator(s).generate(req, folder="F", view="1_face")
    assert isinstance(ans, ImageAnswer) and ans.mime == "image/png"
    with Image.open(io.BytesIO(ans.data)) as im:
        assert im.format == "PNG" and abs(im.width / im.height - 3 / 4) < 0.01
    assert ans.image_output_tokens == 1120 and ans.thought_tokens > 0 and ans.input_tokens > 0
    assert ans.output_tokens == 1120 + ans.thought_tokens
    assert ans.seconds >= 0 and ans.attempts == 1
    (line,) = ledger_lines(s)
    assert line["outcome"] == "ok" and line["folder"] == "F" and line["view"] == "1_face"
    assert line["request_key"] == req.key() and line["cost_usd"] == ans.cost_usd
    assert {"time", "model", "image_size", "input_tokens", "output_tokens", "seconds"} <= set(line)


def test_draft_then_final_takes_the_final_image(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path)
    fake_gemini.push({"kind": "draft", "text": "Here is the flat lay."})
    req = view_request("1_face", images)
    ans = make_generator(s).generate(req, folder="F", view="1_face")
    assert ans.data == render_answer(req.images[0][0], "3:4", "2K")   # the final, not the grey draft
    assert ans.model_text == "Here is the flat lay."             # thought text left out


@pytest.mark.parametrize("scenario,needle", [
    ("blocked", "blockReason=PROHIBITED_CONTENT"),
    ("image_safety", "finishReason=IMAGE_SAFETY"),
    ("no_candidates", "aucun candidat"),
    ("text_only", "texte seul"),
    ("thought_only", "brouillons"),
])
def test_no_image_answers_fail_the_view_in_french(fake_gemini, tmp_path, images, scenario, needle):
    s = make_settings(tmp_path)
    fake_gemini.push(scenario)
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("2_back", images), folder="SI-8015-V0029", view="2_back")
    msg = str(ei.value)
    assert "SI-8015-V0029 / 2_back" in msg and "n'a pas produit d'image" in msg and needle in msg
    if scenario == "text_only":
        assert "Texte du modèle : « I can't generate this image" in msg
    assert len(fake_gemini.generate_requests) == 1          # not retried: a refusal is an answer
    (line,) = ledger_lines(s)
    assert line["outcome"] != "ok" and line["cost_usd"] < 0.02 and line["image_output_tokens"] == 0


def test_long_model_text_is_shortened(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path)
    fake_gemini.push({"kind": "text_only", "text": "blah " * 500})
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    assert len(str(ei.value)) < 600 and "…" in str(ei.value)


# --- retries -------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_limiter", [False, True])
def test_429_with_retry_info_waits_the_server_delay(fake_gemini, tmp_path, images, with_limiter):
    s = make_settings(tmp_path)
    limiter = RateLimiter(4, 6000) if with_limiter else None
    fake_gemini.push({"kind": "rate_limited", "retry_delay": "0.6s"})
    ans = make_generator(s, limiter).generate(view_request("1_face", images), folder="F", view="1_face")
    first, second = fake_gemini.start_times
    assert second - first >= 0.6                             # the server-given wait, honoured
    assert ans.attempts == 2
    assert [line["outcome"] for line in ledger_lines(s)] == ["rate_limited", "ok"]
    assert ledger_lines(s)[0]["cost_usd"] == 0
    if limiter:
        assert limiter.penalties == 1


def test_429_without_retry_info_backs_off_exponentially(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path)
    fake_gemini.push("rate_limited_bare", "rate_limited_bare", "ok")
    gen = make_generator(s, backoff_initial=0.2, backoff_max=5)
    ans = gen.generate(view_request("1_face", images), folder="F", view="1_face")
    t = fake_gemini.start_times
    assert ans.attempts == 3
    assert t[1] - t[0] >= 0.1 and t[2] - t[1] >= 0.2        # jittered within [base/2, base], doubling


@pytest.mark.parametrize("scenario", ["server_error", "unavailable"])
def test_5xx_then_success(fake_gemini, tmp_path, images, scenario):
    s = make_settings(tmp_path)
    fake_gemini.push(scenario)
    ans = make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    assert ans.attempts == 2 and len(fake_gemini.generate_requests) == 2
    assert [line["outcome"] for line in ledger_lines(s)] == ["server_error", "ok"]


def test_timeout_then_success(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path, timeout=1.5)
    fake_gemini.push({"kind": "slow", "seconds": 4.0})
    ans = make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    assert ans.attempts == 2
    assert [line["outcome"] for line in ledger_lines(s)] == ["timeout", "ok"]
    assert ledger_lines(s)[0]["seconds"] < 4.0               # gave up on the slow one


def test_connection_refused_is_retried_then_bounded(monkeypatch, tmp_path, images):
    with FakeGemini() as dead:
        url = dead.url
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", url)          # nobody listens there any more
    s = make_settings(tmp_path, max_wait=0.3)
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    assert "Gemini indisponible" in str(ei.value) and "réseau" in str(ei.value)
    assert {line["outcome"] for line in ledger_lines(s)} == {"network"}


def test_transient_failures_give_up_after_a_few_attempts(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path, max_wait=3600)
    fake_gemini.push(*["unavailable"] * 10)
    with pytest.raises(GenerationError) as ei:
        make_generator(s, backoff_initial=0.01).generate(view_request("1_face", images), folder="F", view="1_face")
    assert "5 essai(s)" in str(ei.value) and "503" in str(ei.value)
    assert len(fake_gemini.generate_requests) == 5


def test_malformed_base_url_fails_at_once(monkeypatch, tmp_path, images):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "ftp://127.0.0.1:9/")
    s = make_settings(tmp_path)
    with pytest.raises(GenerationError, match="GOOGLE_GEMINI_BASE_URL"):
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")


def test_total_wait_is_bounded_by_max_wait(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path, max_wait=1.0)
    fake_gemini.push({"kind": "rate_limited", "retry_delay": "30s"})
    t0 = time.monotonic()
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    assert time.monotonic() - t0 < 5
    assert "GEMINI_MAX_WAIT" in str(ei.value) and "F / 1_face" in str(ei.value)
    assert len(fake_gemini.generate_requests) == 1


# --- 4xx: fail at once with what to do ----------------------------------------------------------

def test_invalid_key_names_the_setting(fake_gemini, tmp_path, images):
    wrong = "AIzaSy-wrong-key-for-the-test-000000"
    s = dataclasses.replace(make_settings(tmp_path), gemini_api_key=wrong)
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    msg = str(ei.value)
    assert "GEMINI_API_KEY" in msg and "API key not valid" in msg and wrong not in msg
    assert len(fake_gemini.generate_requests) == 1


def test_403_and_400_messages(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path)
    gen = make_generator(s)
    fake_gemini.push("forbidden", {"kind": "bad_request", "message": "Unsupported aspect ratio: 7:3."})
    with pytest.raises(GenerationError) as e403:
        gen.generate(view_request("1_face", images), folder="F", view="1_face")
    assert "403" in str(e403.value) and "GEMINI_API_KEY" in str(e403.value)
    with pytest.raises(GenerationError) as e400:
        gen.generate(view_request("1_face", images), folder="F", view="1_face")
    assert "Unsupported aspect ratio: 7:3." in str(e400.value) and "400" in str(e400.value)
    assert len(fake_gemini.generate_requests) == 2           # no retry on either


def test_unknown_model_names_gemini_model_and_the_id(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path, GEMINI_MODEL="gemini-9-ultra-image")
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images, model=s.model), folder="F", view="1_face")
    msg = str(ei.value)
    assert "GEMINI_MODEL" in msg and "gemini-9-ultra-image" in msg and "404" in msg
    assert len(fake_gemini.generate_requests) == 1


def test_malformed_200_body_is_a_clear_error(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path)
    fake_gemini.push("non_json")
    with pytest.raises(GenerationError, match="réponse illisible"):
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")


# --- rate limiting under parallel threads --------------------------------------------------------

def run_parallel(gen, requests, workers):
    errors, answers = [], []
    lock = threading.Lock()
    it = iter(enumerate(requests))

    def worker():
        while True:
            with lock:
                nxt = next(it, None)
            if nxt is None:
                return
            i, req = nxt
            try:
                a = gen.generate(req, folder=f"R{i:03d}", view="1_face")
                with lock:
                    answers.append(a)
            except Exception as e:   # noqa: BLE001
                with lock:
                    errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers, errors


def test_parallel_run_stays_within_concurrency(fake_gemini, tmp_path, images):
    fake_gemini.latency = 0.25
    s = make_settings(tmp_path, GEMINI_CONCURRENCY=2, GEMINI_RPM=600)
    limiter = RateLimiter(s.gemini_concurrency, s.gemini_rpm)
    gen = make_generator(s, limiter)
    reqs = [view_request("1_face", images, seed=i) for i in range(12)]
    answers, errors = run_parallel(gen, reqs, workers=6)
    assert not errors and len(answers) == 12
    assert fake_gemini.max_in_flight == 2 and limiter.max_in_flight == 2
    starts = sorted(fake_gemini.start_times)
    # with 2 in flight and 0.25 s latency the concurrency, not the rate, is the bottleneck
    assert starts[-1] - starts[0] >= 5 * 0.25


def max_in_closed_window(times, span):
    t = sorted(times)
    return max(sum(1 for u in t[i:] if u <= v + span) for i, v in enumerate(t))


def test_rpm_at_the_server_quota_bursts_and_never_gets_a_429(fake_gemini, tmp_path, images):
    """GEMINI_RPM equal to the server's quota (a 2-second 'minute' here, counted at both ends
    by the fake): bursts up to the window's room, never one start too many, no 429. The margin
    is raised to 0.5 s so that a loaded test machine's arrival jitter stays inside it."""
    fake_gemini.quota = (5, 2.0)
    s = make_settings(tmp_path, GEMINI_CONCURRENCY=8, GEMINI_RPM=5, GEMINI_QUOTA_WINDOW=2)
    limiter = RateLimiter(s.gemini_concurrency, s.gemini_rpm, window=s.gemini_quota_window, margin=0.5)
    gen = make_generator(s, limiter)
    answers, errors = run_parallel(gen, [view_request("1_face", images, seed=i) for i in range(12)], workers=8)
    assert not errors and len(answers) == 12
    jitter = [f - o for f, o in zip(sorted(fake_gemini.start_times), limiter.starts)]
    assert fake_gemini.rejected == [], jitter                    # zero 429s
    starts = sorted(fake_gemini.start_times)
    assert max_in_closed_window(starts, 2.0) == 5
    assert limiter.starts[4] - limiter.starts[0] < 0.3           # the first five went at once
    # 12 starts: the 11th and 12th two windows (+ margins) after the first, not 11 x 2/5 s
    assert limiter.starts[-1] - limiter.starts[0] == pytest.approx(2 * 2.5, abs=0.5)


def test_a_429_pauses_every_worker(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path, GEMINI_CONCURRENCY=4, GEMINI_RPM=6000)
    limiter = RateLimiter(s.gemini_concurrency, s.gemini_rpm)
    gen = make_generator(s, limiter)
    fake_gemini.push({"kind": "rate_limited", "retry_delay": "0.8s"})
    first = threading.Thread(target=gen.generate, args=(view_request("1_face", images, seed=99),),
                             kwargs={"folder": "A", "view": "1_face"})
    first.start()
    while not fake_gemini.generate_requests:       # wait for the 429 to be served
        time.sleep(0.01)
    time.sleep(0.05)
    t429 = fake_gemini.start_times[0]
    answers, errors = run_parallel(gen, [view_request("1_face", images, seed=i) for i in range(3)], workers=3)
    first.join(10)
    assert not errors and len(answers) == 3
    later = fake_gemini.start_times[1:]
    assert len(later) == 4 and min(later) >= t429 + 0.8       # nobody hammered during the pause


# --- money ---------------------------------------------------------------------------------------

def test_budget_stops_new_calls(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path, MAX_COST="0.30")                 # two Pro images, not three
    gen = make_generator(s)
    gen.generate(view_request("1_face", images, seed=1), folder="A", view="1_face")
    gen.generate(view_request("1_face", images, seed=2), folder="B", view="1_face")
    with pytest.raises(BudgetExceeded) as ei:
        gen.generate(view_request("1_face", images, seed=3), folder="C", view="1_face")
    assert str(ei.value) == budget_message(gen.ledger.run_cost, 0.30)
    assert str(ei.value).startswith(f"Budget MAX_COST atteint ({gen.ledger.run_cost:.2f} $ dépensés sur 0.30 $)")
    assert isinstance(ei.value, GenerationError) and gen.ledger.budget_reached
    assert len(fake_gemini.generate_requests) == 2               # the third call never started
    assert gen.ledger.run_cost <= 0.30


def test_budget_holds_under_parallel_workers(fake_gemini, tmp_path, images):
    fake_gemini.latency = 0.2
    s = make_settings(tmp_path, MAX_COST="0.30", GEMINI_CONCURRENCY=8, GEMINI_RPM=60000)
    gen = make_generator(s, RateLimiter(s.gemini_concurrency, s.gemini_rpm))
    answers, errors = run_parallel(gen, [view_request("1_face", images, seed=i) for i in range(8)], workers=8)
    assert len(answers) == 2 and len(errors) == 6 and all(isinstance(e, BudgetExceeded) for e in errors)
    assert len(fake_gemini.generate_requests) == 2 and gen.ledger.run_cost <= 0.30


def test_the_key_never_appears_anywhere(fake_gemini, tmp_path, images, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    s = make_settings(tmp_path, timeout=0.3)
    gen = make_generator(s)
    texts = [repr(s), repr(gen), str(s)]
    scenarios = ["ok", "draft", "blocked", "image_safety", "text_only", "thought_only", "forbidden",
                 "not_found", "non_json", {"kind": "bad_request", "message": f"Bad value near {KEY}"},
                 {"kind": "text_only", "text": f"your key is {KEY}"}]
    fake_gemini.push(*scenarios)
    for _ in scenarios:
        try:
            gen.generate(view_request("1_face", images), folder="F", view="1_face")
        except GenerationError as e:
            texts += [str(e), repr(e), "".join(traceback.format_exception(e))]
    fake_gemini.push({"kind": "rate_limited", "retry_delay": "30s"})
    gen2 = make_generator(dataclasses.replace(s, gemini_max_wait=1))
    with pytest.raises(GenerationError) as ei:
        gen2.generate(view_request("1_face", images), folder="F", view="1_face")
    texts += [str(ei.value), "".join(traceback.format_exception(ei.value))]
    texts += [str(check_api(s)), str(check_api(dataclasses.replace(s, model="nope")))]
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".jpg"
              and p.suffix != ".png"]
    assert any("***" in t for t in texts)                        # the echoed key was scrubbed
    for t in texts:
        assert KEY not in t


# --- check_api -----------------------------------------------------------------------------------

def test_check_api(fake_gemini, tmp_path):
    s = make_settings(tmp_path)
    ok, msg = check_api(s)
    assert ok and "gemini-3-pro-image" in msg and "Clé valide" in msg
    ok, msg = check_api(dataclasses.replace(s, gemini_api_key="AIza-not-the-right-key-000"))
    assert not ok and "GEMINI_API_KEY" in msg and "AIza-not-the-right-key-000" not in msg
    ok, msg = check_api(make_settings(tmp_path, GEMINI_MODEL="gemini-9-ultra-image"))
    assert not ok and "GEMINI_MODEL" in msg and "gemini-9-ultra-image" in msg
    fake_gemini.push({"kind": "rate_limited", "retry_delay": "42s"}, route="get")
    ok, msg = check_api(s)
    assert not ok and "limité" in msg and "42 s" in msg
    ok, msg = check_api(dataclasses.replace(s, gemini_api_key=None))
    assert not ok and "GEMINI_API_KEY" in msg
    assert fake_gemini.generate_requests == []                   # generated nothing
    gets = [r for r in fake_gemini.requests if r["method"] == "GET"]
    assert gets[0]["path"] == "/v1beta/models/gemini-3-pro-image"


def test_shared_generator_is_one_per_process(tmp_path):
    reset_shared_generators()
    s = make_settings(tmp_path, GEMINI_CONCURRENCY=3, GEMINI_RPM=30, MAX_COST=5)
    g1, g2 = shared_generator(s), shared_generator(s)
    assert g1 is g2 and g1.limiter.concurrency == 3 and g1.limiter.rpm == 30
    assert g1.ledger.path == s.state_dir / "ledger.jsonl" and g1.ledger.max_cost == 5
    reset_shared_generators()
    assert shared_generator(s) is not g1
    reset_shared_generators()


# --- inputs and keys -----------------------------------------------------------------------------

def test_prepare_image_phone_photo_upright_downscaled_deterministic(tmp_path):
    src = Image.new("RGB", (1200, 900), (200, 30, 30))
    src.paste((20, 20, 200), (0, 0, 1200, 100))                  # blue band on the top edge
    exif = Image.Exif()
    exif[0x0112] = 6                                             # "rotate 90° CW to display"
    p = tmp_path / "face.jpg"
    src.save(p, quality=95, exif=exif)
    data, mime = prepare_image(p, max_pixels=60_000_000, long_side=512)
    assert mime == "image/jpeg"
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (384, 512)                             # upright (portrait), long side 512
        assert im.getpixel((im.width - 5, im.height // 2))[2] > 150   # the top band is now on the right
    assert prepare_image(p, max_pixels=60_000_000, long_side=512)[0] == data   # deterministic


def test_prepare_image_heic_and_alpha_png(tmp_path):
    from pillow_heif import from_pillow
    heic = tmp_path / "face.heic"
    from_pillow(Image.new("RGB", (640, 480), (10, 120, 40))).save(heic, quality=90)
    data, mime = prepare_image(heic, max_pixels=60_000_000, long_side=256)
    assert mime == "image/jpeg" and Image.open(io.BytesIO(data)).size == (256, 192)
    rgba = tmp_path / "ref.png"
    Image.new("RGBA", (100, 120), (0, 0, 0, 0)).save(rgba)
    data, mime = prepare_image(rgba, max_pixels=60_000_000)
    assert mime == "image/jpeg"
    assert Image.open(io.BytesIO(data)).getpixel((5, 5)) == pytest.approx((243, 243, 243), abs=2)


def test_prepare_image_small_png_and_jpeg_sent_as_they_are(tmp_path):
    png = style_ref(tmp_path / "1_face.png", "1_face")
    assert prepare_image(png, max_pixels=60_000_000) == (png.read_bytes(), "image/png")
    jpg = garment_photo(tmp_path / "face.jpg")
    assert prepare_image(jpg, max_pixels=60_000_000) == (jpg.read_bytes(), "image/jpeg")


@pytest.mark.parametrize("size,ratio", [((216, 296), "3:4"), ((1000, 1000), "1:1"), ((1920, 1080), "16:9"),
                                        ((800, 1000), "4:5"), ((1000, 1500), "2:3"), ((2100, 900), "21:9"),
                                        ((1080, 1920), "9:16"), ((1250, 1000), "5:4")])
def test_nearest_aspect_ratio(size, ratio):
    assert nearest_aspect_ratio(*size) == ratio


def test_request_key_is_stable_documented_and_sensitive():
    base = ImageRequest("gemini-3-pro-image", ((b"a", "image/jpeg"), (b"b", "image/png")), "do it", "3:4", "2K", 0)
    doc = {"scheme": "catalogue.gemini.ImageRequest/1", "api_version": models.API_VERSION,
           "model": "gemini-3-pro-image", "instruction": "do it", "aspect_ratio": "3:4", "image_size": "2K",
           "seed": 0, "response_modalities": ["TEXT", "IMAGE"],
           "images": [[hashlib.sha256(b"a").hexdigest(), "image/jpeg"], [hashlib.sha256(b"b").hexdigest(), "image/png"]]}
    expected = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert base.key() == expected == ImageRequest(**dataclasses.asdict(base)).key()
    variants = [dataclasses.replace(base, model="gemini-3.1-flash-image"),
                dataclasses.replace(base, images=((b"a", "image/jpeg"), (b"c", "image/png"))),
                dataclasses.replace(base, images=((b"b", "image/png"), (b"a", "image/jpeg"))),
                dataclasses.replace(base, instruction="do it again"),
                dataclasses.replace(base, aspect_ratio="4:5"),
                dataclasses.replace(base, image_size="4K"),
                dataclasses.replace(base, seed=1)]
    assert len({v.key() for v in variants} | {base.key()}) == len(variants) + 1


# --- the fake itself: the wire variants the SDK does not send ------------------------------------

def test_fake_accepts_camel_case_and_standard_base64(fake_gemini):
    img = io.BytesIO()
    Image.new("RGB", (64, 96), (250, 250, 250)).save(img, format="PNG")
    import base64
    body = {"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(img.getvalue()).decode()}},
        {"text": "hello"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "2:3"}}}
    req = urllib.request.Request(f"{fake_gemini.url}/v1/models/gemini-3-pro-image:generateContent",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"x-goog-api-key": KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
        answer = json.load(resp)
    part = answer["candidates"][0]["content"]["parts"][-1]["inlineData"]
    with Image.open(io.BytesIO(base64.b64decode(part["data"]))) as im:
        assert im.size == (848, 1264)          # 2:3 at the default imageSize 1K, as Gemini draws it
    (r,) = fake_gemini.generate_requests
    assert r["api_version"] == "v1" and r["parts"][0]["mime_key"] == "mimeType"


# --- every answer read as Gemini sends it ------------------------------------------------------

def test_finish_message_reaches_the_operator(fake_gemini, tmp_path, images):
    """The SDK drops finishMessage when parsing (python-genai#2049): it is read from the raw body."""
    s = make_settings(tmp_path)
    fake_gemini.push({"kind": "finish", "reason": "IMAGE_SAFETY", "message": "Filtered: policy XYZ-42."})
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    assert "Filtered: policy XYZ-42." in str(ei.value)
    assert "Filtered: policy XYZ-42." in ledger_lines(s)[0]["detail"]


@pytest.mark.parametrize("reason", ["NO_IMAGE", "IMAGE_OTHER", "OTHER", "MALFORMED_RESPONSE"])
def test_a_failed_drawing_is_retried_once_counted_and_priced(fake_gemini, tmp_path, images, reason):
    s = make_settings(tmp_path)
    gen = make_generator(s)
    fake_gemini.push({"kind": "finish", "reason": reason})
    ans = gen.generate(view_request("1_face", images), folder="F", view="1_face")
    assert ans.attempts == 2 and len(fake_gemini.generate_requests) == 2
    first, second = ledger_lines(s)
    assert first["outcome"] != "ok" and first["cost_usd"] > 0 and first["thought_tokens"] > 0
    assert second["outcome"] == "ok"
    assert gen.ledger.run_cost == pytest.approx(first["cost_usd"] + second["cost_usd"])
    # twice in a row: the view fails, and says both attempts were billed
    fake_gemini.push({"kind": "finish", "reason": reason}, {"kind": "finish", "reason": reason})
    with pytest.raises(GenerationError) as ei:
        gen.generate(view_request("1_face", images, seed=5), folder="F", view="1_face")
    assert f"finishReason={reason}" in str(ei.value) and "2 essais" in str(ei.value)
    assert "facturés" in str(ei.value) and len(fake_gemini.generate_requests) == 4


REFUSALS = ["IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "PROHIBITED_CONTENT", "SAFETY", "BLOCKLIST",
            "SPII", "RECITATION", "IMAGE_RECITATION"]


@pytest.mark.parametrize("reason", REFUSALS)
def test_a_refusal_is_not_retried_and_says_what_in_the_photo_may_cause_it(fake_gemini, tmp_path, images, reason):
    s = make_settings(tmp_path)
    fake_gemini.push({"kind": "finish", "reason": reason})
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images), folder="SI-1 ", view="1_face")
    msg = str(ei.value)
    assert len(fake_gemini.generate_requests) == 1
    assert f"finishReason={reason}" in msg and "C'est un refus" in msg and "Cause probable dans la photo" in msg
    expected = {"SPII": "étiquette", "BLOCKLIST": "texte lisible", "RECITATION": "image protégée",
                "IMAGE_RECITATION": "image protégée", "IMAGE_SAFETY": "personne",
                "SAFETY": "personne", "PROHIBITED_CONTENT": "interdit", "IMAGE_PROHIBITED_CONTENT": "interdit"}
    assert expected[reason] in msg


def test_an_account_restriction_stops_the_run(fake_gemini, tmp_path, images):
    from catalogue.generation.gemini import RunStopped

    s = make_settings(tmp_path, GEMINI_CONCURRENCY=2)
    gen = make_generator(s, RateLimiter(2, 6000))
    fake_gemini.push({"kind": "finish", "reason": "PUP_LIMITED_DISABLED"})
    with pytest.raises(RunStopped) as ei:
        gen.generate(view_request("1_face", images), folder="F", view="1_face")
    assert isinstance(ei.value, BudgetExceeded)         # reported « reporté », exit as for MAX_COST
    assert "PUP_LIMITED_DISABLED" in str(ei.value) and "AI Studio" in str(ei.value)
    with pytest.raises(RunStopped):
        gen.generate(view_request("1_face", images, seed=2), folder="G", view="1_face")
    assert len(fake_gemini.generate_requests) == 1      # nothing more was paid


def test_draft_images_only_fail_and_say_it_was_paid(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path)
    fake_gemini.push("thought_only")
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    (line,) = ledger_lines(s)
    assert "brouillons" in str(ei.value) and "facturé" in str(ei.value)
    assert f"{line['cost_usd']:.3f} $" in str(ei.value) and line["cost_usd"] > 0


@pytest.mark.parametrize("model,size,image_tokens", [
    ("gemini-3-pro-image", "1K", 1120), ("gemini-3-pro-image", "2K", 1120), ("gemini-3-pro-image", "4K", 2000),
    ("gemini-3.1-flash-image", "1K", 1120), ("gemini-3.1-flash-image", "2K", 1680),
    ("gemini-3.1-flash-image", "4K", 2520),
])
def test_cost_as_billed_by_component(fake_gemini, tmp_path, images, model, size, image_tokens):
    s = make_settings(tmp_path)
    ans = make_generator(s).generate(view_request("1_face", images, model=model, size=size),
                                     folder="F", view="1_face")
    (line,) = ledger_lines(s)
    rates = {"gemini-3-pro-image": (2.0, 12.0, 120.0), "gemini-3.1-flash-image": (0.5, 3.0, 60.0)}[model]
    assert line["image_output_tokens"] == image_tokens and line["thought_tokens"] > 0
    assert line["input_cost_usd"] == pytest.approx(line["input_tokens"] * rates[0] / 1e6, abs=1e-6)
    assert line["text_output_cost_usd"] == pytest.approx(
        (line["thought_tokens"] + line["text_output_tokens"]) * rates[1] / 1e6, abs=1e-6)
    assert line["image_cost_usd"] == pytest.approx(image_tokens * rates[2] / 1e6, abs=1e-6)
    assert ans.cost_usd == line["cost_usd"] == pytest.approx(
        line["input_cost_usd"] + line["text_output_cost_usd"] + line["image_cost_usd"], abs=1e-5)
    # the estimate uses the same table: never below what was billed for this request
    assert models.estimate_call_cost(model, size, 2) >= ans.cost_usd


def test_several_images_in_one_answer_are_all_billed(fake_gemini, tmp_path, images):
    s = make_settings(tmp_path)
    fake_gemini.push({"kind": "ok", "images": 2, "text": "Here are two takes."})
    ans = make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    (line,) = ledger_lines(s)
    assert line["images"] == 2 and line["image_output_tokens"] == 2240
    assert line["image_cost_usd"] == pytest.approx(2 * 0.1344) and line["text_output_tokens"] > 0
    assert ans.images == 2


def test_prices_are_dated_and_sourced_in_one_place():
    assert models.PRICES_AS_OF and "ai.google.dev" in models.PRICES_SOURCE
    assert models.image_price("gemini-3-pro-image", "2K") == pytest.approx(0.1344)
    assert models.image_price("gemini-3-pro-image", "4K") == pytest.approx(0.24)
    assert models.image_price("gemini-3.1-flash-image", "2K") == pytest.approx(0.1008)


def test_timeout_defaults_by_image_size(tmp_path):
    t = {size: make_settings(tmp_path, IMAGE_SIZE=size).gemini_timeout for size in ("1K", "2K", "4K")}
    assert t["1K"] < t["2K"] == 180 < t["4K"]
    assert make_settings(tmp_path, IMAGE_SIZE="4K", GEMINI_TIMEOUT=90).gemini_timeout == 90


def test_timeout_is_a_wall_clock_bound(fake_gemini, tmp_path, images):
    """A server sending one byte a second never trips the SDK's per-read timeout."""
    s = make_settings(tmp_path, timeout=1.0, max_wait=0.0)
    fake_gemini.push({"kind": "drip", "interval": 0.2})
    with pytest.raises(GenerationError) as ei:
        make_generator(s).generate(view_request("1_face", images), folder="F", view="1_face")
    (line,) = ledger_lines(s)
    assert line["outcome"] == "timeout" and line["seconds"] < 1.0 + 0.5
    assert "GEMINI_TIMEOUT" in str(ei.value) or "GEMINI_MAX_WAIT" in str(ei.value)


# --- the fake answers as the real API does ------------------------------------------------------

@pytest.mark.parametrize("model,size,ok", [
    ("gemini-3-pro-image", "2K", True), ("gemini-3-pro-image", "2k", False),
    ("gemini-3-pro-image", "512", False), ("gemini-3.1-flash-image", "512", True),
    ("gemini-3.1-flash-image", "4K", True), ("gemini-3-pro-image", "8K", False),
])
def test_fake_validates_image_size_and_draws_the_size_asked(fake_gemini, model, size, ok):
    import base64

    img = io.BytesIO()
    Image.new("RGB", (64, 96), (250, 250, 250)).save(img, format="PNG")
    body = {"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(img.getvalue()).decode()}},
        {"text": "hello"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "3:4", "imageSize": size}}}
    req = urllib.request.Request(f"{fake_gemini.url}/v1beta/models/{model}:generateContent",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"x-goog-api-key": KEY, "Content-Type": "application/json"})
    if not ok:
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req)
        assert ei.value.code == 400 and json.load(ei.value)["error"]["status"] == "INVALID_ARGUMENT"
        return
    with urllib.request.urlopen(req) as resp:
        answer = json.load(resp)
    part = answer["candidates"][0]["content"]["parts"][-1]["inlineData"]
    factor = {"512": 0.5, "1K": 1, "2K": 2, "4K": 4}[size]
    with Image.open(io.BytesIO(base64.b64decode(part["data"]))) as im:
        assert im.size == (round(896 * factor), round(1200 * factor))
    usage = answer["usageMetadata"]
    assert usage["thoughtsTokenCount"] > 0 and usage["candidatesTokensDetails"][-1]["modality"] == "IMAGE"


def test_fake_lists_only_the_methods_it_serves(fake_gemini):
    req = urllib.request.Request(f"{fake_gemini.url}/v1beta/models/gemini-3-pro-image",
                                 headers={"x-goog-api-key": KEY})
    with urllib.request.urlopen(req) as resp:
        assert json.load(resp)["supportedGenerationMethods"] == ["generateContent"]
