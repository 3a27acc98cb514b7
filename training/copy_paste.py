"""Copy-paste augmentation for box labels, restricted to chosen classes.

Ultralytics' ``CopyPaste`` (Ghiasi et al. 2021, "Simple Copy-Paste") pastes instance *masks*: on a
box-only dataset like ours it does nothing. :class:`BoxCopyPaste` keeps its ``flip`` geometry (each
object is pasted at its horizontally mirrored position, from the mirrored image, when the mirrored box
covers no labelled box by 30 % or more of its own area) but pastes the box's rectangle, and only for
the classes it is given: the small and rare defects (pin holes, bird droppings, electrical damage, ...)
gain instances in new surroundings; a whole-blade ``blade_dirt`` box is never duplicated.

It runs where Ultralytics runs its own, on the mosaic canvas before the random affine, with
probability = the fraction of eligible boxes pasted (the ``copy_paste`` hyper-parameter), and like
it is switched off with mosaic for the last ``close_mosaic`` epochs. :func:`box_copy_paste` makes
Ultralytics build this class instead of its own while a training runs.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from ultralytics.data import augment
from ultralytics.utils.instance import Instances
from ultralytics.utils.metrics import bbox_ioa

MAX_IOA = 0.30  # Ultralytics' own rule: a pasted box may cover a labelled one by less than this


class BoxCopyPaste(augment.CopyPaste):
    """Ultralytics' ``flip`` copy-paste for box labels, for the class ids in ``classes`` (None: all)."""

    def __init__(
        self,
        dataset: Any = None,
        pre_transform: Any = None,
        p: float = 0.5,
        mode: str = "flip",
        classes: Iterable[int] | None = None,
    ) -> None:
        if mode != "flip":
            raise ValueError(f"box copy-paste supports copy_paste_mode 'flip' only, not {mode!r}")
        super().__init__(dataset=dataset, pre_transform=pre_transform, p=p, mode=mode)
        self.classes = None if classes is None else np.asarray(sorted(set(classes)), dtype=np.float32)

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        n = len(labels["cls"])
        if self.p == 0 or n == 0:
            return labels
        img = labels["img"]
        h, w = img.shape[:2]
        instances: Instances = labels["instances"]
        instances.convert_bbox(format="xyxy")
        instances.denormalize(w, h)
        boxes = instances.bboxes
        mirrored = boxes.copy()
        mirrored[:, [0, 2]] = w - boxes[:, [2, 0]]
        ioa = bbox_ioa(mirrored, boxes)  # share of each mirrored box covered by each labelled box
        eligible = (ioa < MAX_IOA).all(1)
        if self.classes is not None:
            eligible &= np.isin(labels["cls"].reshape(-1), self.classes)
        idx = np.nonzero(eligible)[0]
        idx = idx[np.argsort(ioa.max(1)[idx], kind="stable")]
        selected = idx[: round(self.p * len(idx))]
        if not len(selected):
            return labels
        img = img.copy()
        source = img[:, ::-1]
        for x1, y1, x2, y2 in np.round(mirrored[selected]).astype(int):
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            img[y1:y2, x1:x2] = source[y1:y2, x1:x2]
        pasted = Instances(
            mirrored[selected],
            segments=np.zeros((0, *instances.segments.shape[1:]), dtype=np.float32),
            bbox_format="xyxy",
            normalized=False,
        )
        labels["img"] = img
        labels["cls"] = np.concatenate((labels["cls"], labels["cls"][selected]), axis=0)
        labels["instances"] = Instances.concatenate([instances, pasted], axis=0)
        return labels


def class_ids(
    names: Mapping[int, str] | Sequence[str], chosen: Iterable[str] | None
) -> tuple[list[int] | None, list[str]]:
    """The ids of the ``chosen`` class names among the dataset's ``names`` (None: every class), and the
    chosen names the dataset does not have."""
    if chosen is None:
        return None, []
    by_name = {v: k for k, v in (names.items() if isinstance(names, Mapping) else enumerate(names))}
    chosen = list(chosen)
    return [by_name[c] for c in chosen if c in by_name], [c for c in chosen if c not in by_name]


@contextlib.contextmanager
def box_copy_paste(classes: Iterable[int] | None) -> Iterator[None]:
    """While the block runs, Ultralytics' transforms are built with :class:`BoxCopyPaste` for these
    class ids in place of its mask-based ``CopyPaste`` (its ``copy_paste`` hyper-parameter still sets p)."""
    original = augment.CopyPaste
    augment.CopyPaste = functools.partial(BoxCopyPaste, classes=None if classes is None else list(classes))
    try:
        yield
    finally:
        augment.CopyPaste = original
