"""Evaluation of an exported ONNX model through ``detector/`` (the code the service
runs) on a YOLO-format split: mAP50 / mAP50-95 overall, per class and per source."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from detector.detections import Detections
from training.metrics import ImageBoxes, coco_map

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
Predictor = Callable[[Sequence[Path]], list[Detections]]


class EvaluationError(ValueError):
    """The data or model cannot be evaluated (message names the problem)."""


def read_data_yaml(path: Path) -> tuple[Path, dict[int, str], dict]:
    """(dataset root, {id: name}, raw yaml) of an Ultralytics data.yaml."""
    if not path.exists():
        raise EvaluationError(f"{path} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "names" not in data:
        raise EvaluationError(f"{path} is not a YOLO data.yaml (no 'names')")
    names = data["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): v for k, v in names.items()}
    root = Path(data.get("path") or path.parent)
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    return root, names, data


def split_images(root: Path, data: dict, split: str) -> list[Path]:
    rel = data.get(split) or (data.get("val") if split == "valid" else None)
    if rel is None:
        raise EvaluationError(f"data.yaml has no '{split}' split")
    folder = Path(rel) if Path(rel).is_absolute() else root / rel
    if not folder.is_dir():
        raise EvaluationError(f"split folder {folder} does not exist")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def label_path(img: Path) -> Path:
    parts = list(img.parts)
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_ground_truth(img: Path, image_id: int, class_map: dict[int, int]) -> ImageBoxes:
    """YOLO txt labels of ``img`` in pixels, class ids mapped to the model's ids."""
    with Image.open(img) as im:
        w, h = im.size
    boxes, cls = [], []
    lab = label_path(img)
    if lab.exists():
        for line in lab.read_text().splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue
            c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:])
            if c not in class_map:
                continue
            boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
            cls.append(class_map[c])
    return ImageBoxes(image_id, w, h, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(cls, np.int64))


def source_of(img: Path, index: dict[str, str]) -> str:
    """The source dataset of an image: from the build's index.json, else the
    ``<source>__`` file-name prefix, else the split folder's parent."""
    if img.name in index:
        return index[img.name]
    if "__" in img.stem:
        return img.stem.split("__", 1)[0]
    return "all"


def onnx_predictor(
    model: Path,
    conf: float = 0.001,
    iou: float | None = None,
    max_det: int = 300,
    backend: str = "onnxruntime",
    batch: int = 8,
) -> tuple[Predictor, list[str]]:
    """A predictor that runs ``detector``'s engine (whole image, no tiling) with its NMS settings
    (``configs/detector.yaml``'s ``iou`` unless given): the model is measured as it is served."""
    from detector import Detector

    det = Detector(model, backend=backend, conf=conf, iou=iou, max_det=max_det, tiling="off", batch_size=batch)

    def predict(paths: Sequence[Path]) -> list[Detections]:
        # an explicit conf: every class at it (the model's shipped per-class thresholds do not apply)
        return det.predict(list(paths), conf=conf)

    return predict, list(det.info.names)


def evaluate(
    model: Path,
    data_yaml: Path,
    split: str = "test",
    backend: str = "onnxruntime",
    predictor: tuple[Predictor, list[str]] | None = None,
    batch: int = 8,
    progress: bool = False,
    ci_draws: int = 0,
) -> dict:
    """mAP of ``model`` on ``split`` of ``data_yaml``, classes matched by name; with the model's
    shipped per-class thresholds (``thresholds.json`` beside it), also precision and recall at them.
    Each class row counts the distinct source groups (photos with their copies) holding it; with
    ``ci_draws`` > 0, ``ci95`` holds bootstrap intervals drawn by those groups (``metrics.map_ci``)."""
    gts, preds, model_names, groups = collect(model, data_yaml, split, backend, predictor, batch, progress)
    result = coco_map(gts, preds, model_names, groups=groups if len(groups) > 1 else None)
    result["split"] = split
    result["data"] = _shown(Path(data_yaml))
    clusters = image_clusters(Path(data_yaml), split)
    result["groups"] = len(set(clusters))
    for name, row in result["per_class"].items():
        k = model_names.index(name)
        row["groups"] = len({c for g, c in zip(gts, clusters, strict=True) if (g.class_id == k).any()})
    if ci_draws > 0:
        from training.metrics import map_ci

        result["ci95"] = map_ci(gts, preds, model_names, clusters, draws=ci_draws)
    from training.thresholds import load_thresholds, precision_recall

    shipped = load_thresholds(Path(model))
    if shipped:
        result["at_thresholds"] = precision_recall(gts, preds, model_names, shipped)
    return result


