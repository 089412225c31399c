"""Shared fixtures: a temporary project folder with the real dodo.py, fakes of the remote services.
The helpers they use live in helpers.py."""

from __future__ import annotations

import shutil

import pytest
from fakes.gemini_server import fake_gemini  # noqa: F401 (a fixture)
from fakes.postgres import shared_cluster
from fakes.reboul_backend import ReboulBackend
from helpers import CHROMIUM, CHROMIUM_ARGS, REPO, Project, Shop, clean_env, new_project


@pytest.fixture
def project(tmp_path) -> Project:
    """An empty project: the real dodo.py and doit configuration, style refs, no photos yet."""
    return Project(new_project(tmp_path / "shop"), clean_env())


@pytest.fixture
def samples_project(project) -> Project:
    """The project with the bundled sample photos and style references of the repository."""
    shutil.rmtree(project.root / "photos")
    shutil.copytree(REPO / "photos", project.root / "photos")
    shutil.rmtree(project.root / "refs")
    shutil.copytree(REPO / "refs", project.root / "refs")
    return project


@pytest.fixture
def gemini_project(project, fake_gemini_for):
    """Three references (A-1 with a back, B-2 face only: 5 views) and the fake Gemini they reach."""
    project.photo("A-1", "face.jpg", seed=1)
    project.photo("A-1", "back.jpg", seed=2, logo=False)
    project.photo("B-2", "face.jpg", colour=(150, 30, 40), seed=3)
    return project, fake_gemini_for


@pytest.fixture
def fake_gemini_for(project):
    """A fake Gemini server the project's doit runs reach (real SDK, through GOOGLE_GEMINI_BASE_URL)."""
    from fakes.gemini_server import DEFAULT_KEY, FakeGemini

    with FakeGemini() as fake:
        project.env.update(GEMINI_API_KEY=DEFAULT_KEY, GOOGLE_GEMINI_BASE_URL=fake.url,
                           NO_PROXY="127.0.0.1,localhost", GEMINI_MAX_WAIT="5",
                           IMAGE_SIZE="1K")  # the views are small (216x296): 1K answers are plenty
        yield fake


@pytest.fixture(scope="session")
def pg_cluster():
    return shared_cluster()


@pytest.fixture
def shop(pg_cluster, tmp_path):
    pg_cluster.reset()
    backend = ReboulBackend(pg_cluster.url).start()
    shop = Shop(pg_cluster, backend, tmp_path)
    try:
        yield shop
    finally:
        backend.stop()
        shop.close()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium absent (apt-get install chromium): the browser test needs a real headless browser")
    from playwright.sync_api import sync_playwright  # pip install playwright (no browser download needed)

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
