"""The pipeline with Gemini: real doit runs, the real google-genai SDK, the fake Gemini server."""

from __future__ import annotations

import json
import re

from fakes.gemini_server import DEFAULT_KEY
from helpers import built, garment_photo, paid_lines, summary, wait_until


def test_gemini_run_sends_the_right_requests_and_records_cost(gemini_project):
    project, fake = gemini_project
    del project.env["IMAGE_SIZE"]   # the default size, 2K (the other tests ask 1K: faster)
    run = project.doit()
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[0].startswith("Générateur : Gemini (gemini-3-pro-image, 2K)")
    assert len(built(run)) == 5 and len(fake.generate_requests) == 5
    by_images = sorted(len([p for p in r["parts"] if p["kind"] == "image"]) for r in fake.generate_requests)
    assert by_images == [2, 2, 2, 2, 3]  # 2_back carries the finished 1_face as colour anchor
    for r in fake.generate_requests:
        assert r["parts"][-1]["kind"] == "text"  # the instruction comes last
        assert "/v1beta/models/gemini-3-pro-image:generateContent" in r["path"]
    side = json.loads((project.output / "A-1" / "2_back.json").read_text())
    assert side["generator"] == "gemini" and side["model"] == "gemini-3-pro-image"
    assert side["cost_usd"] > 0.1 and side["input_tokens"] > 0 and set(side["inputs"]) == {"source", "style", "anchor"}
    ledger = paid_lines(project)  # the calls (not the "started" journal lines)
    assert len(ledger) == 5 and all(e["outcome"] == "ok" for e in ledger)
    assert re.search(r"coût \d+\.\d\d \$", run.stdout)


def test_never_pay_twice(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    assert len(fake.generate_requests) == 5
    assert summary(project.doit(check=True))[0] == 0
    project.doit("forget", "1_face:A-1", "2_back:A-1", check=True)
    project.doit(check=True)
    for f in project.root.glob(".doit.sqlite*"):
        f.unlink()
    project.doit(check=True)
    (project.output / "B-2" / "1_face.png").unlink()  # lost image: finished again from the paid answer
    run = project.doit(check=True)
    assert "B-2 1_face : repris de la réponse déjà payée" in run.stdout
    assert len(fake.generate_requests) == 5


def test_changed_face_photo_regenerates_face_back_and_detail(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    garment_photo(project.root / "photos/A-1/face.jpg", colour=(20, 90, 60), seed=9)
    run = project.doit(check=True)
    assert built(run) == {"A-1 1_face", "A-1 2_back", "A-1 3_detail_logo"}
    assert len(fake.generate_requests) == 8


def test_model_from_the_command_line(gemini_project):
    project, fake = gemini_project
    run = project.doit("model=flash", "generate:B-2", check=True)
    assert "gemini-3.1-flash-image" in run.stdout.splitlines()[0]
    assert {r["model"] for r in fake.generate_requests} == {"gemini-3.1-flash-image"}


def test_refusal_fails_that_view_and_the_batch_goes_on(gemini_project):
    project, fake = gemini_project
    fake.push("image_safety")
    run = project.doit("-n", "1")
    assert run.returncode == 1
    failures = [ln for ln in run.stdout.splitlines() if ln.startswith("  ✗ ")]
    assert len(failures) == 1 and "IMAGE_SAFETY" in failures[0]
    # the refused face's back (anchored on it) and detail wait; the other reference is done
    assert summary(run) == (2, 0, 1)
    assert len(re.findall(r"A-1 (2_back|3_detail_logo) : non fait", run.stdout)) == 2


def test_budget_stops_new_paid_calls(gemini_project):
    project, fake = gemini_project
    run = project.doit("-n", "1", extra_env={"MAX_COST": "0.3"})
    assert run.returncode == 1
    assert re.search(r"Budget MAX_COST atteint .* \d+ vues? reportées? à la prochaine exécution", run.stdout)
    assert len(fake.generate_requests) == 2
    assert summary(run) == (2, 0, 0)
    rest = project.doit()  # the next run (a new budget) finishes the job
    assert summary(rest) == (3, 2, 0) and len(fake.generate_requests) == 5


def test_plan_estimates_the_cost(gemini_project):
    project, fake = gemini_project
    plan = project.doit("plan", check=True)
    m = re.search(r"Plan : 5 vues à générer \(5 appels au générateur gemini, coût estimé (\d+\.\d\d) \$\)", plan.stdout)
    assert m and 0.5 < float(m.group(1)) < 1.0
    assert fake.generate_requests == []


def test_reroll_is_one_new_paid_call(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    run = project.doit("reroll", "A-1", "2_back")
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(fake.generate_requests) == 6 and fake.generate_requests[-1]["generation_config"].get("seed") == 1
    assert json.loads((project.root / "photos/A-1/overrides.json").read_text()) == {"seeds": {"2_back": 1}}


def test_check_api(gemini_project):
    project, fake = gemini_project
    ok = project.doit("check_api")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = project.doit("check_api", extra_env={"GEMINI_API_KEY": "wrong-key-42"})
    assert bad.returncode == 1 and "GEMINI_API_KEY" in bad.stdout
    assert fake.generate_requests == []


def test_the_key_never_appears_anywhere(gemini_project):
    project, fake = gemini_project
    fake.push("forbidden", "server_error")
    outputs = [project.doit(), project.doit("plan"), project.doit("check_api"),
               project.doit("check_api", extra_env={"GEMINI_API_KEY": "wrong-key-42"})]
    for proc in outputs:
        assert DEFAULT_KEY not in proc.stdout + proc.stderr
        assert "wrong-key-42" not in proc.stdout + proc.stderr
    for path in project.root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ".log", ""):
            assert DEFAULT_KEY.encode() not in path.read_bytes(), path


def test_identical_requests_in_parallel_are_paid_once(gemini_project):
    import shutil

    project, fake = gemini_project
    for twin in ("C-3", "D-4"):  # the same photos as B-2: identical requests
        shutil.copytree(project.root / "photos" / "B-2", project.root / "photos" / twin)
    fake.latency = 0.5
    project.doit("-n", "4", check=True)
    keys = [line["request_key"] for line in paid_lines(project)]
    assert len(keys) == len(set(keys))  # every request key paid once


def test_reroll_while_another_run_holds_the_lock_says_so(gemini_project):
    from catalogue.core.paths import LOCK_FILE
    from catalogue.tasks.run_lock import RunLock

    project, fake = gemini_project
    project.doit(check=True)
    lock = RunLock(project.root / LOCK_FILE)
    assert lock.acquire()
    try:
        run = project.doit("reroll", "A-1", "2_back")
    finally:
        lock.release()
    assert run.returncode == 1 and "Une autre exécution est en cours" in run.stdout
    assert len(fake.generate_requests) == 5  # nothing regenerated, nothing reported as new


def test_sigterm_keeps_the_answers_of_paid_calls_under_way(gemini_project):
    import signal
    import time

    project, fake = gemini_project
    fake.latency = 2.0
    proc = project.start_doit("-n", "2")
    wait_until(lambda: fake.in_flight > 0)  # inside the first paid calls
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "Interrompu" in out and "Traceback" not in out
    paid = len(fake.generate_requests)
    ledger = paid_lines(project)
    answers = list((project.output / ".state" / "answers").rglob("*.json"))
    assert paid >= 1 and len(ledger) == paid and len(answers) == paid
    fake.latency = 0
    project.doit(check=True)
    assert len(fake.generate_requests) == 5  # over both runs, every view was paid exactly once
