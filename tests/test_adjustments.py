"""Declared retouches (photos/<folder>/adjustments.toml), `doit adjust`, the retouch check and the
free fixes: real doit runs in temporary projects against the fake Gemini server, plus unit tests."""

from __future__ import annotations

import hashlib
import json
import tomllib

import numpy as np
import pytest
from helpers import built, summary
from PIL import Image, ImageDraw, ImageFilter

from catalogue.core.errors import InputError
from catalogue.core.settings import load_settings
from catalogue.generation import retouch_steps, retouches
from catalogue.imaging.checks import flat_lay_garment
from catalogue.imaging.colour import delta_e
from catalogue.imaging.colour_fixes import background_fix, color_transfer, light_aware_area

INSTR_1 = "Remove the t-shirt under the hoodie."
INSTR_2 = "Smooth the folds of the sleeves."


@pytest.fixture
def gemini_project(project, fake_gemini_for):
    project.photo("A-1", "face.jpg", seed=1)
    project.photo("A-1", "back.jpg", seed=2, logo=False)
    return project, fake_gemini_for


def calls(fake) -> list[dict]:
    return fake.generate_requests


def write_steps(project, folder: str, text: str):
    path = project.root / "photos" / folder / "adjustments.toml"
    path.write_text(text, encoding="utf-8")
    return path


def sidecar(project, folder: str, view: str) -> dict:
    return json.loads((project.output / folder / f"{view}.json").read_text())


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- declared steps through doit ----------------------------------------------------------------

def test_declared_step_is_applied_and_a_rerun_makes_no_call(gemini_project):
    project, fake = gemini_project
    write_steps(project, "A-1", f'[[2_back]]\ninstruction = "{INSTR_1}"\nref = "1_face"\nmodel = "flash"\n')
    run = project.doit()
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(calls(fake)) == 4  # face, back, detail, + the retouch of the back
    (step,) = [r for r in calls(fake) if r["parts"][-1]["text"].startswith(INSTR_1)]
    assert [p["kind"] for p in step["parts"]] == ["image", "image", "text"]  # current, ref, instruction
    assert step["model"] == "gemini-3.1-flash-image"
    assert step["parts"][1]["sha256"] == sha(project.output / "A-1" / "1_face.png")
    back_request = next(r for r in calls(fake)[:3] if len(r["parts"]) == 4)  # back: photo, style, anchor
    assert step["parts"][0]["sha256"] != back_request["parts"][0]["sha256"]  # the finished view, not the photo
    side = sidecar(project, "A-1", "2_back")
    (rec,) = side["adjustments"]
    assert rec["status"] == "accepted" and rec["from_cache"] is False and rec["cost_usd"] > 0
    assert rec["model"] == "gemini-3.1-flash-image" and rec["request_key"] and rec["check"]["delta_e"] < 3
    assert side["config"]["adjustments"][0]["instruction"] == INSTR_1
    assert "adjust1_ref" in side["inputs"]
    assert side["cost_usd"] > rec["cost_usd"]  # base + step

    again = project.doit(check=True)
    assert summary(again) == (0, 3, 0) and len(calls(fake)) == 4
    project.doit("forget", "2_back:A-1", check=True)  # doit's state lost: still nothing paid
    project.doit(check=True)
    assert len(calls(fake)) == 4


def test_editing_a_step_recalls_only_that_step(gemini_project):
    project, fake = gemini_project
    text = f'[[2_back]]\ninstruction = "{INSTR_1}"\n\n[[2_back]]\ninstruction = "{INSTR_2}"\n'
    path = write_steps(project, "A-1", text)
    project.doit(check=True)
    assert len(calls(fake)) == 5
    path.write_text(text.replace(INSTR_2, "Make the sleeves symmetrical."), encoding="utf-8")
    run = project.doit(check=True)
    assert built(run) == {"A-1 2_back"} and "A-1 2_back : généré" in run.stdout
    assert len(calls(fake)) == 6  # step 2 only: the base and step 1 come from the store
    assert calls(fake)[-1]["parts"][-1]["text"].startswith("Make the sleeves symmetrical.")
    side = sidecar(project, "A-1", "2_back")
    assert [r["from_cache"] for r in side["adjustments"]] == [True, False]


