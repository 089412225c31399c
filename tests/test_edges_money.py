"""Never pay twice, never lose paid work, at the edges a real machine hits (issue 10, items 1-6;
issue 9, item 3): real doit runs against the fake Gemini, whose request log is the witness of
what was paid."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from helpers import (can_mount, doit_on_tmpfs, garment_photo, ledger_lines, paid_lines, stored_answers,
                     summary, wait_until)

from catalogue.core.errors import BudgetExceeded
from catalogue.generation.ledger import Ledger

needs_mount = pytest.mark.skipif(not can_mount(), reason="needs unshare and tmpfs (a private mount namespace)")


def answer_of(project, folder: str, view: str):
    """(metadata path, metadata) of the stored answer of one view."""
    for meta_path in stored_answers(project):
        meta = json.loads(meta_path.read_text())
        if meta.get("folder") == folder and meta.get("view") == view:
            return meta_path, meta
    raise AssertionError(f"no stored answer for {folder} {view}")


# --- 1. read-only or full output folder --------------------------------------------------------

@needs_mount
def test_read_only_output_fails_at_once_and_pays_nothing(gemini_project):
    project, fake = gemini_project
    (run,) = doit_on_tmpfs(project, [["-n", "2"]], options="ro")
    assert run.returncode == 1, run.stdout
    assert "lecture seule" in run.stdout and str(project.output) in run.stdout, run.stdout
    assert "Traceback" not in run.stdout
    assert len(fake.generate_requests) == 0


@needs_mount
def test_full_output_stops_paid_calls_at_the_first_write_error(gemini_project, tmp_path):
    project, fake = gemini_project
    for i in range(6):
        project.photo(f"C-{i}", "face.jpg", colour=(20 + 30 * i, 90, 60), seed=10 + i)
    kept = tmp_path / "kept"
    (run,) = doit_on_tmpfs(project, [["-n", "1"]], options="size=900k", keep=kept)
    answers = list((kept / ".state" / "answers").rglob("*.json"))
    assert run.returncode == 1, run.stdout
    assert "disque plein" in run.stdout, run.stdout
    assert "plus aucun appel payant" in run.stdout, run.stdout  # the views after the first write error
    # at most the call whose answer met the full disk is lost; no paid call starts after it
    assert 0 < len(fake.generate_requests) <= len(answers) + 1, (len(fake.generate_requests), len(answers), run.stdout)


def test_a_paid_call_counts_in_the_run_cost_even_when_its_ledger_line_cannot_be_written(tmp_path):
    (tmp_path / "state").write_text("a file where the ledger's folder should be")
    ledger = Ledger(tmp_path / "state" / "ledger.jsonl", max_cost=1.0)
    ledger.record(folder="A-1", view="1_face", cost_usd=0.6, outcome="ok")  # the call was paid
    assert ledger.run_cost == 0.6 and ledger.write_error
    with pytest.raises(BudgetExceeded):
        ledger.check_budget(0.5)


# --- 2. SIGTERM or Ctrl-C without -n ------------------------------------------------------------

def test_sigterm_without_n_keeps_the_answer_of_the_call_under_way(gemini_project):
    project, fake = gemini_project
    fake.latency = 3.0
    proc = project.start_doit()
    wait_until(lambda: len(fake.generate_requests) >= 1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "Interrompu" in out and "Traceback" not in out, out
    assert len(stored_answers(project)) == len(fake.generate_requests) >= 1
    fake.latency = 0
    project.doit(check=True)
    assert len(fake.generate_requests) == 5  # over both runs, every view was paid exactly once


# --- 3. the run lock and the per-key lock -------------------------------------------------------

def test_a_deleted_lock_file_does_not_let_a_second_run_in(gemini_project):
    project, fake = gemini_project
    fake.latency = 1.0
    first = project.start_doit("-n", "2")
    wait_until(lambda: len(fake.generate_requests) >= 1)
    for lock in project.root.glob(".doit.lock"):
        lock.unlink()
    second = project.doit("-n", "2")
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert len(fake.generate_requests) == 5, second.stdout
    assert "Une autre exécution est déjà en cours" in second.stdout, second.stdout + second.stderr


def test_a_second_run_from_another_folder_takes_the_lock_too(gemini_project, tmp_path):
    project, fake = gemini_project
    fake.latency = 1.0
    first = project.start_doit("-n", "2")
    wait_until(lambda: len(fake.generate_requests) >= 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second = subprocess.run([sys.executable, "-m", "doit", "-f", str(project.root / "dodo.py"), "-n", "2"],
                            cwd=elsewhere, env=project.env, capture_output=True, text=True, timeout=120)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert len(fake.generate_requests) == 5, second.stdout
    assert "Une autre exécution est déjà en cours" in second.stdout, second.stdout + second.stderr


def test_two_identical_one_off_retouches_started_at_once_make_one_paid_call(gemini_project):
    project, fake = gemini_project
    garment_photo(project.root / "misc" / "look.png", seed=7)
    fake.latency = 1.5
    args = ("adjust", "--image", "misc/look.png", "--prompt", "Remove the crease on the left sleeve.")
    procs = [project.start_doit(*args) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(fake.generate_requests) == 1, outs
    assert sum("réponse déjà payée" in out for out in outs) == 1, outs


# --- 4. answer store integrity ------------------------------------------------------------------

@pytest.mark.parametrize("damaged", ["answer", "metadata"])
def test_a_damaged_stored_answer_is_set_aside_said_and_paid_again_once(gemini_project, damaged):
    project, fake = gemini_project
    project.doit(check=True)
    meta_path, meta = answer_of(project, "B-2", "3_detail_logo")
    path = meta_path.with_name(meta["file"]) if damaged == "answer" else meta_path
    path.write_bytes(path.read_bytes()[:400 if damaged == "answer" else 30])
    (project.output / "B-2" / "3_detail_logo.png").unlink()
    run = project.doit()
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(ln for ln in run.stdout.splitlines() if "B-2 3_detail_logo :" in ln)
    assert len(fake.generate_requests) == 6, run.stdout
    assert "réponse gardée abîmée" in line, run.stdout
    assert summary(project.doit(check=True)) == (0, 5, 0) and len(fake.generate_requests) == 6


# --- 5. ledger: whole lines only ------------------------------------------------------------------

def test_a_partial_last_ledger_line_does_not_swallow_the_next_record(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    with open(project.output / ".state" / "ledger.jsonl", "ab") as f:
        f.write(b'{"time": "2026-01-01T00:00:00.000+00:00", "folder": "A-')  # a crash mid-write
    garment_photo(project.root / "photos" / "B-2" / "face.jpg", colour=(30, 140, 60), seed=8)
    project.doit(check=True)
    assert len(fake.generate_requests) == 7
    assert len([r for r in paid_lines(project) if r["outcome"] == "ok"]) == 7


# --- 6. kill -9 with calls in flight -------------------------------------------------------------

def test_kill_9_with_calls_in_flight_is_reconciled_into_the_ledger_and_the_summary(gemini_project):
    project, fake = gemini_project
    fake.latency = 3.0
    proc = project.start_doit("-n", "2")
    wait_until(lambda: len(fake.generate_requests) >= 2)
    proc.kill()
    proc.communicate(timeout=30)
    killed = len(fake.generate_requests)
    fake.latency = 0
    run = project.doit()
    assert run.returncode == 0, run.stdout + run.stderr
    lines = ledger_lines(project)
    accounted = [r for r in lines if r["outcome"] in ("ok", "interrupted")]
    assert len(accounted) == len(fake.generate_requests) == 5 + killed  # every request the API got is in the ledger
    assert f"{killed} appel(s) payant(s) interrompu(s)" in run.stdout, run.stdout
    interrupted = sum(r["cost_usd"] for r in lines if r["outcome"] == "interrupted")
    assert interrupted > 0
    again = project.doit(check=True)
    assert "interrompu(s)" not in again.stdout  # reconciled once
