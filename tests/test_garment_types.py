"""Style references by garment type (issue 12): each product gets a style image of its own type —
declared, from the shop database's category, PRODUCTS_MAP's type column or inferred from its photo —
and the choice is visible (sidecar, plan, run line) and stable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from catalogue.imaging.silhouette import infer_garment
from helpers import built, summary

GREY = (243, 243, 243)


def _shape(kind: str, w: int, h: int) -> list[tuple[float, float]]:
    cx = w / 2
    if kind == "bottoms":      # waist, two legs, a crotch gap from 45 % of the height down
        return [(cx - 0.2 * w, 0.08 * h), (cx + 0.2 * w, 0.08 * h), (cx + 0.23 * w, 0.92 * h),
                (cx + 0.04 * w, 0.92 * h), (cx, 0.42 * h), (cx - 0.04 * w, 0.92 * h), (cx - 0.23 * w, 0.92 * h)]
    return [(cx - 0.2 * w, 0.2 * h), (cx - 0.42 * w, 0.36 * h), (cx - 0.34 * w, 0.48 * h), (cx - 0.22 * w, 0.4 * h),
            (cx - 0.22 * w, 0.82 * h), (cx + 0.22 * w, 0.82 * h), (cx + 0.22 * w, 0.4 * h), (cx + 0.34 * w, 0.48 * h),
            (cx + 0.42 * w, 0.36 * h), (cx + 0.2 * w, 0.2 * h)]


def garment_image(path: Path, kind: str, *, colour=(60, 70, 110), background=(236, 232, 226), size=(360, 480),
                  seed=0, flat_ref=False) -> Path:
    """A synthetic photo (uneven off-white, textured cloth) or a flat-lay reference (exact #F3F3F3)."""
    w, h = size
    rng = np.random.default_rng(seed)
    if flat_ref:
        img = Image.new("RGB", size, GREY)
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        light = 1.0 - 0.08 * (xx / w) - 0.05 * (yy / h)
        img = Image.fromarray((np.array(background)[None, None, :] * light[..., None]).clip(0, 255).astype(np.uint8))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon(_shape(kind, w, h), fill=255)
    cloth = np.array(colour)[None, None, :] + rng.normal(0, 0 if flat_ref else 6, (h, w, 1))
    img.paste(Image.fromarray(cloth.clip(0, 255).astype(np.uint8)), mask=mask.filter(ImageFilter.GaussianBlur(1)))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=90)
    return path


def family_refs(root: Path) -> None:
    """refs/tops/ and refs/bottoms/, each with its three views."""
    shutil.rmtree(root / "refs", ignore_errors=True)
    for fam in ("tops", "bottoms"):
        for view in ("1_face", "2_back", "3_detail_logo"):
            garment_image(root / "refs" / fam / f"{view}.png", fam, colour=(120, 120, 124), flat_ref=True,
                          size=(216, 296))


def sidecar(project, folder: str, view: str = "1_face") -> dict:
    return json.loads((project.output / folder / f"{view}.json").read_text())


def style_of(project, folder: str, view: str = "1_face") -> str:
    return sidecar(project, folder, view)["style"]["path"]


# --- inference ------------------------------------------------------------------------------------

def test_the_silhouette_tells_synthetic_tops_from_bottoms(tmp_path):
    cases = []
    for i, (colour, bg) in enumerate([((60, 70, 110), (236, 232, 226)), ((150, 40, 40), (240, 240, 236)),
                                      ((30, 30, 30), (225, 222, 215))]):
        for kind in ("tops", "bottoms"):
            cases.append((garment_image(tmp_path / f"p{i}{kind}.jpg", kind, colour=colour, background=bg, seed=i), kind))
            cases.append((garment_image(tmp_path / f"r{i}{kind}.png", kind, colour=colour, flat_ref=True), kind))
    got = [(p.name, infer_garment(Image.open(p)).family, kind) for p, kind in cases]
    assert [g for g in got if g[1] != g[2]] == []


# --- the product's type, from each source ---------------------------------------------------------

def _typed_project(project):
    family_refs(project.root)
    garment_image(project.root / "photos" / "TOP-1" / "face.jpg", "tops")
    garment_image(project.root / "photos" / "BOT-1" / "face.jpg", "bottoms", seed=1)
    return project


def test_inferred_declared_and_products_map_types_pick_their_family(project):
    _typed_project(project)
    # A top's photo declared a bottom (the person knows better), and a PRODUCTS_MAP type column.
    garment_image(project.root / "photos" / "DECL-1" / "face.jpg", "tops", seed=2)
    (project.root / "photos" / "DECL-1" / "type.txt").write_text("bas\n")
    garment_image(project.root / "photos" / "MAP-1" / "face.jpg", "bottoms", seed=3)
    (project.root / "map.csv").write_text("reference,product_id,type\nMAP/1,7,Vestes\n")
    proc = project.doit(extra_env={"PRODUCTS_MAP": "map.csv"})
    assert summary(proc)[2] == 0, proc.stdout
    assert style_of(project, "TOP-1") == "tops/1_face.png"
    assert style_of(project, "BOT-1") == "bottoms/1_face.png"
    assert sidecar(project, "BOT-1")["garment"]["source"] == "inferred"
    assert style_of(project, "DECL-1") == "bottoms/1_face.png"
    assert sidecar(project, "DECL-1")["garment"]["source"] == "declared"
    assert not sidecar(project, "DECL-1")["uncertain"]     # a declaration corrects the inference
    # PRODUCTS_MAP says « Vestes », the photo says trousers: the map wins, flagged INCERTAIN.
    assert style_of(project, "MAP-1") == "tops/1_face.png"
    side = sidecar(project, "MAP-1")
    assert side["garment"]["source"] == "map" and side["uncertain"]
    assert any("PRODUCTS_MAP" in n and "bas" in n for n in side["notes"])
    assert "MAP-1 1_face" in proc.stdout and "INCERTAIN" in proc.stdout.split("MAP-1 1_face", 1)[1].splitlines()[0]
    # Every view of a product uses its family: the detail too.
    assert style_of(project, "BOT-1", "3_detail_logo") == "bottoms/3_detail_logo.png"


