"""The review page (`catalogue/review/`): state, JSON API, security, static report, and the page in a
real headless chromium (Playwright) — it loads, shows the references, j/k move, `a` approves."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import Project, clean_env, garment_photo, style_ref

from catalogue.core import view_state
from catalogue.core.discovery import discover_references
from catalogue.core.files import sha256_file
from catalogue.core.settings import load_settings
from catalogue.review import report, rows
from catalogue.review import server as review_server

REPO = Path(__file__).resolve().parent.parent
FOLDERS = ("L100001-V09A", "R300010-V05", "W200300-V01")


# --- a project rendered once by the real pipeline (local renderer), copied for each test ----------

@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review") / "shop"
    root.mkdir()
    shutil.copy(REPO / "dodo.py", root / "dodo.py")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for view in ("1_face", "2_back", "3_detail_logo"):
        style_ref(root / "refs" / f"{view}.png", view)
    garment_photo(root / "photos" / FOLDERS[0] / "face.jpg", colour=(40, 60, 120))
    garment_photo(root / "photos" / FOLDERS[0] / "back.jpg", colour=(40, 60, 120), logo=False, seed=1)
    garment_photo(root / "photos" / FOLDERS[1] / "face.jpg", colour=(150, 30, 40), seed=2)
    garment_photo(root / "photos" / FOLDERS[2] / "face.jpg", colour=(30, 110, 60), seed=3)
    (root / "photos" / "X-NOPHOTO").mkdir()  # a reference with a problem: no front photo
    (root / "output").mkdir()
    Project(root, clean_env()).doit()  # exit 1: X-NOPHOTO fails alone, the others are made
    for folder in FOLDERS:
        assert (root / "output" / folder / "1_face.png").is_file(), folder
    return root


@pytest.fixture
def proj(rendered, tmp_path) -> Project:
    root = tmp_path / "shop"
    shutil.copytree(rendered, root)
    # sidecars name their inputs by absolute path: point them at this copy
    for side in (root / "output").glob("*/*.json"):
        side.write_text(side.read_text(encoding="utf-8").replace(str(rendered), str(root)), encoding="utf-8")
    return Project(root, clean_env())


def settings_of(proj: Project, **env):
    return load_settings(proj.root, environ=dict(env))


class Server:
    def __init__(self, proj: Project, settings=None, command=None, retry=(0.2, 1.0)):
        self.settings = settings or settings_of(proj)
        self.refs = discover_references(self.settings.photos_dir)
        self.httpd, self.app = review_server.make_server(self.settings, self.refs, port=0, env=proj.env,
                                                         command=command, retry=retry)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.page_url = f"{self.url}/?cle={self.app.key}"  # what `doit review` prints
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict | bytes]:
        """As the page's own script does: the key's cookie, and for a POST its own Origin."""
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Cookie": f"catalogue_review_{self.port}={self.app.key}"}
        if method == "POST":
            hdrs["Origin"] = self.url
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        hdrs = {k: v for k, v in hdrs.items() if v is not None}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                status, raw, ctype = res.status, res.read(), res.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
        return status, (json.loads(raw) if ctype.startswith("application/json") else raw)

    def close(self):
        self.app.jobs.stop(timeout=30)
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(proj):
    srv = Server(proj)
    yield srv
    srv.close()


def row(state: dict, folder: str) -> dict:
    return next(r for r in state["rows"] if r["folder"] == folder)


def view_of(r: dict, view: str) -> dict:
    return next(v for v in r["views"] if v["view"] == view)


# --- (1) the state function ----------------------------------------------------------------------

QA_HELD = {"qa": {"verdict": "held", "checks": {"colour": {
    "passed": False, "value": 14.2, "message": "couleur du vêtement éloignée de la photo : ΔE2000 = 14.2 (max 7)"}}}}
QA_OK = {"qa": {"verdict": "ok", "checks": {}}}


def test_view_state_new_held_approved_uploaded():
    vs = view_state.view_state
    assert vs(None, None, {}, None, "1_face").state == "missing"
    assert vs("a" * 64, QA_OK, {}, None, "1_face") == view_state.ViewState("new")
    held = vs("a" * 64, QA_HELD, {}, None, "1_face")
    assert (held.state, held.by) == ("held", "qa") and "ΔE2000 = 14.2" in held.reason and held.needs_decision
    approved = {"1_face": {"state": "approved", "sha256": "a" * 64}}
    assert vs("a" * 64, QA_HELD, approved, None, "1_face") == view_state.ViewState("approved", "person")
    person = vs("a" * 64, QA_OK, {"1_face": {"state": "held", "sha256": "a" * 64, "note": "logo flou"}}, None, "1_face")
    assert (person.state, person.by, person.needs_decision) == ("held", "person", False)
    assert "logo flou" in person.reason
    stamp = {"images": [{"view": "1_face", "sha256": "a" * 64, "image_id": 3}]}
    assert vs("a" * 64, QA_OK, {}, stamp, "1_face").state == "uploaded"
    assert vs("a" * 64, QA_OK, approved, stamp, "1_face").state == "uploaded"
    # a decision or a stamp counts only for exactly that image: a regenerated view is new again
    assert vs("b" * 64, QA_OK, approved, stamp, "1_face").state == "new"
    assert vs("b" * 64, QA_HELD, approved, stamp, "1_face").by == "qa"
    # the stamp of another view does not count
    assert vs("a" * 64, QA_OK, {}, stamp, "2_back").state == "new"


def test_reference_state_is_its_least_advanced_view():
    S = view_state.ViewState
    assert view_state.reference_state([S("uploaded"), S("uploaded")]) == "uploaded"
    assert view_state.reference_state([S("uploaded"), S("approved")]) == "approved"
    assert view_state.reference_state([S("approved"), S("new")]) == "new"
    assert view_state.reference_state([S("new"), S("held", "qa")]) == "held"
    assert view_state.reference_state([S("new"), S("missing")]) == "missing"
    assert view_state.reference_state([], problem="Photo de face manquante") == "problem"


# --- (1) the JSON API ------------------------------------------------------------------------------

def test_state_lists_every_reference_with_photos_styles_views_checks(server):
    status, state = server.request("GET", "/api/state")
    assert status == 200 and state["ok"]
    assert [r["folder"] for r in state["rows"]] == sorted([*FOLDERS, "X-NOPHOTO"])
    assert state["counts"]["total"] == 4 and state["counts"]["new"] == 3 and state["counts"]["problem"] == 1
    first = row(state, "L100001-V09A")
    assert first["state"] == "new" and first["needs_decision"]
    assert [p["role"] for p in first["photos"]] == ["face", "back"]
    assert first["generators"] == ["local"] and first["cost_usd"] == 0
    face = view_of(first, "1_face")
    assert face["state"] == "new" and face["style"]["name"] == "1_face.png"
    assert face["sha256"] == sha256_file(server.settings.output_dir / "L100001-V09A" / "1_face.png")
    names = {c["name"] for c in face["checks"]}
    assert {"decode", "border", "colour", "framing"} <= names
    assert all(c["message"] and "value" in c for c in face["checks"])
    # a reference without a back photo: 2_back is not expected
    assert view_of(row(state, "R300010-V05"), "2_back")["expected"] is False
    assert "Photo de face manquante" in row(state, "X-NOPHOTO")["problem"]
    # the images the row points at are served
    for url in (first["photos"][0]["url"], face["style"]["url"], face["thumb"]):
        st, body = server.request("GET", url)
        assert st == 200 and body[:3] == b"\xff\xd8\xff", url  # JPEG thumbnails
    st, body = server.request("GET", face["full"])
    assert st == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    assert body == (server.settings.output_dir / "L100001-V09A" / "1_face.png").read_bytes()
    assert list((server.settings.state_dir / "thumbs").glob("*.jpg"))  # cached on disk


def test_approve_hold_and_upload_stamp_change_the_state(server, proj):
    out = server.settings.output_dir / "L100001-V09A"
    status, res = server.request("POST", "/api/approve", {"folder": "L100001-V09A"})
    assert status == 200 and res["row"]["state"] == "approved" and not res["row"]["needs_decision"]
    saved = view_state.load(out)
    for view in ("1_face", "2_back", "3_detail_logo"):
        assert saved[view] == {**saved[view], "state": "approved", "sha256": sha256_file(out / f"{view}.png")}

    status, res = server.request("POST", "/api/hold", {"folder": "L100001-V09A", "view": "2_back",
                                                       "note": "pli raté"})
    assert status == 200 and res["row"]["state"] == "held"
    back = view_of(res["row"], "2_back")
    assert (back["state"], back["by"]) == ("held", "person") and "pli raté" in back["reason"]
    assert view_state.decision(out, "2_back", sha256_file(out / "2_back.png")) == "held"

    # the upload stamp: a view whose SHA-256 was sent is "uploaded"
    stamp = {"product_id": 7, "images": [{"view": v, "sha256": sha256_file(out / f"{v}.png"), "image_id": i}
                                         for i, v in enumerate(("1_face", "3_detail_logo"))]}
    (out / "upload.json").write_text(json.dumps(stamp))
    _, res = server.request("GET", "/api/ref/L100001-V09A")
    states = {v["view"]: v["state"] for v in res["row"]["views"]}
    assert states == {"1_face": "uploaded", "2_back": "held", "3_detail_logo": "uploaded"}

    # a QA-held view of another reference, then its approval through the API
    side = server.settings.output_dir / "W200300-V01" / "1_face.json"
    data = json.loads(side.read_text())
    data["qa"] = QA_HELD["qa"]
    side.write_text(json.dumps(data))
    _, state = server.request("GET", "/api/state")
    w = row(state, "W200300-V01")
    assert w["state"] == "held" and w["needs_decision"]
    face = view_of(w, "1_face")
    assert face["by"] == "qa" and face["checks"][0]["passed"] is False and "ΔE2000 = 14.2" in face["checks"][0]["message"]
    _, res = server.request("POST", "/api/approve", {"folder": "W200300-V01", "view": "1_face"})
    assert view_of(res["row"], "1_face")["state"] == "approved"


def test_names_are_checked_no_path_traversal(server, proj):
    secret = proj.root / "secret.txt"
    secret.write_text("no")
    bad_gets = ["/img/photo/..%2Fsecret.txt/face", "/img/photo/L100001-V09A/..%2F..%2Fsecret.txt",
                "/img/view/L100001-V09A/..%2F..%2Fsecret.txt", "/img/view/..%2F..%2F/1_face",
                "/img/view/L100001-V09A/%2Fetc%2Fpasswd", "/img/style/L100001-V09A/..%2Frefs",
                "/img/other/L100001-V09A/1_face", "/api/ref/..%2F..%2Fetc", "/../secret.txt",
                "/api/ref/NOT-A-REF", "/img/photo/X-NOPHOTO/face"]
    for path in bad_gets:
        status, body = server.request("GET", path)
        assert status in (404, 400), path
        assert isinstance(body, dict) and body["ok"] is False and b"no" != body, path
    for body in ({"folder": "../output"}, {"folder": "L100001-V09A", "view": "../../secret.txt"},
                 {"folder": "/etc"}, {"folder": ["L100001-V09A"]}, {"folder": "L100001-V09A", "view": ["1_face"]},
                 {"folder": "X-NOPHOTO"}, {"folder": "R300010-V05", "view": "2_back"}, {}):
        status, res = server.request("POST", "/api/approve", body)
        assert status in (400, 404, 409) and res["ok"] is False and res["error"], body
    assert not (proj.root / "output" / "review.json").exists()

    # a sidecar naming a file outside REFS_DIR as its style reference is not trusted with it
    side = server.settings.output_dir / "L100001-V09A" / "1_face.json"
    data = json.loads(side.read_text())
    data["inputs"]["style"]["path"] = str(secret)
    side.write_text(json.dumps(data))
    status, body = server.request("GET", "/img/style/L100001-V09A/1_face")
    expected = rows.thumbnail(server.settings, server.settings.refs_dir / "1_face.png", rows.STYLE_SIDE)
    assert status == 200 and body == expected


def disk(root: Path) -> dict[str, str]:
    """Every file of the project (photos, output, state) and its SHA-256: what a refused request must not touch."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and "thumbs" not in p.parts and not p.name.startswith(".doit")}


