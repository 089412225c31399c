"""Nothing stale, nothing misleading, no secret shown, at the edges (issue 10, items 7-12, 14, 15):
real doit runs, the fake Gemini's request log as the witness of what was paid."""

from __future__ import annotations

import io
import os
import stat

import pytest
from helpers import built, garment_photo, stored_answers, summary, wait_until
from PIL import Image


def failures(run) -> dict[str, str]:
    """'  ✗ folder' -> its failure lines (joined)."""
    out: dict[str, str] = {}
    for line in run.stdout.splitlines():
        if line.startswith("  ✗ "):
            folder, message = line.split(" — ", 1)
            out[folder] = f"{out[folder]} | {message}" if folder in out else message
    return out


# --- 7. a photo replaced during a run ------------------------------------------------------------

def test_a_photo_replaced_while_its_view_is_made_is_stale_afterwards(project, fake_gemini_for):
    fake = fake_gemini_for
    project.photo("A-1", "face.jpg", seed=1)
    fake.latency = 2.0
    proc = project.start_doit("1_face:A-1")
    wait_until(lambda: len(fake.generate_requests) >= 1)  # the view hashed its photo and is being paid for
    garment_photo(project.root / "photos" / "A-1" / "face.jpg", colour=(20, 140, 60), seed=9)
    out, _ = proc.communicate(timeout=60)
    assert "remplacé(e) pendant la fabrication" in out, out  # nothing made from the old photo is kept
    fake.latency = 0
    plan = project.doit("plan", "1_face:A-1", check=True)
    assert "à générer  A-1 1_face" in plan.stdout, plan.stdout
    run = project.doit("1_face:A-1", check=True)
    assert built(run) == {"A-1 1_face"} and len(fake.generate_requests) == 2


# --- 8. a corrupted view or sidecar ------------------------------------------------------------

