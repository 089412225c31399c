"""Finished views -> the shop's product (safe replace, with an intent journal; `DESIGN.md`).

One reference at a time:

1. gates: the folder exists, `1_face.png` exists, every view has its sidecar and was not made by the
   local renderer (unless `ALLOW_LOCAL_UPLOAD=1`); a view that fails a gate holds the whole reference
   (uploading the others would replace a published set by an incomplete one);
2. resolve the folder to a product id (`lookup.py`);
3. `GET /products/:id/images` (never the cached `GET /products/:id`);
4. write the intent journal `output/<folder>/.upload-intent.json` (ids seen, views being sent with
   their SHA-256, phase) atomically, then `POST /products/:id/images/bulk?orders=…` (at most 7 files
   per request, each at most 10 MB: larger PNGs are re-encoded losslessly, then as JPEG q=95, or
   refused); record the created ids in the journal;
5. read back `GET /products/:id/images`; only when every new image is there, delete the old ones one
   by one (replace mode; `UPLOAD_MODE=append` keeps them);
6. write the stamp `output/<folder>/upload.json`, then remove the journal.

Reconciliation. When the journal is present at the start of a run, the previous run stopped somewhere
(crash, network failure, a POST whose answer was lost, a bulk upload that failed part-way, a failed
DELETE). The run finishes that job instead of starting over:

* if the journal says a POST was in flight (`phase: "posting"`), the images created by it are
  recognised among the product's current images: not among the ids seen before the POST, taken in
  id order, matching the orders of the files sent, in sequence (the backend stores the files one by
  one, so a failure part-way leaves a prefix of them). They are adopted as ours, never re-sent;
* images of ours whose view file has not changed since are kept; only the views that have no image
  yet are POSTed, with their own orders (a bulk that failed after its first file is completed with
  the two others: nothing is uploaded twice). An adopted image whose view file changed since is
  stale and deleted like an old image;
* then read back, delete the old images, stamp, as in a normal run.

So at every moment the product shows either its old images, or the old ones plus (some of) the new
ones; it is never left without images, and no duplicate survives a successful run.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from ..core import view_state as review_state
from ..core.errors import UploadError
from ..core.files import atomic_write_bytes, sha256_bytes, sha256_file
from ..core.paths import INTENT_FILE, STAMP_FILE
from ..core.views import VIEWS, ViewSpec
from ..imaging.decode import jpeg_bytes
from .backend import BackendClient, safe_url
from .lookup import resolve_product_id

MAX_FILE_BYTES = 10 * 1024 * 1024   # the backend's limit per file (multer: 10 MB)
MAX_FILES_PER_REQUEST = 7           # the backend's limit per bulk request
JPEG_QUALITY = 95                   # last resort for a view over MAX_FILE_BYTES: no visible loss


@dataclass
class UploadOutcome:
    folder: str
    product_id: int                 # 0 when the reference was held before the lookup
    uploaded: list[str] = field(default_factory=list)   # view names sent in this run
    deleted: list[int] = field(default_factory=list)    # backend image ids deleted in this run
    skipped_reason: str | None = None                   # French: why nothing was sent (a gate held it)
    message: str = ""                                   # French one-liner for the operator


@dataclass
class LocalView:
    spec: ViewSpec
    path: Path
    sha256: str
    sidecar: dict | None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Payload:
    filename: str
    data: bytes
    mime: str
    sha256: str                     # of the bytes sent (differs from the file's when re-encoded)
    reencoded: str | None = None    # "png-optimize" | "jpeg-q95"


# --- gates: each returns None (pass) or a French reason; adding a gate is one line in GATES -----

def _gate_sidecar(settings, view: LocalView) -> str | None:
    if view.sidecar is None:
        return f"fiche de provenance {view.name}.json absente ou illisible (régénérez la vue)"
    return None


def _gate_local_renderer(settings, view: LocalView) -> str | None:
    if (view.sidecar or {}).get("generator") == "local" and not settings.allow_local_upload:
        return ("faite(s) par le rendu local (aperçu hors ligne), non publiée(s) sans demande explicite : "
                "réglez ALLOW_LOCAL_UPLOAD=1 pour les envoyer quand même")
    return None


def _gate_quality(settings, view: LocalView) -> str | None:
    reason = review_state.blocking_reason(view.path.parent, view.name, view.sha256, view.sidecar or {})
    if reason:
        return f"{reason} — vérifiez la vue, puis doit approve:{view.path.parent.name} (ou régénérez-la)"
    return None


GATES = (_gate_sidecar, _gate_local_renderer, _gate_quality)


def _gate_reasons(settings, views: list[LocalView]) -> str | None:
    by_reason: dict[str, list[str]] = {}
    for view in views:
        for gate in GATES:
            reason = gate(settings, view)
            if reason:
                by_reason.setdefault(reason, []).append(view.name)
                break
    if not by_reason:
        return None
    return " ; ".join(f"{', '.join(names)} : {reason}" for reason, names in by_reason.items())


# --- files ------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _present_views(folder_dir: Path, wanted: tuple[str, ...] | None = None) -> list[LocalView]:
    """The finished views in `folder_dir`; with `wanted`, only those the reference still has (a
    2_back left over from a removed back photo must not go back online)."""
    views = []
    for spec in VIEWS:
        if wanted is not None and spec.name not in wanted:
            continue
        path = folder_dir / spec.filename
        if path.is_file():
            views.append(LocalView(spec, path, sha256_file(path), _read_json(path.with_suffix(".json"))))
    return views


def _stamp_matches(stamp: dict | None, views: list[LocalView], settings) -> bool:
    """The last upload sent exactly these images, to this backend."""
    if not stamp or not isinstance(stamp.get("images"), list):
        return False
    if stamp.get("backend") != safe_url(settings.backend_url):
        return False  # e.g. tried on scripts/local_shop.py, now pointed at the real shop
    try:
        stamped = {img["view"]: img["sha256"] for img in stamp["images"]}
    except (KeyError, TypeError):
        return False
    return bool(views) and stamped == {v.name: v.sha256 for v in views}


def needs_upload(settings, folder: str, views: tuple[str, ...] | None = None) -> bool:
    """True when the reference has something to send or finish: a pending intent, no stamp, or a
    finished view whose content (SHA-256) differs from what was last uploaded. No network.
    `views`: the views the reference has now (default: every view file present)."""
    folder_dir = Path(settings.output_dir) / folder
    if (folder_dir / INTENT_FILE).exists():
        return True
    if not folder_dir.is_dir():
        return True          # upload_reference says « Dossier introuvable »
    return not _stamp_matches(_read_json(folder_dir / STAMP_FILE), _present_views(folder_dir, views), settings)


def _payload(folder: str, view: LocalView) -> Payload:
    """The bytes to send for a view: the PNG as is, or re-encoded to fit the backend's 10 MB."""
    data = view.path.read_bytes()
    if len(data) <= MAX_FILE_BYTES:
        return Payload(view.spec.filename, data, "image/png", view.sha256)

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)            # lossless
        if buf.tell() <= MAX_FILE_BYTES:
            out = buf.getvalue()
            return Payload(view.spec.filename, out, "image/png", sha256_bytes(out), "png-optimize")
        out = jpeg_bytes(img, quality=JPEG_QUALITY)
        if len(out) <= MAX_FILE_BYTES:
            return Payload(f"{view.name}.jpg", out, "image/jpeg", sha256_bytes(out), f"jpeg-q{JPEG_QUALITY}")
    raise UploadError(
        f"{folder} : {view.spec.filename} pèse {len(data) / 1e6:.1f} Mo, au-delà de la limite de 10 Mo du backend, "
        f"et reste trop lourde même recompressée (PNG optimisé, JPEG qualité {JPEG_QUALITY}) : réduisez sa taille "
        f"(OUTPUT_SIZE) et régénérez-la. Rien n'a été envoyé.", reference=folder)


