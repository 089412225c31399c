"""Helpers shared by the tests (plain functions and classes; the fixtures are in conftest.py).

Synthetic photos and style references, a temporary project driven by real doit runs, the run's
summary line, finished views as the generators leave them, and the shop (backend double + database).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
from doit_fork_server import ForkServer
from fakes.reboul_backend import ReboulBackend
from PIL import Image, ImageDraw, ImageFilter

from catalogue.core.paths import INTENT_FILE, STAMP_FILE
from catalogue.core.settings import load_settings
from catalogue.core.views import VIEW_NAMES
from catalogue.core.views import VIEWS as VIEW_SPECS
from catalogue.publishing.stamp import needs_upload
from catalogue.publishing.upload import upload_reference

REPO = Path(__file__).resolve().parent.parent

# Settings the developer's own shell or .env must not leak into a test project.
SETTING_NAMES = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GEMINI_MODEL", "GENERATOR",
                 "PHOTOS_DIR", "REFS_DIR", "OUTPUT_DIR", "BACKEND_URL", "BACKEND_TOKEN", "DATABASE_URL",
                 "PRODUCTS_MAP", "IMAGE_SIZE", "OUTPUT_SIZE", "MAX_COST", "UPLOAD_MODE", "ALLOW_LOCAL_UPLOAD",
                 "GEMINI_CONCURRENCY", "GEMINI_RPM", "GEMINI_MAX_WAIT", "GEMINI_TIMEOUT", "MAX_PIXELS",
                 "UPLOAD_MAX_REQUEST_MB", "GEMINI_SPEND_PER_10MIN", "GEMINI_QUOTA_WINDOW", "GEMINI_MODE")


def garment_photo(path: Path, colour=(40, 60, 120), size=(360, 480), background=(236, 232, 226), seed=0,
                  logo=True) -> Path:
    """A small synthetic 'phone photo': a T-shirt-like shape with texture on an uneven off-white."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    light = 1.0 - 0.08 * (xx / w) - 0.05 * (yy / h)
    bg = (np.array(background)[None, None, :] * light[..., None]).clip(0, 255)
    img = Image.fromarray(bg.astype(np.uint8))
    mask = Image.new("L", size, 0)
    d = ImageDraw.Draw(mask)
    cx = w // 2
    d.polygon([(cx - 0.22 * w, 0.22 * h), (cx - 0.42 * w, 0.38 * h), (cx - 0.34 * w, 0.48 * h),
               (cx - 0.22 * w, 0.40 * h), (cx - 0.22 * w, 0.85 * h), (cx + 0.22 * w, 0.85 * h),
               (cx + 0.22 * w, 0.40 * h), (cx + 0.34 * w, 0.48 * h), (cx + 0.42 * w, 0.38 * h),
               (cx + 0.22 * w, 0.22 * h)], fill=255)
    cloth = np.array(colour)[None, None, :] + rng.normal(0, 6, (h, w, 1))
    img.paste(Image.fromarray(cloth.clip(0, 255).astype(np.uint8)), mask=mask.filter(ImageFilter.GaussianBlur(1)))
    if logo:
        ImageDraw.Draw(img).rectangle([cx + 0.06 * w, 0.30 * h, cx + 0.14 * w, 0.36 * h], fill=(230, 200, 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=88)
    return path


def style_ref(path: Path, view: str, size=(216, 296)) -> Path:
    """A house-style reference: a grey garment laid flat on exactly #F3F3F3."""
    w, h = size
    img = Image.new("RGB", size, (243, 243, 243))
    d = ImageDraw.Draw(img)
    if view == "3_detail_logo":
        d.rectangle([0, int(0.2 * h), w, h], fill=(120, 120, 124))
        d.rectangle([int(0.4 * w), int(0.4 * h), int(0.6 * w), int(0.55 * h)], fill=(20, 20, 20))
    else:
        d.rectangle([int(0.15 * w), int(0.12 * h), int(0.85 * w), int(0.88 * h)], fill=(120, 120, 124))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@dataclass
class Project:
    root: Path
    env: dict

    @property
    def output(self) -> Path:
        return self.root / "output"

    def photo(self, folder: str, name: str = "face.jpg", **kw) -> Path:
        return garment_photo(self.root / "photos" / folder / name, **kw)

    def doit(self, *args: str, timeout: float = 120, extra_env: dict | None = None,
             check: bool = False) -> subprocess.CompletedProcess:
        env = {**self.env, **(extra_env or {})}
        server = ForkServer.for_env(env, clean_env())
        if server is not None:
            proc = server.run(list(args), self.root, env, timeout)
        else:
            proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=self.root, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"doit {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start_doit(self, *args: str, extra_env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=self.root,
                                env={**self.env, **(extra_env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def mtimes(self) -> dict[str, float]:
        return {str(p.relative_to(self.output)): p.stat().st_mtime_ns
                for p in sorted(self.output.glob("*/*.png"))}


def new_project(root: Path) -> Path:
    """An empty project folder: the real dodo.py and doit configuration, style refs, no photos yet."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "dodo.py", root / "dodo.py")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for view in ("1_face", "2_back", "3_detail_logo"):
        style_ref(root / "refs" / f"{view}.png", view)
    (root / "photos").mkdir()
    (root / "output").mkdir()
    return root


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env



# --- the run's lines -----------------------------------------------------------------------

SUMMARY = re.compile(r"Terminé : (\d+) générées?, (\d+) à jour, (\d+) échecs?")


def summary(proc) -> tuple[int, int, int]:
    m = SUMMARY.search(proc.stdout)
    assert m, proc.stdout + proc.stderr
    return tuple(int(g) for g in m.groups())


def built(proc) -> set[str]:
    """'folder view' of every view the run generated (from its progress lines)."""
    return {f"{m[1]} {m[2]}" for m in re.finditer(r"^\[\d+/\d+\] (\S+) (\S+) : généré", proc.stdout, re.M)}



# --- finished views and the shop ------------------------------------------------------------

VIEWS = VIEW_NAMES
ORDERS = {v.name: v.order for v in VIEW_SPECS}
TOKEN = "tok-Sup3rS3cret-bearer-value"


def view_png(seed: int, size=(48, 64)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_view(output: Path, folder: str, view: str, data: bytes | None = None, *, seed: int = 0,
               generator: str = "gemini") -> bytes:
    """A finished view and its minimal provenance sidecar, as the generators leave them."""
    data = view_png(seed * 10 + ORDERS[view]) if data is None else data
    d = output / folder
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{view}.png").write_bytes(data)
    (d / f"{view}.json").write_text(json.dumps({
        "view": view, "folder": folder, "generator": generator, "output_sha256": hashlib.sha256(data).hexdigest(),
        "qa": {"verdict": "pass", "checks": {}}}))
    return data


def write_views(output: Path, folder: str, *, seed: int = 0, views=VIEWS, generator="gemini") -> dict[str, bytes]:
    return {v: write_view(output, folder, v, seed=seed, generator=generator) for v in views}


def image_bytes(backend, images):
    return [backend.file_bytes(img) for img in images]


class Crash(BaseException):
    """Stands for the process dying (kill -9, power cut): not an exception the code may handle."""


class Shop:
    """The shop of a test: the database, the backend double (optionally behind its nginx-like
    front), and a project output folder."""

    def __init__(self, pg, backend, root: Path):
        self.pg = pg
        self.backend = backend
        self.root = root
        self.output = root / "output"
        self.output.mkdir()
        self.env = {"GENERATOR": "local", "DATABASE_URL": pg.url, "BACKEND_URL": backend.url}
        self._started = []

    def restart_backend(self, **options):
        """Replace the backend double by a new one with these options (`front=True`,
        `front_max_body=`, `max_file_bytes=`, ...), on the same database."""
        self.backend.stop()
        self.backend = ReboulBackend(self.pg.url, **options).start()
        self._started.append(self.backend)
        self.env["BACKEND_URL"] = self.backend.url
        return self.backend

    def close(self) -> None:
        for backend in self._started:
            backend.stop()

    def settings(self, **env):
        return load_settings(self.root, environ={**self.env, **env})

    def upload(self, folder: str, **env):
        return upload_reference(self.settings(**env), folder)

    def needs(self, folder: str, **env) -> bool:
        return needs_upload(self.settings(**env), folder)

    def images(self, pid: int) -> list[dict]:
        r = requests.get(f"{self.backend.url}/products/{pid}/images", timeout=5,
                         headers={"Authorization": f"Bearer {self.backend.token}"} if self.backend.token else {})
        assert r.status_code == 200, r.text
        return r.json()

    def seed_images(self, pid: int, n: int = 2) -> list[dict]:
        """Images the product already shows (uploaded by the old tool)."""
        files = [("files", (f"old{i}.png", view_png(1000 + i), "image/png")) for i in range(n)]
        r = requests.post(f"{self.backend.url}/products/{pid}/images/bulk",
                          params={"orders": ",".join(str(i) for i in range(n))}, files=files, timeout=5)
        assert r.status_code == 201, r.text
        self.backend.clear_log()
        return r.json()

    def posts(self):
        return self.backend.calls("POST")

    def intent(self, folder):
        p = self.output / folder / INTENT_FILE
        return json.loads(p.read_text()) if p.exists() else None

    def stamp(self, folder):
        return json.loads((self.output / folder / STAMP_FILE).read_text())


# --- fault injection in a real doit run ---------------------------------------------------------

def fault_env(tmp_path: Path, env: dict, code: str) -> dict:
    """`env` for a doit run whose process first executes `code` (a sitecustomize.py on PYTHONPATH):
    stands for a bug or an operating-system refusal deep inside the pipeline."""
    d = tmp_path / "fault"
    d.mkdir(exist_ok=True)
    (d / "sitecustomize.py").write_text(code)
    return {**env, "PYTHONPATH": f"{d}{os.pathsep}{env.get('PYTHONPATH', '')}"}


# --- the review page's browser tests ------------------------------------------------------------

# Debian's chromium (installed by .ci/run); Playwright never downloads a browser here.
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# --- the edges: state files, waiting for a run to reach a point, mounts ---------------------

def ledger_lines(project) -> list[dict]:
    """Every readable line of the project's cost ledger."""
    path = project.output / ".state" / "ledger.jsonl"
    out = []
    for line in (path.read_text(encoding="utf-8").splitlines() if path.exists() else []):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def paid_lines(project) -> list[dict]:
    """The ledger lines of calls made (not the journal's "started" / reconciliation lines)."""
    return [r for r in ledger_lines(project) if r.get("outcome") not in ("started", "ended", "interrupted")]


def stored_answers(project) -> list[Path]:
    """The metadata files of the answer store (one per stored answer)."""
    root = project.output / ".state" / "answers"
    return sorted(p for p in root.rglob("*.json") if "corrupt" not in p.parts) if root.exists() else []


def wait_until(predicate, timeout: float = 60.0, step: float = 0.05) -> None:
    """Wait for an event of a run under way (not a timing assertion: fails only if it never comes)."""
    import time

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("the awaited event never came")
        time.sleep(step)


def can_mount() -> bool:
    """True when tmpfs can be mounted in a private mount namespace (unshare -rm)."""
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                              capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def doit_on_tmpfs(project, runs: list[list[str]], *, options: str, keep: Path | None = None,
                  timeout: float = 180, extra_env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Run doit commands one after the other with `output/` on a fresh tmpfs (`options`, e.g.
    "ro" or "size=600k") in a private mount namespace; `keep`: where to copy output/ afterwards."""
    import shlex

    env = {**project.env, **(extra_env or {})}
    out = shlex.quote(str(project.output))
    script = [f"mount -t tmpfs -o {shlex.quote(options)} tmpfs {out} || exit 99"]
    for i, args in enumerate(runs):
        cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "doit", *args])
        script.append(f"echo '=== run {i}'; {cmd} 2>&1; echo \"=== rc $?\"")
    if keep is not None:
        script.append(f"mkdir -p {shlex.quote(str(keep))} && cp -a {out}/. {shlex.quote(str(keep))}/")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", "\n".join(script)], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode != 99, proc.stdout + proc.stderr
    results = []
    for chunk in re.split(r"^=== run \d+\n", proc.stdout, flags=re.M)[1:]:
        body, _, rc = chunk.rpartition("=== rc ")
        results.append(subprocess.CompletedProcess(args=[], returncode=int(rc.split()[0]), stdout=body,
                                                   stderr=""))
    return results
