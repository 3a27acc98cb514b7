"""Helpers for the detector tests: the model under test and real images.

The model: ``models/current`` (the shipped model) if present, else ``build/devmodel/``:
made once from the newest training checkpoint in ``build/train/`` or, failing that, by
a few epochs of training (needs the training extras; such a model detects little, so the
detection tests are meaningful with a trained model).
Real images come from the read-only dataset mirror (``../shared/datasets``).
"""

from __future__ import annotations

import functools
import os
import random
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "datasets")
SHIPPED = REPO / "models" / "current"
DEVMODEL = REPO / "build" / "devmodel"

XT2_FRAMES = sorted((MIRROR / "pv_zelestra_ir" / "data" / "Test").glob("*.JPG"))


def need_xt2() -> None:
    if not XT2_FRAMES:
        pytest.skip(f"dataset mirror with DJI XT2 frames not found under {MIRROR}")


def real_images(n: int = 8) -> list[Path]:
    """A fixed, varied set of real mirror images: thermal PV, RGB PV, wind blades."""
    picks: list[Path] = []
    for pattern in ("pv_zelestra_ir/data/Train/*.jpg", "pv_isuru_rgb/train/*.jpg", "wind_fans/train/images/*.jpg"):
        files = sorted(MIRROR.glob(pattern))
        picks.extend(files[: max(1, n // 3)])
    return picks[:n] + XT2_FRAMES[: max(0, n - len(picks))]


@functools.lru_cache(maxsize=1)
def model_dir() -> Path:
    """The model folder under test (built on first use when there is no shipped model)."""
    if (SHIPPED / "model.onnx").is_file():
        return SHIPPED
    if (DEVMODEL / "model.onnx").is_file():
        return DEVMODEL
    checkpoints = sorted((REPO / "build" / "train").glob("*/weights/best.pt"), key=lambda p: p.stat().st_mtime)
    if checkpoints:
        return export_checkpoint(checkpoints[-1])
    return build_devmodel()


def export_checkpoint(weights: Path, imgsz: int = 640) -> Path:
    """Export a training checkpoint (e.g. of a run in progress) into build/devmodel/."""
    try:
        from ultralytics import YOLO
    except ImportError:
        pytest.fail("no model: models/current is missing and the training extras are not installed to export one")
    DEVMODEL.mkdir(parents=True, exist_ok=True)
    shutil.copy(weights, DEVMODEL / "weights.pt")
    onnx = YOLO(str(DEVMODEL / "weights.pt")).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True)
    shutil.move(onnx, DEVMODEL / "model.onnx")
    return DEVMODEL


def build_devmodel(epochs: int = 3, imgsz: int = 320, n_images: int = 64) -> Path:
    """Train YOLO11n from its yaml (no download) for a few epochs on a few real images; export ONNX."""
    try:
        from ultralytics import YOLO
    except ImportError:
        pytest.fail("no model: models/current is missing and the training extras are not installed to build one")
    dataset = REPO / "build" / "dataset"
    if not (dataset / "data.yaml").is_file():
        pytest.fail("no model: models/current is missing and build/dataset is not built (pvwind data build)")
    import yaml

    out = DEVMODEL
    sub = out / "subset"
    shutil.rmtree(sub, ignore_errors=True)
    imgs = sorted((dataset / "images" / "train").iterdir())
    random.Random(0).shuffle(imgs)
    for i, p in enumerate(imgs[:n_images]):
        split = "val" if i < 8 else "train"
        (sub / "images" / split).mkdir(parents=True, exist_ok=True)
        (sub / "labels" / split).mkdir(parents=True, exist_ok=True)
        os.symlink(p, sub / "images" / split / p.name)
        lab = dataset / "labels" / "train" / (p.stem + ".txt")
        if lab.exists():
            os.symlink(lab, sub / "labels" / split / lab.name)
    names = yaml.safe_load((dataset / "data.yaml").read_text())["names"]
    (sub / "data.yaml").write_text(
        yaml.safe_dump({"path": str(sub), "train": "images/train", "val": "images/val", "names": names})
    )
    m = YOLO("yolo11n.yaml")
    m.train(
        data=str(sub / "data.yaml"),
        epochs=epochs,
        imgsz=imgsz,
        batch=16,
        workers=0,
        device="cpu",
        pretrained=False,
        amp=False,
        project=str(out / "runs"),
        name="t",
        exist_ok=True,
        plots=False,
        val=False,
        verbose=False,
    )
    shutil.copy(out / "runs" / "t" / "weights" / "last.pt", out / "weights.pt")
    onnx = YOLO(str(out / "weights.pt")).export(format="onnx", imgsz=640, dynamic=True, simplify=True)
    shutil.move(onnx, out / "model.onnx")
    return out


@functools.lru_cache(maxsize=4)
def get_detector(backend: str = "onnxruntime", precision: str = "f32"):
    """One shared Detector per backend (loading sessions is the slow part of these tests)."""
    from detector import Detector

    return Detector(model_dir(), backend=backend, precision=precision, threads=0)
