"""CVAT: "CVAT for images 1.1" XML (CVAT's own annotation format, which it imports into a task
and exports back), written with the predictions and read back after review.

- ``<meta><task>`` declares the taxonomy's classes as rectangle labels, each with three
  attributes: ``finding`` (the prediction's id ``pv<index>``, immutable text), ``confidence``
  and ``priority`` (text), so the prediction survives the round trip;
- one ``<image id name width height>`` per image, ids in review order, ``name`` the image's
  path relative to the export's image root (CVAT matches it against the task's files: create
  the task from the same files, or from a connected share, so nothing is copied);
- one ``<box label source="auto" xtl ytl xbr ybr>`` per finding. A box a reviewer draws comes
  back with ``source="manual"`` and no ``finding``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from detector.taxonomy import Taxonomy, load_taxonomy
from review.items import ReviewImage, finding_id
from review.labelstudio import PALETTE
from review.outcome import Corrected, CorrectedBox

ATTRIBUTES = ("finding", "confidence", "priority")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, attrs)
    if text is not None:
        e.text = text
    return e


def document(images: Sequence[ReviewImage], name: str, model: str, taxonomy: Taxonomy | None = None) -> ET.Element:
    tax = taxonomy or load_taxonomy()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    root = ET.Element("annotations")
    _sub(root, "version", "1.1")
    meta = _sub(root, "meta")
    task = _sub(meta, "task")
    _sub(task, "id", "0")
    _sub(task, "name", name)
    _sub(task, "size", str(len(images)))
    _sub(task, "mode", "annotation")
    _sub(task, "overlap", "0")
    _sub(task, "bugtracker", "")
    _sub(task, "created", now)
    _sub(task, "updated", now)
    _sub(task, "subset", "default")
    _sub(task, "start_frame", "0")
    _sub(task, "stop_frame", str(max(len(images) - 1, 0)))
    _sub(task, "frame_filter", "")
    labels = _sub(task, "labels")
    for c in tax.classes:
        lab = _sub(labels, "label")
        _sub(lab, "name", c.name)
        _sub(lab, "color", PALETTE[c.id % len(PALETTE)])
        _sub(lab, "type", "rectangle")
        attrs = _sub(lab, "attributes")
        for a in ATTRIBUTES:
            at = _sub(attrs, "attribute")
            _sub(at, "name", a)
            _sub(at, "mutable", "False")
            _sub(at, "input_type", "text")
            _sub(at, "default_value", "")
            _sub(at, "values", "")
    _sub(meta, "dumped", now)
    _sub(meta, "source", f"pvwind review export, model {model}")
    for img in images:
        im = _sub(root, "image", id=str(img.rank), name=img.name, width=str(img.width), height=str(img.height))
        for f in img.findings:
            x1, y1, x2, y2 = f.box.xyxy
            b = _sub(
                im,
                "box",
                label=f.class_name,
                source="auto",
                occluded="0",
                xtl=f"{x1:.2f}",
                ytl=f"{y1:.2f}",
                xbr=f"{x2:.2f}",
                ybr=f"{y2:.2f}",
                z_order="0",
            )
            _sub(b, "attribute", finding_id(f), name="finding")
            _sub(b, "attribute", f"{f.confidence:.4f}", name="confidence")
            _sub(b, "attribute", f.priority, name="priority")
    ET.indent(root)
    return root


def write(images: Sequence[ReviewImage], out: Path, name: str, model: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    p = out / "cvat_annotations.xml"
    ET.ElementTree(document(images, name, model)).write(p, encoding="utf-8", xml_declaration=True)
    return [p]


def read_export(path: Path) -> list[Corrected]:
    """A CVAT for images 1.1 ``annotations.xml`` (from CVAT, or any tool writing the format) ->
    the reviewed boxes per image. Every image element counts as reviewed (CVAT has no per-image
    "not reviewed" state in this format; export the jobs you reviewed). Shapes other than boxes
    are reported as problems."""
    root = ET.parse(path).getroot()
    if root.tag != "annotations":
        raise ValueError(f"{path}: not a CVAT for images XML (root <{root.tag}>)")
    out = []
    for im in root.iter("image"):
        c = Corrected(
            name=im.get("name", ""),
            width=int(float(im.get("width", 0))) or None,
            height=int(float(im.get("height", 0))) or None,
            tool_id=im.get("id", ""),
        )
        for shape in im:
            if shape.tag != "box":
                c.problems.append(f"shape_not_a_box:{shape.tag}")
                continue
            try:
                box = tuple(float(shape.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr"))
            except ValueError:
                c.problems.append("malformed_box")
                continue
            attrs = {a.get("name"): (a.text or "").strip() for a in shape.findall("attribute")}
            c.boxes.append(CorrectedBox(box, shape.get("label", ""), attrs.get("finding", "")))  # type: ignore[arg-type]
        out.append(c)
    return out
