"""The offline renderer: house grey, framing of the style reference, colours kept, detail crop, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from catalogue.generation.local_renderer import render_view
from catalogue.imaging.decode import png_bytes
from catalogue.imaging.framing import measure_framing
from catalogue.imaging.masks import bbox, dilate

GREY = 243
GARMENT = (40, 52, 110)


def style_ref(size=(900, 1200), box=(0.22, 0.2, 0.78, 0.76)) -> Image.Image:
    """A flat lay on #F3F3F3 with a black jacket filling `box` (shares of the frame)."""
    w, h = size
    img = Image.new("RGB", size, (GREY, GREY, GREY))
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    d.rectangle((x0 + 0.2 * (x1 - x0), y0, x1 - 0.2 * (x1 - x0), y1), fill=(20, 20, 22))
    d.polygon([(x0 + 0.2 * (x1 - x0), y0), (x0, y1 - 0.1 * (y1 - y0)), (x0 + 0.1 * (x1 - x0), y1),
               (x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0))], fill=(20, 20, 22))
    d.polygon([(x1 - 0.2 * (x1 - x0), y0), (x1, y1 - 0.1 * (y1 - y0)), (x1 - 0.1 * (x1 - x0), y1),
               (x1 - 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0))], fill=(20, 20, 22))
    return img


def raw_photo(size=(1000, 1300), colour=GARMENT, seed=0) -> tuple[Image.Image, np.ndarray]:
    """A phone photo: a top off-centre on an unevenly lit white table."""
    w, h = size
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    d.polygon([(0.25 * w, 0.15 * h), (0.6 * w, 0.15 * h), (0.62 * w, 0.6 * h), (0.23 * w, 0.6 * h)], fill=255)
    d.polygon([(0.25 * w, 0.15 * h), (0.1 * w, 0.45 * h), (0.16 * w, 0.47 * h), (0.27 * w, 0.3 * h)], fill=255)
    d.polygon([(0.6 * w, 0.15 * h), (0.75 * w, 0.45 * h), (0.69 * w, 0.47 * h), (0.58 * w, 0.3 * h)], fill=255)
    mask = np.asarray(m) > 127
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = 236 + 8 * (xx / w - 0.5)
    arr = np.repeat(bg[..., None], 3, axis=2) + rng.normal(0, 1.5, (h, w, 1))
    fabric = np.asarray(colour, np.float32) + 4 * np.sin(xx / 25)[..., None] + rng.normal(0, 2, (h, w, 1))
    arr[mask] = fabric[mask]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), mask


def test_face_view_is_on_exact_house_grey_with_the_photo_colours():
    ref = style_ref()
    photo, mask = raw_photo()
    res = render_view("1_face", photo, ref)
    out = np.asarray(res.image)
    assert res.image.size == ref.size and res.image.mode == "RGB"
    assert not res.uncertain
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert tuple(out[y, x]) == (GREY, GREY, GREY)
    garment = np.abs(out.astype(int) - GREY).max(-1) > 30
    far = ~dilate(garment, 40)
    assert far.mean() > 0.3
    assert (out[far] == GREY).all(), "background away from the garment is not exactly #F3F3F3"
    # Colour kept: median of the garment within 3 levels of the photo's.
    src = np.median(np.asarray(photo)[mask], axis=0)
    dst = np.median(out[garment], axis=0)
    assert np.abs(src - dst).max() <= 3
    # A contact shadow exists: slightly darker grey just outside the garment, never black.
    ring = dilate(garment, 12) & ~dilate(garment, 2)
    assert (out[ring] < GREY).any() and out[ring].min() > 180


