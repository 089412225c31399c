"""The incremental pipeline, through real doit runs in a temporary project (local renderer)."""

from __future__ import annotations

import re
import signal

import pytest
from helpers import built, garment_photo, summary


@pytest.fixture
def three_refs(project):
    project.photo("L100001-V09A", "face.jpg", seed=1)
    project.photo("L100001-V09A", "back.jpg", seed=2, logo=False)
    project.photo("SI-8015-V0029", "face.jpg", colour=(140, 30, 40), seed=3)
    project.photo("B100004-V20", "Face.JPG", colour=(70, 90, 50), seed=4)
    return project


ALL_VIEWS = {"L100001-V09A 1_face", "L100001-V09A 2_back", "L100001-V09A 3_detail_logo",
             "SI-8015-V0029 1_face", "SI-8015-V0029 3_detail_logo",
             "B100004-V20 1_face", "B100004-V20 3_detail_logo"}


def test_first_run_builds_everything_and_second_run_nothing(three_refs):
    first = three_refs.doit()
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.splitlines()[0].startswith("Générateur : LOCAL")
    assert built(first) == ALL_VIEWS
    assert summary(first) == (7, 0, 0)
    assert not (three_refs.output / "SI-8015-V0029" / "2_back.png").exists()  # no back photo, no back view
    before = three_refs.mtimes()

    second = three_refs.doit()
    assert second.returncode == 0
    assert summary(second) == (0, 7, 0)
    assert built(second) == set()
    assert three_refs.mtimes() == before


def test_changed_face_photo_rebuilds_exactly_its_face_and_detail(three_refs):
    three_refs.doit(check=True)
    garment_photo(three_refs.root / "photos/L100001-V09A/face.jpg", colour=(20, 90, 60), seed=9)
    run = three_refs.doit(check=True)
    # The local renderer does not anchor the back on the face, so 2_back stays.
    assert built(run) == {"L100001-V09A 1_face", "L100001-V09A 3_detail_logo"}


def test_changed_detail_style_reference_rebuilds_only_detail_views(three_refs):
    from helpers import style_ref

    three_refs.doit(check=True)
    style_ref(three_refs.root / "refs/3_detail_logo.png", "3_detail_logo", size=(240, 300))
    run = three_refs.doit(check=True)
    assert built(run) == {v for v in ALL_VIEWS if v.endswith("3_detail_logo")}


def test_deleted_output_rebuilds_only_itself(three_refs):
    three_refs.doit(check=True)
    (three_refs.output / "L100001-V09A/1_face.png").unlink()
    run = three_refs.doit(check=True)
    # 1_face comes back identical (deterministic), so its detail view is not redone.
    assert built(run) == {"L100001-V09A 1_face"}


def test_lost_doit_state_or_forget_costs_nothing(three_refs):
    three_refs.doit(check=True)
    before = three_refs.mtimes()
    for f in three_refs.root.glob(".doit.sqlite*"):
        f.unlink()
    run = three_refs.doit(check=True)
    assert summary(run)[0] == 0 and built(run) == set()
    assert three_refs.mtimes() == before
    three_refs.doit("forget", "1_face:L100001-V09A", check=True)
    run = three_refs.doit(check=True)
    assert built(run) == set() and three_refs.mtimes() == before


def test_bare_forget_and_clean_keep_the_catalogue(three_refs):
    three_refs.doit(check=True)
    before = three_refs.mtimes()
    forget = three_refs.doit("forget")
    assert "doit forget sans tâche" in forget.stdout  # refused: a task must be named
    three_refs.doit("clean", check=True)
    assert three_refs.mtimes() == before
    run = three_refs.doit(check=True)
    assert summary(run) == (0, 7, 0) and "déjà à jour" not in run.stdout  # doit still knows them all


def test_the_settings_digest_is_the_one_doit_records(three_refs):
    """The view and upload families hand doit their settings' digest, computed once per family
    (`config_digest`): it must be the md5 doit's config_changed records from the dict, or an
    upgrade rebuilds (and, with Gemini, pays for) every view of the catalogue."""
    import json
    import sqlite3

    from doit.tools import config_changed

    from catalogue.core.settings import load_settings
    from catalogue.core.views import VIEWS
    from catalogue.tasks.view_tasks import view_config

    project = three_refs
    project.doit(check=True)
    with sqlite3.connect(project.root / ".doit.sqlite") as db:
        values = {task: json.loads(data)["_values_:"] for task, data in db.execute("SELECT task_id, task_data FROM doit")}
    settings = load_settings(project.root, environ={**project.env, "GENERATOR": "local"})
    for view in VIEWS:
        assert values[f"{view.name}:L100001-V09A"]["_config_changed"] == config_changed(
            view_config(settings, view))._calc_digest()
    assert "Terminé : 0 générée, 7 à jour" in project.doit().stdout


