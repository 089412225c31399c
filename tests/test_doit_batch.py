"""GEMINI_MODE=batch: real doit runs, the real google-genai SDK, the fake Batch and Files APIs."""

from __future__ import annotations

import json
import re

import pytest
from fakes.gemini_server import DEFAULT_KEY
from helpers import built, fault_env, summary

from catalogue.core import models

INSTR = "Smooth the folds of the sleeves."
PENDING = re.compile(r"^\[\d+/\d+\] (\S+) (\S+) : en lot \((batches/\w+)\) depuis \d\d:\d\d", re.M)


@pytest.fixture
def batch_project(project, fake_gemini_for):
    project.photo("A-1", "face.jpg", seed=1)
    project.photo("A-1", "back.jpg", seed=2, logo=False)
    project.photo("B-2", "face.jpg", colour=(150, 30, 40), seed=3)
    project.env["GEMINI_MODE"] = "batch"
    return project, fake_gemini_for


def ledger(project) -> list[dict]:
    path = project.output / ".state" / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def records(project) -> list:
    return sorted((project.output / ".state" / "batches").glob("*.json"))


def pending(run) -> dict[str, str]:
    return {f"{m[1]} {m[2]}": m[3] for m in PENDING.finditer(run.stdout)}


def test_a_season_in_waves_one_paid_request_per_view_at_half_price(batch_project):
    project, fake = batch_project
    (project.root / "photos" / "A-1" / "adjustments.toml").write_text(
        f'[[2_back]]\ninstruction = "{INSTR}"\nref = "1_face"\nmodel = "flash"\n')
    runs = []
    for _ in range(6):
        run = project.doit("-n", "2")
        assert run.returncode == 0, run.stdout + run.stderr
        runs.append(run)
        if not re.search(r"échecs?, \d+ en attente", run.stdout):
            break
    first, second, third = runs[:3]
    # wave 1: the faces; the views made from them wait, said on their own line
    assert set(pending(first)) == {"A-1 1_face", "B-2 1_face"}
    assert "A-1 2_back : attend 1_face (en lot)" in first.stdout
    assert re.search(r"Terminé : 0 générée, 0 à jour, 0 échec, 5 en attente", first.stdout)
    # wave 2: faces collected and made; the back (anchored on the face) and the details submitted
    assert built(second) == {"A-1 1_face", "B-2 1_face"}
    assert set(pending(second)) == {"A-1 2_back", "A-1 3_detail_logo", "B-2 3_detail_logo"}
    # wave 3: the back's base answer made, its declared retouch (flash) submitted in its own job
    assert built(third) == {"A-1 3_detail_logo", "B-2 3_detail_logo"}
    assert set(pending(third)) == {"A-1 2_back"}
    last = runs[3]
    assert built(last) == {"A-1 2_back"} and summary(last) == (1, 4, 0)
    assert len(runs) == 4
    # no interactive request; one paid request per request key (5 bases + 1 retouch)
    assert fake.generate_requests == []
    keys = fake.batch.submitted_keys()
    assert len(keys) == 6 == len({k.rsplit("|", 1)[1] for k in keys})
    assert [c["n"] for c in fake.batch.created] == [2, 3, 1]
    assert {j["model"] for j in fake.batch.jobs.values()} == {"gemini-3-pro-image", "gemini-3.1-flash-image"}
    # the ledger: each answer at half the interactive price of the one price table
    paid = [e for e in ledger(project) if e["outcome"] == "ok"]
    assert len(paid) == 6 and all(e["mode"] == "batch" and e["batch"].startswith("batches/") for e in paid)
    for e in paid:
        full = models.call_cost(e["model"], input_tokens=e["input_tokens"], thought_tokens=e["thought_tokens"],
                                text_output_tokens=e["text_output_tokens"],
                                image_output_tokens=e["image_output_tokens"]).total
        assert e["cost_usd"] == pytest.approx(full / 2, abs=1e-6)
    side = json.loads((project.output / "A-1" / "1_face.json").read_text())
    assert side["from_cache"] is False and side["cost_usd"] == pytest.approx(paid[0]["cost_usd"], abs=0.01)
    # cleaned up: jobs deleted on the server, no record left
    assert fake.batch.live_jobs == [] and records(project) == []
    # switching back to interactive pays nothing: the same answers, the same keys
    again = project.doit(extra_env={"GEMINI_MODE": "interactive"}, check=True)
    assert summary(again) == (0, 5, 0) and fake.generate_requests == []