def raw(srv: "Server", method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes, dict]:
    """A request with exactly these headers (http.client adds Host unless it is given)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    skip_host = "Host" in headers
    conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    res = conn.getresponse()
    out = res.status, res.read(), dict(res.getheaders())
    conn.close()
    return out


@pytest.fixture
def paid_server(proj):
    """The page as with a Gemini key: a re-roll would write a seed and start a (recorded) regeneration."""
    calls = []
    settings = dataclasses.replace(settings_of(proj), generator="gemini")
    srv = Server(proj, settings=settings, command=lambda folder: calls.append(folder) or [sys.executable, "-c", "pass"])
    srv.calls = calls
    yield srv
    srv.close()


def test_the_page_is_locked_every_refused_request_changes_nothing(paid_server, proj):
    srv = paid_server
    good = {"Host": f"127.0.0.1:{srv.port}", "Cookie": f"catalogue_review_{srv.port}={srv.app.key}",
            "Origin": srv.url, "Content-Type": "application/json"}
    reroll = json.dumps({"folder": "L100001-V09A", "view": "2_back"}).encode()
    approve = json.dumps({"folder": "L100001-V09A"}).encode()
    before = disk(proj.root)
    refused = {
        # a web page the person visits: no key (its cookie is SameSite=Strict), Origin null, text/plain
        "drive-by form": ("POST", "/api/approve", approve, {**good, "Cookie": None, "Origin": "null",
                                                             "Content-Type": "text/plain;application/json"}, 403),
        "no key": ("POST", "/api/reroll", reroll, {**good, "Cookie": None}, 403),
        "wrong key": ("POST", "/api/reroll", reroll, {**good, "Cookie": f"catalogue_review_{srv.port}=guess"}, 403),
        "wrong key header": ("POST", "/api/reroll", reroll, {**good, "Cookie": None, "X-Review-Key": "guess"}, 403),
        "DNS rebinding POST": ("POST", "/api/reroll", reroll, {**good, "Host": f"127.attacker.example:{srv.port}"}, 403),
        "DNS rebinding GET": ("GET", "/api/state", None, {**good, "Host": f"127.attacker.example:{srv.port}"}, 403),
        "another port": ("GET", "/api/state", None, {**good, "Host": f"127.0.0.1:{srv.port + 1}"}, 403),
        "127.x host": ("GET", "/api/state", None, {**good, "Host": f"127.0.0.2:{srv.port}"}, 403),
        "Origin null": ("POST", "/api/approve", approve, {**good, "Origin": "null"}, 403),
        "no Origin": ("POST", "/api/approve", approve, {**good, "Origin": None}, 403),
        "other Origin": ("POST", "/api/reroll", reroll, {**good, "Origin": "http://evil.example"}, 403),
        "Origin of another port": ("POST", "/api/reroll", reroll, {**good, "Origin": f"http://127.0.0.1:{srv.port + 1}"}, 403),
        "text/plain;application/json": ("POST", "/api/approve", approve,
                                        {**good, "Content-Type": "text/plain;application/json"}, 415),
        "form": ("POST", "/api/approve", b"folder=L100001-V09A",
                 {**good, "Content-Type": "application/x-www-form-urlencoded"}, 415),
        "no Content-Type": ("POST", "/api/reroll", reroll, {**good, "Content-Type": None}, 415),
        "GET an action": ("GET", "/api/approve?folder=L100001-V09A", None, good, 404),
        "GET a re-roll": ("GET", "/api/reroll?folder=L100001-V09A&view=2_back", None, good, 404),
        "page without key": ("GET", "/", None, {**good, "Cookie": None}, 403),
        "page with a wrong key": ("GET", "/?cle=guess", None, {**good, "Cookie": None}, 403),
        "image without key": ("GET", "/img/view/L100001-V09A/1_face?full=1", None, {**good, "Cookie": None}, 403),
    }
    for what, (method, path, body, headers, status) in refused.items():
        headers = {k: v for k, v in headers.items() if v is not None}
        got, answer, _ = raw(srv, method, path, body, headers)
        assert got == status, (what, got, answer)
        if got != 404:
            assert json.loads(answer)["ok"] is False, what
    assert srv.app.jobs.snapshot() == [] and srv.calls == []
    assert disk(proj.root) == before  # nothing written: no seed, no review.json, no step

    # the printed URL gives the key once, as a SameSite=Strict HttpOnly cookie, and leaves the address bar
    status, _, headers = raw(srv, "GET", f"/?cle={srv.app.key}", None, {"Host": f"localhost:{srv.port}"})
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"catalogue_review_{srv.port}={srv.app.key};") and "SameSite=Strict" in cookie
    assert "HttpOnly" in cookie
    # with every lock satisfied (localhost works too) the same request goes through
    status, answer, _ = raw(srv, "POST", "/api/approve", approve,
                            {**good, "Host": f"localhost:{srv.port}", "Origin": f"http://localhost:{srv.port}"})
    assert status == 200, answer
    assert view_state.load(srv.settings.output_dir / "L100001-V09A")["1_face"]["state"] == "approved"
    # a new start, a new key
    other = Server(proj, settings=srv.settings)
    try:
        assert other.app.key != srv.app.key and len(other.app.key) >= 32
    finally:
        other.close()
    with pytest.raises(ValueError):
        review_server.make_server(srv.settings, srv.refs, host="0.0.0.0", port=0)


def test_reroll_refused_with_the_local_renderer(server):
    status, res = server.request("POST", "/api/reroll", {"folder": "L100001-V09A", "view": "2_back"})
    assert status == 409 and "déterministe" in res["error"]
    _, state = server.request("GET", "/api/state")
    assert state["reroll_available"] is False and state["reroll_note"]


def test_reroll_bumps_the_seed_and_regenerates_one_at_a_time(proj):
    settings = dataclasses.replace(settings_of(proj), generator="gemini")
    calls = []

    def command(folder):
        calls.append(folder)
        return [sys.executable, "-c", "import time; print('[1/3] en cours', flush=True); time.sleep(0.3); "
                                      "print('Terminé : 1 générée, 2 à jour, 0 échec')"]

    srv = Server(proj, settings=settings, command=command)
    try:
        status, res = srv.request("POST", "/api/reroll", {"folder": "L100001-V09A", "view": "2_back"})
        assert status == 200 and res["job"]["state"] in ("queued", "waiting", "running")
        srv.request("POST", "/api/reroll", {"folder": "R300010-V05", "view": "1_face"})
        assert srv.app.jobs.wait_idle(30)
        overrides = json.loads((proj.root / "photos" / "L100001-V09A" / "overrides.json").read_text())
        assert overrides["seeds"] == {"2_back": 1}  # recorded when its job started
        _, jobs = srv.request("GET", "/api/jobs")
        assert [(j["folder"], j["state"]) for j in jobs["jobs"]] == [("L100001-V09A", "done"), ("R300010-V05", "done")]
        assert jobs["jobs"][0]["message"].startswith("Terminé") and jobs["jobs"][0]["what"] == "nouveau tirage 2_back"
        assert calls == ["L100001-V09A", "R300010-V05"]
    finally:
        srv.close()


# --- (issue 11 #1) the page never holds the run lock; its jobs take it like any run ----------------

class HeldLock:
    """Another run (cron) holding the run lock: the pipeline's own lock, taken on another open file."""

    def __init__(self, root: Path):
        from catalogue.tasks.run_lock import RunLock

        self.lock = RunLock(root / ".doit.lock")
        assert self.lock.acquire()
        (root / ".doit.lock").write_text("4242\n")

    def release(self):
        self.lock.release()


