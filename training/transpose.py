"""Transpose augmentation: the image and its boxes mirrored about the main diagonal.

Ultralytics flips up-down (``flipud``) and left-right (``fliplr``); together they give four of the
eight symmetries of a square. A transpose with probability 0.5 on top gives all eight (the dihedral
group D4: every 90-degree rotation, mirrored or not). Nadir drone frames of a PV plant and blade
close-ups have no preferred orientation, so a defect seen in one orientation is a valid example in
all eight. Unlike Ultralytics' ``degrees`` (rotation by any angle, which grows every box to the
rotated box's bounds), a transpose keeps every box exact.

:func:`random_transpose` appends :class:`RandomTranspose` to the transforms Ultralytics builds for
the training set while a training runs (the validation set is never augmented). It runs after the
flips, on the finished training image (the mosaic canvas, or the letterboxed image once mosaic is
closed): both are square, so the batch shape does not change.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np


class RandomTranspose:
    """Swap the image's axes (and the boxes' x and y) with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"transpose probability must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if self.p == 0 or random.random() >= self.p:
            return labels
        img = labels["img"]
        labels["img"] = np.ascontiguousarray(img.transpose(1, 0, 2) if img.ndim == 3 else img.T)
        instances = labels["instances"]
        fmt = instances._bboxes.format
        instances.convert_bbox(format="xyxy")
        boxes = instances.bboxes[:, [1, 0, 3, 2]]  # (x1, y1, x2, y2) -> (y1, x1, y2, x2)
        segments = instances.segments[..., ::-1] if len(instances.segments) else None
        keypoints = None
        if instances.keypoints is not None:
            keypoints = instances.keypoints.copy()
            keypoints[..., [0, 1]] = keypoints[..., [1, 0]]
        instances.update(np.ascontiguousarray(boxes), segments=segments, keypoints=keypoints)
        instances.convert_bbox(format=fmt)
        return labels


@contextlib.contextmanager
def random_transpose(p: float) -> Iterator[None]:
    """While the block runs, the training transforms Ultralytics builds end with
    :class:`RandomTranspose` (``p``); validation transforms are left as they are."""
    from ultralytics.data import dataset as ul_dataset

    original = ul_dataset.v8_transforms

    def v8_transforms_with_transpose(*args: Any, **kwargs: Any) -> Any:
        transforms = original(*args, **kwargs)
        transforms.append(RandomTranspose(p))
        return transforms

    ul_dataset.v8_transforms = v8_transforms_with_transpose
    try:
        yield
    finally:
        ul_dataset.v8_transforms = original
