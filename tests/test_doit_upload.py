"""`doit upload` end to end: real doit runs in a temporary project, the backend double on a real
PostgreSQL, the bundled samples rendered locally."""

from __future__ import annotations

import re
import shutil

import pytest
from fakes.postgres import shared_cluster
from fakes.reboul_backend import ReboulBackend

# Three of the bundled samples: with a back, face only, and one the shop does not know.
SAMPLES = {"L100001-V09A": "L100001/V09A", "R300010-V05": "R300010/V05", "W200300-V01": "W200300/V01"}


@pytest.fixture
def shop(samples_project):
    for folder in (samples_project.root / "photos").iterdir():
        if folder.name not in SAMPLES:
            shutil.rmtree(folder)
    pg = shared_cluster()
    pg.reset()
    ids = {folder: pg.add_product(ref, name=f"Produit {ref}") for folder, ref in SAMPLES.items()
           if folder != "W200300-V01"}  # one reference the shop does not know
    backend = ReboulBackend(pg.url).start()
    # Half-size views: what is sent and when does not depend on their size, and they render faster.
    samples_project.env.update(DATABASE_URL=pg.url, BACKEND_URL=backend.url, OUTPUT_SIZE="432x592")
    try:
        yield samples_project, backend, ids
    finally:
        backend.stop()


def test_doit_upload_publishes_each_reference_once(shop):
    project, backend, ids = shop
    refused = project.doit("upload")
    assert refused.returncode == 1
    assert "ALLOW_LOCAL_UPLOAD=1" in refused.stdout
    assert backend.calls("POST") == []

    # some local previews are INCERTAIN (no logo found on a detail, a busy background): a person looks first
    project.doit("approve", "--all", check=True)
    run = project.doit("upload", extra_env={"ALLOW_LOCAL_UPLOAD": "1"})
    assert run.returncode == 1, run.stdout + run.stderr  # W200300-V01 is unknown to the shop
    assert "Aucun produit trouvé pour la référence « W200300-V01 »" in run.stdout
    for folder, pid in ids.items():
        images = backend.get_images(pid)[1]
        expected = [0, 1, 2] if (project.output / folder / "2_back.png").exists() else [0, 2]
        assert [img["order"] for img in images] == expected, folder
    posts = len(backend.calls("POST"))
    assert posts == len(ids)

    again = project.doit("upload", extra_env={"ALLOW_LOCAL_UPLOAD": "1"})
    assert len(backend.calls("POST")) == posts  # nothing sent twice
    assert re.search(r"Terminé : 0 générée,", again.stdout)


def test_held_view_waits_for_doit_approve(shop):
    import json

    project, backend, ids = shop
    env = {"ALLOW_LOCAL_UPLOAD": "1"}
    project.doit("generate:L100001-V09A", check=True)
    side_path = project.output / "L100001-V09A" / "2_back.json"
    side = json.loads(side_path.read_text())
    side["qa"] = {"verdict": "held", "checks": {"style_copy": {
        "value": 1.2, "threshold": "≥ 6", "passed": False,
        "message": "vêtement copié de la référence de style : distance 1.2 (min 6)"}}}
    side_path.write_text(json.dumps(side))

    held = project.doit("upload:L100001-V09A", extra_env=env)
    assert held.returncode == 1 and "vêtement copié de la référence de style" in held.stdout
    assert backend.calls("POST") == []
    approve = project.doit("approve:L100001-V09A", check=True)
    assert "approuvé pour l'envoi" in approve.stdout
    project.doit("upload:L100001-V09A", extra_env=env, check=True)
    assert [i["order"] for i in backend.get_images(ids["L100001-V09A"])[1]] == [0, 1, 2]


PROBE = r"""
import contextlib, io, json, sys
from doit.doit_cmd import DoitMain
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = DoitMain().run(ARGS)
heavy = ("requests", "psycopg", "PIL", "numpy", "urllib3")
print(json.dumps({"code": code, "out": out.getvalue(),
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in heavy)}))
"""


def test_doit_upload_with_nothing_to_send_loads_no_heavy_library(shop):
    """The upload task's uptodate check (stamp.py) runs for every reference on every `doit upload`."""
    import json
    import subprocess
    import sys

    project, backend, ids = shop
    env = {"ALLOW_LOCAL_UPLOAD": "1"}
    project.doit(check=True)
    project.doit("approve", "--all", check=True)  # some local previews are INCERTAIN: a person looked
    project.doit(*(f"upload:{folder}" for folder in ids), extra_env=env, check=True)
    posts = len(backend.calls("POST"))
    probe = PROBE.replace("ARGS", repr([f"upload:{folder}" for folder in ids]))   # W200300-V01 is unknown: it fails
    proc = subprocess.run([sys.executable, "-c", probe], cwd=project.root, env={**project.env, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, result["out"]
    assert result["heavy"] == []
    assert len(backend.calls("POST")) == posts == len(ids)


def test_malformed_bulk_answer_fails_the_task_in_french_and_the_next_run_reconciles(shop):
    project, backend, ids = shop
    env = {"ALLOW_LOCAL_UPLOAD": "1"}
    pid = ids["L100001-V09A"]
    project.doit("generate:L100001-V09A", check=True)
    project.doit("approve:L100001-V09A", check=True)  # a local preview may be INCERTAIN: a person looked
    backend.fail_next("POST", f"/products/{pid}/images/bulk", mode="no_ids")
    run = project.doit("upload:L100001-V09A", extra_env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "réponse inattendue" in run.stdout and "prochaine exécution" in run.stdout
    assert "erreur inattendue" not in run.stdout + run.stderr and "KeyError" not in run.stdout + run.stderr
    assert not (project.output / "L100001-V09A" / "upload.json").exists()

    again = project.doit("upload:L100001-V09A", extra_env=env, check=True)
    assert "reprise" in again.stdout
    assert len(backend.calls("POST")) == 1                 # recognised, not sent again
    assert [i["order"] for i in backend.get_images(pid)[1]] == [0, 1, 2]
