"""Per-class confidence thresholds, chosen on the validation split and shipped with the model.

What users see is a threshold, not a curve: for each class the threshold with the best F1 on
validation, except for the classes that are dangerous to miss (``RECALL_FLOOR``): for those the
highest threshold that still finds that share of the validation boxes, as long as precision there
stays above ``MIN_PRECISION``; where no threshold reaches both, the best F2 (recall weighted four
times precision) among those with precision >= ``MIN_PRECISION``: best F1 on a few dozen validation
boxes of a rare class tends to land on a handful of sure boxes (precision 1.0, recall 0.2), the
wrong operating point for a defect that is dangerous to miss. A class with too few validation boxes keeps the
global default. Written to ``models/<version>/thresholds.json``; the detector uses them by default
(``model_thresholds: true`` in configs/detector.yaml; ``class_conf`` entries override one class).
The test split never takes part in the choice; :func:`precision_recall` reports on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from training.metrics import ImageBoxes

FILE = "thresholds.json"
#: classes where a miss costs most (safety, structure): keep at least this recall on validation
RECALL_FLOOR = {
    "blade_damage": 0.5,
    "pv_hotspot": 0.6,
    "pv_electrical_damage": 0.5,
    "pv_physical_damage": 0.5,
    "pv_diode_fault": 0.5,
}
MIN_PRECISION = 0.3
MIN_BOXES = 10  # fewer validation boxes: not enough to choose on
BOUNDS = (0.05, 0.6)  # a shipped threshold stays in this range


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def matches(gts: Sequence[ImageBoxes], preds: Sequence[ImageBoxes], cls: int, iou: float = 0.5) -> tuple:
    """(scores, is_true_positive) of class ``cls``'s predictions over all images, best score
    first (each ground-truth box matched once, greedily by score), and the number of boxes."""
    scores, tps, n_gt = [], [], 0
    for g, p in zip(gts, preds, strict=True):
        gb = g.xyxy[g.class_id == cls]
        keep = p.class_id == cls
        pb, ps = p.xyxy[keep], (p.scores if p.scores is not None else np.ones(len(p.xyxy)))[keep]
        n_gt += len(gb)
        order = np.argsort(-ps)
        used = np.zeros(len(gb), bool)
        ious = _iou(pb[order], gb) if len(gb) and len(pb) else np.zeros((len(pb), 0))
        for k, j in enumerate(order):
            tp = False
            if len(gb):
                cand = np.where(~used & (ious[k] >= iou))[0]
                if len(cand):
                    used[cand[np.argmax(ious[k][cand])]] = True
                    tp = True
            scores.append(float(ps[j]))
            tps.append(tp)
    order = np.argsort(-np.asarray(scores)) if scores else np.array([], int)
    return np.asarray(scores)[order], np.asarray(tps, bool)[order], n_gt


def choose(
    gts: Sequence[ImageBoxes], preds: Sequence[ImageBoxes], names: Sequence[str], default: float = 0.25
) -> dict[str, dict]:
    """Per class: the chosen threshold and how (``best_f1``, ``recall_floor``, ``default``), with
    the validation precision / recall / F1 there."""
    out: dict[str, dict] = {}
    for c, name in enumerate(names):
        scores, tp, n_gt = matches(gts, preds, c)
        if n_gt < MIN_BOXES or not len(scores):
            out[name] = {"threshold": default, "rule": "default", "val_boxes": n_gt}
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
        prec, rec = ctp / np.maximum(ctp + cfp, 1), ctp / n_gt
        f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-9)
        ok = (scores >= BOUNDS[0]) & (scores <= BOUNDS[1])
        if not ok.any():
            out[name] = {"threshold": default, "rule": "default", "val_boxes": n_gt}
            continue
        k, rule = int(np.argmax(np.where(ok, f1, -1))), "best_f1"
        floor = RECALL_FLOOR.get(name)
        if floor is not None and rec[k] < floor:
            precise = ok & (prec >= MIN_PRECISION)
            reach = np.where(precise & (rec >= floor))[0]
            if len(reach):
                k, rule = int(reach[0]), "recall_floor"
            elif precise.any():
                f2 = 5 * prec * rec / np.maximum(4 * prec + rec, 1e-9)
                k2 = int(np.argmax(np.where(precise, f2, -1)))
                if rec[k2] > rec[k]:
                    k, rule = k2, "best_f2"
        out[name] = {
            "threshold": round(float(scores[k]), 4),
            "rule": rule,
            "val_boxes": n_gt,
            "val_precision": round(float(prec[k]), 3),
            "val_recall": round(float(rec[k]), 3),
            "val_f1": round(float(f1[k]), 3),
        }
    return out


def precision_recall(
    gts: Sequence[ImageBoxes], preds: Sequence[ImageBoxes], names: Sequence[str], thresholds: Mapping[str, float]
) -> dict[str, dict]:
    """Precision and recall per class at the given thresholds (IoU 0.5)."""
    out = {}
    for c, name in enumerate(names):
        scores, tp, n_gt = matches(gts, preds, c)
        keep = scores >= thresholds.get(name, 0.25)
        t, f = int(tp[keep].sum()), int((~tp[keep]).sum())
        out[name] = {
            "threshold": thresholds.get(name, 0.25),
            "boxes": n_gt,
            "tp": t,
            "fp": f,
            "precision": round(t / (t + f), 3) if t + f else None,
            "recall": round(t / n_gt, 3) if n_gt else None,
        }
    return out


def write_thresholds(model_dir: Path, chosen: Mapping[str, dict], split: str = "val") -> Path:
    doc = {
        "chosen_on": split,
        "rules": {"recall_floor": RECALL_FLOOR, "min_precision": MIN_PRECISION, "bounds": list(BOUNDS)},
        "classes": dict(chosen),
    }
    path = Path(model_dir) / FILE
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def rechoose(model_dir: Path, data_yaml: Path, ci_draws: int | None = None) -> dict:
    """Choose an existing model folder's thresholds again on the validation split (after a change
    of the rules above) and refresh what depends on them: ``thresholds.json``, and in
    ``metrics.json`` and the card the thresholds and the test split's figures at them (with
    bootstrap intervals of ``ci_draws`` draws; None: ``configs/train.yaml``'s ``ci_draws``)."""
    from training.card import write_card
    from training.evaluate import collect, evaluate

    model_dir = Path(model_dir)
    metrics = model_dir / "metrics.json"
    if not (model_dir / "model.onnx").is_file() or not metrics.is_file():
        raise FileNotFoundError(f"{model_dir}: not a model folder (model.onnx and metrics.json)")
    gts, preds, names, _ = collect(model_dir / "model.onnx", data_yaml, "val")
    chosen = choose(gts, preds, names)
    write_thresholds(model_dir, chosen)
    info = json.loads(metrics.read_text())
    info["thresholds"] = chosen
    if ci_draws is None:
        from training.config import load_train_config

        ci_draws = load_train_config().ci_draws
    info["evaluation"] = evaluate(model_dir / "model.onnx", data_yaml, "test", ci_draws=ci_draws)
    metrics.write_text(json.dumps(info, indent=1))
    write_card(model_dir, info)
    return info


def load_thresholds(model: Path) -> dict[str, float]:
    """{class: threshold} shipped with a model folder (or beside its model.onnx); {} if none."""
    folder = model if model.is_dir() else model.parent
    f = folder / FILE
    if not f.is_file():
        return {}
    return {k: float(v["threshold"]) for k, v in json.loads(f.read_text())["classes"].items()}
