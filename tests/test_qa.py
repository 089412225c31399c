"""The quality gate: CIEDE2000 against Sharma's published pairs, each check on crafted images
(one passing, one failing), and the report's JSON shape. Synthetic images only, small and fast."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from catalogue.imaging import checks as qa
from catalogue.imaging.checks import THRESHOLDS, check_view
from catalogue.imaging.colour import ciede2000, lab_to_rgb, rgb_to_lab

GREY = 243
SIZE = (300, 400)
RED = (170, 40, 45)
NAVY = (40, 50, 110)
DARK = (45, 45, 48)

# Sharma, Wu, Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Table 1 (pairs 1, 7, 9, 11, 13, 15, 17, 19,
# 21, 25, 29, 31, 33, 34).
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_matches_sharma_reference_pairs():
    a = np.array([p[0] for p in SHARMA])
    b = np.array([p[1] for p in SHARMA])
    want = np.array([p[2] for p in SHARMA])
    got = ciede2000(a, b)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(ciede2000(b, a) - want).max() < 1e-4      # symmetric
    for (l1, l2, e) in SHARMA[:3]:                           # scalar use
        assert float(ciede2000(l1, l2)) == pytest.approx(e, abs=1e-4)
    # broadcast use, as the border check does: many colours against one
    one = ciede2000(a, b[0])
    assert one.shape == (len(SHARMA),) and one[0] == pytest.approx(SHARMA[0][2], abs=1e-4)
    assert one == pytest.approx([float(ciede2000(x, b[0])) for x in a], abs=1e-12)


def test_lab_round_trip_and_white_point():
    rgb = np.array([[0, 0, 0], [255, 255, 255], [243, 243, 243], list(RED), list(NAVY)], dtype=np.float64)
    lab = rgb_to_lab(rgb)
    assert lab[1] == pytest.approx([100.0, 0.0, 0.0], abs=1e-3)
    assert np.abs(lab_to_rgb(lab) - rgb).max() < 1e-6


# ----------------------------------------------------------------------------------------------
# Crafted images

def _shirt_mask(size, box=(0.22, 0.2, 0.78, 0.72), shape="shirt") -> Image.Image:
    w, h = size
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    bw, bh = x1 - x0, y1 - y0
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    if shape == "shirt":
        d.polygon([(x0 + 0.25 * bw, y0), (x1 - 0.25 * bw, y0), (x1, y0 + 0.3 * bh), (x1 - 0.12 * bw, y0 + 0.38 * bh),
                   (x1 - 0.2 * bw, y0 + 0.25 * bh), (x1 - 0.2 * bw, y1), (x0 + 0.2 * bw, y1),
                   (x0 + 0.2 * bw, y0 + 0.25 * bh), (x0 + 0.12 * bw, y0 + 0.38 * bh), (x0, y0 + 0.3 * bh)], fill=255)
    else:  # trousers: two legs
        d.rectangle((x0 + 0.2 * bw, y0, x1 - 0.2 * bw, y0 + 0.25 * bh), fill=255)
        d.polygon([(x0 + 0.2 * bw, y0), (x0 + 0.5 * bw, y0), (x0 + 0.48 * bw, y1), (x0 + 0.22 * bw, y1)], fill=255)
        d.polygon([(x0 + 0.5 * bw, y0), (x1 - 0.2 * bw, y0), (x1 - 0.22 * bw, y1), (x0 + 0.52 * bw, y1)], fill=255)
    return m


def flat(colour=RED, box=(0.22, 0.2, 0.78, 0.72), size=SIZE, bg=GREY, shape="shirt", seed=0) -> Image.Image:
    """A finished flat lay: a textured garment on a plain background (the house grey by default)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.broadcast_to(np.asarray(bg, np.float32).reshape(1, 1, -1), (h, w, 3)).copy()
    yy, xx = np.mgrid[0:h, 0:w]
    fabric = np.asarray(colour, np.float32) + 5 * np.sin(xx / 7.0)[..., None] + rng.normal(0, 2, (h, w, 1))
    m = np.asarray(_shirt_mask(size, box, shape)) > 127
    base[m] = fabric[m]
    return Image.fromarray(np.clip(np.rint(base), 0, 255).astype(np.uint8))


