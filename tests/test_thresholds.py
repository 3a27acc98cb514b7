"""Per-class thresholds chosen on validation (training/thresholds.py): the rule each class gets."""

from __future__ import annotations

import numpy as np

from training.metrics import ImageBoxes
from training.thresholds import MIN_BOXES, choose, precision_recall


def _split(cls: int, hits: list[float], misses_scores: list[float], unfound: int) -> tuple[list, list]:
    """One image per ground-truth box of class ``cls``: ``hits`` are scores of predictions on a box,
    ``misses_scores`` of predictions on empty images (false positives), ``unfound`` boxes get none."""
    gts, preds = [], []
    box = np.array([[10, 10, 50, 50]], float)
    empty = np.zeros((0, 4))
    for i, s in enumerate(hits):
        gts.append(ImageBoxes(i, 100, 100, box, np.array([cls])))
        preds.append(ImageBoxes(i, 100, 100, box + 1, np.array([cls]), np.array([s])))
    n = len(hits)
    for j in range(unfound):
        gts.append(ImageBoxes(n + j, 100, 100, box, np.array([cls])))
        preds.append(ImageBoxes(n + j, 100, 100, empty, np.zeros(0, int), np.zeros(0)))
    n += unfound
    for j, s in enumerate(misses_scores):
        gts.append(ImageBoxes(n + j, 100, 100, empty, np.zeros(0, int)))
        preds.append(ImageBoxes(n + j, 100, 100, box, np.array([cls]), np.array([s])))
    return gts, preds


def test_best_f1_for_an_ordinary_class():
    # 20 boxes: 12 found at 0.5-0.6, 4 more at 0.1-0.13 among 12 false positives at 0.1-0.2
    gts, preds = _split(0, [0.5 + 0.01 * i for i in range(12)] + [0.1, 0.11, 0.12, 0.13],
                        [0.1 + 0.01 * i for i in range(12)], unfound=4)  # fmt: skip
    got = choose(gts, preds, ["blade_dirt"])["blade_dirt"]
    assert got["rule"] == "best_f1" and got["threshold"] == 0.5 and got["val_recall"] == 0.6


def test_a_dangerous_class_keeps_its_recall_floor_or_the_best_f2():
    # hotspot (floor 0.6): reachable at precision >= 0.3 by going down to 0.12
    gts, preds = _split(0, [0.5 + 0.01 * i for i in range(10)] + [0.12, 0.13],
                        [0.1 + 0.005 * i for i in range(12)], unfound=8)  # fmt: skip
    got = choose(gts, preds, ["pv_hotspot"])["pv_hotspot"]
    assert got["rule"] == "recall_floor" and got["val_recall"] >= 0.6 and got["val_precision"] >= 0.3
    # electrical damage (floor 0.5), 28 boxes as on our val: 8 sure ones at 0.5+, the rest of what
    # it finds among false positives; 0.5 recall is unreachable at precision 0.3. Best F1 would take
    # the eight sure boxes (precision 1, recall 0.29); best F2 goes down to find more of them
    low = [0.1, 0.13, 0.16, 0.19, 0.22]
    hits = [0.5 + 0.01 * i for i in range(8)] + low
    fps = [s + 0.001 * (j + 1) for s in low for j in range(5)] + [0.09]  # five above each low hit
    gts, preds = _split(0, hits, fps, unfound=15)
    got = choose(gts, preds, ["pv_electrical_damage"])["pv_electrical_damage"]
    assert got["rule"] == "best_f2" and got["threshold"] < 0.5
    assert got["val_recall"] > 8 / 28 and got["val_precision"] >= 0.3
    # the same curve for a class without a floor stays on best F1
    plain = choose(gts, preds, ["pv_soiling"])["pv_soiling"]
    assert plain["rule"] == "best_f1" and plain["threshold"] == 0.5
    # what it gives, counted independently
    pr = precision_recall(gts, preds, ["pv_electrical_damage"], {"pv_electrical_damage": got["threshold"]})
    assert pr["pv_electrical_damage"]["recall"] == got["val_recall"]


def test_too_few_validation_boxes_keep_the_default():
    gts, preds = _split(0, [0.9] * (MIN_BOXES - 1), [], unfound=0)
    assert choose(gts, preds, ["pv_diode_fault"], default=0.25)["pv_diode_fault"] == {
        "threshold": 0.25, "rule": "default", "val_boxes": MIN_BOXES - 1}  # fmt: skip