def collect(
    model: Path,
    data_yaml: Path,
    split: str = "test",
    backend: str = "onnxruntime",
    predictor: tuple[Predictor, list[str]] | None = None,
    batch: int = 8,
    progress: bool = False,
) -> tuple[list[ImageBoxes], list[ImageBoxes], list[str], dict[str, list[int]]]:
    """Ground truth and predictions (confidence >= 0.001) of ``split``, and the images per source."""
    root, ds_names, data = read_data_yaml(Path(data_yaml))
    predict, model_names = predictor or onnx_predictor(Path(model), backend=backend, batch=batch)
    unknown = [n for n in ds_names.values() if n not in model_names]
    if unknown:
        raise EvaluationError(f"dataset classes {unknown} are not classes of the model ({', '.join(model_names)})")
    class_map = {k: model_names.index(v) for k, v in ds_names.items()}
    images = split_images(root, data, split)
    if not images:
        raise EvaluationError(f"no images in the '{split}' split")
    index = build_index(root, "source")
    keep_ids = np.array(sorted(class_map.values()))
    gts, preds = [], []
    groups: dict[str, list[int]] = defaultdict(list)
    it = range(0, len(images), batch)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"evaluating {split}", unit="batch")
    for start in it:
        chunk = images[start : start + batch]
        dets = predict(chunk)
        for k, (img, d) in enumerate(zip(chunk, dets, strict=True)):
            image_id = start + k + 1
            gt = read_ground_truth(img, image_id, class_map)
            gts.append(gt)
            d = d[np.isin(d.class_id, keep_ids)]
            preds.append(
                ImageBoxes(
                    image_id,
                    gt.width,
                    gt.height,
                    d.xyxy.astype(np.float64),
                    d.class_id,
                    d.confidence.astype(np.float64),
                )
            )
            groups[source_of(img, index)].append(image_id)
    return gts, preds, model_names, groups


def image_clusters(data_yaml: Path, split: str) -> list[str]:
    """The source group of each image of ``split``, in :func:`collect`'s order: the build's
    ``index.json`` group (a photo with its augmented copies, a flight's overlapping frames), else
    the image itself (a dataset without an index has no known copies)."""
    root, _, data = read_data_yaml(Path(data_yaml))
    index = build_index(root, "group")
    return [index.get(img.name) or f"image:{img.name}" for img in split_images(root, data, split)]


def build_index(root: Path, field: str) -> dict[str, str]:
    """{image file name: ``field``} from the build's ``index.json`` in ``root``; {} without one."""
    index_file = root / "index.json"
    if not index_file.exists():
        return {}
    return {Path(r["image"]).name: r.get(field) for r in json.loads(index_file.read_text())}


def ultralytics_val(weights: Path, data_yaml: Path, split: str, imgsz: int) -> dict:
    """Ultralytics' own validator on the PyTorch weights, for the cross-check."""
    from ultralytics import YOLO

    m = YOLO(str(weights)).val(
        data=str(data_yaml),
        split=split,
        imgsz=imgsz,
        batch=8,
        plots=False,
        verbose=False,
        conf=0.001,
        iou=0.7,
        max_det=300,
        rect=False,
    )
    return {"map50": float(m.box.map50), "map50_95": float(m.box.map)}


def format_table(result: dict) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buf = StringIO()
    con = Console(file=buf, width=110, force_terminal=False)
    t = Table(title=f"{result.get('split', '')}: {result['images']} images, {result['instances']} boxes")
    ci = result.get("ci95")
    cols = ["class", "instances", "groups", "mAP50", "mAP50-95"] + ([f"mAP50 {ci['level']:.0%} interval"] if ci else [])
    for col in cols:
        t.add_column(col, justify="left" if col == "class" else "right")

    def span(v: list[float] | None) -> list[str]:
        return [f"{v[0]:.3f} - {v[1]:.3f}" if v else "-"] if ci else []

    t.add_row(
        "all",
        str(result["instances"]),
        str(result.get("groups", "")),
        f"{result['map50']:.3f}",
        f"{result['map50_95']:.3f}",
        *span(ci["map50"] if ci else None),
    )
    for name, r in result["per_class"].items():
        t.add_row(
            name,
            str(r["instances"]),
            str(r.get("groups", "")),
            f"{r['map50']:.3f}",
            f"{r['map50_95']:.3f}",
            *span((ci or {}).get("per_class", {}).get(name, {}).get("map50")),
        )
    con.print(t)
    if ci:
        con.print(
            f"intervals: {ci['draws']} bootstrap draws of the split's {ci['clusters']} source groups "
            "(a photo with its copies is drawn as one)"
        )
    if result.get("per_source"):
        s = Table(title="per source dataset")
        for col in ("source", "images", "mAP50", "mAP50-95"):
            s.add_column(col, justify="left" if col == "source" else "right")
        for name, r in result["per_source"].items():
            s.add_row(name, str(r["images"]), f"{r['map50']:.3f}", f"{r['map50_95']:.3f}")
        con.print(s)
    return buf.getvalue()


def _shown(path: Path) -> str:
    """A data.yaml as recorded in metrics and cards: relative to the checkout when inside it (no
    machine path in a shipped model)."""
    from training.config import REPO

    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name