def test_face_view_matches_the_reference_framing():
    ref = style_ref(box=(0.2, 0.18, 0.8, 0.74))
    photo, _ = raw_photo()
    res = render_view("1_face", photo, ref, out_size=(864, 1184))
    assert res.image.size == (864, 1184)
    want, got = measure_framing(ref), measure_framing(res.image)
    assert abs(got.cx - want.cx) < 0.02 and abs(got.cy - want.cy) < 0.02
    # The garment fits the reference box, touching it on its limiting side.
    assert got.width <= want.width + 0.02 and got.height <= want.height + 0.02
    assert abs(got.width - want.width) < 0.03 or abs(got.height - want.height) < 0.03


def test_rendering_is_deterministic():
    ref = style_ref()
    photo, _ = raw_photo()
    a = png_bytes(render_view("2_back", photo, ref).image)
    b = png_bytes(render_view("2_back", photo, ref).image)
    assert a == b


def test_busy_photo_is_flagged_uncertain_in_french():
    photo, mask = raw_photo(colour=(180, 30, 40))
    arr = np.asarray(photo).copy()
    rng = np.random.default_rng(5)
    busy = np.zeros_like(arr)
    busy[:, : arr.shape[1] // 2] = (200, 212, 228)
    busy[:, arr.shape[1] // 2:] = (190, 170, 130)
    busy[int(arr.shape[0] * 0.75):] = (120, 95, 70)
    busy = np.clip(busy + rng.normal(0, 8, busy.shape[:2] + (1,)), 0, 255).astype(np.uint8)
    arr[~mask] = busy[~mask]
    res = render_view("1_face", Image.fromarray(arr), style_ref())
    assert res.uncertain
    assert any("fond chargé" in n for n in res.notes)
    assert tuple(np.asarray(res.image)[0, 0]) == (GREY, GREY, GREY)


def _face_with_logo(logo_at=(0.44, 0.36)) -> Image.Image:
    img = Image.new("RGB", (900, 1200), (GREY, GREY, GREY))
    d = ImageDraw.Draw(img)
    d.rectangle((250, 250, 650, 900), fill=GARMENT)
    d.polygon([(250, 250), (120, 700), (180, 720), (260, 420)], fill=GARMENT)
    d.polygon([(650, 250), (780, 700), (720, 720), (640, 420)], fill=GARMENT)
    lx, ly = logo_at[0] * 900, logo_at[1] * 1200
    d.rectangle((lx - 22, ly - 14, lx + 22, ly + 14), fill=(235, 220, 60))
    return img


@pytest.mark.parametrize("logo_at", [(0.44, 0.36), (0.55, 0.30)])
def test_detail_crop_is_centred_on_the_logo(logo_at):
    face = _face_with_logo(logo_at)
    ref = Image.new("RGB", (750, 1000), (200, 200, 200))  # a detail reference: only its aspect counts
    res = render_view("3_detail_logo", face, ref)
    assert res.image.size == ref.size
    assert res.metrics["logo_found"]
    out = np.asarray(res.image).astype(int)
    yellow = (out[..., 0] > 180) & (out[..., 1] > 170) & (out[..., 2] < 120)
    b = bbox(yellow)
    assert b is not None
    cx, cy = (b[0] + b[2]) / 2 / ref.size[0], (b[1] + b[3]) / 2 / ref.size[1]
    assert abs(cx - 0.5) < 0.05 and abs(cy - 0.5) < 0.05
    # A tight crop: the logo (44 px of a 900 px face view) is magnified at least twice.
    assert (b[2] - b[0]) / ref.size[0] > 2 * 44 / 900


def test_detail_without_logo_crops_the_chest_and_says_so():
    img = Image.new("RGB", (900, 1200), (GREY, GREY, GREY))
    ImageDraw.Draw(img).rectangle((250, 250, 650, 900), fill=GARMENT)
    res = render_view("3_detail_logo", img, Image.new("RGB", (600, 800)), out_size=(600, 800))
    assert not res.metrics["logo_found"]
    assert any("aucun logo" in n for n in res.notes)
    out = np.asarray(res.image)
    assert (np.abs(out.astype(int) - GARMENT).max(-1) < 10).mean() > 0.8