def test_the_database_category_picks_the_family_and_a_change_rebuilds_only_that_product(project, shop):
    _typed_project(project)
    garment_image(project.root / "photos" / "CAT-1" / "face.jpg", "tops", seed=4)
    pids = {f: shop.pg.add_product(f.replace("-", "/")) for f in ("TOP-1", "BOT-1", "CAT-1")}
    shop.pg.set_category(pids["CAT-1"], "Pantalons", "pantalons")
    shop.pg.set_category(pids["TOP-1"], "Sweats", "sweats")
    env = {"DATABASE_URL": shop.pg.url}
    proc = project.doit(extra_env=env)
    assert summary(proc)[2] == 0, proc.stdout
    side = sidecar(project, "CAT-1")
    assert side["style"]["path"] == "bottoms/1_face.png"
    assert side["garment"]["source"] == "database" and "Pantalons" in side["garment"]["why"]
    assert side["uncertain"]  # the photo is a top: the disagreement is flagged, never silent
    assert any("Pantalons" in n for n in side["notes"])
    assert not sidecar(project, "TOP-1")["uncertain"]
    assert project.doit(extra_env=env).stdout.count(": généré") == 0

    shop.pg.set_category(pids["CAT-1"], "Sweats", "sweats")   # someone fixes the category
    plan = project.doit("plan", extra_env=env).stdout
    changed = [line for line in plan.splitlines() if line.startswith("  à générer")]
    assert changed and all(" CAT-1 " in line for line in changed), plan
    assert "type de vêtement changé" in plan and "Sweats" in plan
    proc = project.doit(extra_env=env)
    assert built(proc) == {"CAT-1 1_face", "CAT-1 3_detail_logo"}, proc.stdout
    assert style_of(project, "CAT-1") == "tops/1_face.png"
    assert not sidecar(project, "CAT-1")["uncertain"]


# --- the shop's mixed layout ----------------------------------------------------------------------

def _mixed_refs(root: Path) -> None:
    """Like the shop's refs/: face.jpg (a top) beside face/ holding a top and a pair of trousers."""
    shutil.rmtree(root / "refs", ignore_errors=True)
    refs = root / "refs"
    garment_image(refs / "face.jpg", "tops", colour=(20, 20, 24), flat_ref=True, size=(216, 296))
    garment_image(refs / "face" / "face_2.jpg", "tops", colour=(10, 90, 180), flat_ref=True, size=(216, 296))
    garment_image(refs / "face" / "face_b.jpg", "bottoms", colour=(140, 155, 175), flat_ref=True, size=(216, 296))
    garment_image(refs / "3_detail_logo.png", "tops", colour=(120, 120, 124), flat_ref=True, size=(216, 296))


def test_the_mixed_layout_picks_by_type_and_an_image_of_the_other_type_moves_no_product(project):
    _mixed_refs(project.root)
    tops = [f"TOP-{i}" for i in range(6)]
    for i, f in enumerate(tops):
        garment_image(project.root / "photos" / f / "face.jpg", "tops", seed=10 + i)
    garment_image(project.root / "photos" / "BOT-1" / "face.jpg", "bottoms", seed=20)
    plan = project.doit("plan").stdout
    assert "face/face_b.jpg\" = \"bas\"" in plan and "face.jpg\" = \"haut\"" in plan   # listed to correct
    proc = project.doit()
    assert summary(proc)[2] == 0, proc.stdout
    assert style_of(project, "BOT-1") == "face/face_b.jpg"
    chosen = {f: style_of(project, f) for f in tops}
    assert set(chosen.values()) <= {"face.jpg", "face/face_2.jpg"} and len(set(chosen.values())) == 2, chosen

    # Another pair of trousers in the folder: no top moves, nothing is rebuilt for them.
    garment_image(project.root / "refs" / "face" / "face_c.jpg", "bottoms", colour=(90, 80, 60), flat_ref=True,
                  size=(216, 296))
    proc = project.doit()
    assert summary(proc)[2] == 0, proc.stdout
    assert not any(b.startswith("TOP-") for b in built(proc)), proc.stdout
    assert {f: style_of(project, f) for f in tops} == chosen


def test_a_declaration_in_types_toml_overrides_the_inference(project):
    _mixed_refs(project.root)
    (project.root / "refs" / "types.toml").write_text('"face/face_2.jpg" = "bas"\n')
    garment_image(project.root / "photos" / "BOT-1" / "face.jpg", "bottoms", seed=20)
    (project.root / "photos" / "BOT-1" / "type.txt").write_text("pantalon\n")
    assert summary(project.doit())[2] == 0
    # Two bottoms now (face_b inferred, face_2 declared): one of them, by the stable choice.
    assert style_of(project, "BOT-1") in ("face/face_b.jpg", "face/face_2.jpg")


def test_the_flat_layout_stays_one_family_for_everything(project):
    garment_image(project.root / "photos" / "BOT-1" / "face.jpg", "bottoms", seed=20)
    assert summary(project.doit())[2] == 0
    side = sidecar(project, "BOT-1")
    assert side["style"]["path"] == "1_face.png" and side.get("garment") is None and not side["uncertain"]
    assert not (project.output / ".state" / "garment_types.json").exists()   # nothing inferred: no need
