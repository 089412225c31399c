"""Held views are not published until a person approves exactly that image."""

from __future__ import annotations

import json

from helpers import write_views

from catalogue.core import view_state


def hold_by_qa(output, folder, view="2_back"):
    side_path = output / folder / f"{view}.json"
    side = json.loads(side_path.read_text())
    side["qa"] = {"verdict": "held", "checks": {"colour": {
        "value": 14.2, "threshold": "≤ 7", "passed": False,
        "message": "couleur du vêtement éloignée de la photo : ΔE2000 = 14.2 (max 7)"}}}
    side_path.write_text(json.dumps(side))


def test_held_view_blocks_its_reference_until_approved(shop):
    pid = shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    hold_by_qa(shop.output, "L100001-V09A")
    held = shop.upload("L100001-V09A")
    assert held.skipped_reason and "ΔE2000 = 14.2" in held.skipped_reason
    assert "doit approve:L100001-V09A" in held.skipped_reason
    assert shop.posts() == []

    from catalogue.core.files import sha256_file

    sha = sha256_file(shop.output / "L100001-V09A" / "2_back.png")
    view_state.decide(shop.output / "L100001-V09A", "2_back", sha, "approved")
    done = shop.upload("L100001-V09A")
    assert done.skipped_reason is None and len(shop.images(pid)) == 3


def test_a_new_image_needs_a_new_approval(shop):
    from catalogue.core.files import sha256_file

    shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    hold_by_qa(shop.output, "L100001-V09A")
    folder = shop.output / "L100001-V09A"
    view_state.decide(folder, "2_back", sha256_file(folder / "2_back.png"), "approved")
    write_views(shop.output, "L100001-V09A", seed=7)  # regenerated: new bytes, QA held again
    hold_by_qa(shop.output, "L100001-V09A")
    assert shop.upload("L100001-V09A").skipped_reason


def test_a_person_can_hold_a_view_that_passed_qa(shop):
    from catalogue.core.files import sha256_file

    shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    folder = shop.output / "L100001-V09A"
    view_state.decide(folder, "1_face", sha256_file(folder / "1_face.png"), "held", note="pli raté")
    outcome = shop.upload("L100001-V09A")
    assert "retenue par une personne (pli raté)" in outcome.skipped_reason


# --- (issue 11 #5, #6) nothing goes online that nobody looked at -----------------------------------

def flag_uncertain(output, folder, view="3_detail_logo", note="aucun logo repéré : recadrage sur le haut de la poitrine"):
    side_path = output / folder / f"{view}.json"
    side = json.loads(side_path.read_text())
    side.update(uncertain=True, notes=[note])
    side_path.write_text(json.dumps(side))


def test_an_uncertain_view_blocks_its_reference_until_a_person_approves_it(shop):
    from catalogue.core.files import sha256_file

    pid = shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    flag_uncertain(shop.output, "L100001-V09A")
    held = shop.upload("L100001-V09A")
    assert held.skipped_reason and "3_detail_logo : incertaine, à vérifier : aucun logo repéré" in held.skipped_reason
    assert "doit approve:L100001-V09A" in held.skipped_reason
    assert shop.posts() == []
    st = view_state.view_state("a" * 64, {"uncertain": True, "notes": ["x"]}, {}, None, "1_face")
    assert st.state == "uncertain" and st.blocks_upload and st.needs_decision

    folder = shop.output / "L100001-V09A"
    view_state.decide(folder, "3_detail_logo", sha256_file(folder / "3_detail_logo.png"), "approved")
    done = shop.upload("L100001-V09A")
    assert done.skipped_reason is None and len(shop.images(pid)) == 3


def plain_garment_photo(path):
    """A garment with no logo at all: a smooth shading, no patch a logo finder could take for one."""
    import numpy as np
    from PIL import Image

    arr = np.zeros((480, 360, 3), np.float32)
    arr[:] = (236, 232, 226)
    t = np.linspace(0, 1, 480)[:, None, None]
    shade = np.broadcast_to(np.array([20, 40, 100]) * (1 - t) + np.array([90, 110, 190]) * t, arr.shape)
    arr[100:410, 90:270] = shade[100:410, 90:270]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def test_no_logo_found_on_a_detail_flags_it_uncertain_on_the_run_line_and_upload_waits(project):
    """« aucun logo repéré » makes the detail INCERTAIN in the sidecar, on the run's line and in the
    summary; `doit upload` refuses until `doit approve:<folder>`."""
    plain_garment_photo(project.root / "photos" / "PLAIN-1" / "face.png")
    run = project.doit("generate:PLAIN-1")
    assert run.returncode == 0, run.stdout + run.stderr
    side = json.loads((project.output / "PLAIN-1" / "3_detail_logo.json").read_text())
    assert side["uncertain"] is True and any(n.startswith("aucun logo repéré") for n in side["notes"])
    line = next(ln for ln in run.stdout.splitlines() if "PLAIN-1 3_detail_logo" in ln)
    assert "INCERTAIN (pas d'envoi avant approbation) : aucun logo repéré" in line, line
    assert "1 incertaine à vérifier" in run.stdout

    (project.root / "map.csv").write_text("PLAIN-1,1\n")
    env = {"ALLOW_LOCAL_UPLOAD": "1", "PRODUCTS_MAP": "map.csv", "BACKEND_URL": "http://127.0.0.1:9"}
    up = project.doit("upload:PLAIN-1", extra_env=env)
    assert up.returncode == 1
    assert "3_detail_logo : incertaine, à vérifier : aucun logo repéré" in up.stdout, up.stdout
    assert "doit approve:PLAIN-1" in up.stdout
    assert "Backend injoignable" not in up.stdout  # refused before any network
    project.doit("approve:PLAIN-1", check=True)
    after = project.doit("upload:PLAIN-1", extra_env=env)
    assert "incertaine" not in after.stdout and "injoignable" in after.stdout, after.stdout  # now it tries
