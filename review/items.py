"""What a reviewer sees of one image, in the order a reviewer should see them.

A :class:`ReviewImage` is an :class:`~detector.results.ImageResult` (scored, with its findings)
plus where its file is and the name the labelling tool knows it by. Order (:func:`review_key`):
images with the most urgent finding first (P1 before P2 ...), among equals the one whose least
confident finding is least confident first, images without findings last; inside an image the
findings in the same order. The writers keep that order (tasks, CVAT image ids, COCO ids).

Sources of predictions: a ``pvwind inspect`` output folder (``results.json``), a job's
``GET /v1/jobs/{id}/results`` JSON (the same ``images`` list), a list of results (the service's
job route) or a re-scorer store (:func:`load_store`, read-only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.priority import priority_rank
from detector.results import Finding, ImageResult
from detector.taxonomy import Taxonomy, load_taxonomy


def finding_key(f: Finding) -> tuple[int, float, int]:
    return (priority_rank(f.priority), f.confidence, f.index)


def review_key(r: ImageResult) -> tuple[int, float, str]:
    """P1 images first; among equals the least confident finding first; no findings last."""
    if not r.findings:
        return (9, 2.0, r.source)
    worst = min(priority_rank(f.priority) for f in r.findings)
    return (worst, min(f.confidence for f in r.findings), r.source)


@dataclass
class ReviewImage:
    result: ImageResult
    name: str  # the image's name / relative path in the tool (unique in an export)
    path: Path | None = None  # the local file, when there is one
    rank: int = 0  # position in review order
    findings: list[Finding] = field(default_factory=list)  # in review order

    @property
    def sha256(self) -> str | None:
        return self.result.sha256

    @property
    def width(self) -> int:
        return int(self.result.width or 0)

    @property
    def height(self) -> int:
        return int(self.result.height or 0)

    @property
    def worst(self) -> str | None:
        return min((f.priority for f in self.findings), key=priority_rank, default=None)

    @property
    def min_confidence(self) -> float | None:
        return min((f.confidence for f in self.findings), default=None)


def finding_id(f: Finding) -> str:
    """The id a prediction carries through the tool (Label Studio region id, CVAT attribute)."""
    return f"pv{f.index}"


def index_of(region_id: str | None) -> int | None:
    if region_id and region_id.startswith("pv") and region_id[2:].isdigit():
        return int(region_id[2:])
    return None


def local_path(r: ImageResult, image_dirs: Sequence[Path] = ()) -> Path | None:
    """The image's file: its ``source`` when that is a file, else a file of that name in ``image_dirs``."""
    if r.source:
        p = Path(r.source)
        if "::" not in r.source and p.is_file():
            return p
        for d in image_dirs:
            for cand in (Path(d) / r.source, Path(d) / Path(r.source).name):
                if cand.is_file():
                    return cand
    return None


def common_root(paths: Iterable[Path]) -> Path | None:
    """The default image root: the folder ABOVE the images' common folder, so that every name
    starts with the flight's folder (``flight_12/DJI_0001.JPG``) and a tool's storage can point
    at that folder (Label Studio refuses a storage equal to its LOCAL_FILES_DOCUMENT_ROOT)."""
    ps = [str(p.resolve()) for p in paths]
    if not ps:
        return None
    folder = Path(os.path.commonpath(ps))
    if len(ps) == 1 or folder.is_file():
        folder = folder.parent
    return folder.parent


def review_images(
    results: Iterable[ImageResult],
    image_root: Path | None = None,
    image_dirs: Sequence[Path] = (),
    taxonomy: Taxonomy | None = None,
    resolve_files: bool = True,
) -> list[ReviewImage]:
    """The scored results as review items, in review order. Names are paths relative to
    ``image_root`` (default: :func:`common_root` of the local files), else the result's source.
    ``resolve_files=False``: never look at the file system (the service: a job's sources are
    client file names, not paths of the server)."""
    tax = taxonomy or load_taxonomy()
    known = set(tax.names)
    ok = [r for r in results if r.ok and r.width and r.height]
    ok.sort(key=review_key)
    paths = [local_path(r, image_dirs) if resolve_files else None for r in ok]
    root = image_root.resolve() if image_root else common_root(p for p in paths if p is not None)
    out: list[ReviewImage] = []
    used: set[str] = set()
    for rank, (r, p) in enumerate(zip(ok, paths, strict=True)):
        name = None
        if p is not None and root is not None:
            try:
                name = p.resolve().relative_to(root).as_posix()
            except ValueError:
                name = None
        if name is None:
            name = (r.source or r.sha256 or f"image_{rank}").replace("::", "/").lstrip("/")
            if not resolve_files:
                name = name.replace("\\", "/").rsplit("/", 1)[-1] or f"image_{rank}"
        base, k = name, 1
        while name in used:  # the same file name twice (e.g. two folders in a job upload)
            k += 1
            stem, dot, ext = base.rpartition(".")
            name = f"{stem}_{k}.{ext}" if dot else f"{base}_{k}"
        used.add(name)
        findings = sorted((f for f in r.findings if f.class_name in known), key=finding_key)
        out.append(ReviewImage(r, name, p, rank, findings))
    return out


# ---------------------------------------------------------------------------- loading
def load_results(path: str | Path) -> tuple[list[ImageResult], dict[str, Any]]:
    """Results from a ``pvwind inspect`` folder or its ``results.json``, a job's results JSON,
    or a JSON list of results; with the document's other keys (model, settings ...)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    doc = json.loads(p.read_text())
    images = doc if isinstance(doc, list) else doc.get("images")
    if not isinstance(images, list):
        raise ValueError(f"{p}: no 'images' list (expected pvwind inspect results.json or job results)")
    meta = {} if isinstance(doc, list) else {k: v for k, v in doc.items() if k != "images"}
    return [ImageResult.model_validate(d) for d in images], meta


def model_of(results: Sequence[ImageResult], meta: dict[str, Any] | None = None) -> str:
    keys = {r.model for r in results if r.model}
    if len(keys) == 1:
        return keys.pop()
    m = (meta or {}).get("model")
    if isinstance(m, dict) and m.get("key"):
        return str(m["key"])
    return ", ".join(sorted(keys)) or "unknown"


def load_store(url: str, model_key: str | None = None, flight: str | None = None) -> list[ImageResult]:
    """Results of a re-scorer store (``pvwind rescore --out``), read only: every indexed file
    (optionally of one ``flight`` folder or below it) with its result by ``model_key`` (default:
    the key with the newest results)."""
    from sqlalchemy import func, select

    from storage.store import Store
    from storage.tables import RescoreFile, Result

    store = Store.from_url(url if "://" in url else f"sqlite:///{url}", create=False)
    try:
        with store.session() as s:
            if model_key is None:
                model_key = s.scalar(
                    select(Result.model_version)
                    .group_by(Result.model_version)
                    .order_by(func.max(Result.created_at).desc())
                    .limit(1)
                )
                if model_key is None:
                    return []
            q = (
                select(RescoreFile.source, RescoreFile.flight, Result.payload)
                .join(
                    Result,
                    (Result.image_sha256 == RescoreFile.image_sha256) & (Result.model_version == model_key),
                )
                .order_by(RescoreFile.source)
            )
            if flight:
                f = flight.strip("/")
                q = q.where((RescoreFile.flight == f) | RescoreFile.flight.like(f + "/%"))
            out = []
            for source, fl, payload in s.execute(q):
                site = fl.split("/", 1)[0]
                out.append(ImageResult.from_payload(payload, source=source, site=site, flight=fl))
            return out
    finally:
        store.close()
