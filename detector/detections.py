"""``Detections``: the one value type every layer passes along.

A dataclass of column arrays (supervision style): ``xyxy`` float32 (N, 4) in
original-image pixels, ``confidence`` float32 (N,), ``class_id`` int64 (N,), and
optional extra columns in ``data`` (each an array of length N). It is validated
on construction, so a malformed result fails where it is made, not three layers
later. Adapters build it with ``from_*`` constructors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Detections:
    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"Detections.xyxy must have shape (N, 4), got {xyxy.shape}")
        n = len(xyxy)
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cls = np.asarray(self.class_id).reshape(-1)
        if cls.size and not np.issubdtype(cls.dtype, np.integer):
            if not np.all(np.equal(np.mod(cls, 1), 0)):
                raise ValueError("Detections.class_id must hold integers")
        cls = cls.astype(np.int64)
        if len(conf) != n or len(cls) != n:
            raise ValueError(
                f"Detections columns differ in length: xyxy {n}, confidence {len(conf)}, class_id {len(cls)}"
            )
        if n and not np.all(np.isfinite(xyxy)):
            raise ValueError("Detections.xyxy holds NaN or infinite values")
        if n and np.any((xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])):
            raise ValueError("Detections.xyxy must satisfy x1 <= x2 and y1 <= y2")
        if n and (np.any(cls < 0)):
            raise ValueError("Detections.class_id must be >= 0")
        data = {}
        for k, v in self.data.items():
            a = np.asarray(v)
            if len(a) != n:
                raise ValueError(f"Detections.data[{k!r}] has length {len(a)}, expected {n}")
            data[k] = a
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)
        object.__setattr__(self, "data", data)

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_yolo_output(
        cls,
        output: np.ndarray,
        conf: float | np.ndarray = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        max_nms: int = 30000,
        end2end: bool = False,
    ) -> Detections:
        """Decode one image's raw YOLO output (in model-input pixels).

        ``output`` is either the Ultralytics detect head ``(4 + nc, anchors)`` (boxes as
        cx, cy, w, h, then per-class scores), or an end-to-end output ``(max_det, 6)``
        (x1, y1, x2, y2, score, class). ``conf`` is one threshold or one per class
        (a detection is kept when its score is strictly above its class's threshold).
        Class-aware NMS follows; see :func:`detector.nms.batched_nms`.
        """
        from detector.nms import batched_nms

        out = np.asarray(output)
        if end2end or (out.ndim == 2 and out.shape[1] == 6 and out.shape[0] != 6):
            if out.ndim != 2 or out.shape[1] < 6:
                raise ValueError(f"end-to-end YOLO output must be (N, 6), got {out.shape}")
            scores, cls_ids = out[:, 4], out[:, 5].astype(np.int64)
            thr = _thresholds(conf, cls_ids)
            keep = scores > thr
            order = np.argsort(-scores[keep], kind="stable")[:max_det]
            boxes = out[keep][order, :4]
            return cls(boxes, scores[keep][order], cls_ids[keep][order])
        if out.ndim != 2 or out.shape[0] < 5:
            raise ValueError(f"YOLO detect output must be (4 + classes, anchors), got {out.shape}")
        scores_all = out[4:]  # (nc, A)
        cls_ids = scores_all.argmax(0)
        scores = np.take_along_axis(scores_all, cls_ids[None], 0)[0]
        min_thr = float(np.min(conf)) if np.ndim(conf) else float(conf)
        cand = np.flatnonzero(scores > min_thr)
        if np.ndim(conf):
            cand = cand[scores[cand] > np.asarray(conf, np.float32)[cls_ids[cand]]]
        if cand.size == 0:
            return cls.empty()
        if cand.size > max_nms:
            cand = cand[np.argsort(-scores[cand], kind="stable")[:max_nms]]
        b = out[:4, cand].T.astype(np.float32)
        xyxy = np.empty_like(b)
        half_w, half_h = b[:, 2] / 2, b[:, 3] / 2
        xyxy[:, 0] = b[:, 0] - half_w
        xyxy[:, 1] = b[:, 1] - half_h
        xyxy[:, 2] = b[:, 0] + half_w
        xyxy[:, 3] = b[:, 1] + half_h
        s, c = scores[cand], cls_ids[cand]
        keep = batched_nms(xyxy, s, c, iou, max_det=max_det)
        return cls(xyxy[keep], s[keep], c[keep])

    @classmethod
    def from_ultralytics(cls, result: Any) -> Detections:
        """From an ``ultralytics.engine.results.Results`` (used by the parity test)."""
        boxes = result.boxes
        return cls(
            boxes.xyxy.cpu().numpy(),
            boxes.conf.cpu().numpy(),
            boxes.cls.cpu().numpy().astype(np.int64),
        )

    @classmethod
    def merge(cls, items: Sequence[Detections]) -> Detections:
        """Concatenate (no suppression); extra columns are kept when every item has them."""
        items = [d for d in items if d is not None]
        if not items:
            return cls.empty()
        keys = set(items[0].data)
        for d in items[1:]:
            keys &= set(d.data)
        return cls(
            np.concatenate([d.xyxy for d in items]),
            np.concatenate([d.confidence for d in items]),
            np.concatenate([d.class_id for d in items]),
            {k: np.concatenate([d.data[k] for d in items]) for k in sorted(keys)},
        )

    # -- access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyxy)

    def __iter__(self) -> Iterator[tuple[np.ndarray, float, int]]:
        for i in range(len(self)):
            yield self.xyxy[i], float(self.confidence[i]), int(self.class_id[i])

    def __getitem__(self, index: int | slice | np.ndarray | list) -> Detections:
        """Select rows by index, slice, integer array or boolean mask (always returns ``Detections``)."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            {k: v[index] for k, v in self.data.items()},
        )

    @property
    def area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    def with_data(self, **columns: np.ndarray) -> Detections:
        return Detections(self.xyxy, self.confidence, self.class_id, {**self.data, **columns})

    def shifted(self, dx: float, dy: float) -> Detections:
        """Translate all boxes (e.g. from tile to image coordinates)."""
        off = np.array([dx, dy, dx, dy], np.float32)
        return Detections(self.xyxy + off, self.confidence, self.class_id, self.data)

    def clipped(self, width: int, height: int) -> Detections:
        xyxy = self.xyxy.copy()
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        return Detections(xyxy, self.confidence, self.class_id, self.data)

    def sorted(self) -> Detections:
        """By descending confidence (stable)."""
        return self[np.argsort(-self.confidence, kind="stable")]

    def to_records(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        out = []
        for i in range(len(self)):
            c = int(self.class_id[i])
            rec: dict[str, Any] = {
                "xyxy": [round(float(v), 2) for v in self.xyxy[i]],
                "confidence": round(float(self.confidence[i]), 4),
                "class_id": c,
            }
            if names is not None:
                rec["class_name"] = names[c] if c < len(names) else str(c)
            out.append(rec)
        return out


def _thresholds(conf: float | np.ndarray, cls_ids: np.ndarray) -> np.ndarray | float:
    if np.ndim(conf) == 0:
        return float(conf)
    table = np.asarray(conf, np.float32)
    return table[np.clip(cls_ids, 0, len(table) - 1)]
