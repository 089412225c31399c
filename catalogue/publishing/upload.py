"""Finished views -> the shop's product (safe replace, with an intent journal; `DESIGN.md`).

One reference at a time:

1. gates: the folder exists, `1_face.png` exists, every view has its sidecar and was not made by the
   local renderer (unless `ALLOW_LOCAL_UPLOAD=1`); a view that fails a gate holds the whole reference
   (uploading the others would replace a published set by an incomplete one);
2. resolve the folder to a product id (`lookup.py`);
3. the bytes to send: each view under the shop's per-file limit (multer refuses 10 MiB: 10,485,759
   bytes at most) and under the request-size setting (`UPLOAD_MAX_REQUEST_MB`, the production
   front's `client_max_body_size 20M`); a larger PNG is re-encoded losslessly, then as JPEG q=95,
   or refused before anything is sent;
4. `GET /products/:id/images` (never the cached `GET /products/:id`);
5. the views go in as many bulks as needed (at most 7 files, at most `UPLOAD_MAX_REQUEST_MB` of body
   each, in view order, each file with its own order). Before each bulk the intent journal
   `output/<folder>/.upload-intent.json` records the ids on the product and the views being sent;
   after each bulk the product is read back (`GET /products/:id/images`);
6. the read-back is the truth: the answer of a bulk must name one new image per file, each present
   in the read-back; copies the backend made beyond them (same orders, new ids) are deleted; an
   image of ours at the wrong order is given its order (`PATCH …/order`); a malformed answer is an
   error and the next run recognises the images from the read-back;
7. only when every view has exactly one image of ours on the product, in order, the old images are
   deleted one by one (replace mode; `UPLOAD_MODE=append` keeps them);
8. write the stamp `output/<folder>/upload.json` (from the read-back), then remove the journal.

Reconciliation. When the journal is present at the start of a run, the previous run stopped somewhere
(crash, network failure, a POST whose answer was lost or malformed, a bulk that failed part-way, a
failed DELETE). The run finishes that job instead of starting over:

* if the journal says a POST was in flight (`phase: "posting"`), the images created by it are
  recognised among the product's current images: its answer when it was recorded and the images it
  names are there, else the images not among the ids seen before the POST, taken in id order,
  matching the orders of the files sent, in sequence (the backend stores the files one by one, so
  a failure part-way leaves a prefix of them). They are adopted as ours, never re-sent;
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
from ..core.files import atomic_write_bytes, sha256_bytes
from ..core.paths import INTENT_FILE, STAMP_FILE
from ..imaging.decode import jpeg_bytes
from .backend import BackendClient, multipart_size
from .lookup import resolve_product_id
from .stamp import LocalView, present_views, read_json, safe_url, stamp_matches

MAX_FILE_BYTES = 10 * 1024 * 1024 - 1   # multer refuses a file of 10 MiB: 10,485,759 bytes at most
MAX_FILES_PER_REQUEST = 7               # the backend's limit per bulk request
JPEG_QUALITY = 95                       # last resort for a view over the limits: no visible loss
INTENT_VERSION = 2


@dataclass
class UploadOutcome:
    folder: str
    product_id: int                 # 0 when the reference was held before the lookup
    uploaded: list[str] = field(default_factory=list)   # view names sent in this run
    deleted: list[int] = field(default_factory=list)    # backend image ids deleted in this run
    skipped_reason: str | None = None                   # French: why nothing was sent (a gate held it)
    message: str = ""                                   # French one-liner for the operator


@dataclass
class Payload:
    filename: str
    data: bytes
    mime: str
    sha256: str                     # of the bytes sent (differs from the file's when re-encoded)
    reencoded: str | None = None    # "png-optimize" | "jpeg-q95"

    @property
    def part(self) -> tuple[str, bytes, str]:
        return (self.filename, self.data, self.mime)


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

def _write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- what is sent -------------------------------------------------------------------------------

def _file_cap(settings, view: LocalView) -> tuple[int, str]:
    """The largest file this view may be sent as, and the French name of the limit that sets it."""
    framing = max(multipart_size([(f"{view.name}{ext}", b"", mime)]) for ext, mime in
                  ((".png", "image/png"), (".jpg", "image/jpeg")))
    by_request = settings.upload_max_request_bytes - framing
    if by_request < MAX_FILE_BYTES:
        return by_request, (f"la limite d'une requête (UPLOAD_MAX_REQUEST_MB = "
                            f"{settings.upload_max_request_bytes / 1024 / 1024:g} Mo)")
    return MAX_FILE_BYTES, f"la limite de 10 Mo du backend ({MAX_FILE_BYTES:,} octets au plus)".replace(",", " ")


def _payload(settings, folder: str, view: LocalView) -> Payload:
    """The bytes to send for a view: the PNG as is, or re-encoded to fit the limits."""
    data = view.path.read_bytes()
    cap, limit = _file_cap(settings, view)
    if len(data) <= cap:
        return Payload(view.spec.filename, data, "image/png", view.sha256)

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)            # lossless
        if buf.tell() <= cap:
            out = buf.getvalue()
            return Payload(view.spec.filename, out, "image/png", sha256_bytes(out), "png-optimize")
        out = jpeg_bytes(img, quality=JPEG_QUALITY)
        if len(out) <= cap:
            return Payload(f"{view.name}.jpg", out, "image/jpeg", sha256_bytes(out), f"jpeg-q{JPEG_QUALITY}")
    raise UploadError(
        f"{folder} : {view.spec.filename} pèse {len(data) / 1e6:.1f} Mo, au-delà de {limit}, et reste trop lourde "
        f"même recompressée (PNG optimisé, JPEG qualité {JPEG_QUALITY}) : réduisez sa taille (OUTPUT_SIZE) et "
        f"régénérez-la{' ou relevez UPLOAD_MAX_REQUEST_MB' if 'UPLOAD_MAX_REQUEST_MB' in limit else ''}. "
        f"Rien n'a été envoyé.", reference=folder)


def plan_bulks(views: list[LocalView], payloads: dict[str, Payload], max_request_bytes: int) -> list[list[LocalView]]:
    """The views in order, cut into bulks of at most 7 files and `max_request_bytes` of body each
    (every single payload fits one request: `_payload` saw to it)."""
    bulks: list[list[LocalView]] = []
    current: list[LocalView] = []
    for view in views:
        candidate = current + [view]
        if current and (len(candidate) > MAX_FILES_PER_REQUEST or
                        multipart_size([payloads[v.name].part for v in candidate]) > max_request_bytes):
            bulks.append(current)
            candidate = [view]
        current = candidate
    if current:
        bulks.append(current)
    return bulks


# --- the upload -------------------------------------------------------------------------------

def upload_reference(settings, folder: str, views: tuple[str, ...] | None = None) -> UploadOutcome:
    """Attach the finished views of `output/<folder>/` to their product (see the module doc).
    `views`: the views the reference has now (default: every view file present)."""
    folder_dir = Path(settings.output_dir) / folder
    if not folder_dir.is_dir():
        raise UploadError(f"Dossier introuvable : {folder_dir}", reference=folder)
    views = present_views(folder_dir, views)
    if not any(v.name == "1_face" for v in views):
        raise UploadError(f"{folder} : 1_face.png manquante dans {folder_dir} — générez d'abord les vues "
                          f"(doit generate:{folder}) ; rien n'est envoyé sans la vue de face.", reference=folder)
    intent = read_json(folder_dir / INTENT_FILE)
    stamp = read_json(folder_dir / STAMP_FILE)
    if intent is None and stamp_matches(stamp, views, settings):
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
    payloads = {v.name: _payload(settings, folder, v) for v in views}      # may refuse before anything is sent
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
        self.extras: list[int] = []          # copies the backend made beyond the images it answered

    def _save_intent(self) -> None:
        self.intent["updated_at"] = _now()
        _write_json(self.dir / INTENT_FILE, self.intent)

    def _list(self) -> dict[int, dict]:
        return {img["id"]: img for img in self.client.list_images(self.pid)}

    def _error(self, text: str) -> UploadError:
        return UploadError(f"{self.folder} : {text}", reference=self.folder)

    def run(self) -> UploadOutcome:
        listing = self._list()
        if self.intent is None or self.intent.get("version") not in (1, INTENT_VERSION):
            self.intent = {"version": INTENT_VERSION, "product_id": self.pid, "reference": self.reference,
                           "mode": self.settings.upload_mode, "started_at": _now(),
                           "old_ids": sorted(listing), "stale_ids": [], "done": {},
                           "seen_ids": [], "pending": [], "answered": {}, "phase": "planned"}
        intent = self.intent
        mode = intent.get("mode", self.settings.upload_mode)
        done: dict[str, dict] = intent.setdefault("done", {})
        stale: list[int] = intent.setdefault("stale_ids", [])

        # 1. a POST was in flight when the previous run stopped: adopt what it created
        adopted = self._settle(listing, strict=False) if intent.get("phase") == "posting" and intent.get("pending") \
            else []
        intent.update(pending=[], answered={})

        # 2. keep our images that are still there and still show the current file; the rest is redone
        for view, rec in list(done.items()):
            local = self.by_name.get(view)
            if rec["image_id"] not in listing:
                del done[view]
            elif local is None or rec["sha256"] != local.sha256:
                stale.append(rec["image_id"])
                del done[view]

        # 3. POST what has no image yet, in as many bulks as the limits ask; read back after each
        to_post = [v for v in self.views if v.name not in done]
        bulks = plan_bulks(to_post, self.payloads, self.settings.upload_max_request_bytes)
        uploaded: list[str] = []
        for number, chunk in enumerate(bulks, start=1):
            intent.update(phase="posting", seen_ids=sorted(listing), answered={},
                          pending=[{"view": v.name, "order": v.spec.order, "sha256": v.sha256,
                                    "sent_sha256": self.payloads[v.name].sha256,
                                    "filename": self.payloads[v.name].filename} for v in chunk])
            self._save_intent()
            try:
                created = self.client.upload_bulk(self.pid, [self.payloads[v.name].part for v in chunk],
                                                  [v.spec.order for v in chunk])
            except UploadError as exc:
                raise self._bulk_failed(exc, chunk, number, len(bulks), uploaded) from None
            intent["answered"] = {v.name: img["id"] for v, img in zip(chunk, created)}
            self._save_intent()
            try:
                listing = self._list()
            except UploadError as exc:
                raise UploadError(f"{exc.message} — l'envoi ({', '.join(v.name for v in chunk)}) a été reçu mais "
                                  f"pas relu ; aucune ancienne image n'a été supprimée : la prochaine exécution "
                                  f"relira le produit avant de renvoyer quoi que ce soit.",
                                  reference=self.folder) from None
            self._settle(listing, strict=True)
            uploaded += [v.name for v in chunk]

        # 4. the read-back is the truth: one image of ours per view, each at its order
        missing = [v.name for v in self.views if v.name not in done or done[v.name]["image_id"] not in listing]
        if missing:
            self._save_intent()
            raise self._error(f"images absentes à la relecture ({', '.join(missing)}) ; aucune ancienne image n'a été "
                              f"supprimée. La prochaine exécution vérifiera de nouveau ce que le produit a reçu.")
        reordered: list[str] = []
        for v in self.views:
            image_id = done[v.name]["image_id"]
            if listing[image_id]["order"] != v.spec.order:
                try:
                    self.client.set_order(self.pid, image_id, v.spec.order)
                except UploadError as exc:
                    self._save_intent()
                    raise UploadError(f"{exc.message} — L'image {image_id} ({v.name}) n'est pas à sa place ; aucune "
                                      f"ancienne image n'a été supprimée : la prochaine exécution corrigera l'ordre.",
                                      reference=self.folder) from None
                listing[image_id] = {**listing[image_id], "order": v.spec.order}
                reordered.append(v.name)

        # 5. delete: stale images and extra copies always, the old images in replace mode
        ours = {rec["image_id"] for rec in done.values()}
        targets = list(dict.fromkeys(stale + (intent.get("old_ids", []) if mode == "replace" else [])))
        targets = [i for i in targets if i in listing and i not in ours]
        deleted: list[int] = []
        if targets:
            intent["phase"] = "deleting"
            self._save_intent()
            for image_id in targets:
                try:
                    self.client.delete_image(self.pid, image_id)
                except UploadError as exc:
                    raise UploadError(f"{exc.message} — Les nouvelles images sont en ligne ; la prochaine exécution "
                                      f"supprimera les anciennes images restantes.", reference=self.folder) from None
                deleted.append(image_id)

        # 6. stamp (what the read-back showed), then forget the intent
        images = []
        for v in self.views:
            rec = done[v.name]
            entry = {"view": v.name, "image_id": rec["image_id"], "sha256": v.sha256,
                     "url": listing[rec["image_id"]].get("url", rec.get("url"))}
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
            parts.append(f"{len(uploaded)} vue(s) envoyée(s) ({', '.join(uploaded)})"
                         + (f" en {len(bulks)} envois" if len(bulks) > 1 else ""))
        if adopted:
            parts.append(f"{len(adopted)} déjà reçue(s) lors de l'envoi interrompu ({', '.join(adopted)})")
        if not uploaded and not adopted:
            parts.append("aucune vue à renvoyer")
        if reordered:
            parts.append(f"ordre rétabli ({', '.join(reordered)})")
        extras = [i for i in deleted if i in self.extras]
        if extras:
            parts.append(f"{len(extras)} copie(s) en trop du backend supprimée(s)")
        if len(deleted) > len(extras):
            parts.append(f"{len(deleted) - len(extras)} ancienne(s) image(s) supprimée(s)")
        elif mode == "append":
            parts.append("mode ajout, anciennes images conservées")
        msg = parts[0] + " " + ", ".join(parts[1:])
        if self.resumed:
            msg += " (reprise d'un envoi interrompu)"
        return UploadOutcome(self.folder, self.pid, uploaded, deleted, None, msg + ".")

    def _settle(self, listing: dict[int, dict], *, strict: bool) -> list[str]:
        """The POST recorded in the journal is over: match its files to the product's images (its
        answer when valid, else recognition), mark the copies beyond them for deletion, record ours.
        `strict` (right after the POST): an answer naming images the read-back does not show is an
        error; later (a resumed run) the images are recognised instead. Returns the views matched."""
        intent = self.intent
        pending = intent.get("pending") or []
        seen = set(intent.get("seen_ids") or [])
        answered = intent.get("answered") or {}
        new_ids = {i for i in listing if i not in seen}
        views = [p["view"] for p in pending]
        matched: dict[str, dict] = {}
        if answered and set(answered) == set(views) and set(answered.values()) <= new_ids \
                and len(set(answered.values())) == len(answered):
            matched = {view: listing[answered[view]] for view in views}
        elif answered and strict:
            self._save_intent()
            missing = [view for view in views if answered.get(view) not in listing]
            if missing:
                raise self._error(f"images envoyées mais absentes à la relecture ({', '.join(missing)}) ; aucune "
                                  f"ancienne image n'a été supprimée. La prochaine exécution vérifiera de nouveau ce "
                                  f"que le produit a reçu, sans renvoyer ce qui y est.")
            intent["answered"] = {}
            self._save_intent()
            raise self._error("réponse inattendue du backend à l'envoi groupé (images déjà présentes avant l'envoi) ; "
                              "aucune ancienne image n'a été supprimée. La prochaine exécution reconnaîtra les images "
                              "reçues d'après le produit.")
        else:
            matched = dict(_recognise(pending, seen, listing.values()))
        ours = {img["id"] for img in matched.values()}
        sent_orders = {p["order"] for p in pending}
        extras = [i for i in sorted(new_ids) if i not in ours and listing[i].get("order") in sent_orders]
        for p in pending:
            img = matched.get(p["view"])
            if img is not None:
                self.intent["done"][p["view"]] = {"image_id": img["id"], "url": img.get("url"),
                                                  "order": img.get("order"), "sha256": p["sha256"]}
        stale = self.intent.setdefault("stale_ids", [])
        stale += [i for i in extras if i not in stale]
        self.extras += extras
        intent.update(phase="posted", pending=[], answered={}, seen_ids=[])
        self._save_intent()
        return [v for v in views if v in matched]

    def _bulk_failed(self, exc: UploadError, chunk, number: int, total: int, uploaded: list[str]) -> UploadError:
        """The French message of a failed bulk: what happened, what is online, what the next run does."""
        names = ", ".join(v.name for v in chunk)
        which = f"l'envoi {number} sur {total} ({names})" if total > 1 else f"l'envoi ({names})"
        before = f" ; {', '.join(uploaded)} déjà en ligne" if uploaded else ""
        if getattr(exc, "stored_nothing", False):
            self.intent.update(phase="posted", pending=[], answered={}, seen_ids=[])
            self._save_intent()
            hint = getattr(exc, "hint", "")
            text = (f"{exc.message} — rien n'a été enregistré de {which}{before} ; les images actuelles du produit "
                    f"{self.pid} sont intactes. La prochaine exécution renverra ce qui manque"
                    + (f" ; {hint}." if hint else "."))
        elif getattr(exc, "malformed", False):
            text = (f"{exc.message} — {which}{before} : les images ont sans doute été enregistrées, mais rien n'est "
                    f"tenu pour envoyé et aucune ancienne image n'a été supprimée ; la prochaine exécution reconnaîtra "
                    f"ce que le produit a reçu d'après ses images et n'enverra que le reste.")
        else:
            text = (f"{exc.message} — {which}{before} : les fichiers reçus avant l'échec sont gardés et les images "
                    f"actuelles du produit {self.pid} sont intactes ; la prochaine exécution reconnaîtra ce que le "
                    f"produit a reçu et n'enverra que le reste.")
        return UploadError(text, reference=self.folder)


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