def photo(colour=RED, shape="shirt", seed=1) -> Image.Image:
    """A raw phone photo: the garment off-centre on an unevenly lit off-white table, noisy."""
    size = (360, 480)
    img = flat(colour, box=(0.18, 0.14, 0.74, 0.7), size=size, bg=(236, 232, 226), shape=shape, seed=seed)
    arr = np.asarray(img, np.float32)
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    bgmask = np.abs(arr - np.array([236, 232, 226])).max(-1) < 12
    shade = 1.0 - 0.06 * xx / w - 0.04 * yy / h
    arr[bgmask] *= shade[bgmask][:, None]
    arr += np.random.default_rng(seed).normal(0, 1.5, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


STYLE = flat(DARK, seed=5)          # the style reference: a dark garment, same framing


def run(view="1_face", image=None, **kw):
    kw.setdefault("source", photo())
    kw.setdefault("style", STYLE)
    kw.setdefault("expected_size", SIZE)
    return check_view(view, flat() if image is None else image, **kw)


def check(report, name):
    c = report.check(name)
    assert c is not None, f"no check {name}"
    return c


# ----------------------------------------------------------------------------------------------
# A good view passes everything; the report's shape

def test_good_face_view_passes_every_check():
    r = run()
    assert r.verdict == "ok", r.summary()
    names = [c.name for c in r.checks]
    assert names == ["decode", "size", "contrast", "garment_share", "border", "colour", "style_copy", "framing"]
    assert not r.failed


def test_report_to_json_shape():
    r = run(image=flat(NAVY))
    j = r.to_json()
    assert set(j) == {"verdict", "checks"} and j["verdict"] == "held"
    assert set(j["checks"]) == {c.name for c in r.checks}
    for name, c in j["checks"].items():
        assert set(c) == {"value", "threshold", "passed", "message"}
        assert isinstance(c["passed"], bool) and isinstance(c["message"], str) and isinstance(c["threshold"], str)
    assert j["checks"]["colour"]["passed"] is False
    assert isinstance(j["checks"]["colour"]["value"], float)
    json.dumps(j, ensure_ascii=False)   # serialisable as is (sidecar)
    assert [c.name for c in r.failed] == [n for n, c in j["checks"].items() if not c["passed"]]


def test_unknown_view_is_a_bug():
    with pytest.raises(ValueError):
        check_view("4_side", flat(), source=photo(), style=STYLE)


# ----------------------------------------------------------------------------------------------
# One check at a time: pass / fail

def test_decode():
    png = io.BytesIO()
    flat().save(png, "PNG")
    broken = Image.open(io.BytesIO(png.getvalue()[: len(png.getvalue()) // 2]))
    r = run(image=broken)
    c = check(r, "decode")
    assert not c.passed and r.verdict == "held" and "illisible" in c.message
    assert check(run(), "decode").passed


def test_size_and_aspect():
    assert check(run(), "size").passed
    c = check(run(image=flat(size=(320, 400))), "size")
    assert not c.passed and "320×400" in c.message and "300×400" in c.message
    # Without an asked size: the style reference's aspect, within a tolerance.
    assert check(run(image=flat(size=(306, 400)), expected_size=None), "size").passed
    c = check(run(image=flat(size=(400, 400)), expected_size=None), "size")
    assert not c.passed and c.value == [400, 400]


def test_contrast_blank_image():
    blank = Image.new("RGB", SIZE, (GREY, GREY, GREY))
    r = run(image=blank)
    assert not check(r, "contrast").passed and check(r, "contrast").value == 0.0
    assert not check(r, "garment_share").passed
    assert "vide ou uniforme" in check(r, "contrast").message
    assert check(run(), "contrast").passed
    # a uniform non-grey image is blank too
    assert not check(run(image=Image.new("RGB", SIZE, (255, 255, 255))), "contrast").passed


def test_garment_share():
    img = Image.new("RGB", SIZE, (GREY, GREY, GREY))
    ImageDraw.Draw(img).rectangle((140, 190, 150, 200), fill=(20, 20, 20))   # a speck
    c = check(run(image=img), "garment_share")
    assert not c.passed and c.value < THRESHOLDS["garment_share_min"]
    c = check(run(), "garment_share")
    assert c.passed and 0.1 < c.value < 0.5


@pytest.mark.parametrize("bg", [(225, 225, 225), (255, 255, 255), (246, 240, 229)])
def test_border_wrong_plain_background(bg):
    c = check(run(image=flat(bg=bg)), "border")
    assert not c.passed and "gris maison" in c.message


def test_border_gradient_with_a_grey_median():
    img = np.asarray(flat(), np.float32).copy()
    h, w = img.shape[:2]
    grad = np.repeat((228 + 30 * np.arange(h) / h)[:, None], w, axis=1)     # median ~243, spread
    bg = np.abs(img - GREY).max(-1) == 0
    img[bg] = grad[bg][:, None]
    c = check(run(image=Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))), "border")
    assert not c.passed and c.value[1] < THRESHOLDS["border_share_min"]
    assert check(run(), "border").value == [0.0, 1.0]


def test_colour_close_to_the_photo():
    c = check(run(), "colour")
    assert c.passed and c.value < 3
    c = check(run(image=flat((170, 90, 40))), "colour")     # red -> orange drift
    assert not c.passed and c.value > THRESHOLDS["colour_delta_e_max"]
    assert c.message.startswith("couleur du vêtement éloignée de la photo : ΔE2000 = ")
    assert f"(max {THRESHOLDS['colour_delta_e_max']:g})" in c.message


def test_style_copy_by_colour():
    r = run(image=flat(DARK, seed=9))       # the reference's dark garment instead of our red one
    c = check(r, "style_copy")
    assert not c.passed and c.value[0] < c.value[1]
    assert "référence de style" in c.message
    assert check(run(), "style_copy").passed


def test_style_copy_near_duplicate_when_colours_agree():
    # Our garment is a dark pair of trousers, the reference a dark shirt: colour cannot tell them
    # apart; returning the reference's shirt is caught as a near-duplicate of the reference.
    src = photo(DARK, shape="trousers")
    good = flat(DARK, shape="trousers", seed=3)
    r_good = run(image=good, source=src)
    assert check(r_good, "style_copy").passed, check(r_good, "style_copy").message
    r_copy = run(image=flat(DARK, seed=11), source=src)
    c = check(r_copy, "style_copy")
    assert not c.passed and c.value[2] < THRESHOLDS["copy_distance_min"]
    assert "à l'identique" in c.message


def test_back_consistent_with_face():
    face = flat(RED, seed=2)
    ok = run("2_back", image=flat(RED, seed=4), face=face)
    c = check(ok, "back_vs_face")
    assert c.passed and ok.verdict == "ok", ok.summary()
    # a navy back for a red face (and a red photo): colour
    c = check(run("2_back", image=flat(NAVY, seed=4), face=face, source=photo(NAVY)), "back_vs_face")
    assert not c.passed and "couleur du dos" in c.message
    # the silhouette IoU is reported for the reviewer (not judged: see THRESHOLDS)
    c = check(run("2_back", image=flat(RED, shape="trousers", seed=4), face=face), "back_vs_face")
    assert c.value[1] < check(ok, "back_vs_face").value[1]
    # without the face: not applicable, passed
    assert check(run("2_back", image=flat(RED, seed=4)), "back_vs_face").passed


@pytest.mark.parametrize("box, words", [
    ((0.40, 0.2, 0.96, 0.72), "décentré"),          # moved right by 18 % of the frame
    ((0.36, 0.36, 0.64, 0.62), "trop petit"),       # half the size
    ((0.0, 0.1, 1.0, 0.8), "bord"),                 # touching the frame's sides
])
def test_framing(box, words):
    c = check(run(image=flat(box=box)), "framing")
    assert not c.passed and words in c.message


def test_framing_passes_a_slightly_different_placement():
    c = check(run(image=flat(box=(0.24, 0.23, 0.79, 0.74))), "framing")
    assert c.passed, c.message


def _detail(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((int(0.3 * w), int(0.25 * h), int(0.7 * w), int(0.6 * h))).resize(SIZE, Image.LANCZOS)


def test_detail_view_is_a_crop_of_the_face_garment():
    face = flat(RED, seed=2)
    style = _detail(flat(DARK, seed=5))
    r = check_view("3_detail_logo", _detail(face), source=face, style=style, expected_size=SIZE)
    assert r.verdict == "ok", r.summary()
    assert check(r, "border").threshold == qa.NA and check(r, "framing").threshold == qa.NA
    bad = check_view("3_detail_logo", _detail(flat(NAVY, seed=2)), source=face, style=style, expected_size=SIZE)
    c = check(bad, "colour")
    assert not c.passed and "vue de face" in c.message
    blank = check_view("3_detail_logo", Image.new("RGB", SIZE, (GREY,) * 3), source=face, style=style,
                       expected_size=SIZE)
    assert blank.verdict == "held" and not check(blank, "contrast").passed


def test_messages_are_french_and_name_the_values():
    r = run(image=flat(NAVY, box=(0.4, 0.2, 0.96, 0.72), bg=(225, 225, 225)))
    assert r.verdict == "held"
    failed = {c.name for c in r.failed}
    assert {"colour", "border", "framing"} <= failed
    assert any(ch.isdigit() for ch in r.summary())
    assert "ΔE2000" in r.summary()
