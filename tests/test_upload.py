"""Upload: safe replace with an intent journal, against the backend double on a real PostgreSQL.

Real `requests`, real `psycopg`, real PostgreSQL (tests/fakes/postgres.py starts one per session);
the backend double (tests/fakes/reboul_backend.py) is new for every test, the tables are emptied.
"""

from __future__ import annotations

import hashlib
import io
import socket
import struct
import zlib

import numpy as np
import pytest
import requests
from fakes.reboul_backend import ReboulBackend, parse_multipart
from helpers import ORDERS, TOKEN, VIEWS, Crash, Shop, image_bytes, view_png, write_view, write_views
from PIL import Image

from catalogue.core.errors import UploadError
from catalogue.publishing import backend as backend_mod
from catalogue.publishing import upload as upload_mod
from catalogue.publishing.upload import upload_reference

# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(backend_mod, "BACKOFF", 0.01)


def assert_exactly(shop, pid, files: dict[str, bytes]):
    """The product shows exactly these views, in the shop's order, byte for byte."""
    imgs = shop.images(pid)
    assert [i["order"] for i in imgs] == [ORDERS[v] for v in files]
    assert image_bytes(shop.backend, imgs) == list(files.values())
    return imgs


# --- the normal path --------------------------------------------------------------------------

def test_first_upload_order_count_bytes(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    assert shop.needs("L100001-V09A")

    out = shop.upload("L100001-V09A")

    assert out.product_id == pid and out.uploaded == list(VIEWS) and sorted(out.deleted) == [i["id"] for i in old]
    assert out.skipped_reason is None and "produit" in out.message
    methods = [(r.method, r.path) for r in shop.backend.requests]
    imgs = assert_exactly(shop, pid, files)
    [post] = shop.posts()
    assert post.status == 201 and post.query["orders"] == ["0,1,2"]
    assert [f["filename"] for f in post.files] == [f"{v}.png" for v in VIEWS]
    assert [f["content_type"] for f in post.files] == ["image/png"] * 3
    # GET .../images before and after, never the cached product; then the deletes, one by one
    assert methods == [("GET", f"/products/{pid}/images"), ("POST", f"/products/{pid}/images/bulk"),
                       ("GET", f"/products/{pid}/images")] + [("DELETE", f"/products/{pid}/images/{i['id']}")
                                                             for i in old]
    stamp = shop.stamp("L100001-V09A")
    assert stamp["product_id"] == pid and stamp["reference"] == "L100001/V09A" and stamp["mode"] == "replace"
    assert [(i["view"], i["image_id"], i["url"]) for i in stamp["images"]] == [
        (v, img["id"], img["url"]) for v, img in zip(VIEWS, imgs)]
    assert [i["sha256"] for i in stamp["images"]] == [hashlib.sha256(files[v]).hexdigest() for v in VIEWS]
    assert shop.intent("L100001-V09A") is None


def test_second_call_sends_nothing(shop):
    shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    shop.upload("L100001-V09A")
    shop.backend.clear_log()

    assert not shop.needs("L100001-V09A")
    out = shop.upload("L100001-V09A")
    assert out.uploaded == [] and out.deleted == [] and out.skipped_reason is None
    assert "déjà à jour" in out.message
    assert shop.backend.requests == []


def test_changed_view_reuploads_reference_and_deletes_old(shop):
    pid = shop.pg.add_product("L100001/V09A")
    files = write_views(shop.output, "L100001-V09A")
    shop.upload("L100001-V09A")
    first = {i["view"]: i["image_id"] for i in shop.stamp("L100001-V09A")["images"]}
    files["2_back"] = write_view(shop.output, "L100001-V09A", "2_back", seed=7)
    assert shop.needs("L100001-V09A")

    out = shop.upload("L100001-V09A")

    assert out.uploaded == list(VIEWS) and sorted(out.deleted) == sorted(first.values())
    imgs = assert_exactly(shop, pid, files)
    assert not {i["id"] for i in imgs} & set(first.values())
    assert len(shop.backend.cloudinary) == 3          # the old files are gone from Cloudinary too
    assert not shop.needs("L100001-V09A")


def test_only_existing_views_with_their_orders(shop):
    pid = shop.pg.add_product("L100001/V09A")
    files = write_views(shop.output, "L100001-V09A", views=("1_face", "3_detail_logo"))
    shop.upload("L100001-V09A")
    assert shop.posts()[0].query["orders"] == ["0,2"]
    assert_exactly(shop, pid, files)


# --- failures and reconciliation --------------------------------------------------------------

def test_post_fails_old_images_untouched_then_next_run_succeeds(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", status=500)

    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    assert "Internal server error" in exc.value.message and "intactes" in exc.value.message
    assert [i["id"] for i in shop.images(pid)] == [i["id"] for i in old]
    assert shop.backend.calls("DELETE") == []
    assert shop.intent("L100001-V09A")["phase"] == "posting"
    assert shop.needs("L100001-V09A")

    out = shop.upload("L100001-V09A")
    assert out.uploaded == list(VIEWS) and sorted(out.deleted) == [i["id"] for i in old]
    assert_exactly(shop, pid, files)
    assert shop.intent("L100001-V09A") is None


def test_crash_between_post_and_deletes_no_second_post(shop, monkeypatch):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")

    def crash(self, product_id, image_id):
        raise Crash()
    monkeypatch.setattr(backend_mod.BackendClient, "delete_image", crash)
    with pytest.raises(Crash):
        shop.upload("L100001-V09A")
    monkeypatch.undo()
    monkeypatch.setattr(backend_mod, "BACKOFF", 0.01)
    assert len(shop.images(pid)) == 5                  # old + new: never without images
    assert shop.intent("L100001-V09A")["phase"] == "deleting"
    shop.backend.clear_log()

    out = shop.upload("L100001-V09A")
    assert shop.posts() == [] and out.uploaded == []
    assert sorted(out.deleted) == [i["id"] for i in old]
    assert_exactly(shop, pid, files)
    assert shop.intent("L100001-V09A") is None and not shop.needs("L100001-V09A")


def test_lost_post_answer_is_recognised_not_resent(shop):
    """The bulk upload succeeded but its answer never arrived (connection dropped)."""
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 1)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", mode="drop_after")

    with pytest.raises(UploadError, match="interrompue"):
        shop.upload("L100001-V09A")
    assert len(shop.images(pid)) == 4
    shop.backend.clear_log()

    out = shop.upload("L100001-V09A")
    assert shop.posts() == [] and out.uploaded == [] and out.deleted == [old[0]["id"]]
    assert "reprise" in out.message
    assert_exactly(shop, pid, files)


def test_delete_fails_finished_at_next_run(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("DELETE", f"/products/{pid}/images/{old[1]['id']}", status=500)

    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    assert "nouvelles images sont en ligne" in exc.value.message
    ids = [i["id"] for i in shop.images(pid)]
    assert len(ids) == 4 and old[1]["id"] in ids and old[0]["id"] not in ids
    assert shop.needs("L100001-V09A")
    shop.backend.clear_log()

    out = shop.upload("L100001-V09A")
    assert shop.posts() == [] and out.deleted == [old[1]["id"]]
    assert_exactly(shop, pid, files)


def test_delete_retried_after_dropped_connection(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 1)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("DELETE", f"/products/{pid}/images/*", mode="drop_after")   # deleted, answer lost

    out = shop.upload("L100001-V09A")                  # retried DELETE -> 404 -> already gone: fine
    assert out.deleted == [old[0]["id"]]
    assert len(shop.backend.calls("DELETE")) == 2
    assert_exactly(shop, pid, files)


def test_bulk_failing_part_way_is_completed_without_resending(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", fail_after_files=1)

    with pytest.raises(UploadError):
        shop.upload("L100001-V09A")
    assert len(shop.images(pid)) == 3                  # the old two + the first new file
    shop.backend.clear_log()

    out = shop.upload("L100001-V09A")
    [post] = shop.posts()
    assert post.query["orders"] == ["1,2"] and [f["filename"] for f in post.files] == ["2_back.png", "3_detail_logo.png"]
    assert out.uploaded == ["2_back", "3_detail_logo"] and sorted(out.deleted) == [i["id"] for i in old]
    assert_exactly(shop, pid, files)
    assert len(shop.backend.cloudinary) == 3


def test_part_way_then_view_regenerated_leaves_no_duplicate(shop):
    pid = shop.pg.add_product("L100001/V09A")
    shop.seed_images(pid, 1)
    write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", fail_after_files=1, mode="drop")
    with pytest.raises(UploadError):
        shop.upload("L100001-V09A")
    files = write_views(shop.output, "L100001-V09A", seed=3)    # all views regenerated meanwhile

    out = shop.upload("L100001-V09A")
    assert out.uploaded == list(VIEWS) and len(out.deleted) == 2   # the old image + the stale partial one
    assert_exactly(shop, pid, files)


def test_readback_missing_image_deletes_nothing(shop, monkeypatch):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 1)
    write_views(shop.output, "L100001-V09A")
    real = backend_mod.BackendClient.list_images
    calls = []

    def list_images(self, product_id):
        calls.append(1)
        imgs = real(self, product_id)
        return imgs[:1] if len(calls) == 2 else imgs         # read back hides the new images
    monkeypatch.setattr(backend_mod.BackendClient, "list_images", list_images)
    with pytest.raises(UploadError, match="absentes à la relecture"):
        shop.upload("L100001-V09A")
    assert shop.backend.calls("DELETE") == [] and old[0]["id"] in [i["id"] for i in shop.images(pid)]


# --- lookup through the upload --------------------------------------------------------------

def test_references_with_slash_and_with_dash(shop):
    slash = shop.pg.add_product("L100001/V09A")
    dash = shop.pg.add_product("REF-001")
    mixed = shop.pg.add_product("SI-8015/V0029")
    for folder, pid in (("L100001-V09A", slash), ("REF-001", dash), ("SI-8015-V0029", mixed)):
        files = write_views(shop.output, folder, seed=pid)
        out = shop.upload(folder)
        assert out.product_id == pid
        assert_exactly(shop, pid, files)


def test_unknown_reference_sends_nothing(shop):
    shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "FAKE")
    with pytest.raises(UploadError) as exc:
        shop.upload("FAKE")
    assert exc.value.message == "Aucun produit trouvé pour la référence « FAKE »"
    assert shop.backend.requests == []


def test_ambiguous_reference_sends_nothing(shop):
    shop.pg.add_product("REF-001")
    shop.pg.add_product("REF/001")
    write_views(shop.output, "REF-001")
    with pytest.raises(UploadError, match="REF/001"):
        shop.upload("REF-001")
    assert shop.backend.requests == []


def test_database_down(shop):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_views(shop.output, "L100001-V09A")
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A", DATABASE_URL=f"postgresql://u:PgPassw0rd@127.0.0.1:{port}/reboul")
    assert "tunnel SSH" in exc.value.message and "PgPassw0rd" not in exc.value.message
    assert shop.backend.requests == []


def test_products_map_instead_of_database(shop):
    pid = shop.pg.add_product("REF-001")
    (shop.root / "map.csv").write_text(f"reference,product_id\nREF-001,{pid}\n")
    files = write_views(shop.output, "REF-001")
    shop.upload("REF-001", DATABASE_URL="", PRODUCTS_MAP="map.csv")
    assert_exactly(shop, pid, files)


# --- backend errors -----------------------------------------------------------------------------

def test_backend_down(shop):
    shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    shop.backend.stop()
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    assert f"Backend injoignable : {shop.backend.url}" in exc.value.message
    assert "backend Reboul est démarré" in exc.value.message and "L100001-V09A" in exc.value.message


def test_nest_error_message_is_shown(shop):
    pid = shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", status=400,
                           message=["files must be images", "orders must be integers"])
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    assert "files must be images; orders must be integers" in exc.value.message


