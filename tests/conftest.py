"""Shared fixtures: a temporary project folder with the real dodo.py, and real doit runs in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parent.parent

# Settings the developer's own shell or .env must not leak into a test project.
SETTING_NAMES = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GEMINI_MODEL", "GENERATOR",
                 "PHOTOS_DIR", "REFS_DIR", "OUTPUT_DIR", "BACKEND_URL", "BACKEND_TOKEN", "DATABASE_URL",
                 "PRODUCTS_MAP", "IMAGE_SIZE", "OUTPUT_SIZE", "MAX_COST", "UPLOAD_MODE", "ALLOW_LOCAL_UPLOAD",
                 "GEMINI_CONCURRENCY", "GEMINI_RPM", "GEMINI_MAX_WAIT", "GEMINI_TIMEOUT", "MAX_PIXELS")


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


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def project(tmp_path) -> Project:
    """An empty project: the real dodo.py and doit configuration, style refs, no photos yet."""
    root = tmp_path / "shop"
    root.mkdir()
    shutil.copy(REPO / "dodo.py", root / "dodo.py")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for view in ("1_face", "2_back", "3_detail_logo"):
        style_ref(root / "refs" / f"{view}.png", view)
    (root / "photos").mkdir()
    (root / "output").mkdir()
    return Project(root, clean_env())


@pytest.fixture
def samples_project(project) -> Project:
    """The project with the bundled sample photos and style references of the repository."""
    shutil.rmtree(project.root / "photos")
    shutil.copytree(REPO / "photos", project.root / "photos")
    shutil.rmtree(project.root / "refs")
    shutil.copytree(REPO / "refs", project.root / "refs")
    return project


@pytest.fixture
def fake_gemini_for(project):
    """A fake Gemini server the project's doit runs reach (real SDK, through GOOGLE_GEMINI_BASE_URL)."""
    from fakes.gemini_server import DEFAULT_KEY, FakeGemini

    with FakeGemini() as fake:
        project.env.update(GEMINI_API_KEY=DEFAULT_KEY, GOOGLE_GEMINI_BASE_URL=fake.url,
                           NO_PROXY="127.0.0.1,localhost", GEMINI_MAX_WAIT="5")
        yield fake
