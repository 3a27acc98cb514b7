"""Non-maximum suppression and merging, in numpy.

``batched_nms`` is class-aware greedy NMS with the same semantics as
``torchvision.ops.batched_nms`` (which Ultralytics uses): boxes sorted by
descending score, a box is dropped when its IoU with a kept box of the same class
is above the threshold. ``merge_overlapping`` is the non-maximum *merging* used to
join detections of one object cut by tile borders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.detections import Detections


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes (plain numbers: one pair, no arrays); 0 when they do not overlap."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_ios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the smaller box's area -> (N, M)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_det: int | None = None) -> np.ndarray:
    """Greedy NMS; returns kept indices sorted by descending score.

    Stops once ``max_det`` boxes are kept (the result equals full NMS truncated to
    ``max_det``), which keeps low-threshold evaluation runs fast.
    """
    boxes = np.asarray(boxes, np.float64)
    scores = np.asarray(scores)
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[order].T
    areas = (x2 - x1) * (y2 - y1)
    alive = np.ones(n, bool)
    keep: list[int] = []
    limit = n if max_det is None else max_det
    for i in range(n):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        if rest.size == 0:
            break
        w = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        h = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        alive[rest[iou > iou_threshold]] = False
    return order[np.asarray(keep, np.int64)]


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_det: int | None = None,
    agnostic: bool = False,
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    boxes = np.asarray(boxes, np.float64)
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if not agnostic:
        # shift each class to its own region, far enough apart that no two classes overlap
        span = float(boxes.max() - min(boxes.min(), 0.0)) + 1.0
        boxes = boxes + (np.asarray(class_ids, np.float64) * span)[:, None]
    return nms(boxes, scores, iou_threshold, max_det)


def merge_overlapping(
    dets: Detections,
    threshold: float = 0.5,
    metric: str = "ios",
    class_aware: bool = True,
    mergeable: np.ndarray | None = None,
) -> Detections:
    """Non-maximum merging: join lower-scored boxes into a higher-scored one they overlap.

    For each box in descending score order that is not yet merged, every remaining box
    (of the same class when ``class_aware``) whose overlap with it exceeds ``threshold``
    is merged in: the kept box becomes the union of both and keeps the highest score.
    With ``metric="ios"`` (intersection over the smaller box) a fragment of an object cut
    by a tile border joins the whole object seen in the neighbouring tile. ``mergeable``
    (bool per box) restricts merging to pairs where at least one box is mergeable.
    """
    n = len(dets)
    if n <= 1:
        return dets
    order = np.argsort(-dets.confidence, kind="stable")
    d = dets[order]
    overlap = (box_ios if metric == "ios" else box_iou)(d.xyxy, d.xyxy)
    if class_aware:
        overlap = np.where(d.class_id[:, None] == d.class_id[None, :], overlap, 0.0)
    if mergeable is not None:
        m = np.asarray(mergeable, bool)[order]
        overlap = np.where(m[:, None] | m[None, :], overlap, 0.0)
    used = np.zeros(n, bool)
    keep: list[int] = []
    xyxy = d.xyxy.copy()
    for i in range(n):
        if used[i]:
            continue
        used[i] = True
        keep.append(i)
        group = np.flatnonzero(~used & (overlap[i] > threshold))
        if group.size:
            used[group] = True
            members = np.concatenate([[i], group])
            xyxy[i, :2] = d.xyxy[members, :2].min(0)
            xyxy[i, 2:] = d.xyxy[members, 2:].max(0)
    k = np.asarray(keep, np.int64)
    return Detections(xyxy[k], d.confidence[k], d.class_id[k], {key: v[k] for key, v in d.data.items()})
