"""Label Studio: the labelling config, tasks with pre-annotations, and its corrected export.

Tasks (Label Studio's JSON import format): one per image, in review order, ``data.image``
the image's URL (by default a local-files reference, ``/data/local-files/?d=<path relative to
the document root>``, so Label Studio serves the file where it is, without a copy: start it with
``LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT=<root>``), plus ``pvwind_*`` fields
a reviewer can sort and filter on (priority, lowest confidence, rank, sha256). ``predictions``:
one per task, with ``model_version`` (the model key) and ``score`` (the lowest confidence), its
``rectanglelabels`` regions in percent of the image, each with its own ``score`` and the id
``pv<finding index>`` that survives review (Label Studio keeps a prediction's region ids when a
reviewer accepts it into an annotation).

Reading back (:func:`read_export`): Label Studio's JSON export (a list of tasks with
``annotations``); the newest annotation of a task that was not cancelled is the reviewed truth;
a task without one was not reviewed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from detector.taxonomy import Taxonomy, load_taxonomy
from review.items import ReviewImage, finding_id
from review.outcome import Corrected, CorrectedBox

FROM_NAME = "label"
TO_NAME = "image"
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#9a6324", "#800000", "#000075")


def labeling_config(taxonomy: Taxonomy | None = None) -> str:
    """The project's labelling interface: one image, rectangles with the taxonomy's classes."""
    tax = taxonomy or load_taxonomy()
    labels = "\n".join(
        f"    <Label value={quoteattr(c.name)} background={quoteattr(PALETTE[c.id % len(PALETTE)])}/>"
        for c in tax.classes
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="2">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def local_files_url(name: str) -> str:
    return "/data/local-files/?d=" + quote(name, safe="/")


def _pct(v: float, whole: int) -> float:
    return round(100.0 * v / whole, 4)


def region(img: ReviewImage, box: tuple[float, float, float, float], label: str, rid: str) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    return {
        "id": rid,
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "rectanglelabels",
        "original_width": img.width,
        "original_height": img.height,
        "image_rotation": 0,
        "value": {
            "x": _pct(x1, img.width),
            "y": _pct(y1, img.height),
            "width": _pct(x2 - x1, img.width),
            "height": _pct(y2 - y1, img.height),
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }


def tasks(images: Sequence[ReviewImage], model: str, url_prefix: str | None = None) -> list[dict[str, Any]]:
    """Label Studio tasks with pre-annotations, in review order. ``url_prefix``: prepended to
    each image name instead of the local-files reference (e.g. an S3 or HTTP location)."""
    out = []
    for img in images:
        url = (url_prefix.rstrip("/") + "/" + quote(img.name, safe="/")) if url_prefix else local_files_url(img.name)
        result = []
        for f in img.findings:
            r = region(img, f.box.xyxy, f.class_name, finding_id(f))
            r["score"] = f.confidence
            result.append(r)
        data = {
            "image": url,
            "pvwind_name": img.name,
            "pvwind_source": img.result.source,
            "pvwind_sha256": img.sha256,
            "pvwind_rank": img.rank,
            "pvwind_priority": img.worst,
            "pvwind_min_confidence": img.min_confidence,
            "pvwind_findings": len(img.findings),
            "pvwind_site": img.result.site,
            "pvwind_flight": img.result.flight,
        }
        task: dict[str, Any] = {"data": data}
        if result:
            task["predictions"] = [{"model_version": model, "score": img.min_confidence, "result": result}]
        out.append(task)
    return out


def write(images: Sequence[ReviewImage], out: Path, model: str, url_prefix: str | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    t = out / "labelstudio_tasks.json"
    t.write_text(json.dumps(tasks(images, model, url_prefix), indent=1, ensure_ascii=False) + "\n")
    c = out / "labelstudio_config.xml"
    c.write_text(labeling_config())
    return [t, c]


# ---------------------------------------------------------------------------- reading back
def _box(value: dict[str, Any], w: float, h: float) -> tuple[tuple[float, float, float, float], bool]:
    """Pixel xyxy of a (possibly rotated) Label Studio rectangle; True when it was rotated
    (its axis-aligned bounding box is used)."""
    import math

    x, y = float(value["x"]) * w / 100, float(value["y"]) * h / 100
    bw, bh = float(value["width"]) * w / 100, float(value["height"]) * h / 100
    rot = float(value.get("rotation") or 0.0)
    if abs(rot) < 1e-6:
        return (x, y, x + bw, y + bh), False
    a = math.radians(rot)  # rotation about the top-left corner, clockwise in image coordinates
    pts = [(0, 0), (bw, 0), (bw, bh), (0, bh)]
    xs = [x + px * math.cos(a) - py * math.sin(a) for px, py in pts]
    ys = [y + px * math.sin(a) + py * math.cos(a) for px, py in pts]
    return (min(xs), min(ys), max(xs), max(ys)), True


def _latest(annotations: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [a for a in annotations or [] if not a.get("was_cancelled")]
    if not done:
        return None
    return max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0)))


def read_export(path: Path) -> list[Corrected]:
    """Label Studio's JSON export -> the reviewed boxes of every task (``reviewed=False`` for a
    task nobody annotated)."""
    doc = json.loads(Path(path).read_text())
    if isinstance(doc, dict):
        doc = doc.get("tasks") or [doc]
    out = []
    for task in doc:
        data = task.get("data") or {}
        ann = _latest(task.get("annotations") or [])
        c = Corrected(
            name=str(data.get("pvwind_name") or data.get("image") or ""),
            sha256=data.get("pvwind_sha256"),
            reviewed=ann is not None,
            tool_id=str(task.get("id", "")),
        )
        for r in (ann or {}).get("result") or []:
            if r.get("type") != "rectanglelabels":
                continue
            v = r.get("value") or {}
            labels = v.get("rectanglelabels") or []
            w, h = r.get("original_width"), r.get("original_height")
            if not labels or not w or not h:
                c.problems.append(f"region {r.get('id')}: no label or no image size")
                continue
            box, rotated = _box(v, float(w), float(h))
            if rotated:
                c.problems.append("rotated_box")
            c.width, c.height = int(w), int(h)
            c.boxes.append(CorrectedBox(box, str(labels[0]), str(r.get("id") or "")))
        out.append(c)
    return out
