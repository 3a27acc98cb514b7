"""Plain YOLO and COCO pre-annotations, for tools that read either (and for scripts).

- YOLO: ``yolo/labels/<name>.txt`` (``class cx cy w h`` normalised, one line per finding, the
  class id of the taxonomy), ``yolo/classes.txt``, ``yolo/data.yaml`` and ``yolo/images.txt``
  (the image files, absolute paths where they are local: referenced, not copied), review order;
- COCO: ``coco.json``, images in review order with ``file_name`` the name relative to the image
  root, annotations with ``score``, ``attributes`` (finding id, priority) and category ids =
  taxonomy id + 1 (COCO reserves 0).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from detector.taxonomy import Taxonomy, load_taxonomy
from review.items import ReviewImage, finding_id


def yolo_lines(img: ReviewImage) -> list[str]:
    lines = []
    for f in img.findings:
        x1, y1, x2, y2 = f.box.xyxy
        cx, cy = (x1 + x2) / 2 / img.width, (y1 + y2) / 2 / img.height
        w, h = (x2 - x1) / img.width, (y2 - y1) / img.height
        lines.append(f"{f.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def yolo_files(images: Sequence[ReviewImage], taxonomy: Taxonomy | None = None) -> dict[str, str]:
    """Relative path -> text of every file of the YOLO export."""
    tax = taxonomy or load_taxonomy()
    files: dict[str, str] = {}
    for img in images:
        stem = img.name.rsplit(".", 1)[0]
        files[f"labels/{stem}.txt"] = "\n".join(yolo_lines(img)) + ("\n" if img.findings else "")
    files["classes.txt"] = "\n".join(tax.names) + "\n"
    files["data.yaml"] = yaml.safe_dump({"names": dict(enumerate(tax.names)), "nc": len(tax)}, sort_keys=False)
    files["images.txt"] = "\n".join(str(img.path.resolve()) if img.path else img.name for img in images) + "\n"
    return files


def write_yolo(images: Sequence[ReviewImage], out: Path) -> list[Path]:
    written = []
    for rel, text in yolo_files(images).items():
        p = out / "yolo" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(p)
    return written


def coco(images: Sequence[ReviewImage], model: str, taxonomy: Taxonomy | None = None) -> dict[str, Any]:
    tax = taxonomy or load_taxonomy()
    cats = [{"id": c.id + 1, "name": c.name, "supercategory": c.asset} for c in tax.classes]
    ims, anns = [], []
    for img in images:
        iid = img.rank + 1
        ims.append(
            {
                "id": iid,
                "file_name": img.name,
                "width": img.width,
                "height": img.height,
                "sha256": img.sha256,
                "priority": img.worst,
            }
        )
        for f in img.findings:
            x1, y1, x2, y2 = f.box.xyxy
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": f.class_id + 1,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "area": round((x2 - x1) * (y2 - y1), 2),
                    "iscrowd": 0,
                    "score": f.confidence,
                    "attributes": {"finding": finding_id(f), "priority": f.priority},
                }
            )
    return {
        "info": {
            "description": "pvwind review export (predictions as pre-annotations)",
            "version": model,
            "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "licenses": [],
        "categories": cats,
        "images": ims,
        "annotations": anns,
    }


def write_coco(images: Sequence[ReviewImage], out: Path, model: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    p = out / "coco.json"
    p.write_text(json.dumps(coco(images, model), indent=1) + "\n")
    return [p]
