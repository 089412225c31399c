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