def test_get_retried_then_slow_answer_times_out(shop, monkeypatch):
    pid = shop.pg.add_product("L100001/V09A")
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("GET", f"/products/{pid}/images", status=503)
    shop.upload("L100001-V09A")                        # the 503 was retried
    assert_exactly(shop, pid, files)
    assert [r.status for r in shop.backend.calls("GET")][:2] == [503, 200]

    write_view(shop.output, "L100001-V09A", "1_face", seed=9)
    monkeypatch.setattr(backend_mod, "READ_TIMEOUT", 0.3)
    shop.backend.fail_next("GET", f"/products/{pid}/images", mode="slow", delay=1.0, times=10)
    with pytest.raises(UploadError, match="n'a pas répondu à temps"):
        shop.upload("L100001-V09A")


# --- size limits ----------------------------------------------------------------------------

def big_png(target: int, *, noise: float, compress_level: int, seed: int = 1) -> bytes:
    """A PNG just over `target` bytes: a gradient with `noise` (a stand-in for fabric texture)."""
    side = 400 if compress_level else int((target / 3) ** 0.5) + 2
    while True:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:side, 0:side]
        base = np.stack([xx * 255 / side, yy * 255 / side, (xx + yy) * 127 / side], -1)
        arr = np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
        if buf.tell() > target:
            return buf.getvalue()
        side = int(side * 1.15)


