"""Reference lookup: folder -> product id, on a real PostgreSQL (or the PRODUCTS_MAP CSV)."""

from __future__ import annotations

import socket

import psycopg
import pytest

from catalogue.core.errors import UploadError
from catalogue.core.settings import load_settings
from catalogue.publishing import lookup
from catalogue.publishing.lookup import resolve_product_id


@pytest.fixture
def pg(pg_cluster):
    pg_cluster.reset()
    return pg_cluster


def settings_for(tmp_path, **env):
    return load_settings(tmp_path, environ={"GENERATOR": "local", **env})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_folder_with_slash_reference(pg, tmp_path):
    pid = pg.add_product("L100001/V09A")
    pg.add_product("L100002/V09A")
    assert resolve_product_id(settings_for(tmp_path, DATABASE_URL=pg.url), "L100001-V09A") == (pid, "L100001/V09A")


def test_reference_containing_dash(pg, tmp_path):
    pg.add_product("SI-8015/V0029")
    pid = pg.add_product("REF-001")
    s = settings_for(tmp_path, DATABASE_URL=pg.url)
    assert resolve_product_id(s, "REF-001") == (pid, "REF-001")
    assert resolve_product_id(s, "SI-8015-V0029")[1] == "SI-8015/V0029"


def test_ambiguous_reference_lists_both(pg, tmp_path):
    pg.add_product("REF-001")
    pg.add_product("REF/001")
    with pytest.raises(UploadError) as exc:
        resolve_product_id(settings_for(tmp_path, DATABASE_URL=pg.url), "REF-001")
    assert "« REF-001 »" in exc.value.message and "« REF/001 »" in exc.value.message


def test_unknown_reference(pg, tmp_path):
    pg.add_product("L100001/V09A")
    with pytest.raises(UploadError) as exc:
        resolve_product_id(settings_for(tmp_path, DATABASE_URL=pg.url), "FAKE")
    assert exc.value.message == "Aucun produit trouvé pour la référence « FAKE »"


def test_query_is_parameterised(pg, tmp_path):
    pg.add_product("L100001/V09A")
    with pytest.raises(UploadError, match="Aucun produit trouvé"):
        resolve_product_id(settings_for(tmp_path, DATABASE_URL=pg.url), "x' OR '1'='1")


def test_connection_is_read_only(pg, tmp_path, monkeypatch):
    monkeypatch.setattr(lookup, "QUERY", "WITH i AS (INSERT INTO products (name, reference) VALUES ('x', (%s::text[])[1]) "
                                         "RETURNING id, reference) SELECT id, reference, NULL, NULL FROM i LIMIT %s")
    with pytest.raises(UploadError, match="read-only"):
        resolve_product_id(settings_for(tmp_path, DATABASE_URL=pg.url), "NEW-REF")
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 0


def test_database_down_mentions_tunnel_not_password(tmp_path):
    url = f"postgresql://reboul:S3cretPassw0rd@127.0.0.1:{closed_port()}/reboul"
    with pytest.raises(UploadError) as exc:
        resolve_product_id(settings_for(tmp_path, DATABASE_URL=url), "L100001-V09A")
    msg = exc.value.message
    assert "tunnel SSH" in msg and "DATABASE_URL" in msg and "127.0.0.1" in msg
    assert "S3cretPassw0rd" not in msg and "S3cretPassw0rd" not in repr(exc.value)


def test_neither_database_nor_map(tmp_path):
    with pytest.raises(UploadError) as exc:
        resolve_product_id(settings_for(tmp_path), "L100001-V09A")
    assert "DATABASE_URL" in exc.value.message and "PRODUCTS_MAP" in exc.value.message


def test_products_map_with_and_without_header(tmp_path):
    (tmp_path / "with.csv").write_text("reference,product_id\nL100001/V09A,12\nREF-001,7\n")
    (tmp_path / "without.csv").write_text("L100001/V09A;12\nREF-001;7\n")
    for name in ("with.csv", "without.csv"):
        s = settings_for(tmp_path, PRODUCTS_MAP=name)
        assert resolve_product_id(s, "L100001-V09A") == (12, "L100001/V09A")
        assert resolve_product_id(s, "REF-001") == (7, "REF-001")
        with pytest.raises(UploadError, match="Aucun produit trouvé pour la référence « NOPE »"):
            resolve_product_id(s, "NOPE")


def test_products_map_ambiguous_and_missing(tmp_path):
    (tmp_path / "map.csv").write_text("REF-001,7\nREF/001,8\n")
    with pytest.raises(UploadError, match="plusieurs produits"):
        resolve_product_id(settings_for(tmp_path, PRODUCTS_MAP="map.csv"), "REF-001")
    with pytest.raises(UploadError, match="PRODUCTS_MAP introuvable"):
        resolve_product_id(settings_for(tmp_path, PRODUCTS_MAP="absent.csv"), "REF-001")


def test_the_double_has_the_shops_required_columns(pg, tmp_path):
    """products.price and products.category_id are NOT NULL in the shop, category_id -> categories."""
    pid = pg.add_product("L100001/V09A", category="Vestes")
    other = pg.add_product("P200002/V01", category="Pantalons", price="89.90")
    same = pg.add_product("L100003/V09A", category="Vestes")
    with psycopg.connect(pg.url) as conn:
        rows = conn.execute("SELECT p.id, p.price::text, c.name, c.slug FROM products p "
                            "JOIN categories c ON c.id = p.category_id ORDER BY p.id").fetchall()
        assert rows == [(pid, "120.00", "Vestes", "vestes"), (other, "89.90", "Pantalons", "pantalons"),
                        (same, "120.00", "Vestes", "vestes")]
        for sql in ("INSERT INTO products (name, reference, category_id) VALUES ('x', 'NO-PRICE', 1)",
                    "INSERT INTO products (name, reference, price) VALUES ('x', 'NO-CAT', 10)",
                    "INSERT INTO products (name, reference, price, category_id) VALUES ('x', 'BAD-CAT', 10, 999)"):
            with pytest.raises(psycopg.errors.IntegrityError), conn.transaction():
                conn.execute(sql)
    assert resolve_product_id(settings_for(tmp_path, DATABASE_URL=pg.url), "P200002-V01") == (other, "P200002/V01")