def test_the_graph_loads_without_the_garbage_collector_and_the_run_collects(project):
    """`doit` builds its graph with the cyclic collector off (FrozenGraph: a no-op run at 5,000
    references spent a quarter of its time in it), and turns it back on before the first task:
    a long build must still free what it no longer uses."""
    (project.root / "dodo.py").write_text(
        "import gc, json\n"
        "LOAD = gc.isenabled()\n"
        "def task_probe():\n"
        "    def probe():\n"
        "        open('gc.json', 'w').write(json.dumps([LOAD, gc.isenabled()]))\n"
        "    return {'actions': [probe], 'verbosity': 2}\n")
    project.doit(check=True)
    assert (project.root / "gc.json").read_text() == "[false, true]"


def test_one_reference_by_name(three_refs):
    run = three_refs.doit("generate:SI-8015-V0029", check=True)
    assert built(run) == {"SI-8015-V0029 1_face", "SI-8015-V0029 3_detail_logo"}


def test_parallel_threads_give_whole_lines(three_refs):
    run = three_refs.doit("-n", "2", check=True)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == 7
    assert all(re.match(r"^\[\d+/7\] \S+ \S+ : généré \(local\) en [\d.]+ s", ln) for ln in lines), lines


def test_plan_agrees_with_the_next_run(three_refs):
    plan = three_refs.doit("plan", check=True)
    assert "Plan : 7 vues à générer" in plan.stdout
    three_refs.doit(check=True)
    garment_photo(three_refs.root / "photos/B100004-V20/Face.JPG", colour=(200, 120, 30), seed=5)
    (three_refs.output / "SI-8015-V0029/3_detail_logo.png").unlink()
    plan = three_refs.doit("plan", check=True)
    planned = {" ".join(m.groups()) for m in re.finditer(r"à générer  (\S+) (\S+) — ", plan.stdout)}
    assert planned == {"B100004-V20 1_face", "B100004-V20 3_detail_logo", "SI-8015-V0029 3_detail_logo"}
    assert "entrée modifiée (Face.JPG)" in plan.stdout
    assert "amont reconstruit (1_face)" in plan.stdout
    assert "image absente" in plan.stdout
    assert built(three_refs.doit(check=True)) == planned
    assert "Plan : 0 vue à générer" in three_refs.doit("plan", check=True).stdout


def _many_refs(project, n):
    for i in range(n):
        project.photo(f"R{i:03d}-V1", "face.jpg", size=(900, 1200), seed=i)
    return project


def test_sigterm_keeps_finished_work(project):
    _many_refs(project, 8)
    proc = project.start_doit()
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if sum(1 for s in seen if " : généré" in s) >= 4:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    finished = built(type("P", (), {"stdout": "".join(seen) + rest})())
    assert 4 <= len(finished) < 16
    run = project.doit(check=True)
    again = built(run) | {f"{m[1]} {m[2]}" for m in re.finditer(r"(\S+) (\S+) : déjà à jour", run.stdout)}
    assert not (again & finished), "views finished before SIGTERM were processed again"
    assert summary(run)[0] + len(finished) == 16


def test_two_overlapping_runs_never_build_a_view_twice(project):
    _many_refs(project, 6)
    first = project.start_doit()
    line = first.stdout.readline()  # the first run holds the lock once it prints
    assert line.startswith("Générateur")
    second = project.doit()
    out, _ = first.communicate(timeout=120)
    assert second.returncode == 0
    assert "Une autre exécution est déjà en cours" in second.stdout
    assert built(second) == set()
    assert first.returncode == 0 and len(built(type("P", (), {"stdout": out})())) == 12


def test_output_size_follows_the_style_reference_capped_by_image_size(project):
    from helpers import style_ref
    from PIL import Image

    style_ref(project.root / "refs" / "1_face.png", "1_face", size=(1500, 2000))
    project.photo("A-1")
    project.doit("1_face:A-1", check=True, extra_env={"IMAGE_SIZE": "1K"})
    assert Image.open(project.output / "A-1" / "1_face.png").size == (768, 1024)
    project.doit("1_face:A-1", check=True, extra_env={"IMAGE_SIZE": "1K", "OUTPUT_SIZE": "400x500"})
    assert Image.open(project.output / "A-1" / "1_face.png").size == (400, 500)
