"""Shared fixtures: the read-only dataset mirror and a small copy of it."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "datasets")


def pytest_collection_modifyitems(config, items):
    if not MIRROR.is_dir():
        skip = pytest.mark.skip(reason=f"dataset mirror {MIRROR} not found")
        for item in items:
            if "mirror" in item.fixturenames or "mini_mirror" in item.fixturenames:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def mirror() -> Path:
    return MIRROR


def make_mini_mirror(dest: Path, per_source: int = 40) -> Path:
    """A small, real copy of the mirror: the first ``per_source`` images of every
    source (with all their augmented copies) in the upstream layout."""
    dest.mkdir(parents=True, exist_ok=True)
    # YOLO sources: whole groups of copies, by sorted file name
    for src in ("wind_iliad", "wind_fans"):
        root = MIRROR / src
        for split in sorted(p.name for p in root.iterdir() if (p / "images").is_dir()):
            imgs = sorted((root / split / "images").iterdir())[: per_source // 2]
            (dest / src / split / "images").mkdir(parents=True, exist_ok=True)
            (dest / src / split / "labels").mkdir(parents=True, exist_ok=True)
            for img in imgs:
                shutil.copyfile(img, dest / src / split / "images" / img.name)
                lab = root / split / "labels" / (img.stem + ".txt")
                if lab.exists():
                    shutil.copyfile(lab, dest / src / split / "labels" / lab.name)
    # COCO source: keep the json structure, fewer images
    root = MIRROR / "pv_isuru_rgb"
    for split in ("train", "valid", "test"):
        data = json.loads((root / split / "_annotations.coco.json").read_text())
        keep = data["images"][: per_source // 3]
        ids = {im["id"] for im in keep}
        data["images"] = keep
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
        (dest / "pv_isuru_rgb" / split).mkdir(parents=True, exist_ok=True)
        (dest / "pv_isuru_rgb" / split / "_annotations.coco.json").write_text(json.dumps(data))
        for im in keep:
            for folder in ("train", "valid", "test"):
                f = root / folder / im["file_name"]
                if f.exists():
                    (dest / "pv_isuru_rgb" / folder).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, dest / "pv_isuru_rgb" / folder / f.name)
                    break
    # CSV source
    root = MIRROR / "pv_zelestra_ir"
    with open(root / "data/Train/_annotations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = []
    for r in rows:
        if r["filename"] not in names:
            names.append(r["filename"])
    # the first images, plus a few background (no_defect) ones
    bg = [r["filename"] for r in rows if r["class"] == "no_defect"][:3]
    diode = list(dict.fromkeys(r["filename"] for r in rows if r["class"] == "diode"))[:2]  # per-cell boxes
    chosen = set(names[:per_source]) | set(bg) | set(diode)
    (dest / "pv_zelestra_ir/data/Train").mkdir(parents=True, exist_ok=True)
    with open(dest / "pv_zelestra_ir/data/Train/_annotations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["filename"] in chosen)
    for n in chosen:
        shutil.copyfile(root / "data/Train" / n, dest / "pv_zelestra_ir/data/Train" / n)
    shutil.copyfile(
        root / "DERIVED_near_duplicate_groups.json", dest / "pv_zelestra_ir/DERIVED_near_duplicate_groups.json"
    )
    return dest


@pytest.fixture(scope="session")
def mini_mirror(tmp_path_factory) -> Path:
    if not MIRROR.is_dir():
        pytest.skip("no dataset mirror")
    return make_mini_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="session")
def mini_dataset(mini_mirror, tmp_path_factory) -> Path:
    """A built (unified, split) YOLO dataset from the small mirror copy: its data.yaml."""
    from training.build import build_dataset

    out = tmp_path_factory.mktemp("mini_dataset") / "dataset"
    build_dataset(out, mirror=mini_mirror, cache=out.parent / "cache", log=lambda *_: None)
    return out / "data.yaml"