def test_a_job_waits_while_another_run_holds_the_lock_and_records_nothing_meanwhile(proj):
    settings = dataclasses.replace(settings_of(proj), generator="gemini")
    calls = []
    srv = Server(proj, settings=settings, command=lambda folder: calls.append(folder) or [
        sys.executable, "-c", "print('Terminé : 1 générée, 2 à jour, 0 échec')"])
    overrides = proj.root / "photos" / "L100001-V09A" / "overrides.json"
    lock = HeldLock(proj.root)
    try:
        status, res = srv.request("POST", "/api/reroll", {"folder": "L100001-V09A", "view": "2_back"})
        assert status == 200, res
        assert srv.app.jobs.wait_state("waiting", 10)
        assert srv.app.jobs.wait_idle(1.5) is False  # still waiting after several looks at the lock
        job = srv.app.jobs.snapshot()[0]
        assert job["state"] == "waiting" and "en attente de l'exécution en cours (PID 4242)" in job["message"]
        assert not overrides.exists() and calls == []  # nothing recorded, nothing started
        _, row = srv.request("GET", "/api/state")
        assert row["jobs"][0]["state"] == "waiting"
        lock.release()
        assert srv.app.jobs.wait_idle(30)
        assert srv.app.jobs.snapshot()[0]["state"] == "done" and calls == ["L100001-V09A"]
        assert json.loads(overrides.read_text())["seeds"] == {"2_back": 1}
    finally:
        srv.close()