def psnr(a: bytes, b: bytes) -> float:
    with Image.open(io.BytesIO(a)) as x, Image.open(io.BytesIO(b)) as y:
        assert x.size == y.size
        mse = np.mean((np.asarray(x.convert("RGB"), dtype=np.float64) - np.asarray(y.convert("RGB"), dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def png_of_exactly(size: int) -> bytes:
    """A valid PNG of exactly `size` bytes: a textured gradient stored uncompressed, padded with a
    tEXt chunk before IEND."""
    w = 1024
    h = (size - 64 * 1024) // (3 * w + 1)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    arr = np.clip(base + rng.normal(0, 2.0, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=0)
    data = buf.getvalue()
    text = b"Comment\x00" + b"p" * (size - len(data) - 12 - 8)
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    out = data[:-12] + chunk + data[-12:]
    assert len(out) == size
    return out


def test_view_of_exactly_10_mib_is_reencoded_before_sending(shop):
    """The shop's multer refuses a file of exactly 10 MiB (10,485,759 bytes at most)."""
    pid = shop.pg.add_product("L100001/V09A")
    exact = png_of_exactly(10 * 1024 * 1024)
    write_view(shop.output, "L100001-V09A", "1_face", exact)
    shop.upload("L100001-V09A")
    [post] = shop.posts()
    assert post.status == 201 and post.files[0]["size"] <= 10_485_759
    [img] = shop.images(pid)
    assert psnr(exact, shop.backend.file_bytes(img)) == float("inf")          # same pixels
    assert shop.stamp("L100001-V09A")["images"][0]["reencoded"] == "png-optimize"


def test_view_over_10mb_is_reencoded_to_fit(shop):
    """An 11 MB PNG (saved without compression) is re-encoded losslessly under the backend's 10 MB."""
    pid = shop.pg.add_product("L100001/V09A")
    big = big_png(11 * 1024 * 1024, noise=2.0, compress_level=0)
    write_view(shop.output, "L100001-V09A", "1_face", big)
    shop.upload("L100001-V09A")
    [post] = shop.posts()
    assert post.files[0]["size"] <= 10 * 1024 * 1024 and post.files[0]["filename"] == "1_face.png"
    [img] = shop.images(pid)
    assert psnr(big, shop.backend.file_bytes(img)) == float("inf")            # same pixels
    entry = shop.stamp("L100001-V09A")["images"][0]
    assert entry["sha256"] == hashlib.sha256(big).hexdigest() and entry["reencoded"] == "png-optimize"
    assert not shop.needs("L100001-V09A")


def test_view_too_large_even_optimised_goes_as_high_quality_jpeg(shop, monkeypatch):
    """When lossless re-encoding is not enough: JPEG q=95 4:4:4 (limit lowered to keep the test fast)."""
    monkeypatch.setattr(upload_mod, "MAX_FILE_BYTES", 300_000)
    pid = shop.pg.add_product("L100001/V09A")
    big = big_png(500_000, noise=2.0, compress_level=1)
    write_view(shop.output, "L100001-V09A", "1_face", big)
    shop.upload("L100001-V09A")
    [post] = shop.posts()
    assert post.files[0]["size"] <= 300_000 and post.files[0]["filename"] == "1_face.jpg"
    assert post.files[0]["content_type"] == "image/jpeg"
    [img] = shop.images(pid)
    assert img["url"].endswith(".jpg")
    assert psnr(big, shop.backend.file_bytes(img)) > 40                          # no visible loss
    assert shop.stamp("L100001-V09A")["images"][0]["reencoded"] == "jpeg-q95"


def test_view_that_cannot_fit_is_refused_clearly(shop, monkeypatch):
    shop.pg.add_product("L100001/V09A")
    write_view(shop.output, "L100001-V09A", "1_face", view_png(5, size=(200, 200)))
    monkeypatch.setattr(upload_mod, "MAX_FILE_BYTES", 10_000)        # noise never fits in 10 kB
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    assert "limite de 10 Mo" in exc.value.message and "Rien n'a été envoyé" in exc.value.message
    assert shop.backend.requests == []


# --- modes and gates --------------------------------------------------------------------------

def test_append_mode_keeps_old_images(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    out = shop.upload("L100001-V09A", UPLOAD_MODE="append")
    assert out.deleted == [] and shop.backend.calls("DELETE") == []
    imgs = shop.images(pid)
    assert len(imgs) == 5 and {i["id"] for i in old} <= {i["id"] for i in imgs}
    ours = {i["image_id"] for i in shop.stamp("L100001-V09A")["images"]}
    assert image_bytes(shop.backend, sorted((i for i in imgs if i["id"] in ours), key=lambda i: i["order"])) \
        == list(files.values())
    assert shop.stamp("L100001-V09A")["mode"] == "append"


def test_local_renderer_views_held_unless_allowed(shop):
    pid = shop.pg.add_product("L100001/V09A")
    files = write_views(shop.output, "L100001-V09A", generator="local")
    out = shop.upload("L100001-V09A")
    assert out.uploaded == [] and out.skipped_reason and "ALLOW_LOCAL_UPLOAD=1" in out.skipped_reason
    assert out.message == out.skipped_reason
    assert shop.backend.requests == [] and shop.needs("L100001-V09A")

    out = shop.upload("L100001-V09A", ALLOW_LOCAL_UPLOAD="1")
    assert out.uploaded == list(VIEWS)
    assert_exactly(shop, pid, files)


def test_one_local_view_holds_the_reference(shop):
    shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    write_view(shop.output, "L100001-V09A", "2_back", generator="local")
    out = shop.upload("L100001-V09A")
    assert out.skipped_reason.startswith("L100001-V09A : non envoyé — 2_back")
    assert shop.backend.requests == []


def test_missing_face_and_missing_folder(shop):
    shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A", views=("2_back", "3_detail_logo"))
    with pytest.raises(UploadError, match="1_face.png manquante"):
        shop.upload("L100001-V09A")
    with pytest.raises(UploadError) as exc:
        shop.upload("NOPE-1")
    assert exc.value.message == f"Dossier introuvable : {shop.output / 'NOPE-1'}"
    assert shop.backend.requests == []


def test_token_sent_and_never_printed(pg_cluster, tmp_path, capsys, caplog):
    pg_cluster.reset()
    backend = ReboulBackend(pg_cluster.url, token=TOKEN).start()
    try:
        shop = Shop(pg_cluster, backend, tmp_path)
        pid = shop.pg.add_product("L100001/V09A")
        files = write_views(shop.output, "L100001-V09A")
        texts = []
        with pytest.raises(UploadError) as exc:
            shop.upload("L100001-V09A", BACKEND_TOKEN="wrong-" + TOKEN)
        texts += [exc.value.message, repr(exc.value), str(shop.settings(BACKEND_TOKEN="wrong-" + TOKEN))]
        assert "401" in exc.value.message and "BACKEND_TOKEN" in exc.value.message

        out = shop.upload("L100001-V09A", BACKEND_TOKEN=TOKEN)
        texts += [out.message, repr(out), repr(shop.settings(BACKEND_TOKEN=TOKEN)),
                  repr(backend_mod.BackendClient(shop.settings(BACKEND_TOKEN=TOKEN), "x"))]
        assert {r.headers.get("Authorization") for r in backend.calls()} >= {f"Bearer {TOKEN}"}
        assert_exactly(shop, pid, files)
        captured = capsys.readouterr()
        texts += [captured.out, captured.err, caplog.text]
        texts += [p.read_text() for p in (shop.output / "L100001-V09A").glob("*.json")]
        assert not any(TOKEN in t for t in texts)
    finally:
        backend.stop()


# --- the backend double keeps the contract ------------------------------------------------------

def test_double_contract(shop):
    pid = shop.pg.add_product("L100001/V09A")
    url = shop.backend.url
    r = requests.get(f"{url}/products/999/images", timeout=5)
    assert r.status_code == 404 and r.json() == {"statusCode": 404, "message": "Product with ID 999 not found",
                                                 "error": "Not Found"}
    r = requests.post(f"{url}/products/{pid}/images/bulk", data={"orders": "0"}, timeout=5)
    assert r.status_code == 400 and r.json()["message"] == "At least one image file is required"
    # orders and alts as form fields; bytes intact; camelCase answer
    data = view_png(1) + b"\r\n--x\r\n"
    r = requests.post(f"{url}/products/{pid}/images/bulk", data={"orders": ["3", "1"], "alts": ["a", "b"]},
                      files=[("files", ("a.png", data, "image/png")), ("files", ("b.png", b"\r\n", "image/png"))],
                      timeout=5)
    assert r.status_code == 201
    a, b = r.json()
    assert set(a) == {"id", "productId", "url", "publicId", "alt", "order", "createdAt"}
    assert (a["order"], a["alt"], b["order"], b["alt"]) == (3, "a", 1, "b")
    assert a["url"] == f"https://res.cloudinary.com/demo/image/upload/v1/{a['publicId']}.png"
    assert shop.backend.file_bytes(a) == data and shop.backend.file_bytes(b) == b"\r\n"
    assert [i["id"] for i in requests.get(f"{url}/products/{pid}/images", timeout=5).json()] == [b["id"], a["id"]]
    # GET /products/:id is cached: stale right after a delete; it carries price and category
    product = requests.get(f"{url}/products/{pid}", timeout=5).json()
    assert len(product["images"]) == 2 and product["price"] == "120.00"
    assert product["category"]["name"] == "Sans catégorie"
    assert requests.delete(f"{url}/products/{pid}/images/{a['id']}", timeout=5).status_code == 204
    r = requests.delete(f"{url}/products/{pid}/images/{a['id']}", timeout=5)
    assert r.status_code == 404 and r.json()["message"] == f"Image with ID {a['id']} not found"
    assert len(requests.get(f"{url}/products/{pid}", timeout=5).json()["images"]) == 2
    assert len(requests.get(f"{url}/products/{pid}/images", timeout=5).json()) == 1
    shop.backend.expire_cache()
    assert len(requests.get(f"{url}/products/{pid}", timeout=5).json()["images"]) == 1
    r = requests.patch(f"{url}/products/{pid}/images/{b['id']}/order", json={"order": 0}, timeout=5)
    assert r.status_code == 200 and r.json()["order"] == 0


def post_files(shop, pid, files, params=None, data=None):
    return requests.post(f"{shop.backend.url}/products/{pid}/images/bulk", params=params, data=data,
                         files=files, timeout=30)


def test_double_refusals_of_multer_store_nothing(shop):
    """The shop's multer: 10,485,760 bytes is already too large (413), an 8th file is an unexpected
    field, a part that is not an image type is refused; nothing of such a request is stored."""
    pid = shop.pg.add_product("L100001/V09A")
    largest = b"\x89PNG\r\n\x1a\n" + b"x" * (10 * 1024 * 1024 - 1 - 8)
    r = post_files(shop, pid, [("files", ("ok.png", b"\x89PNG\r\n\x1a\n", "image/png")),
                               ("files", ("big.png", largest + b"x", "image/png"))], {"orders": "0,1"})
    assert r.status_code == 413
    assert r.json() == {"statusCode": 413, "message": "File too large", "error": "Payload Too Large"}
    r = post_files(shop, pid, [("files", (f"{i}.png", b"x", "image/png")) for i in range(8)])
    assert r.status_code == 400 and r.json() == {"statusCode": 400, "message": "Unexpected field - files",
                                                 "error": "Bad Request"}
    r = post_files(shop, pid, [("files", ("a.png", b"x", "image/png")), ("files", ("a.txt", b"x", "text/plain"))])
    assert r.status_code == 400 and r.json()["message"] == "Only image files are allowed!"
    r = post_files(shop, pid, [("images", ("a.png", b"x", "image/png"))])
    assert r.status_code == 400 and r.json()["message"] == "Unexpected field - images"
    assert shop.images(pid) == [] and shop.backend.cloudinary == {}
    r = post_files(shop, pid, [("files", ("largest.png", largest, "image/png"))], {"orders": "0"})
    assert r.status_code == 201 and len(shop.backend.file_bytes(r.json()[0])) == 10_485_759


def test_double_orders_as_the_shop_reads_them(shop):
    pid = shop.pg.add_product("L100001/V09A")
    shop.seed_images(pid, 2)                                     # orders 0 and 1
    files = [("files", (f"{i}.png", view_png(i), "image/png")) for i in range(3)]
    r = post_files(shop, pid, files)                             # no orders: after the highest
    assert r.status_code == 201 and [i["order"] for i in r.json()] == [2, 3, 4]
    r = post_files(shop, pid, files, {"orders": "0,,7"})          # an empty one: after the highest too
    assert [i["order"] for i in r.json()] == [0, 5, 7]
    before = len(shop.images(pid))
    r = post_files(shop, pid, files, {"orders": "0,x,2"})         # not numeric: 500 at that file
    assert r.status_code == 500 and r.json() == {"statusCode": 500, "message": "Internal server error"}
    assert len(shop.images(pid)) == before + 1                   # the file before it was kept


def test_double_cloudinary_failures(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 1)
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", mode="cloudinary", fail_after_files=1,
                           message="Server returned unexpected status code - 502")
    r = post_files(shop, pid, [("files", (f"{i}.png", view_png(i), "image/png")) for i in range(3)],
                   {"orders": "0,1,2"})
    assert r.status_code == 500 and r.json() == {
        "statusCode": 500, "message": "Cloudinary upload failed: Server returned unexpected status code - 502",
        "error": "Internal Server Error"}
    assert len(shop.images(pid)) == 2                            # the first file of the bulk was kept
    shop.backend.fail_next("DELETE", "/products/*/images/*", mode="cloudinary")
    r = requests.delete(f"{shop.backend.url}/products/999/images/{old[0]['id']}", timeout=5)
    assert r.status_code == 500 and r.json()["message"].startswith("Cloudinary delete failed: ")
    assert old[0]["id"] in [i["id"] for i in shop.images(pid)]   # the row was kept
    r = requests.delete(f"{shop.backend.url}/products/999/images/{old[0]['id']}", timeout=5)
    assert r.status_code == 204                                  # productId is not checked


def test_double_front_body_limit_and_rate(shop):
    """The production front: nginx's own 413 page over 20 MiB, its 503 page past 10 r/s burst 20."""
    backend = shop.restart_backend(front=True)
    now = [1000.0]
    backend.clock = lambda: now[0]                               # a frozen clock: nothing drains
    pid = shop.pg.add_product("L100001/V09A")
    r = post_files(shop, pid, [("files", ("a.png", b"x" * (10 * 1024 * 1024 - 1), "image/png")),
                               ("files", ("b.png", b"x" * (10 * 1024 * 1024 - 1), "image/png"))])
    assert r.status_code == 413 and r.headers["Content-Type"] == "text/html"
    assert "<title>413 Request Entity Too Large</title>" in r.text and "nginx" in r.text
    assert backend.calls("POST")[-1].by_front and shop.images(pid) == []      # the 413 is not counted
    statuses = [requests.get(f"{backend.url}/products/{pid}/images", timeout=5).status_code for _ in range(22)]
    assert statuses == [200] * 20 + [503] * 2                    # 1 + burst 20 accepted
    r = requests.get(f"{backend.url}/products/{pid}/images", timeout=5)
    assert r.status_code == 503 and "503 Service Temporarily Unavailable" in r.text
    now[0] += 0.5                                                # half a second at 10 r/s: 5 more
    statuses = [requests.get(f"{backend.url}/products/{pid}/images", timeout=5).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [503]


def test_double_checks_the_token(pg_cluster):
    pg_cluster.reset()
    with ReboulBackend(pg_cluster.url, token=TOKEN) as backend:
        pid = pg_cluster.add_product("X")
        r = requests.get(f"{backend.url}/products/{pid}/images", timeout=5)
        assert r.status_code == 401 and r.json()["message"] == "Unauthorized"
        r = requests.get(f"{backend.url}/products/{pid}/images", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert r.status_code == 200


def test_multipart_parser_is_byte_exact():
    payload = bytes(range(256)) * 50 + b"\r\n\r\n--boundary"
    req = requests.Request("POST", "http://x/", files=[("files", ("v.png", payload, "image/png"))],
                           data={"orders": "0,1"}).prepare()
    parts = parse_multipart(req.body, req.headers["Content-Type"])
    assert [(p["name"], p["filename"]) for p in parts] == [("orders", None), ("files", "v.png")]
    assert parts[1]["data"] == payload and parts[0]["data"] == b"0,1"


def test_a_new_backend_gets_the_upload_too(shop):
    """Tried on the local stand-in, then pointed at the real shop: the real shop gets the images."""
    pid = shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    shop.upload("L100001-V09A")
    other = ReboulBackend(shop.pg.url).start()
    try:
        assert shop.needs("L100001-V09A", BACKEND_URL=other.url)
        shop.upload("L100001-V09A", BACKEND_URL=other.url)
        assert len(other.calls("POST")) == 1
    finally:
        other.stop()
    assert len(shop.images(pid)) == 3


def test_a_view_the_reference_no_longer_has_is_not_sent(shop):
    pid = shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")  # 2_back.png is left over from a removed back photo
    upload_reference(shop.settings(), "L100001-V09A", ("1_face", "3_detail_logo"))
    assert [i["order"] for i in shop.images(pid)] == [0, 2]


# --- the shop's real answers (issue 14) ------------------------------------------------------

def test_backend_413_file_too_large_is_explained(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    shop.restart_backend(max_file_bytes=5_000)              # a backend whose limit is lower than ours
    files = write_views(shop.output, "L100001-V09A")        # ~9 kB each
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    msg = exc.value.message
    assert "413" in msg and "trop lourd" in msg and "rien n'a été enregistré" in msg
    assert "prochaine exécution" in msg and "KeyError" not in msg
    assert [i["id"] for i in shop.images(pid)] == [i["id"] for i in old] and shop.backend.calls("DELETE") == []
    shop.restart_backend()
    shop.upload("L100001-V09A")
    assert_exactly(shop, pid, files)


def test_more_files_than_the_backend_takes_is_explained(shop):
    pid = shop.pg.add_product("L100001/V09A")
    shop.restart_backend(max_files=2)
    write_views(shop.output, "L100001-V09A")
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    msg = exc.value.message
    assert "Unexpected field - files" in msg and "fichiers" in msg and "rien n'a été enregistré" in msg
    assert "prochaine exécution" in msg
    assert shop.images(pid) == []


def test_part_type_refused_is_explained(shop):
    pid = shop.pg.add_product("L100001/V09A")
    write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", status=400,
                           message="Only image files are allowed!")
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    msg = exc.value.message
    assert "Only image files are allowed!" in msg and "type" in msg and "rien n'a été enregistré" in msg
    assert "prochaine exécution" in msg


def test_cloudinary_failure_mid_bulk_is_explained_and_completed(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", mode="cloudinary", fail_after_files=1,
                           message="Request Timeout")
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    msg = exc.value.message
    assert "Cloudinary upload failed: Request Timeout" in msg and "gardé" in msg
    assert "prochaine exécution" in msg and "n'enverra que" in msg
    assert len(shop.images(pid)) == 3
    shop.backend.clear_log()
    out = shop.upload("L100001-V09A")
    [post] = shop.posts()
    assert post.query["orders"] == ["1,2"] and sorted(out.deleted) == [i["id"] for i in old]
    assert_exactly(shop, pid, files)


def test_cloudinary_failure_on_delete_is_explained_and_finished(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 1)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("DELETE", "/products/*/images/*", mode="cloudinary", message="Request Timeout")
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    msg = exc.value.message
    assert "Cloudinary delete failed: Request Timeout" in msg and f"{old[0]['id']}" in msg
    assert "nouvelles images sont en ligne" in msg and "prochaine exécution supprimera" in msg
    assert old[0]["id"] in [i["id"] for i in shop.images(pid)]
    out = shop.upload("L100001-V09A")
    assert out.deleted == [old[0]["id"]] and out.uploaded == []
    assert_exactly(shop, pid, files)


def test_orders_that_never_arrive_are_put_right(shop):
    """A bulk whose orders are lost: the shop puts the images after its highest order; the read-back
    sees it and sets each image's order (PATCH)."""
    pid = shop.pg.add_product("L100001/V09A")
    shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", mode="ignore_orders")
    shop.upload("L100001-V09A")
    assert len(shop.backend.calls("PATCH")) == 3
    imgs = assert_exactly(shop, pid, files)
    assert [i["image_id"] for i in shop.stamp("L100001-V09A")["images"]] == [i["id"] for i in imgs]


# --- the production front --------------------------------------------------------------------

def noisy_view(seed: int, side: int = 130) -> bytes:
    return view_png(seed, size=(side, side))          # random pixels: ~50 kB, does not compress


def test_views_over_the_request_limit_go_in_several_bulks(shop):
    limit = 120_000
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    shop.restart_backend(front_max_body=limit)
    files = {v: write_view(shop.output, "L100001-V09A", v, noisy_view(i)) for i, v in enumerate(VIEWS)}
    assert sum(map(len, files.values())) > limit
    out = shop.upload("L100001-V09A", UPLOAD_MAX_REQUEST_MB=str(limit / 1024 / 1024))
    posts = shop.posts()
    assert [p.query["orders"] for p in posts] == [["0,1"], ["2"]]
    assert all(p.status == 201 and p.body_size <= limit for p in posts)
    assert out.uploaded == list(VIEWS) and sorted(out.deleted) == [i["id"] for i in old]
    assert_exactly(shop, pid, files)
    assert not shop.needs("L100001-V09A", UPLOAD_MAX_REQUEST_MB=str(limit / 1024 / 1024))


@pytest.mark.parametrize("mode", ["cloudinary", "drop_after"])
def test_second_bulk_fails_and_the_next_run_resumes(shop, mode):
    limit = 120_000
    env = {"UPLOAD_MAX_REQUEST_MB": str(limit / 1024 / 1024)}
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    shop.restart_backend(front_max_body=limit)
    files = {v: write_view(shop.output, "L100001-V09A", v, noisy_view(i)) for i, v in enumerate(VIEWS)}
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", mode=mode, skip=1)
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A", **env)
    assert "prochaine exécution" in exc.value.message
    assert shop.backend.calls("DELETE") == []                # the old images stay until all new are there
    assert {i["id"] for i in old} <= {i["id"] for i in shop.images(pid)}
    assert shop.needs("L100001-V09A", **env)
    shop.backend.clear_log()

    out = shop.upload("L100001-V09A", **env)
    assert [p.query["orders"] for p in shop.posts()] == ([["2"]] if mode == "cloudinary" else [])
    assert sorted(out.deleted) == [i["id"] for i in old]
    assert_exactly(shop, pid, files)
    assert len(shop.backend.cloudinary) == 3                 # nothing uploaded twice
    assert not shop.needs("L100001-V09A", **env)


def test_three_large_views_through_the_production_front(shop):
    """Three views of ~8 MB (a 4K PNG each): one bulk would get nginx's 413; the default 20 MB
    request setting splits them."""
    pid = shop.pg.add_product("L100001/V09A")
    shop.restart_backend(front=True)
    files = {v: write_view(shop.output, "L100001-V09A", v, big_png(8 * 1024 * 1024, noise=2.0, compress_level=0,
                                                                   seed=i))
             for i, v in enumerate(VIEWS)}
    shop.upload("L100001-V09A")
    posts = shop.posts()
    assert len(posts) == 2 and all(p.status == 201 and p.body_size <= 20 * 1024 * 1024 for p in posts)
    assert_exactly(shop, pid, files)


def test_many_references_stay_under_the_front_rate(shop):
    refs = [f"L10000{i}/V09A" for i in range(6)]
    pids = {ref: shop.pg.add_product(ref) for ref in refs}
    for pid in pids.values():
        shop.seed_images(pid, 2)                             # on a backend without the front
    shop.restart_backend(front=True)
    for i, ref in enumerate(refs):
        folder = ref.replace("/", "-")
        files = write_views(shop.output, folder, seed=i)
        shop.upload(folder)
        imgs = shop.backend.get_images(pids[ref])[1]
        assert [img["order"] for img in imgs] == [0, 1, 2]
        assert image_bytes(shop.backend, imgs) == list(files.values())
    assert len(shop.backend.requests) >= 30
    assert [r.status for r in shop.backend.requests if r.by_front] == []


def test_front_503_on_get_and_delete_is_retried(shop):
    pid = shop.pg.add_product("L100001/V09A")
    shop.seed_images(pid, 1)
    shop.restart_backend(front=True)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("GET", f"/products/{pid}/images", status=503, mode="front")
    shop.backend.fail_next("DELETE", f"/products/{pid}/images/*", status=503, mode="front")
    shop.upload("L100001-V09A")
    assert [r.status for r in shop.backend.calls("GET")][:2] == [503, 200]
    assert [r.status for r in shop.backend.calls("DELETE")] == [503, 204]
    assert_exactly(shop, pid, files)


def test_front_503_on_the_bulk_is_explained(shop):
    pid = shop.pg.add_product("L100001/V09A")
    shop.restart_backend(front=True)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", status=503, mode="front")
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    msg = exc.value.message
    assert "503" in msg and "frontal" in msg and "rien n'a été enregistré" in msg and "prochaine exécution" in msg
    shop.upload("L100001-V09A")
    assert_exactly(shop, pid, files)


def test_front_413_names_the_setting(shop):
    pid = shop.pg.add_product("L100001/V09A")
    shop.restart_backend(front_max_body=60_000)
    write_views(shop.output, "L100001-V09A", views=("1_face",))
    write_view(shop.output, "L100001-V09A", "1_face", noisy_view(1, side=160))     # ~77 kB
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")                          # UPLOAD_MAX_REQUEST_MB left at 20
    msg = exc.value.message
    assert "413" in msg and "frontal" in msg and "UPLOAD_MAX_REQUEST_MB" in msg and "rien n'a été enregistré" in msg
    assert shop.images(pid) == []


def test_request_setting_too_small_for_a_view_is_refused_before_sending(shop):
    shop.pg.add_product("L100001/V09A")
    write_view(shop.output, "L100001-V09A", "1_face", noisy_view(1))
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A", UPLOAD_MAX_REQUEST_MB="0.01")
    assert "UPLOAD_MAX_REQUEST_MB" in exc.value.message and "Rien n'a été envoyé" in exc.value.message
    assert shop.backend.requests == []


# --- the read-back is the truth ----------------------------------------------------------------

def test_backend_storing_each_file_twice_leaves_one_image_per_view(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", mode="duplicate")
    out = shop.upload("L100001-V09A")
    imgs = assert_exactly(shop, pid, files)
    assert len(out.deleted) == 5 and {i["id"] for i in old} <= set(out.deleted)
    assert [i["image_id"] for i in shop.stamp("L100001-V09A")["images"]] == [i["id"] for i in imgs]
    assert len(shop.backend.cloudinary) == 3


@pytest.mark.parametrize("mode", ["same_id", "no_ids"])
def test_malformed_bulk_answer_is_an_error_reconciled_by_the_next_run(shop, mode):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 2)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("POST", f"/products/{pid}/images/bulk", mode=mode)
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    msg = exc.value.message
    assert "réponse inattendue" in msg and "prochaine exécution" in msg
    assert shop.backend.calls("DELETE") == [] and not (shop.output / "L100001-V09A" / "upload.json").exists()
    shop.backend.clear_log()
    out = shop.upload("L100001-V09A")
    assert shop.posts() == [] and out.uploaded == [] and sorted(out.deleted) == [i["id"] for i in old]
    imgs = assert_exactly(shop, pid, files)
    assert [i["image_id"] for i in shop.stamp("L100001-V09A")["images"]] == [i["id"] for i in imgs]


def test_readback_failing_after_the_bulk_is_finished_by_the_next_run(shop):
    pid = shop.pg.add_product("L100001/V09A")
    old = shop.seed_images(pid, 1)
    files = write_views(shop.output, "L100001-V09A")
    shop.backend.fail_next("GET", f"/products/{pid}/images", status=500, skip=1)   # the read-back
    with pytest.raises(UploadError) as exc:
        shop.upload("L100001-V09A")
    assert "reçu mais pas relu" in exc.value.message and "prochaine exécution" in exc.value.message
    assert shop.backend.calls("DELETE") == []
    shop.backend.clear_log()
    out = shop.upload("L100001-V09A")
    assert shop.posts() == [] and out.deleted == [old[0]["id"]]
    assert_exactly(shop, pid, files)