def test_rerun_forget_all_and_a_lost_database_submit_nothing_while_pending(batch_project):
    project, fake = batch_project
    fake.batch.delay = 3600
    first = project.doit()
    assert first.returncode == 0 and len(fake.batch.created) == 1
    project.doit(check=True)
    project.doit("forget", "--all", check=True)
    after_forget = project.doit(check=True)
    assert set(pending(after_forget)) == {"A-1 1_face", "B-2 1_face"}
    for f in project.root.glob(".doit.sqlite*"):
        f.unlink()
    lost_db = project.doit(check=True)
    assert set(pending(lost_db)) == {"A-1 1_face", "B-2 1_face"}
    assert len(fake.batch.created) == 1 and fake.generate_requests == []
    # the plan shows the job under way, its state and age
    plan = project.doit("plan", check=True)
    assert re.search(r"lot batches/\w+ — (PENDING|RUNNING), depuis \d+ min, 2 vue\(s\)", plan.stdout)
    assert "en lot     A-1 1_face" in plan.stdout
    fake.batch.finish()
    done = project.doit(check=True)
    assert built(done) == {"A-1 1_face", "B-2 1_face"} and len(fake.batch.created) == 2


def test_plan_shows_the_batch_price_beside_the_interactive_price(batch_project):
    project, fake = batch_project
    plan = project.doit("plan", check=True)
    m = re.search(r"Plan : 5 vues à soumettre en lot \(5 appels, coût estimé (\d+\.\d\d) \$ au tarif lot, "
                  r"(\d+\.\d\d) \$ en interactif\), 0 en lot en attente", plan.stdout)
    assert m, plan.stdout
    assert float(m.group(1)) == pytest.approx(float(m.group(2)) / 2, abs=0.011)
    assert fake.batch.calls == [] and fake.generate_requests == []   # nothing submitted, nothing asked


def test_failed_and_expired_jobs_are_submitted_again_and_said(batch_project):
    project, fake = batch_project
    fake.batch.push_jobs({"outcome": "FAILED"}, {"outcome": "EXPIRED", "delay": 3600})
    project.doit("generate:B-2", check=True)                  # job 1: FAILED at once
    second = project.doit("generate:B-2", check=True)         # job 2: submitted again, will expire
    assert "a échoué (FAILED)" in second.stdout
    assert re.search(r"B-2 1_face : en lot \(batches/\w+\) depuis \d\d:\d\d — nouvelle soumission : le lot "
                     r"batches/\w+ a échoué", second.stdout), second.stdout
    fake.batch.expire()
    third = project.doit("generate:B-2", check=True)          # job 3
    assert "a expiré sans réponse (EXPIRED, 48 h)" in third.stdout
    fourth = project.doit("generate:B-2", check=True)
    assert "B-2 1_face" in built(fourth)
    assert len(fake.batch.created) == 4
    outcomes = [e["outcome"] for e in ledger(project) if e.get("mode") == "batch" and e["view"] == "1_face"]
    assert outcomes == ["batch_failed", "batch_expired", "ok"]


def test_an_error_line_fails_that_view_only(batch_project):
    project, fake = batch_project
    fake.push({"kind": "error", "message": "Unable to process input image."}, "ok", route="batch")
    project.doit(check=True)
    run = project.doit()
    assert run.returncode == 1
    failures = [ln for ln in run.stdout.splitlines() if ln.startswith("  ✗ ")]
    assert len(failures) == 1 and "Unable to process input image." in failures[0], run.stdout
    assert len(built(run)) == 1                        # the other face made, its views submitted
    again = project.doit()                             # the failed view submitted again
    assert len(pending(again)) >= 1 and len(fake.batch.created) == 3