def test_doit_adjust_records_the_step_and_adjusting_the_face_rebuilds_the_detail(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    detail_before = sha(project.output / "A-1" / "3_detail_logo.png")
    run = project.doit("adjust", "--image", "output/A-1/1_face.png", "--prompt", INSTR_1, "--gemini-flash")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Retouche appliquée : output/A-1/1_face.png" in run.stdout
    steps = tomllib.loads((project.root / "photos/A-1/adjustments.toml").read_text())
    assert steps == {"1_face": [{"instruction": INSTR_1, "model": "flash"}]}
    # the face changed: its back (anchored on it) and its detail (cropped from it) follow
    assert built(run) == {"A-1 1_face", "A-1 2_back", "A-1 3_detail_logo"}
    assert len(calls(fake)) == 3 + 3
    assert sha(project.output / "A-1" / "3_detail_logo.png") != detail_before
    detail = sidecar(project, "A-1", "3_detail_logo")
    assert detail["inputs"]["source"]["sha256"] == sha(project.output / "A-1" / "1_face.png")


def test_refused_retouch_keeps_the_previous_image_and_force_accepts_it(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    back = project.output / "A-1" / "2_back.png"
    before = sha(back)
    fake.push({"kind": "ok", "recolour": [210, 30, 30]})  # the "retouch" repaints the garment red
    run = project.doit("adjust", "A-1", "2_back", "--prompt", "Fix the collar, width=2cm.")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Retouche refusée, image précédente gardée : output/A-1/2_back.png" in run.stdout
    assert "ΔE2000" in run.stdout and "INCERTAIN" in run.stdout
    assert sha(back) == before
    rec = sidecar(project, "A-1", "2_back")["adjustments"][-1]
    assert rec["status"] == "refused" and rec["check"]["delta_e"] > retouches.RETOUCH_LIMITS["delta_e_max"]
    assert len(calls(fake)) == 4

    forced = project.doit("adjust", "A-1", "2_back", "--prompt", "Fix the collar, width=2cm.", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "Retouche appliquée : output/A-1/2_back.png" in forced.stdout
    assert len(calls(fake)) == 4  # the refused answer was kept: accepting it costs nothing
    steps = tomllib.loads((project.root / "photos/A-1/adjustments.toml").read_text())
    assert steps == {"2_back": [{"instruction": "Fix the collar, width=2cm.", "force": True}]}  # updated, not doubled
    assert sha(back) != before
    garment = flat_lay_garment(Image.open(back))
    assert garment.lab[1] > 25  # red now (CIELAB a*)


def test_one_off_writes_beside_and_never_overwrites(gemini_project):
    project, fake = gemini_project
    look = project.root / "misc" / "look.png"
    look.parent.mkdir()
    flat_lay((40, 60, 120), size=(300, 400)).save(look)
    original = sha(look)
    run = project.doit("adjust", "--image", "misc/look.png", "--prompt", INSTR_1)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Retouche écrite : misc/look_adjusted.png" in run.stdout
    assert sha(look) == original and (project.root / "misc/look_adjusted.png").exists()
    assert Image.open(project.root / "misc/look_adjusted.png").size == (300, 400)
    again = project.doit("adjust", "--image", "misc/look.png", "--prompt", INSTR_1)
    assert "misc/look_adjusted-2.png" in again.stdout and len(calls(fake)) == 1  # never paid twice
    assert sha(look) == original
    assert not (project.root / "photos/A-1/adjustments.toml").exists()


def test_local_generator_skips_instructions_but_runs_fixes(project):
    project.photo("A-1", "face.jpg", colour=(40, 60, 120), seed=1)
    project.photo("A-1", "back.jpg", colour=(75, 95, 160), seed=2, logo=False)
    write_steps(project, "A-1", '[[2_back]]\ninstruction = "Fix the collar."\n\n[[2_back]]\nfix = "color-fix"\n')
    run = project.doit()
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(ln for ln in run.stdout.splitlines() if "A-1 2_back" in ln)
    assert "INCERTAIN" in line and "rendu local" in line
    side = sidecar(project, "A-1", "2_back")
    recs = side["adjustments"]
    assert [r["status"] for r in recs] == ["skipped", "applied"]
    # the colour was set on purpose: the QA judges it against the face, not against the back photo
    colour = side["qa"]["checks"]["colour"]
    assert colour["passed"] and "calée volontairement" in colour["message"]
    m = recs[1]["metrics"]
    assert m["delta_e_before"] > 5 and m["delta_e_after"] < 2
    face = flat_lay_garment(Image.open(project.output / "A-1/1_face.png"))
    back = flat_lay_garment(Image.open(project.output / "A-1/2_back.png"))
    assert delta_e(face.lab, back.lab) < 3


def test_malformed_or_looping_file_fails_that_reference_only(project):
    project.photo("A-1", "face.jpg", seed=1)
    project.photo("B-2", "face.jpg", seed=3)
    write_steps(project, "A-1", '# retouches\n[[1_face]]\ninstruction = "unterminated\n')
    run = project.doit()
    assert run.returncode == 1
    assert "adjustments.toml, ligne 3" in run.stdout
    assert summary(run)[2] == 2 and "B-2 1_face : généré" in run.stdout  # its two views
    write_steps(project, "A-1", '[[1_face]]\nfix = "color-fix"\nref = "3_detail_logo"\n')
    loop = project.doit()
    assert loop.returncode == 1 and "boucle" in loop.stdout
    write_steps(project, "A-1", '[[1_face]]\nfix = "colour-fix"\n')
    bad = project.doit()
    assert bad.returncode == 1 and "ligne 1" in bad.stdout and "colour-fix" in bad.stdout


HAND_WRITTEN = """\
# Mes retouches pour A-1 (écrites à la main)

[[1_face]]
    fix = "background-fix"      # le fond du studio est jaune

# le dos : d'abord le col
[[ "2_back" ]]
force = false   # refusé le 3 mars, à revoir
instruction = "Fix the collar, width=2cm."

# fin de mes notes
"""


def test_doit_adjust_keeps_the_persons_comments_and_layout(gemini_project):
    project, fake = gemini_project
    path = write_steps(project, "A-1", HAND_WRITTEN)
    project.doit(check=True)
    run = project.doit("adjust", "A-1", "2_back", "--prompt", "Fix the collar, width=2cm.", "--force")
    assert run.returncode == 0, run.stdout + run.stderr
    forced = HAND_WRITTEN.replace("force = false   # refusé", "force = true   # refusé")
    assert path.read_text(encoding="utf-8") == forced  # one value changed, in place, its comment kept
    run = project.doit("adjust", "A-1", "2_back", "--prompt", INSTR_2)
    assert run.returncode == 0, run.stdout + run.stderr
    assert path.read_text(encoding="utf-8") == forced + f'\n[[2_back]]\ninstruction = "{INSTR_2}"\n'
    assert tomllib.loads(path.read_text(encoding="utf-8")) == {
        "1_face": [{"fix": "background-fix"}],
        "2_back": [{"force": True, "instruction": "Fix the collar, width=2cm."}, {"instruction": INSTR_2}]}


def test_force_edits_only_its_own_table_in_an_interleaved_file(project):
    project.photo("A-1", "face.jpg", seed=1)
    settings = load_settings(project.root, environ={})
    text = ('[[2_back]]\ninstruction = "One"\n\n# the face, by hand\n[[1_face]]\nfix = "background-fix"\n\n'
            '  [[2_back]]\n  instruction = "Two"  # indented\n  # my note inside\n  ref = "1_face"\n'
            '\n# before the detail\n[[3_detail_logo]]\ninstruction = "Crop"\n')
    path = write_steps(project, "A-1", text)
    retouch_steps.record_step(settings, "A-1", "2_back", "Two", ref="1_face", force=True)
    assert path.read_text(encoding="utf-8") == text.replace('  ref = "1_face"\n', '  ref = "1_face"\n  force = true\n')


# --- the file --------------------------------------------------------------------------------

def test_record_step_appends_keeps_comments_and_round_trips(project):
    project.photo("A-1", "face.jpg", seed=1)
    settings = load_settings(project.root, environ={})
    path = retouch_steps.record_step(settings, "A-1", "2_back", 'Say "hi"\n\tthen \\ done é', ref="1_face")
    text = path.read_text()
    path.write_text(text + "# my own note\n")
    retouch_steps.record_step(settings, "A-1", "2_back", "Second", model="flash")
    retouch_steps.record_step(settings, "A-1", "2_back", "Second", model="flash", force=True)
    retouch_steps.record_fix(settings, "A-1", "1_face", "background-fix")
    text = path.read_text()
    assert "# my own note" in text
    data = tomllib.loads(text)
    assert data == {"2_back": [{"instruction": 'Say "hi"\n\tthen \\ done é', "ref": "1_face"},
                               {"instruction": "Second", "model": "flash", "force": True}],
                    "1_face": [{"fix": "background-fix"}]}
    with pytest.raises(InputError, match="Dossier introuvable"):
        retouch_steps.record_step(settings, "NOPE", "1_face", "x")
    with pytest.raises(InputError, match="Vue inconnue"):
        retouch_steps.record_step(settings, "A-1", "4_side", "x")


# --- the free fixes ------------------------------------------------------------------------------

def flat_lay(colour, bg=(243, 243, 243), size=(480, 640), seed=0, logo=False, vignette=0.0):
    """A finished-looking flat lay: a T-shirt with folds on a (possibly drifting) grey."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    fall = 1 - vignette * ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2)
    img = Image.fromarray((np.array(bg, float)[None, None] * fall[..., None]).clip(0, 255).astype(np.uint8))
    mask = Image.new("L", size, 0)
    cx = w // 2
    ImageDraw.Draw(mask).polygon(
        [(cx - .22 * w, .22 * h), (cx - .42 * w, .38 * h), (cx - .34 * w, .48 * h), (cx - .22 * w, .40 * h),
         (cx - .22 * w, .85 * h), (cx + .22 * w, .85 * h), (cx + .22 * w, .40 * h), (cx + .34 * w, .48 * h),
         (cx + .42 * w, .38 * h), (cx + .22 * w, .22 * h)], fill=255)
    folds = np.sin(xx / 23) * np.cos(yy / 31) * 8
    cloth = np.array(colour, float)[None, None] + folds[..., None] + rng.normal(0, 3, (h, w, 1))
    img.paste(Image.fromarray(cloth.clip(0, 255).astype(np.uint8)), mask=mask.filter(ImageFilter.GaussianBlur(1)))
    if logo:
        ImageDraw.Draw(img).rectangle([cx + .06 * w, .30 * h, cx + .14 * w, .36 * h], fill=(230, 200, 30))
    return img


def test_colour_transfer_moves_the_back_to_the_face_colour():
    face = flat_lay((40, 60, 120), logo=True, seed=1)
    back = flat_lay((75, 90, 155), seed=2)
    g_face = flat_lay_garment(face)
    before = delta_e(flat_lay_garment(back).lab, g_face.lab)
    res = color_transfer(back, face, what="la face")
    after = delta_e(flat_lay_garment(res.image).lab, g_face.lab)
    assert res.applied and before > 8 and after < 1.5, (before, after)
    grey = (np.asarray(back) == 243).all(-1)
    assert (np.asarray(res.image)[grey] == 243).all()  # the house grey stays exact
    lum = np.asarray(res.image.convert("L"), float)[flat_lay_garment(res.image).mask.nonzero()]
    assert lum.std() > 3  # the folds are still there


def test_colour_transfer_skips_a_garment_as_light_as_the_background():
    face = flat_lay((40, 60, 120))
    cream = flat_lay((240, 239, 236), seed=3)
    res = color_transfer(cream, face)
    assert not res.applied and res.uncertain and "aussi clair que le fond" in res.note
    assert res.image.tobytes() == cream.tobytes()


def test_background_fix_leaves_a_white_garment_whole():
    white = flat_lay((252, 252, 250), bg=(231, 230, 228), vignette=0.2, seed=4)
    before = light_aware_area(white)
    res = background_fix(white, white.size)
    after = light_aware_area(res.image)
    assert res.applied and before > 0.2
    assert abs(after - before) / before < 0.05, (before, after)
    arr = np.asarray(res.image)
    assert (arr[:8] == 243).all() and (arr[:, :8] == 243).all()  # the background is the house grey
    white_px = lambda a: int((np.asarray(a.convert("L")) >= 247).sum())  # noqa: E731
    assert white_px(res.image) >= 0.95 * white_px(white)


def test_a_retouch_for_a_view_the_reference_lacks_is_reported(project):
    project.photo("B-1")
    (project.root / "photos" / "B-1" / "adjustments.toml").write_text(
        '[[2_back]]\nfix = "background-fix"\n', encoding="utf-8")
    run = project.doit()
    assert run.returncode == 1
    assert "retouche pour 2_back" in run.stdout and "pas de photo de dos" in run.stdout


def test_two_identical_one_off_retouches_started_together_pay_once(gemini_project):
    """Issue 9: the one-off retouch goes through the one paid path, whose per-key lock holds
    across processes: two identical `doit adjust --image` started at once make one paid call."""
    project, fake = gemini_project
    fake.latency = 2.0
    look = project.root / "misc" / "look.png"
    look.parent.mkdir()
    flat_lay((40, 60, 120), size=(300, 400)).save(look)
    procs = [project.start_doit("adjust", "--image", "misc/look.png", "--prompt", INSTR_1) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len(calls(fake)) == 1, outs
    assert sum("réponse déjà payée" in out for out in outs) == 1