def test_a_job_whose_doit_finds_the_lock_taken_puts_the_seed_back_and_tries_again(proj):
    """cron took the lock between our look and doit's: that doit made nothing, the seed is undone
    (a later run must not pay for it), and the job tries again: seed 1, not 2."""
    settings = dataclasses.replace(settings_of(proj), generator="gemini")
    overrides = proj.root / "photos" / "L100001-V09A" / "overrides.json"
    seen = []

    def command(folder):
        seen.append(json.loads(overrides.read_text())["seeds"] if overrides.exists() else None)
        if len(seen) == 1:
            return [sys.executable, "-c", "print(\"Une autre exécution est déjà en cours (PID 77, verrou .doit.lock) : "
                                          "celle-ci s'arrête sans rien faire pour ne rien payer deux fois.\")"]
        return [sys.executable, "-c", "print('Terminé : 1 générée, 2 à jour, 0 échec')"]

    srv = Server(proj, settings=settings, command=command)
    try:
        srv.request("POST", "/api/reroll", {"folder": "L100001-V09A", "view": "2_back"})
        assert srv.app.jobs.wait_idle(30)
        assert seen == [{"2_back": 1}, {"2_back": 1}]
        job = srv.app.jobs.snapshot()[0]
        assert job["state"] == "done"
        assert json.loads(overrides.read_text())["seeds"] == {"2_back": 1}
    finally:
        srv.close()