def test_a_refusal_in_a_result_is_checked_like_an_interactive_answer(batch_project):
    project, fake = batch_project
    fake.push("image_safety", "ok", route="batch")
    project.doit(check=True)
    run = project.doit()
    assert run.returncode == 1
    (failure,) = [ln for ln in run.stdout.splitlines() if ln.startswith("  ✗ ")]
    assert "IMAGE_SAFETY" in failure and "C'est un refus" in failure
    refused = [e for e in ledger(project) if e["outcome"] == "finish_image_safety"]
    assert len(refused) == 1 and refused[0]["mode"] == "batch" and refused[0]["cost_usd"] > 0


def test_a_lost_local_record_makes_no_second_job(batch_project):
    project, fake = batch_project
    fake.batch.delay = 3600
    project.doit(check=True)
    for path in records(project):
        path.unlink()
    lost = project.doit(check=True)
    assert "retrouvé sur le serveur sans sa fiche locale" in lost.stdout
    assert "rien n'est soumis avant sa fin" in lost.stdout
    assert len(fake.batch.created) == 1
    fake.batch.finish()
    back = project.doit(check=True)                   # the results name their views
    assert built(back) == {"A-1 1_face", "B-2 1_face"}
    assert fake.batch.submitted_keys().count(next(k for k in fake.batch.submitted_keys() if "A-1|1_face" in k)) == 1


def test_a_crash_between_creating_and_recording_the_job_makes_no_second_job(batch_project):
    project, fake = batch_project
    fake.batch.delay = 3600
    fake.batch.push_create("lost_answer")             # the job is created, the answer is lost
    first = project.doit(check=True)
    assert "Soumission incertaine" in first.stdout and len(fake.batch.created) == 1
    second = project.doit(check=True)                 # found by its nonce: adopted, not submitted again
    assert set(pending(second)) == {"A-1 1_face", "B-2 1_face"} and len(fake.batch.created) == 1
    fake.batch.finish()
    assert built(project.doit(check=True)) == {"A-1 1_face", "B-2 1_face"}


def test_a_job_over_the_inline_limit_goes_through_a_jsonl_file(batch_project, tmp_path):
    project, fake = batch_project
    fake.batch.inline_limit = 4000                    # Google's 20 MB, lowered with the pipeline's
    env = fault_env(tmp_path, project.env,
                    "import catalogue.generation.batch_jobs as b\nb.INLINE_MAX_BYTES = 4000\n")
    project.doit(extra_env=env, check=True)
    (job,) = fake.batch.created
    assert job["file_input"] and job["n"] == 2
    uploads = [p for m, p in fake.batch.calls if p.startswith("/upload/")]
    assert len(uploads) == 2                           # start, then upload + finalize
    run = project.doit(extra_env=env, check=True)
    assert built(run) == {"A-1 1_face", "B-2 1_face"}
    responses = f"files/batch-{job['name'].split('/')[1]}"
    assert fake.batch.downloads == [responses]
    inputs = [n for n in fake.batch.deleted if n.startswith("files/") and n != responses]
    assert responses in fake.batch.deleted and len(inputs) == 1     # input and responses files deleted
    assert job["name"] in fake.batch.deleted
    assert [c["file_input"] for c in fake.batch.created] == [True, True]   # the next wave, as big
    assert not list((project.output / ".state" / "batches").glob("*.jsonl"))


def test_max_cost_stops_new_submissions(batch_project):
    project, fake = batch_project
    one = models.estimate_call_cost("gemini-3-pro-image", "2K", 2, batch=True)
    run = project.doit("-n", "1", extra_env={"MAX_COST": f"{one * 1.5:.4f}"})
    assert run.returncode == 1
    assert "reporté (budget MAX_COST atteint)" in run.stdout
    assert fake.batch.requests_submitted() == 1
    (postponed,) = re.findall(r"(\S+ 1_face) : reporté", run.stdout)
    rest = project.doit(check=True)                    # a new run, a new budget
    assert postponed in pending(rest)
    assert sorted(k.rsplit("|", 1)[0] for k in fake.batch.submitted_keys()).count(
        postponed.replace(" ", "|")) == 1


