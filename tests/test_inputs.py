"""Bad and unusual inputs: each gets a clear French message, fails only its reference."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import built, garment_photo, summary
from PIL import Image

from catalogue.core.errors import InputError
from catalogue.imaging.decode import open_image


def test_every_bad_input_fails_alone_with_a_french_message(project):
    good = project.photo("GOOD-1")
    photos = project.root / "photos"
    (photos / "EMPTY-1").mkdir()
    (photos / "EMPTY-1" / "face.jpg").write_bytes(b"")
    (photos / "TRUNC-1").mkdir()
    (photos / "TRUNC-1" / "face.jpg").write_bytes(good.read_bytes()[:3000])
    (photos / "TEXT-1").mkdir()
    (photos / "TEXT-1" / "face.jpg").write_text("ceci n'est pas une photo\n")
    (photos / "NOFACE-1").mkdir()
    project.photo("NOFACE-1", "back.jpg")
    project.photo("HUGE-1", size=(1400, 1800))
    (photos / "BAD NAME=1").mkdir()
    project.photo("BAD NAME=1")
    (photos / ".hidden").mkdir()
    (photos / "_archive").mkdir()
    project.photo("_archive", "face.jpg")

    run = project.doit(extra_env={"MAX_PIXELS": "2000000"})
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert built(run) == {"GOOD-1 1_face", "GOOD-1 3_detail_logo"}
    failures = dict(line.split(" — ", 1) for line in out.splitlines() if line.startswith("  ✗ "))
    assert len(failures) == 6, out  # one line per failed reference: the cause, not its consequences
    assert "vide (0 octet)" in failures["  ✗ EMPTY-1"]
    assert "corrompue ou incomplète" in failures["  ✗ TRUNC-1"]
    assert "n'est pas une image lisible" in failures["  ✗ TEXT-1"]
    assert "Photo de face manquante" in failures["  ✗ NOFACE-1"]
    assert "trop grande" in failures["  ✗ HUGE-1"] and "MAX_PIXELS" in failures["  ✗ HUGE-1"]
    assert "Nom de dossier invalide « BAD NAME=1 »" in failures["  ✗ BAD NAME=1"]
    assert ".hidden" not in out and "_archive" not in out
    assert summary(run) == (2, 0, 6)


def test_missing_style_reference_fails_that_view_only(project):
    project.photo("A-1")
    project.photo("A-1", "back.jpg")
    (project.root / "refs" / "2_back.png").unlink()
    run = project.doit()
    assert run.returncode == 1
    assert built(run) == {"A-1 1_face", "A-1 3_detail_logo"}
    assert "Référence de style manquante pour la vue 2_back" in run.stdout


def test_missing_photos_folder_says_dossier_introuvable(project):
    run = project.doit(extra_env={"PHOTOS_DIR": "nulle_part"})
    assert run.returncode == 1
    assert "Dossier introuvable : " in run.stdout and "nulle_part" in run.stdout


def test_shop_names_for_style_references_and_several_per_view(project):
    refs = project.root / "refs"
    (refs / "1_face.png").rename(refs / "face.png")
    (refs / "3_detail_logo.png").rename(refs / "3-detail.png")
    (refs / "back").mkdir()
    (refs / "2_back.png").rename(refs / "back" / "back_1.png")
    from helpers import style_ref
    style_ref(refs / "back" / "back_2.png", "2_back", size=(240, 300))
    for i in range(6):
        project.photo(f"R{i}-1")
        project.photo(f"R{i}-1", "back.jpg")
    project.doit(check=True)
    import json
    chosen = {json.loads((project.output / f"R{i}-1" / "2_back.json").read_text())["inputs"]["style"]["path"]
              for i in range(6)}
    assert {p.rsplit("/", 1)[-1] for p in chosen} == {"back_1.png", "back_2.png"}
    # Stable across runs: a second run chooses the same and builds nothing.
    assert summary(project.doit(check=True))[0] == 0


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "LA", "L"])
def test_unusual_image_modes_decode_to_rgb(tmp_path, mode):
    rgb = Image.open(garment_photo(tmp_path / "src.jpg"))
    if mode == "I;16":
        arr = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        img = Image.fromarray(arr)
        assert img.mode.startswith("I;16")
    elif mode == "P":
        img = rgb.convert("P", palette=Image.ADAPTIVE)
    else:
        img = rgb.convert(mode)
    path = tmp_path / ("face.tif" if mode == "CMYK" else "face.png")
    img.save(path)
    out = open_image(path, max_pixels=10_000_000)
    assert out.mode == "RGB" and out.size == rgb.size
    # the garment stays darker than the background whatever the mode
    arr = np.asarray(out.convert("L"), dtype=float)
    assert arr[out.height // 2, out.width // 2] < arr[5, 5] - 40


def test_transparent_background_becomes_house_grey(tmp_path):
    img = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    img.paste((200, 10, 10, 255), (10, 10, 40, 40))
    img.save(tmp_path / "face.png")
    out = open_image(tmp_path / "face.png", max_pixels=10_000)
    assert out.getpixel((2, 2)) == (243, 243, 243) and out.getpixel((25, 25)) == (200, 10, 10)


def test_exif_rotated_photo_is_read_upright(tmp_path):
    img = Image.new("RGB", (400, 300), (200, 200, 200))  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "face.jpg", exif=exif)
    assert open_image(tmp_path / "face.jpg", max_pixels=10**6).size == (300, 400)


def test_heic_photo_from_an_iphone_works(tmp_path):
    pytest.importorskip("pillow_heif")
    img = Image.open(garment_photo(tmp_path / "src.jpg"))
    try:
        img.save(tmp_path / "face.heic", format="HEIF")
    except Exception as exc:  # encoder not built into this wheel
        pytest.skip(f"no HEIF encoder: {exc}")
    out = open_image(tmp_path / "face.heic", max_pixels=10**7)
    assert out.size == img.size


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "face.png"
    Image.new("1", (12000, 12000)).save(path)  # 144 Mpx in a few kB
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError, match="trop grande"):
        open_image(path, max_pixels=60_000_000)


def test_odd_folder_names_that_sanitise_alike_fail_alone(project):
    project.photo("A B")
    project.photo("A=B")
    project.photo("GOOD-1")
    run = project.doit()
    assert run.returncode == 1, run.stdout + run.stderr
    assert built(run) == {"GOOD-1 1_face", "GOOD-1 3_detail_logo"}
    assert run.stdout.count("Nom de dossier invalide") >= 2


def test_broken_overrides_file_fails_its_reference_instead_of_forgetting_rerolls(project):
    project.photo("A-1")
    (project.root / "photos" / "A-1" / "overrides.json").write_text("[1, 2]")
    run = project.doit()
    assert run.returncode == 1 and "overrides.json est illisible" in run.stdout


def test_adding_a_style_image_moves_few_references(tmp_path):
    from helpers import style_ref

    from catalogue.core.discovery import StyleRefs

    for i in range(2):
        style_ref(tmp_path / "refs" / "1_face" / f"r{i}.png", "1_face")
    folders = [f"R{i:04d}-V1" for i in range(600)]
    before = {f: StyleRefs(tmp_path / "refs").for_view("1_face", f) for f in folders}
    style_ref(tmp_path / "refs" / "1_face" / "r2.png", "1_face")
    after = {f: StyleRefs(tmp_path / "refs").for_view("1_face", f) for f in folders}
    moved = sum(before[f] != after[f] for f in folders)
    assert moved == sum(after[f].name == "r2.png" for f in folders)  # only to the new image
    assert moved < 0.45 * len(folders)
