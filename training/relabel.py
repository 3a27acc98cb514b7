"""Label decisions applied while building the training set (see ``configs/taxonomy.yaml``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np

Box = tuple[float, float, float, float]


class _Labelled(Protocol):
    boxes: list[Box]
    classes: list[int]
    width: int
    height: int
    group: str
    misplaced: bool


def merge_adjacent(boxes: Sequence[Box], gap: float) -> list[Box]:
    """Boxes that touch or lie within ``gap`` x the smaller box's shorter side of each other merged
    into their enclosing box (transitively: connected components).

    Used for per-cell diode-fault labels: a bypass-diode fault heats one substring of a module,
    and a thermographer reports the substring, not each of its cells. Merging its cells gives one
    box per fault, the unit the model is asked to find and the priority counts.
    """
    n = len(boxes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sides = [min(x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes]
    order = sorted(range(n), key=lambda i: boxes[i][0])
    for a_pos, i in enumerate(order):
        x1, y1, x2, y2 = boxes[i]
        for j in order[a_pos + 1 :]:
            u1, v1, u2, v2 = boxes[j]
            tol = gap * min(sides[i], sides[j])
            if u1 - x2 > gap * max(sides) + 1e-9:  # sorted by x1: nothing further right can touch
                break
            dx = max(u1 - x2, x1 - u2, 0.0)
            dy = max(v1 - y2, y1 - v2, 0.0)
            if dx <= tol and dy <= tol:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        out.append(
            (
                min(boxes[k][0] for k in members),
                min(boxes[k][1] for k in members),
                max(boxes[k][2] for k in members),
                max(boxes[k][3] for k in members),
            )
        )
    return sorted(out)


def labels_from_copies(
    items: Sequence[_Labelled], hashes: Sequence[np.ndarray], max_distance: int, counts: Counter
) -> list[int]:
    """Give each *misplaced* item the boxes of an in-place copy of the same photo; returns the indices
    of the items to keep (a misplaced item without such a copy is dropped).

    ``pv_isuru_rgb``'s valid/test jsons list files stored in its train folder, and those entries carry
    boxes of other photos: measured on the mirror, 48 of the 67 such entries that have an in-place copy
    (same Roboflow name, same orientation) hold all of the copy's boxes plus 103 foreign ones (bird drops
    on roof tiles, electrical damage on clean panels), while in-place copies agree with each other in
    322 of 326 pairs. ``items`` need ``boxes``, ``classes``, ``width``, ``height``, ``group`` and
    ``misplaced``; ``hashes[i]`` is :func:`training.grouping.dhash_variants` of item i (variant 0: as
    stored), and a copy counts when its stored-orientation hash is within ``max_distance`` bits.
    ``counts`` gets ``misplaced_labels_confirmed``, ``misplaced_labels_from_copy`` and
    ``misplaced_dropped_no_copy`` (per image) and ``misplaced_foreign_boxes_dropped`` (per box).
    """
    from training.grouping import hash_distance

    by_group: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if not it.misplaced:
            by_group.setdefault(it.group, []).append(i)
    keep = []
    for i, it in enumerate(items):
        if not it.misplaced:
            keep.append(i)
            continue
        copy = next(
            (j for j in by_group.get(it.group, []) if hash_distance(hashes[i], hashes[j]) <= max_distance),
            None,
        )
        if copy is None:
            counts["misplaced_dropped_no_copy"] += 1
            continue
        src = items[copy]
        sx, sy = it.width / src.width, it.height / src.height
        boxes = [(x1 * sx, y1 * sy, x2 * sx, y2 * sy) for x1, y1, x2, y2 in src.boxes]
        if sorted(zip(src.classes, np.round(boxes, 0).tolist(), strict=True)) == sorted(
            zip(it.classes, np.round(it.boxes, 0).tolist(), strict=True)
        ):
            counts["misplaced_labels_confirmed"] += 1
        else:
            counts["misplaced_labels_from_copy"] += 1
            counts["misplaced_foreign_boxes_dropped"] += max(0, len(it.boxes) - len(boxes))
        it.boxes, it.classes = boxes, list(src.classes)
        keep.append(i)
    return keep