def test_a_regeneration_that_fails_before_making_the_view_leaves_nothing_recorded(proj):
    settings = dataclasses.replace(settings_of(proj), generator="gemini")
    srv = Server(proj, settings=settings, command=lambda folder: [
        sys.executable, "-c", "print('  ✗ L100001-V09A — 2_back : refusé par Gemini'); raise SystemExit(1)"])
    toml = proj.root / "photos" / "W200300-V01" / "adjustments.toml"
    try:
        srv.request("POST", "/api/reroll", {"folder": "L100001-V09A", "view": "2_back"})
        srv.request("POST", "/api/adjust", {"folder": "W200300-V01", "view": "1_face", "instruction": "Plus net."})
        assert srv.app.jobs.wait_idle(30)
        jobs = srv.app.jobs.snapshot()
        assert [j["state"] for j in jobs] == ["failed", "failed"]
        assert all("rien n'est resté enregistré" in j["message"] for j in jobs)
        assert not (proj.root / "photos" / "L100001-V09A" / "overrides.json").exists()
        assert not toml.exists()
    finally:
        srv.close()


def test_doit_review_holds_no_lock_a_cron_run_goes_on_while_the_page_is_open(proj):
    proj.env["REVIEW_PORT"] = "0"
    page = proj.start_doit("review")
    try:
        first = page.stdout.readline()
        assert re.search(r"Page de revue : http://127\.0\.0\.1:\d+/\?cle=[\w-]{32,} ", first), first
        (proj.root / "output" / "W200300-V01" / "1_face.png").unlink()
        run = proj.doit()
        assert "Une autre exécution" not in run.stdout, run.stdout
        assert "W200300-V01 1_face : généré" in run.stdout
        assert (proj.root / "output" / "W200300-V01" / "1_face.png").is_file()
    finally:
        page.terminate()
        page.wait(30)
    assert page.returncode in (0, -15)


