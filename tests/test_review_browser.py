"""The review page end to end in a real headless Chromium (Playwright driving Debian's chromium), with
the fake Gemini and the shop's backend double: the keys fix what the page shows (issue 11 #2, #3).

`r` then `2` re-rolls 2_back (a real `doit generate:<folder>` started by the page, one paid request,
a different image on disk and on the page, its cost shown); `e` writes a retouch that is applied
and shown; `a` approves; `doit upload` then sends exactly those images. `?` lists every key.
"""

from __future__ import annotations

import json
import threading
import time

from helpers import clean_env  # noqa: F401 (the project fixture uses it)

from catalogue.core import view_state
from catalogue.core.discovery import discover_references
from catalogue.core.files import sha256_file
from catalogue.core.settings import load_settings
from catalogue.review import server as review_server

FOLDER = "L100001-V09A"




class Page:
    """The review server of a project, started in this process as `doit review` starts it."""

    def __init__(self, project, settings):
        refs = discover_references(settings.photos_dir)
        self.httpd, self.app = review_server.make_server(settings, refs, port=0, env=project.env, retry=(0.3, 2.0))
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/?cle={self.app.key}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.app.jobs.stop(timeout=60)
        self.httpd.shutdown()
        self.httpd.server_close()


def img_src(page, view):
    return page.get_attribute(f"article.row[data-folder='{FOLDER}'] .view[data-view='{view}'] .frame img", "src")


