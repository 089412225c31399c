"""A throwaway PostgreSQL cluster for tests and `scripts/local_shop.py`, with the shop's tables.

`categories`, `products` and `images` with the columns of the shop's TypeORM entities that the
pipeline or a realistic insert needs (`products.price` and `products.category_id` are NOT NULL, as in
the shop): `add_product(reference, category="Vestes")` creates the category on first use.

Where the server comes from, first found wins:

1. `CATALOGUE_PG_BINDIR` (a folder holding `initdb` and `postgres`);
2. the system's server binaries: `pg_config --bindir`, `/usr/lib/postgresql/<newest>/bin`,
   `/usr/local/pgsql/bin`, `initdb` on `PATH` (Debian/Ubuntu: `apt-get install postgresql`);
3. the pip package `pgserver` (an embedded PostgreSQL wheel; `pip install pgserver`), imported
   lazily only when 1 and 2 found nothing. `CATALOGUE_PG=pgserver` forces it.

`initdb` and `postgres` refuse to run as root: as root the server runs as the `postgres` system user
when it exists, else `nobody` (pgserver creates its own `pgserver` user). The cluster lives in a
temporary folder, listens on a unix socket only (no TCP port to collide with) unless `tcp=True`, runs
with `fsync=off`, and is stopped and deleted at exit.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unicodedata
from pathlib import Path
from urllib.parse import quote

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS categories (
    id          serial PRIMARY KEY,
    name        varchar(255) NOT NULL,
    slug        varchar(255) NOT NULL UNIQUE,
    description text,
    created_at  timestamp NOT NULL DEFAULT now(),
    updated_at  timestamp NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS products (
    id          serial PRIMARY KEY,
    name        varchar(255) NOT NULL,
    reference   varchar(100) UNIQUE,
    description text,
    price       decimal(10,2) NOT NULL,
    category_id integer NOT NULL REFERENCES categories(id),
    is_published boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS images (
    id          serial PRIMARY KEY,
    product_id  integer NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    url         varchar(500) NOT NULL,
    public_id   varchar(255),
    alt         varchar(255),
    "order"     integer NOT NULL DEFAULT 0,
    created_at  timestamp NOT NULL DEFAULT now()
);
"""


DEFAULT_CATEGORY = "Sans catégorie"     # products created without a category (the column is NOT NULL)


def slugify(name: str) -> str:
    """« Vestes » -> `vestes`, « T-shirts & polos » -> `t-shirts-polos` (the shop's slugs)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "categorie"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries and no `pgserver` package on this machine."""


def _is_server_bindir(path: Path) -> bool:
    return (path / "initdb").is_file() and (path / "postgres").is_file()


