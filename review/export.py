"""``pvwind review export``: predictions -> pre-annotations for the reviewers' tools.

Writes, into one folder, the formats asked for (:data:`FORMATS`) and always
``review_manifest.json``: every exported image (its name in the tools, its local file, content
hash, review rank) with the model's result, the reference :func:`review.ingest.import_review`
compares the corrected export against.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detector.results import ImageResult
from review import cvat, labelstudio, plain
from review.items import ReviewImage, review_images

FORMATS = ("labelstudio", "cvat", "yolo", "coco")
MANIFEST = "review_manifest.json"


def manifest(images: Sequence[ReviewImage], name: str, model: str, image_root: Path | None) -> dict[str, Any]:
    return {
        "kind": "pvwind-review-export",
        "version": 1,
        "name": name,
        "model": model,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "image_root": str(image_root) if image_root else None,
        "images": [
            {
                "name": img.name,
                "rank": img.rank,
                "sha256": img.sha256,
                "path": str(img.path.resolve()) if img.path else None,
                "result": img.result.model_dump(mode="json"),
            }
            for img in images
        ],
    }


def export(
    results: Sequence[ImageResult],
    out: Path,
    *,
    formats: Sequence[str] = FORMATS,
    name: str = "review",
    model: str = "unknown",
    image_root: Path | None = None,
    image_dirs: Sequence[Path] = (),
    url_prefix: str | None = None,
    resolve_files: bool = True,
) -> dict[str, list[Path]]:
    bad = set(formats) - set(FORMATS)
    if bad:
        raise ValueError(f"unknown format(s) {sorted(bad)}; known: {', '.join(FORMATS)}")
    images = review_images(results, image_root=image_root, image_dirs=image_dirs, resolve_files=resolve_files)
    if not images:
        raise ValueError("no scored image to export")
    out.mkdir(parents=True, exist_ok=True)
    root = image_root.resolve() if image_root else None
    if root is None:
        from review.items import common_root

        root = common_root(img.path for img in images if img.path is not None)
    written: dict[str, list[Path]] = {}
    if "labelstudio" in formats:
        written["labelstudio"] = labelstudio.write(images, out, model, url_prefix)
    if "cvat" in formats:
        written["cvat"] = cvat.write(images, out, name, model)
    if "yolo" in formats:
        written["yolo"] = plain.write_yolo(images, out)
    if "coco" in formats:
        written["coco"] = plain.write_coco(images, out, model)
    m = out / MANIFEST
    m.write_text(json.dumps(manifest(images, name, model, root), indent=1, ensure_ascii=False) + "\n")
    written["manifest"] = [m]
    return written