# --- the upload -------------------------------------------------------------------------------

def upload_reference(settings, folder: str, views: tuple[str, ...] | None = None) -> UploadOutcome:
    """Attach the finished views of `output/<folder>/` to their product (see the module doc).
    `views`: the views the reference has now (default: every view file present)."""
    folder_dir = Path(settings.output_dir) / folder
    if not folder_dir.is_dir():
        raise UploadError(f"Dossier introuvable : {folder_dir}", reference=folder)
    views = _present_views(folder_dir, views)
    if not any(v.name == "1_face" for v in views):
        raise UploadError(f"{folder} : 1_face.png manquante dans {folder_dir} — générez d'abord les vues "
                          f"(doit generate:{folder}) ; rien n'est envoyé sans la vue de face.", reference=folder)
    intent = _read_json(folder_dir / INTENT_FILE)
    stamp = _read_json(folder_dir / STAMP_FILE)
    if intent is None and _stamp_matches(stamp, views, settings):
        pid = int(stamp.get("product_id") or 0)
        return UploadOutcome(folder, pid, message=f"{folder} : déjà à jour sur la boutique (produit {pid}), "
                                                  f"rien à envoyer.")
    held = _gate_reasons(settings, views)
    if held:
        reason = f"{folder} : non envoyé — {held}."
        return UploadOutcome(folder, int((stamp or {}).get("product_id") or 0), skipped_reason=reason,
                             message=reason)
    product_id, reference = resolve_product_id(settings, folder)
    if intent is not None and intent.get("product_id") != product_id:
        raise UploadError(
            f"{folder} : un envoi interrompu visait le produit {intent.get('product_id')}, mais la référence désigne "
            f"maintenant le produit {product_id}. Vérifiez les images de ces deux produits sur la boutique, puis "
            f"supprimez {folder_dir / INTENT_FILE} pour repartir de zéro.", reference=folder)
    payloads = {v.name: _payload(folder, v) for v in views}      # may refuse before anything is sent
    with BackendClient(settings, folder) as client:
        return _Run(settings, folder, folder_dir, product_id, reference, views, payloads, client, intent).run()