def find_bindir() -> Path | None:
    """The folder of the system's PostgreSQL server binaries, or None."""
    env = os.environ.get("CATALOGUE_PG_BINDIR")
    if env and _is_server_bindir(Path(env)):
        return Path(env)
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(p: str) -> float:
        try:
            return float(Path(p).parent.name)
        except ValueError:
            return 0.0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    candidates += [Path("/usr/local/pgsql/bin"), Path("/opt/homebrew/bin"), Path("/usr/local/bin")]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for c in candidates:
        if _is_server_bindir(c):
            return c
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd | None:
    """As root: the account the server runs as. Otherwise None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' account exists")


class PostgresCluster:
    """One temporary PostgreSQL cluster. `url` is a libpq URL usable as DATABASE_URL."""

    def __init__(self, *, tcp: bool = False, port: int | None = None, dbname: str = "reboul"):
        self.tcp = tcp
        self.port = port
        self.dbname = dbname
        self.url: str | None = None
        self.admin_url: str | None = None
        self.kind: str | None = None          # "system <bindir>" | "pgserver"
        self._proc: subprocess.Popen | None = None
        self._pgserver = None
        self._tmp: Path | None = None
        self._lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "PostgresCluster":
        forced = os.environ.get("CATALOGUE_PG", "").strip().lower()
        bindir = None if forced == "pgserver" else find_bindir()
        if bindir is not None:
            self._start_binaries(bindir)
        else:
            self._start_pgserver()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.url = self._url_for(self.dbname)
        self.create_schema()
        atexit.register(self.stop)
        return self

    def _start_binaries(self, bindir: Path) -> None:
        user = _unprivileged_user()
        self._tmp = Path(tempfile.mkdtemp(prefix="catalogue-pg-"))
        data = self._tmp / "data"
        data.mkdir()
        if user is not None:
            for p in (self._tmp, data):
                os.chown(p, user.pw_uid, user.pw_gid)
        run_as = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if user is not None:
            env["HOME"] = str(self._tmp)
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--locale=C", "--no-sync"],
            capture_output=True, text=True, env=env, cwd=self._tmp, timeout=120, **run_as)
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        port = self.port or (_free_port() if self.tcp else 5432)
        listen = "127.0.0.1" if self.tcp else ""
        log = open(self._tmp / "postgres.log", "wb")
        self._proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(self._tmp),
             "-c", f"listen_addresses={listen}", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=100", "-c", "shared_buffers=32MB"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self._tmp, start_new_session=True, **run_as)
        log.close()
        self.port = port
        self.kind = f"system {bindir}"
        self.admin_url = self._url_for("postgres")
        self._wait_ready()

    def _start_pgserver(self) -> None:
        try:
            import pgserver  # lazy: only needed on machines without PostgreSQL server binaries
        except ImportError:
            raise PostgresUnavailable(
                "No PostgreSQL server found: install the system package (Debian/Ubuntu: "
                "`apt-get install postgresql`) or the embedded one (`pip install pgserver`).") from None
        self._tmp = Path(tempfile.mkdtemp(prefix="catalogue-pgserver-"))
        self._pgserver = pgserver.get_server(self._tmp / "data", cleanup_mode="stop")
        self.kind = "pgserver"
        self.admin_url = self._pgserver.get_uri()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("ALTER SYSTEM SET synchronous_commit = off")
            conn.execute("SELECT pg_reload_conf()")

    def _url_for(self, dbname: str) -> str:
        if self._pgserver is not None:
            base = self._pgserver.get_uri()
            # get_uri() -> postgresql://postgres:@/postgres?host=... or postgresql://postgres:@host:port/postgres
            head, _, tail = base.partition("?")
            head = head.rsplit("/", 1)[0] + "/" + dbname
            return head + ("?" + tail if tail else "")
        if self.tcp:
            return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"
        return f"postgresql://postgres@/{dbname}?host={quote(str(self._tmp), safe='/')}&port={self.port}"

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise PostgresUnavailable(f"postgres exited at start:\n{self.log()}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"postgres did not accept connections in {timeout:.0f} s:\n{self.log()}")
                time.sleep(0.05)

    def log(self) -> str:
        try:
            return (self._tmp / "postgres.log").read_text(errors="replace")[-4000:]
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        with self._lock:
            if self._proc is not None:
                if self._proc.poll() is None:
                    self._proc.send_signal(signal.SIGINT)  # fast shutdown
                    try:
                        self._proc.wait(15)
                    except subprocess.TimeoutExpired:
                        self._proc.kill()
                        self._proc.wait(5)
                self._proc = None
            if self._pgserver is not None:
                try:
                    self._pgserver.cleanup()
                except Exception:  # pragma: no cover - best effort at exit
                    pass
                self._pgserver = None
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None

    def __enter__(self) -> "PostgresCluster":
        return self.start() if self.url is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- data ---------------------------------------------------------------------------------

    def connect(self, **kw) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, **kw)

    def create_schema(self) -> None:
        with self.connect() as conn:
            conn.execute(SCHEMA)

    def reset(self) -> None:
        """Empty the tables and restart their ids at 1 (a fresh shop for each test)."""
        with self.connect() as conn:
            conn.execute("TRUNCATE images, products, categories RESTART IDENTITY CASCADE")

    def add_category(self, name: str, slug: str | None = None) -> int:
        """The id of the category `name` (slug derived from it unless given), created on first use."""
        slug = slug or slugify(name)
        with self.connect() as conn:
            row = conn.execute("SELECT id FROM categories WHERE slug = %s", (slug,)).fetchone()
            if row is None:
                row = conn.execute("INSERT INTO categories (name, slug) VALUES (%s, %s) RETURNING id",
                                   (name, slug)).fetchone()
            return row[0]

    def add_product(self, reference: str | None, name: str = "", product_id: int | None = None, *,
                    category: str = DEFAULT_CATEGORY, price: str = "120.00") -> int:
        """A product as the shop's admin creates it (name, reference, price, category)."""
        category_id = self.add_category(category)
        values = (name or f"Produit {reference}", reference, price, category_id)
        with self.connect() as conn:
            if product_id is None:
                row = conn.execute("INSERT INTO products (name, reference, price, category_id) "
                                   "VALUES (%s, %s, %s, %s) RETURNING id", values).fetchone()
            else:
                row = conn.execute("INSERT INTO products (id, name, reference, price, category_id) "
                                   "VALUES (%s, %s, %s, %s, %s) RETURNING id", (product_id, *values)).fetchone()
                conn.execute("SELECT setval(pg_get_serial_sequence('products', 'id'), "
                             "(SELECT max(id) FROM products))")
            return row[0]

    def set_category(self, product_id: int, name: str, slug: str) -> int:
        """Give the product the category « name » (`slug`), created when new: the shop's
        products.category_id -> categories(id, name, slug)."""
        with self.connect() as conn:
            row = conn.execute("INSERT INTO categories (name, slug) VALUES (%s, %s) ON CONFLICT (slug) "
                               "DO UPDATE SET name = EXCLUDED.name RETURNING id", (name, slug)).fetchone()
            conn.execute("UPDATE products SET category_id = %s WHERE id = %s", (row[0], product_id))
            return row[0]

    def images(self, product_id: int) -> list[dict]:
        with self.connect() as conn:
            cur = conn.execute('SELECT id, product_id, url, public_id, alt, "order", created_at FROM images '
                               'WHERE product_id = %s ORDER BY "order", created_at, id', (product_id,))
            cols = [c.name for c in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]


_shared: PostgresCluster | None = None
_shared_lock = threading.Lock()


def shared_cluster() -> PostgresCluster:
    """One cluster per process, started on first use, stopped at exit (tests share it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PostgresCluster().start()
        return _shared