def wait_job_done(page, app, n, timeout=180):
    """Until the page's n-th job (its POST answered) is finished."""
    deadline = time.monotonic() + 15
    while len(app.jobs.snapshot()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(app.jobs.snapshot()) == n, app.jobs.snapshot()
    assert app.jobs.wait_idle(timeout), app.jobs.snapshot()
    job = app.jobs.snapshot()[-1]
    assert job["state"] == "done", job
    # the page learns it by polling, then reloads the row: no spinner left
    page.wait_for_function(f"!document.querySelector(\"article.row[data-folder='{FOLDER}'] [data-role='job']\")",
                           timeout=30000)
    return job


def test_reroll_retouch_approve_then_upload_from_the_keyboard(browser, project, fake_gemini_for, shop):
    fake = fake_gemini_for
    project.photo(FOLDER, "face.jpg", colour=(40, 60, 120))
    project.photo(FOLDER, "back.jpg", colour=(40, 60, 120), logo=False, seed=1)
    project.doit(check=True)
    assert len(fake.generate_requests) == 3
    settings = load_settings(project.root, environ=project.env)
    out = settings.output_dir / FOLDER
    srv = Page(project, settings)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(srv.url)
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        assert page.evaluate("document.activeElement.dataset.folder") == FOLDER

        # ? lists every key with its meaning
        page.keyboard.press("?")
        help_text = page.locator(".dialog.help").inner_text()
        assert "[object" not in help_text
        for key, meaning in (("j", "référence suivante"), ("a", "approuver"), ("h", "retenir"),
                             ("r", "nouveau tirage"), ("e", "ajustement"), ("f", "filtre"), ("?", "cette aide")):
            assert page.locator(".dialog.help tr", has_text=meaning).locator("kbd", has_text=key).count() >= 1, key
        page.keyboard.press("Escape")

        # r then 2: a new seed for 2_back, one paid request, a new image on disk and on the page
        before_sha, before_src = sha256_file(out / "2_back.png"), img_src(page, "2_back")
        fake.push({"kind": "ok", "mime": "image/jpeg"})  # a new draw gives another picture
        page.keyboard.press("r")
        page.wait_for_selector(".dialog h3:has-text('Nouveau tirage')")
        page.keyboard.press("2")
        job = wait_job_done(page, srv.app, 1)
        assert len(fake.generate_requests) == 4  # exactly one paid request: 2_back alone
        assert json.loads((project.root / "photos" / FOLDER / "overrides.json").read_text())["seeds"] == {"2_back": 1}
        after_sha = sha256_file(out / "2_back.png")
        assert after_sha != before_sha
        page.wait_for_function(f"document.querySelector(\"article.row[data-folder='{FOLDER}'] .view[data-view='2_back'] "
                               f".frame img\").src.includes('v={after_sha[:12]}')", timeout=15000)
        assert img_src(page, "2_back") != before_src
        side = json.loads((out / "2_back.json").read_text())
        assert side["seed"] == 1 and side["cost_usd"] > 0
        meta = page.locator(f"article.row[data-folder='{FOLDER}'] .view[data-view='2_back'] .vmeta").inner_text()
        assert f"{side['cost_usd']:.2f} $" in meta and "graine 1" in meta, meta
        assert "Terminé" in job["message"]

        # e: a retouch instruction for 2_back (Alt+2), Ctrl+Enter: applied, and shown
        page.keyboard.press("e")
        page.wait_for_selector(".dialog textarea")
        page.keyboard.press("Alt+2")
        page.keyboard.type("Rendre le bleu un peu plus profond.")
        page.keyboard.press("Control+Enter")
        wait_job_done(page, srv.app, 2)
        assert len(fake.generate_requests) == 5
        side = json.loads((out / "2_back.json").read_text())
        assert [a["status"] for a in side["adjustments"]] == ["accepted"], side["adjustments"]
        retouched = sha256_file(out / "2_back.png")
        assert retouched != after_sha
        shown = page.locator(f"article.row[data-folder='{FOLDER}'] .view[data-view='2_back'] [data-retouch='accepted']")
        shown.wait_for(timeout=15000)
        assert "Retouche 1 appliquée : « Rendre le bleu un peu plus profond. »" in shown.inner_text()
        assert f"v={retouched[:12]}" in img_src(page, "2_back")

        # a: approve the reference as it is now
        page.keyboard.press("a")
        page.wait_for_function(f"document.querySelector(\"article.row[data-folder='{FOLDER}'] [data-role='state']\")"
                               f".textContent === 'approuvé'", timeout=15000)
        decided = view_state.load(out)
        assert decided["2_back"]["sha256"] == retouched and decided["2_back"]["state"] == "approved"
        assert errors == []
    finally:
        page.close()
        srv.close()

    # doit upload sends exactly the approved images
    pid = shop.pg.add_product("L100001/V09A")
    env = {"DATABASE_URL": shop.pg.url, "BACKEND_URL": shop.backend.url}
    run = project.doit("upload", extra_env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    images = shop.images(pid)
    assert sorted(img["order"] for img in images) == [0, 1, 2]
    sent = {img["order"]: shop.backend.file_bytes(img) for img in images}
    assert sent[1] == (out / "2_back.png").read_bytes()
    assert sent[0] == (out / "1_face.png").read_bytes()
    assert len(fake.generate_requests) == 5  # nothing paid again


def test_without_a_key_the_retouch_dialog_says_the_instruction_waits_and_records_only_when_confirmed(browser, project):
    project.photo(FOLDER, "face.jpg")
    project.doit(check=True)
    settings = load_settings(project.root, environ=project.env)
    srv = Page(project, settings)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    toml = project.root / "photos" / FOLDER / "adjustments.toml"
    try:
        page.goto(srv.url)
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
        page.keyboard.press("e")
        page.wait_for_selector(".dialog textarea")
        note = page.locator(".dialog .warn-key").inner_text()
        assert "attendra une clé" in note and "payant" in note
        assert "attendra une clé" in page.locator(".dialog .btn.primary").inner_text()
        page.keyboard.type("Plus net.")
        page.keyboard.press("Escape")  # cancelled: nothing written
        assert not toml.exists() and srv.app.jobs.snapshot() == []
        page.keyboard.press("e")
        page.wait_for_selector(".dialog textarea")
        page.keyboard.type("Plus net.")
        page.keyboard.press("Control+Enter")  # confirmed with the dialog's words
        page.wait_for_selector(".toast:has-text('attendra une clé Gemini')", timeout=15000)
        assert srv.app.jobs.wait_idle(120)
        job = srv.app.jobs.snapshot()[0]
        assert job["state"] == "done", job
        assert "Plus net." in toml.read_text()
        side = json.loads((settings.output_dir / FOLDER / "1_face.json").read_text())
        assert side["uncertain"] and side["adjustments"][0]["status"] == "skipped"  # waits for a key, said so
    finally:
        page.close()
        srv.close()