def test_a_failed_regeneration_says_why(proj):
    settings = dataclasses.replace(settings_of(proj), generator="gemini")
    srv = Server(proj, settings=settings, command=lambda folder: [
        sys.executable, "-c", "print('  ✗ L100001-V09A — 2_back : refusé par Gemini'); raise SystemExit(1)"])
    try:
        srv.request("POST", "/api/reroll", {"folder": "L100001-V09A", "view": "2_back"})
        assert srv.app.jobs.wait_idle(30)
        job = srv.app.jobs.snapshot()[0]
        assert job["state"] == "failed" and "refusé par Gemini" in job["message"]
    finally:
        srv.close()


def test_adjustment_recorded_then_the_reference_regenerated_for_real(server, proj):
    # without a key the instruction cannot run now: never recorded silently, to be paid later
    _, state = server.request("GET", "/api/state")
    assert state["adjust_needs_key"] is True and "attendra une clé" in state["adjust_note"]
    ask = {"folder": "W200300-V01", "view": "1_face", "instruction": "Rendre le logo plus net."}
    status, res = server.request("POST", "/api/adjust", ask)
    assert status == 409 and "attendra une clé" in res["error"]
    assert not (proj.root / "photos" / "W200300-V01" / "adjustments.toml").exists()
    assert server.app.jobs.snapshot() == []
    status, res = server.request("POST", "/api/adjust", {**ask, "wait_for_key": True})  # the dialog's confirmation
    assert status == 200, res
    assert server.app.jobs.wait_idle(120)
    toml = (proj.root / "photos" / "W200300-V01" / "adjustments.toml").read_text()
    assert "Rendre le logo plus net." in toml
    assert server.app.jobs.wait_idle(120)
    job = server.app.jobs.snapshot()[-1]
    assert job["state"] == "done", job  # the real `python -m doit generate:W200300-V01`
    _, res = server.request("GET", "/api/ref/W200300-V01")
    face = view_of(res["row"], "1_face")
    assert face["notes"], face  # the local renderer cannot run an instruction: it says so
    for bad in ({"folder": "W200300-V01", "view": "1_face", "instruction": "  "},
                {"folder": "W200300-V01", "view": "1_face", "instruction": "x", "ref": "../../etc/passwd"}):
        status, res = server.request("POST", "/api/adjust", bad)
        assert status == 400 and res["error"]