def test_a_corrupted_sidecar_is_stale_and_refinished_for_free(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    (project.output / "B-2" / "1_face.json").write_text("{garbage\n")
    plan = project.doit("plan", check=True)
    assert "à générer  B-2 1_face" in plan.stdout, plan.stdout
    run = project.doit(check=True)
    assert "B-2 1_face : repris de la réponse déjà payée" in run.stdout, run.stdout
    assert len(fake.generate_requests) == 5


def test_a_truncated_view_is_refinished_for_free_and_its_detail_does_not_fail(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    face = project.output / "A-1" / "1_face.png"
    face.write_bytes(face.read_bytes()[:1000])
    run = project.doit()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "A-1 1_face : repris de la réponse déjà payée" in run.stdout, run.stdout
    assert "recopiez" not in run.stdout
    assert len(fake.generate_requests) == 5
    Image.open(face).load()


# --- 9. a corrupted doit database ------------------------------------------------------------

def test_a_corrupted_doit_database_is_set_aside_and_the_run_goes_on_for_free(gemini_project):
    project, fake = gemini_project
    project.doit(check=True)
    (project.root / ".doit.sqlite").write_bytes(os.urandom(4096))
    run = project.doit()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "DatabaseException" not in run.stdout + run.stderr
    assert "mise de côté" in run.stdout + run.stderr, run.stdout + run.stderr
    assert summary(run) == (0, 5, 0) and len(fake.generate_requests) == 5
    assert list(project.root.glob(".doit.sqlite.broken-*"))


# --- 10. symlink loops, dangling links ------------------------------------------------------------

def test_a_symlink_loop_or_a_dangling_link_fails_that_reference_alone(project):
    project.photo("GOOD-1")
    loop = project.root / "photos" / "LOOP-1"
    loop.mkdir()
    os.symlink("face.jpg", loop / "face.jpg")
    dangling = project.root / "photos" / "DANGLING-1"
    dangling.mkdir()
    os.symlink("/nowhere/face.jpg", dangling / "face.jpg")
    run = project.doit()
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert built(run) == {"GOOD-1 1_face", "GOOD-1 3_detail_logo"}
    fails = failures(run)
    assert "lien symbolique en boucle" in fails["  ✗ LOOP-1"], fails
    assert "lien symbolique cassé" in fails["  ✗ DANGLING-1"] and "/nowhere/face.jpg" in fails["  ✗ DANGLING-1"]


def test_a_symlink_loop_among_the_style_references_fails_only_what_needs_it(project):
    project.photo("A-1")
    os.symlink("2_back.png", project.root / "refs" / "2_back.png.tmp")
    (project.root / "refs" / "2_back.png").unlink()
    os.replace(project.root / "refs" / "2_back.png.tmp", project.root / "refs" / "2_back.png")  # 2_back.png -> itself
    project.photo("A-1", "back.jpg")
    run = project.doit()
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    assert built(run) == {"A-1 1_face", "A-1 3_detail_logo"}
    assert "lien symbolique en boucle" in run.stdout and "2_back.png" in run.stdout, run.stdout


# --- 11. two face photos, animations ------------------------------------------------------------

@pytest.mark.parametrize("second", ["face.png", "1_face.jpg"])
def test_two_face_photos_fail_that_reference_naming_both(project, second):
    project.photo("GOOD-1")
    project.photo("TWO-1", "face.jpg", seed=1)
    project.photo("TWO-1", second, seed=2)
    run = project.doit()
    assert run.returncode == 1
    assert built(run) == {"GOOD-1 1_face", "GOOD-1 3_detail_logo"}
    message = failures(run)["  ✗ TWO-1"]
    assert "face.jpg" in message and second in message and "deux photos de face" in message, message


def test_an_animation_renamed_jpg_is_refused_with_a_message(project):
    frames = [Image.new("RGB", (200, 260), (40 * i, 60, 120)) for i in range(3)]
    folder = project.root / "photos" / "ANIM-1"
    folder.mkdir()
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (folder / "face.jpg").write_bytes(buf.getvalue())
    run = project.doit()
    assert run.returncode == 1
    assert "animation" in failures(run)["  ✗ ANIM-1"], run.stdout


# --- 12. messages naming what is wrong with that file -----------------------------------------

def test_a_truncated_heic_and_an_empty_style_reference_say_what_is_wrong(project):
    from pillow_heif import from_pillow

    heic = io.BytesIO()
    from_pillow(Image.open(garment_photo(project.root / "tmp.jpg"))).save(heic, format="HEIF")
    folder = project.root / "photos" / "HEIC-1"
    folder.mkdir()
    (folder / "face.heic").write_bytes(heic.getvalue()[: len(heic.getvalue()) // 2])
    project.photo("A-1")
    (project.root / "refs" / "3_detail_logo.png").write_bytes(b"")
    run = project.doit()
    fails = failures(run)
    heic_msg = fails["  ✗ HEIC-1"]
    assert "HEIC" in heic_msg and "incomplète" in heic_msg and "remplacez-la par un" not in heic_msg, heic_msg
    style_msg = fails["  ✗ A-1"]
    assert "vide" in style_msg and "téléphone" not in style_msg and "refs" in style_msg, style_msg


# --- 14. secrets -----------------------------------------------------------------------------------

def test_no_secret_part_of_a_setting_appears_in_any_output_or_file(gemini_project):
    project, fake = gemini_project
    secrets = {"BACKEND_URL": "http://admin:Pa55-w0rd-URL@127.0.0.1:9",
               "DATABASE_URL": "postgresql://shop:Pa55-w0rd-DSN@127.0.0.1:9/shop",
               "BACKEND_TOKEN": "tok-Sup3rS3cret-value"}
    needles = ["Pa55-w0rd-URL", "Pa55-w0rd-DSN", "tok-Sup3rS3cret-value", project.env["GEMINI_API_KEY"]]
    project.env.update(secrets)
    runs = [project.doit(), project.doit("info", "upload:A-1"), project.doit("info", "1_face:A-1"),
            project.doit("list", "--all"), project.doit("plan"), project.doit("upload:A-1"),
            project.doit("report"), project.doit("dumpdb")]
    for proc in runs:
        for needle in needles:
            assert needle not in proc.stdout + proc.stderr, (needle, proc.args, proc.stdout[-2000:])
    for path in project.root.rglob("*"):
        if path.is_file() and not path.name.endswith((".png", ".jpg")):
            data = path.read_bytes()
            for needle in needles:
                assert needle.encode() not in data, (needle, path)


# --- 15. file permissions ---------------------------------------------------------------------------

def test_files_under_output_get_the_permissions_of_a_normal_file(gemini_project):
    project, fake = gemini_project
    umask = os.umask(0o022)
    os.umask(umask)
    project.doit(check=True)
    project.doit("report", check=True)
    expected = 0o666 & ~umask
    files = [p for p in project.output.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert files and stored_answers(project)
    wrong = {str(p.relative_to(project.output)): oct(stat.S_IMODE(p.stat().st_mode))
             for p in files if stat.S_IMODE(p.stat().st_mode) != expected}
    assert not wrong, (oct(expected), wrong)
