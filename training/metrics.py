"""COCO-style mAP of detections against YOLO-format ground truth, computed with
faster-coco-eval (overall, per class, per source dataset)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: training (sampling) runs on machines without it
    from faster_coco_eval import COCO


@dataclass
class ImageBoxes:
    """Boxes of one image in pixel xyxy; ``scores`` is None for ground truth."""

    image_id: int
    width: int
    height: int
    xyxy: np.ndarray
    class_id: np.ndarray
    scores: np.ndarray | None = None


def _coco_gt(gt: Sequence[ImageBoxes], names: Sequence[str]) -> COCO:
    images, anns = [], []
    for g in gt:
        images.append({"id": g.image_id, "width": g.width, "height": g.height, "file_name": str(g.image_id)})
        for (x1, y1, x2, y2), c in zip(g.xyxy.tolist(), g.class_id.tolist(), strict=True):
            w, h = x2 - x1, y2 - y1
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": g.image_id,
                    "category_id": int(c),
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    from faster_coco_eval import COCO

    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": n} for i, n in enumerate(names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _dets(pred: Sequence[ImageBoxes]) -> list[dict]:
    out = []
    for p in pred:
        assert p.scores is not None
        for (x1, y1, x2, y2), c, s in zip(p.xyxy.tolist(), p.class_id.tolist(), p.scores.tolist(), strict=True):
            out.append(
                {"image_id": p.image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
            )
    return out


def _ap_table(precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP50 and AP50-95 from COCOeval's precision array [T, R, K, A, M]
    (area 'all', the largest maxDets); NaN where a class has no ground truth."""
    p = precision[:, :, :, 0, -1]  # T, R, K
    valid = p > -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # classes without ground truth: NaN
        per_t = np.nanmean(np.where(valid, p, np.nan), axis=1)  # T, K
        return per_t[0], np.nanmean(per_t, axis=0)


def coco_map(
    gt: Sequence[ImageBoxes],
    pred: Sequence[ImageBoxes],
    names: Sequence[str],
    groups: Mapping[str, Sequence[int]] | None = None,
    max_dets: int = 300,
) -> dict:
    """mAP50 and mAP50-95 overall and per class; with ``groups`` (name -> image ids,
    e.g. per source dataset) also per group. Classes without ground truth in the
    evaluated images are left out of the means, as COCO and Ultralytics do."""
    from faster_coco_eval import COCOeval_faster

    coco_gt = _coco_gt(gt, names)
    dets = _dets(pred)

    def run(img_ids: Sequence[int] | None) -> dict:
        if not dets:
            return {"map50": 0.0, "map50_95": 0.0, "per_class": {}}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(dets)
            ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
            ev.params.maxDets = [1, 10, max_dets]
            if img_ids is not None:
                ev.params.imgIds = list(img_ids)
            ev.evaluate()
            ev.accumulate()
        ap50, ap = _ap_table(np.asarray(ev.eval["precision"]))
        per_class = {
            names[k]: {"map50": float(ap50[k]), "map50_95": float(ap[k])}
            for k in range(len(names))
            if not np.isnan(ap50[k])
        }
        return {
            "map50": float(np.mean([v["map50"] for v in per_class.values()])) if per_class else 0.0,
            "map50_95": float(np.mean([v["map50_95"] for v in per_class.values()])) if per_class else 0.0,
            "per_class": per_class,
        }

    result = run(None)
    result["images"] = len(gt)
    result["instances"] = int(sum(len(g.class_id) for g in gt))
    counts = np.bincount(
        np.concatenate([g.class_id for g in gt] + [np.zeros(0, int)]).astype(int), minlength=len(names)
    )
    for name, row in result["per_class"].items():
        row["instances"] = int(counts[names.index(name)])
    if groups:
        result["per_source"] = {}
        for gname, ids in groups.items():
            r = run(ids)
            result["per_source"][gname] = {"map50": r["map50"], "map50_95": r["map50_95"], "images": len(ids)}
    return result


def redraw(boxes: Sequence[ImageBoxes], idx: Sequence[int]) -> list[ImageBoxes]:
    """The images at ``idx``, renumbered 1..n (an image drawn twice counts twice)."""
    from dataclasses import replace

    return [replace(boxes[i], image_id=k + 1) for k, i in enumerate(idx)]


def draw_clusters(clusters: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """One bootstrap draw of image indices by cluster: as many clusters as there are, drawn with
    replacement, each bringing all its images. A cluster is a source group (a photo with its
    augmented copies, a flight's overlapping frames): its images are not independent samples, so a
    draw of single images would understate the spread."""
    members: dict[str, list[int]] = {}
    for i, c in enumerate(clusters):
        members.setdefault(c, []).append(i)
    keys = list(members)
    picked = rng.integers(0, len(keys), len(keys))
    return np.fromiter((i for k in picked for i in members[keys[k]]), dtype=np.int64)


def map_ci(
    gt: Sequence[ImageBoxes],
    pred: Sequence[ImageBoxes],
    names: Sequence[str],
    clusters: Sequence[str],
    draws: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Bootstrap interval (percentile, by cluster, see :func:`draw_clusters`) of mAP50, mAP50-95 and
    each class's AP50. A class missing from a draw's ground truth has no AP in that draw; its interval
    comes from the draws that hold it."""
    if len(clusters) != len(gt):
        raise ValueError(f"{len(clusters)} cluster ids for {len(gt)} images")
    if draws < 1 or not gt:
        raise ValueError(f"an interval needs at least one draw and one image (draws {draws}, images {len(gt)})")
    rng = np.random.default_rng(seed)
    overall: dict[str, list[float]] = {"map50": [], "map50_95": []}
    per_class: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(draws):
        idx = draw_clusters(clusters, rng)
        r = coco_map(redraw(gt, idx), redraw(pred, idx), names)
        for k in overall:
            overall[k].append(r[k])
        for n, row in r["per_class"].items():
            per_class[n].append(row["map50"])
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def interval(v: list[float]) -> list[float]:
        return [float(np.percentile(v, lo)), float(np.percentile(v, hi))]

    return {
        "level": level,
        "draws": draws,
        "clusters": len(set(clusters)),
        "seed": seed,
        **{k: interval(v) for k, v in overall.items()},
        "per_class": {n: {"map50": interval(v)} for n, v in per_class.items() if v},
    }


def paired_bootstrap(
    gts: list[ImageBoxes],
    pred_a: list[ImageBoxes],
    pred_b: list[ImageBoxes],
    names: list[str],
    n: int,
    seed: int,
    clusters: list[str] | None = None,
) -> dict:
    """B - A over ``n`` paired draws of ``clusters`` (one id per image; None: every image its own)."""
    clusters = clusters if clusters is not None else [str(i) for i in range(len(gts))]
    rng = np.random.default_rng(seed)
    keys = ("map50", "map50_95")
    full_a, full_b = coco_map(gts, pred_a, names), coco_map(gts, pred_b, names)
    deltas = {k: [] for k in keys}
    for _ in range(n):
        idx = draw_clusters(clusters, rng)
        g = redraw(gts, idx)
        ra, rb = coco_map(g, redraw(pred_a, idx), names), coco_map(g, redraw(pred_b, idx), names)
        for k in keys:
            deltas[k].append(rb[k] - ra[k])
    out = {"images": len(gts), "groups": len(set(clusters)), "draws": n, "seed": seed}
    for k in keys:
        d = np.asarray(deltas[k])
        out[k] = {
            "a": full_a[k],
            "b": full_b[k],
            "delta": full_b[k] - full_a[k],
            "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
            "share_b_ahead": float(np.mean(d > 0)),
        }
    return out
