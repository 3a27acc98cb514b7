"""Readers for the three label formats of the public datasets, and for reviewed batches.

Each reader yields :class:`Sample` records: one image with its boxes in pixel
``xyxy`` and the *source* label names. Mapping to the taxonomy, clipping and
dropping happen later, in one place (:mod:`training.hygiene`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from training.evaluate import IMAGE_SUFFIXES


@dataclass
class Sample:
    image: Path
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # pixel xyxy
    labels: list[str] = field(default_factory=list)  # source label names
    width: int | None = None  # as the label file states it, when it does
    height: int | None = None
    problems: list[str] = field(default_factory=list)  # malformed label lines, counted by the build
    # COCO: listed in one split's json but stored in another split's folder (see SourceManifest.misplaced_labels)
    misplaced: bool = False


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only; raises OSError for unreadable files."""
    with Image.open(path) as im:
        return im.size


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_yolo(root: Path, class_names: list[str]) -> Iterator[Sample]:
    """Ultralytics layout: ``<split>/images/*.jpg`` with ``<split>/labels/*.txt``
    holding ``class cx cy w h`` normalised to the image size."""
    for split_dir in sorted(p for p in root.iterdir() if (p / "images").is_dir()):
        for img in _images_in(split_dir / "images"):
            sample = Sample(img)
            label = split_dir / "labels" / (img.stem + ".txt")
            if label.exists():
                try:
                    w, h = image_size(img)
                except OSError:
                    w = h = None
                for n, line in enumerate(label.read_text().splitlines(), 1):
                    parts = line.split()
                    if not parts:
                        continue
                    try:
                        cls = int(parts[0])
                        cx, cy, bw, bh = (float(v) for v in parts[1:5])
                        if len(parts) != 5:
                            raise ValueError
                        name = class_names[cls]
                    except (ValueError, IndexError):
                        sample.problems.append(f"{label.name}:{n}: malformed line {line!r}")
                        continue
                    if w is None:
                        continue  # the build skips the unreadable image anyway
                    sample.boxes.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
                    sample.labels.append(name)
                sample.width, sample.height = w, h
            yield sample


def read_coco(root: Path) -> Iterator[Sample]:
    """Roboflow COCO export: ``<split>/_annotations.coco.json`` per split folder.
    A file listed in one split's json may sit in another split's folder, so file
    names are looked up across all folders, and each image is read once."""
    jsons = sorted(root.glob("*/_annotations.coco.json"))
    located: dict[str, Path] = {}
    for folder in sorted({j.parent for j in jsons}):
        for img in _images_in(folder):
            located.setdefault(img.name, img)
    seen: set[str] = set()
    for js in jsons:
        data = json.loads(js.read_text())
        cats = {c["id"]: c["name"] for c in data["categories"]}
        by_image: dict[int, list[dict]] = {}
        for a in data["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        for im in data["images"]:
            name = im["file_name"]
            if name in seen:
                continue
            seen.add(name)
            path = located.get(name)
            sample = Sample(path if path else js.parent / name, width=im.get("width"), height=im.get("height"))
            sample.misplaced = path is not None and path.parent != js.parent
            for a in by_image.get(im["id"], []):
                try:
                    x, y, w, h = (float(v) for v in a["bbox"])
                    label = cats[a["category_id"]]
                except (KeyError, ValueError, TypeError):
                    sample.problems.append(f"{js.parent.name}: malformed annotation {a.get('id')}")
                    continue
                sample.boxes.append((x, y, x + w, y + h))
                sample.labels.append(label)
            yield sample


def read_pixel_csv(root: Path, csv_path: str) -> Iterator[Sample]:
    """One CSV ``filename,width,height,class,xmin,ymin,xmax,ymax`` in pixels, with
    images beside it; rows of a background class carry -1 coordinates."""
    path = root / csv_path
    samples: dict[str, Sample] = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            name = row.get("filename") or ""
            s = samples.get(name)
            if s is None:
                s = samples[name] = Sample(path.parent / name)
            try:
                s.width, s.height = int(row["width"]), int(row["height"])
                box = tuple(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
                label = row["class"].strip()
            except (KeyError, ValueError, TypeError, AttributeError):
                s.problems.append(f"{path.name}:{n}: malformed row")
                continue
            if all(v < 0 for v in box):
                s.labels.append(label)  # background marker, no box
                s.boxes.append((-1.0, -1.0, -1.0, -1.0))
                continue
            s.boxes.append(box)  # type: ignore[arg-type]
            s.labels.append(label)
    # images beside the CSV that no row mentions are unlabeled: not used
    yield from samples.values()


def read_reviewed(root: Path) -> Iterator[Sample]:
    """A reviewed batch (``pvwind review import``): ``labels.json`` beside ``images/``, one entry
    per reviewed image with its pixel ``xyxy`` boxes and taxonomy class names as reviewers left
    them; an entry without boxes is a reviewed background image."""
    path = root / "labels.json"
    for n, e in enumerate(json.loads(path.read_text())):
        try:
            sample = Sample(root / e["file"], width=e.get("width"), height=e.get("height"))
        except (KeyError, TypeError):
            continue
        for box, label in zip(e.get("boxes") or [], e.get("labels") or [], strict=False):
            try:
                x1, y1, x2, y2 = (float(v) for v in box)
            except (ValueError, TypeError):
                sample.problems.append(f"{path.name}:{n}: malformed box {box!r}")
                continue
            sample.boxes.append((x1, y1, x2, y2))
            sample.labels.append(str(label))
        if len(e.get("boxes") or []) != len(e.get("labels") or []):
            sample.problems.append(f"{path.name}:{n}: boxes and labels differ in number")
        yield sample


def read_source(root: Path, fmt: str, class_names: list[str], csv_path: str | None = None) -> Iterator[Sample]:
    if fmt == "yolo":
        return read_yolo(root, class_names)
    if fmt == "coco":
        return read_coco(root)
    if fmt == "csv":
        assert csv_path
        return read_pixel_csv(root, csv_path)
    if fmt == "reviewed":
        return read_reviewed(root)
    raise ValueError(f"unknown label format {fmt!r}")