def test_serve_prints_the_url_in_french_and_stops_on_ctrl_c(proj, capsys, monkeypatch):
    import http.server

    def interrupted(self, poll_interval=0.5):
        raise KeyboardInterrupt
    monkeypatch.setattr(http.server.ThreadingHTTPServer, "serve_forever", interrupted)
    settings = settings_of(proj)
    assert review_server.serve(settings, discover_references(settings.photos_dir), port=0) == 0
    out = capsys.readouterr().out
    assert re.search(r"Page de revue : http://127\.0\.0\.1:\d+/\?cle=[\w-]{32} +\(4 références, 3 à décider\)", out)
    assert "Page de revue arrêtée" in out


# --- (1) the static report --------------------------------------------------------------------------

def test_write_report_writes_a_self_contained_page(proj):
    settings = settings_of(proj)
    refs = discover_references(settings.photos_dir)
    view_state.decide(settings.output_dir / "W200300-V01", "1_face",
                        sha256_file(settings.output_dir / "W200300-V01" / "1_face.png"), "approved")
    path = report.write_report(settings, refs)
    assert path == settings.output_dir / "index.html"
    html = path.read_text(encoding="utf-8")
    assert "<script src" not in html and "<link" not in html and "/*__" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    boot = json.loads(re.search(r"window\.REVIEW_BOOT = (\{.*?\});\n", html).group(1))
    assert boot["static"] is True
    data = boot["data"]
    assert [r["folder"] for r in data["rows"]] == sorted([*FOLDERS, "X-NOPHOTO"])
    face = view_of(row(data, "W200300-V01"), "1_face")
    assert face["state"] == "approved"
    # views referenced relatively from output/index.html; photos and styles embedded
    assert face["full"] == "W200300-V01/1_face.png" and (path.parent / face["full"]).is_file()
    assert row(data, "W200300-V01")["photos"][0]["url"].startswith("data:image/jpeg;base64,")
    assert face["style"]["url"].startswith("data:image/jpeg;base64,")


# --- (2) the page in a real headless browser -----------------------------------------------------------