class _Run:
    def __init__(self, settings, folder, folder_dir, product_id, reference, views, payloads, client, intent):
        self.settings = settings
        self.folder = folder
        self.dir = folder_dir
        self.pid = product_id
        self.reference = reference
        self.views = views
        self.by_name = {v.name: v for v in views}
        self.payloads = payloads
        self.client = client
        self.intent = intent
        self.resumed = intent is not None

    def _save_intent(self) -> None:
        self.intent["updated_at"] = _now()
        _write_json(self.dir / INTENT_FILE, self.intent)

    def run(self) -> UploadOutcome:
        current = {img["id"]: img for img in self.client.list_images(self.pid)}
        if self.intent is None:
            self.intent = {"version": 1, "product_id": self.pid, "reference": self.reference,
                           "mode": self.settings.upload_mode, "started_at": _now(),
                           "old_ids": sorted(current), "stale_ids": [], "done": {},
                           "seen_ids": [], "pending": [], "phase": "planned"}
        intent = self.intent
        mode = intent.get("mode", self.settings.upload_mode)
        done: dict[str, dict] = intent.setdefault("done", {})
        stale: list[int] = intent.setdefault("stale_ids", [])
        adopted: list[str] = []

        # 1. a POST was in flight when the previous run stopped: adopt what it created
        if intent.get("phase") == "posting" and intent.get("pending"):
            for view, img in _recognise(intent["pending"], set(intent.get("seen_ids", [])), current.values()):
                done[view] = {"image_id": img["id"], "url": img["url"], "order": img["order"],
                              "sha256": next(p["sha256"] for p in intent["pending"] if p["view"] == view)}
                adopted.append(view)
        intent["pending"] = []

        # 2. keep our images that are still there and still show the current file; the rest is redone
        for view, rec in list(done.items()):
            local = self.by_name.get(view)
            if rec["image_id"] not in current:
                del done[view]
            elif (local is None or rec["sha256"] != local.sha256
                  or current[rec["image_id"]]["order"] != local.spec.order):
                stale.append(rec["image_id"])
                del done[view]

        # 3. POST what has no image yet, at most 7 files per request
        to_post = [v for v in self.views if v.name not in done]
        uploaded: list[str] = []
        for start in range(0, len(to_post), MAX_FILES_PER_REQUEST):
            chunk = to_post[start:start + MAX_FILES_PER_REQUEST]
            intent.update(phase="posting",
                          seen_ids=sorted(set(current) | {r["image_id"] for r in done.values()}),
                          pending=[{"view": v.name, "order": v.spec.order, "sha256": v.sha256,
                                    "sent_sha256": self.payloads[v.name].sha256,
                                    "filename": self.payloads[v.name].filename} for v in chunk])
            self._save_intent()
            try:
                created = self.client.upload_bulk(
                    self.pid, [(self.payloads[v.name].filename, self.payloads[v.name].data, self.payloads[v.name].mime)
                               for v in chunk],
                    [v.spec.order for v in chunk])
            except UploadError as exc:
                raise UploadError(f"{exc.message} — Les images actuelles du produit {self.pid} sont intactes ; "
                                  f"la prochaine exécution reprendra sans renvoyer ce qui a été reçu.",
                                  reference=self.folder) from None
            for v, img in zip(chunk, created):
                done[v.name] = {"image_id": img["id"], "url": img["url"], "order": img.get("order", v.spec.order),
                                "sha256": v.sha256}
                current[img["id"]] = img
            intent.update(phase="posted", pending=[])
            self._save_intent()
            uploaded += [v.name for v in chunk]

        # 4. read back: nothing is deleted unless every new image is really there
        after = {img["id"]: img for img in self.client.list_images(self.pid)}
        missing = [view for view, rec in done.items() if rec["image_id"] not in after]
        if missing:
            self._save_intent()
            raise UploadError(f"{self.folder} : images envoyées mais absentes à la relecture ({', '.join(missing)}) ; "
                              f"aucune ancienne image n'a été supprimée. Relancez l'envoi.", reference=self.folder)

        # 5. delete: stale images of ours always, the old images in replace mode
        ours = {rec["image_id"] for rec in done.values()}
        targets = list(dict.fromkeys(stale + (intent.get("old_ids", []) if mode == "replace" else [])))
        targets = [i for i in targets if i in after and i not in ours]
        deleted: list[int] = []
        if targets:
            intent["phase"] = "deleting"
            self._save_intent()
            for image_id in targets:
                try:
                    self.client.delete_image(self.pid, image_id)
                except UploadError as exc:
                    raise UploadError(f"{exc.message} — Les nouvelles images sont en ligne ; la prochaine exécution "
                                      f"supprimera les anciennes restantes.", reference=self.folder) from None
                deleted.append(image_id)

        # 6. stamp, then forget the intent
        images = []
        for v in self.views:
            rec = done[v.name]
            entry = {"view": v.name, "image_id": rec["image_id"], "sha256": v.sha256,
                     "url": after.get(rec["image_id"], {}).get("url", rec.get("url"))}
            payload = self.payloads[v.name]
            if payload.reencoded:
                entry.update(sent_sha256=payload.sha256, reencoded=payload.reencoded)
            images.append(entry)
        _write_json(self.dir / STAMP_FILE, {"product_id": self.pid, "reference": self.reference, "mode": mode,
                                            "backend": safe_url(self.settings.backend_url),
                                            "uploaded_at": _now(), "images": images})
        (self.dir / INTENT_FILE).unlink(missing_ok=True)

        parts = [f"{self.folder} → produit {self.pid} ({self.reference}) :"]
        if uploaded:
            parts.append(f"{len(uploaded)} vue(s) envoyée(s) ({', '.join(uploaded)})")
        if adopted:
            parts.append(f"{len(adopted)} déjà reçue(s) lors de l'envoi interrompu ({', '.join(adopted)})")
        if not uploaded and not adopted:
            parts.append("aucune vue à renvoyer")
        if deleted:
            parts.append(f"{len(deleted)} ancienne(s) image(s) supprimée(s)")
        elif mode == "append":
            parts.append("mode ajout, anciennes images conservées")
        msg = parts[0] + " " + ", ".join(parts[1:])
        if self.resumed:
            msg += " (reprise d'un envoi interrompu)"
        return UploadOutcome(self.folder, self.pid, uploaded, deleted, None, msg + ".")


def _recognise(pending: list[dict], seen_ids: set[int], images) -> list[tuple[str, dict]]:
    """Images created by a POST whose answer was lost: the backend stores the files one by one, in
    the order sent, so they are new ids (not seen before the POST), in id order, whose orders match
    the files sent in sequence (a prefix of them when the bulk failed part-way)."""
    new = sorted((img for img in images if img["id"] not in seen_ids), key=lambda img: img["id"])
    found, i = [], 0
    for img in new:
        if i < len(pending) and img.get("order") == pending[i]["order"]:
            found.append((pending[i]["view"], img))
            i += 1
    return found


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
