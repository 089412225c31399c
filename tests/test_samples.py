"""The sample data that ships with the repo (made by scripts/make_samples.py) is what users expect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "photos"
REFS = ROOT / "refs"

# reference folder -> photos it must hold (file stems, matched case-insensitively)
EXPECTED = {
    "L100001-V09A": {"face", "back"},
    "B100004-V20": {"face"},
    "SI-8015-V0029": {"face", "back"},
    "W200300-V01": {"face"},
    "R300010-V05": {"face"},
    "H400020-V12": {"face", "back"},
    "T500040-V02": {"face", "back"},     # a pair of trousers: the bottoms family's sample
}
FAMILIES = ("tops", "bottoms")
REF_FILES = tuple(f"{fam}/{view}.png" for fam in FAMILIES for view in ("1_face", "2_back", "3_detail_logo"))
HOUSE_GREY = (243, 243, 243)


def photo_files(folder: str) -> dict[str, Path]:
    return {p.stem.lower(): p for p in (PHOTOS / folder).iterdir() if p.is_file()}


def photo(folder: str, stem: str) -> Path:
    return photo_files(folder)[stem]


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_every_reference_has_its_photos(folder):
    assert (PHOTOS / folder).is_dir()
    assert set(photo_files(folder)) == EXPECTED[folder]


@pytest.mark.parametrize("path", sorted(p for p in PHOTOS.glob("*/*") if p.is_file()),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_photos_are_small_jpegs(path):
    with Image.open(path) as img:
        assert img.format == "JPEG"
        assert img.getexif().get(0x010F) == "Apple"     # phone-like EXIF
    assert path.stat().st_size < 200 * 1024


def test_case_insensitive_name_is_exercised():
    assert photo("B100004-V20", "face").name == "Face.JPG"


def test_rotated_photo_has_exif_orientation_and_is_upright_once_transposed():
    with Image.open(photo("R300010-V05", "face")) as img:
        assert img.getexif().get(0x0112) == 6
        assert img.getexif().get(0x0110) == "iPhone 15 Pro"
        assert img.width > img.height                    # stored sideways
        upright = ImageOps.exif_transpose(img)
    assert upright.height > upright.width


def test_light_garment_is_light_and_close_to_its_background():
    with Image.open(photo("W200300-V01", "face")) as img:
        lum = np.asarray(ImageOps.exif_transpose(img).convert("L"), dtype=np.float64)
    h, w = lum.shape
    garment = np.median(lum[int(0.4 * h):int(0.65 * h), int(0.4 * w):int(0.6 * w)])  # mid-chest
    background = np.median(lum[int(0.05 * h):int(0.12 * h), int(0.3 * w):int(0.7 * w)])
    assert garment > 200
    assert 0 < background - garment < 40                  # hard to segment, yet not invisible


@pytest.mark.parametrize("name", REF_FILES)
def test_refs_are_house_style(name):
    with Image.open(REFS / name) as img:
        assert img.size == (864, 1184)
        rgb = img.convert("RGB")
    arr = np.asarray(rgb)
    if "/3_" in name:                 # the detail is a tight crop: the garment fills most of it
        assert (arr == HOUSE_GREY).all(axis=2).mean() > 0.03
    else:
        for x, y in [(0, 0), (863, 0), (0, 1183), (863, 1183)]:
            assert tuple(arr[y, x]) == HOUSE_GREY
    # A garment is there, and it is not house grey.
    assert (np.abs(arr.astype(int) - HOUSE_GREY).sum(axis=2) > 30).mean() > 0.2


@pytest.mark.parametrize("family", FAMILIES)
def test_face_and_back_refs_are_centred_tight_flat_lays(family):
    for view in ("1_face", "2_back"):
        arr = np.asarray(Image.open(REFS / family / f"{view}.png").convert("RGB")).astype(int)
        mask = np.abs(arr - HOUSE_GREY).sum(axis=2) > 30
        ys, xs = np.nonzero(mask)
        width = (xs.max() - xs.min() + 1) / arr.shape[1]
        height = (ys.max() - ys.min() + 1) / arr.shape[0]
        if family == "tops":
            assert 0.65 <= width <= 0.85
        else:    # trousers: tall, the height fills the frame
            assert 0.5 <= width <= 0.75 and 0.8 <= height <= 0.92
        assert abs((xs.max() + xs.min()) / 2 - arr.shape[1] / 2) < 0.05 * arr.shape[1]


def test_committed_samples_are_small():
    files = [p for p in list(PHOTOS.rglob("*")) + list(REFS.rglob("*")) if p.is_file()]
    # Seven references and two families of style references (1.23 MB when the trousers were added).
    assert sum(p.stat().st_size for p in files) < 1.4 * 1024 * 1024