def test_page_in_a_browser_keyboard_navigation_and_approve(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.page_url)
    page.wait_for_selector("body[data-ready='1']", timeout=15000)

    rows = page.locator("article.row")
    assert rows.count() == 4
    assert page.locator("article.row h2").all_inner_texts() == sorted([*FOLDERS, "X-NOPHOTO"])
    assert "à décider" in page.locator("#counts").inner_text()
    focused = lambda: page.evaluate("document.activeElement && document.activeElement.dataset.folder")  # noqa: E731
    assert focused() == "L100001-V09A"
    first = page.locator("article.row[data-folder='L100001-V09A']")
    assert first.locator("img[alt^='1_face']").count() == 1 and first.locator("figure img").count() == 2

    page.keyboard.press("j")
    assert focused() == "R300010-V05"
    assert page.locator("article.row.current").get_attribute("data-folder") == "R300010-V05"
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert focused() == "R300010-V05"
    page.keyboard.press("ArrowDown")
    assert focused() == "W200300-V01"
    page.keyboard.press("ArrowUp")

    # `a` approves the current reference: review.json records each view's SHA-256, the row says so,
    # and the focus goes to the next reference that needs a decision
    page.keyboard.press("a")
    page.wait_for_function(
        "document.querySelector(\"article.row[data-folder='R300010-V05'] [data-role='state']\").textContent === 'approuvé'")
    assert page.locator("article.row[data-folder='R300010-V05'] [data-view-state='1_face']").inner_text() == "approuvé"
    out = server.settings.output_dir / "R300010-V05"
    saved = view_state.load(out)
    for view in ("1_face", "3_detail_logo"):
        assert saved[view]["state"] == "approved"
        assert saved[view]["sha256"] == sha256_file(out / f"{view}.png")
    assert focused() == "W200300-V01"

    # h holds with a note, from the keyboard alone
    page.keyboard.press("h")
    page.keyboard.type("logo flou")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelector(\"article.row[data-folder='W200300-V01'] [data-role='state']\").textContent === 'retenu'")
    held = view_state.load(server.settings.output_dir / "W200300-V01")
    assert held["1_face"]["state"] == "held" and held["1_face"]["note"] == "logo flou"

    # ? shows the help; Escape closes it; r with the local renderer is disabled with a note
    page.keyboard.press("?")
    assert page.locator(".dialog.help").is_visible()
    page.keyboard.press("Escape")
    assert page.locator("#overlay").is_hidden()
    assert "Rendu local" in page.locator("#notice").inner_text()

    page.keyboard.press("Home")
    page.screenshot(path=str(tmp_path / "review.png"))
    assert errors == []
    page.close()


def test_static_report_opens_in_a_browser_with_actions_disabled(browser, proj):
    settings = settings_of(proj)
    path = report.write_report(settings, discover_references(settings.photos_dir))
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    assert page.locator("article.row").count() == 4
    assert "Rapport statique" in page.locator("#notice").inner_text()
    assert page.locator("article.row button.btn:not([disabled])").count() == 0
    page.wait_for_function("[...document.querySelectorAll('article.row img')].slice(0, 3)"
                           ".every((img) => img.complete && img.naturalWidth > 0)")
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.dataset.folder") == "R300010-V05"
    page.keyboard.press("a")  # refused, nothing written
    assert not (settings.output_dir / "R300010-V05" / "review.json").exists()
    assert errors == []
    page.close()


# --- (issue 11 #3) a browser that goes away; the check chips in French ---------------------------------

def test_a_browser_that_disconnects_prints_no_traceback(server, capfd):
    import socket

    import numpy as np
    from PIL import Image

    big = server.settings.output_dir / "L100001-V09A" / "1_face.png"  # ~30 MB: more than any socket buffer
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (3000, 3300, 3), dtype=np.uint8)).save(big)
    request = (f"GET /img/view/L100001-V09A/1_face?full=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               f"Cookie: catalogue_review_{server.port}={server.app.key}\r\n\r\n").encode()
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        sock.recv(1024)   # the answer has started
        sock.close()      # the tab is closed mid-image
    deadline = time.monotonic() + 30
    while server.httpd.disconnects < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.httpd.disconnects == 3
    status, _ = server.request("GET", "/api/state")
    assert status == 200  # the page goes on
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "ConnectionResetError" not in err


def test_check_chips_say_what_was_measured_against_what_limit(server):
    _, state = server.request("GET", "/api/state")
    face = view_of(row(state, "L100001-V09A"), "1_face")
    chips = {c["name"]: c["chip"] for c in face["checks"]}
    assert re.fullmatch(r"couleur : écart \d+,\d \(max 7\)", chips["colour"]), chips["colour"]
    assert re.fullmatch(r"fond #F3F3F3 : écart \d+,\d \(max 2\), \d+ % du bord conforme \(min 85 %\)", chips["border"])
    assert chips["style_copy"].startswith("copie du style : écart à la référence ")
    assert "(min 6)" in chips["style_copy"] and " / " not in chips["style_copy"]
    assert chips["framing"].startswith("cadrage : centre décalé de ")
    assert all("." not in re.sub(r"#F3F3F3", "", c) for c in chips.values()), chips  # decimal commas
    assert rows.check_chip("colour", "couleur", 3.21, "ΔE2000 ≤ 8") == "couleur : écart 3,2 (max 8)"