def test_the_key_is_never_written_anywhere(batch_project, tmp_path):
    project, fake = batch_project
    outputs = [project.doit() for _ in range(4)]
    assert fake.batch.live_jobs == []
    env = fault_env(tmp_path, project.env,
                    "import catalogue.generation.batch_jobs as b\nb.INLINE_MAX_BYTES = 4000\n")
    fake.batch.inline_limit = 4000
    (project.root / "photos" / "C-3").mkdir()
    project.photo("C-3", "face.jpg", seed=7)
    outputs.append(project.doit(extra_env=env))
    fake.batch.delay = 3600
    fake.batch.inline_limit = 20 * 1024 * 1024
    project.photo("D-4", "face.jpg", seed=8)
    outputs.append(project.doit())                     # a record left pending on disk
    assert records(project)
    for run in outputs:
        assert DEFAULT_KEY not in run.stdout + run.stderr
    for path in project.root.rglob("*"):
        if path.is_file():
            assert DEFAULT_KEY.encode() not in path.read_bytes(), path
    for job in fake.batch.jobs.values():
        assert DEFAULT_KEY not in json.dumps(job["display"]) + json.dumps([r["key"] for r in job["requests"]])


def test_no_image_in_a_result_is_submitted_once_more_then_fails(batch_project):
    project, fake = batch_project
    fake.push("no_image", "no_image", route="batch")
    project.doit("generate:B-2", check=True)
    second = project.doit("generate:B-2", check=True)
    assert re.search(r"B-2 1_face : en lot \(batches/\w+\) depuis \d\d:\d\d — nouvel essai", second.stdout)
    third = project.doit("generate:B-2")
    assert third.returncode == 1 and "NO_IMAGE" in third.stdout and "2 essais en lot" in third.stdout
    assert fake.batch.requests_submitted() == 2


def test_a_cancelled_job_is_submitted_again(batch_project):
    from google import genai
    from google.genai import types

    project, fake = batch_project
    fake.batch.delay = 3600
    project.doit("generate:B-2", check=True)
    (job,) = fake.batch.created
    client = genai.Client(api_key=DEFAULT_KEY, http_options=types.HttpOptions(
        api_version="v1beta", base_url=project.env["GOOGLE_GEMINI_BASE_URL"]))
    client.batches.cancel(name=job["name"])          # someone cancelled it in AI Studio
    again = project.doit("generate:B-2", check=True)
    assert "a été annulé (CANCELLED)" in again.stdout and len(fake.batch.created) == 2
    assert job["name"] in fake.batch.deleted


def test_an_interactive_run_never_pays_for_a_view_already_in_a_job(batch_project):
    project, fake = batch_project
    fake.batch.delay = 3600
    project.doit("generate:B-2", check=True)
    run = project.doit("generate:B-2", extra_env={"GEMINI_MODE": "interactive"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"B-2 1_face : en lot \(batches/\w+\) depuis \d\d:\d\d — relevée par une prochaine "
                     r"exécution", run.stdout), run.stdout
    assert fake.generate_requests == []
    fake.batch.finish()                                 # an interactive run collects it too
    done = project.doit("generate:B-2", extra_env={"GEMINI_MODE": "interactive"}, check=True)
    assert "B-2 1_face" in built(done) and records(project) == []
    assert len(fake.generate_requests) == 1             # only the detail, made from the collected face
    assert len(fake.batch.created) == 1


def test_an_unreachable_api_submits_nothing_and_keeps_what_is_pending(batch_project):
    project, fake = batch_project
    fake.batch.delay = 3600
    project.doit("generate:B-2", check=True)
    project.photo("C-3", "face.jpg", seed=5)
    run = project.doit("generate:B-2", "generate:C-3", extra_env={"GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9"})
    assert run.returncode == 1
    assert "API Gemini injoignable" in run.stdout and "Aucun lot n'est soumis" in run.stdout
    assert "B-2 1_face : en lot (batches/" in run.stdout           # still waiting for its job
    assert re.search(r"C-3 1_face : ÉCHEC — .*injoignable", run.stdout)
    assert len(fake.batch.created) == 1 and records(project)
