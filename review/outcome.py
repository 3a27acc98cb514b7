"""The model's predictions against the reviewers' corrections.

Every prediction ends in exactly one outcome, every reviewed box that is no prediction is
``added``:

- ``confirmed``: kept, same class, box unchanged (IoU >= :data:`SAME_BOX_IOU`);
- ``moved``: kept, same class, box changed (a true positive when IoU >= 0.5, else a miss);
- ``relabelled``: kept with another class (wrong class: a false positive and a miss);
- ``deleted``: removed (a false positive);
- ``added``: drawn by the reviewer (a miss).

A reviewed box is the same object as a prediction when it carries the prediction's id
(``pv<index>``: Label Studio region id, CVAT ``finding`` attribute); boxes without an id are
matched greedily by IoU >= 0.5 (a reviewer who deleted and redrew a box), class first.

Precision = true positives / predictions, recall = true positives / reviewed boxes, with true
positives = confirmed + moved within IoU 0.5: the model's real precision and recall, at the
thresholds it ran with, on the customer's data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from detector.nms import iou
from detector.results import Finding

SAME_BOX_IOU = 0.95
MATCH_IOU = 0.5
OUTCOMES = ("confirmed", "moved", "relabelled", "deleted", "added")


@dataclass
class CorrectedBox:
    box: tuple[float, float, float, float]  # pixel xyxy
    label: str
    region_id: str = ""  # the tool's id (pv<index> for a kept prediction)


@dataclass
class Corrected:
    """One image as the reviewers left it."""

    name: str
    sha256: str | None = None
    reviewed: bool = True
    width: int | None = None
    height: int | None = None
    boxes: list[CorrectedBox] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tool_id: str = ""


@dataclass
class Change:
    outcome: str
    predicted: str | None  # class
    final: str | None
    iou: float | None = None
    confidence: float | None = None
    priority: str | None = None


def compare(predictions: Sequence[Finding], corrected: Sequence[CorrectedBox]) -> list[Change]:
    """One :class:`Change` per prediction and per added box."""
    from review.items import index_of

    by_index = {f.index: f for f in predictions}
    pairs: dict[int, int] = {}  # prediction index -> corrected position
    for j, c in enumerate(corrected):
        i = index_of(c.region_id)
        if i is not None and i in by_index and i not in pairs:
            pairs[i] = j
    free_c = [j for j in range(len(corrected)) if j not in pairs.values()]
    free_p = [f for f in predictions if f.index not in pairs]
    cands = sorted(
        (
            (c_same, v, f.index, j)
            for f in free_p
            for j in free_c
            if (v := iou(f.box.xyxy, corrected[j].box)) >= MATCH_IOU
            for c_same in [f.class_name != corrected[j].label]
        ),
        key=lambda t: (t[0], -t[1], t[2], t[3]),
    )
    for _, _, i, j in cands:
        if i in pairs or j in pairs.values():
            continue
        pairs[i] = j
    out = []
    for f in predictions:
        base = {"confidence": f.confidence, "priority": f.priority, "predicted": f.class_name}
        if f.index not in pairs:
            out.append(Change("deleted", final=None, **base))
            continue
        c = corrected[pairs[f.index]]
        v = iou(f.box.xyxy, c.box)
        if c.label != f.class_name:
            out.append(Change("relabelled", final=c.label, iou=v, **base))
        elif v >= SAME_BOX_IOU:
            out.append(Change("confirmed", final=c.label, iou=v, **base))
        else:
            out.append(Change("moved", final=c.label, iou=v, **base))
    used = set(pairs.values())
    out += [Change("added", None, c.label) for j, c in enumerate(corrected) if j not in used]
    return out


def tally(changes: Iterable[Change]) -> dict[str, Any]:
    """Outcome counts, overall and per class, with precision and recall."""
    total: Counter[str] = Counter()
    per: dict[str, Counter[str]] = {}
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_final: Counter[str] = Counter()
    for ch in changes:
        total[ch.outcome] += 1
        cls = ch.predicted or ch.final or "?"
        per.setdefault(cls, Counter())[ch.outcome] += 1
        if ch.predicted:
            n_pred[ch.predicted] += 1
        if ch.final:
            n_final[ch.final] += 1
        if ch.outcome == "confirmed" or (ch.outcome == "moved" and (ch.iou or 0) >= MATCH_IOU):
            tp[ch.predicted or ""] += 1

    def pr(t: int, p: int, f: int) -> dict[str, float | None]:
        return {"precision": round(t / p, 4) if p else None, "recall": round(t / f, 4) if f else None}

    classes = sorted(set(per) | set(n_final))
    return {
        **{k: total.get(k, 0) for k in OUTCOMES},
        "predictions": sum(n_pred.values()),
        "reviewed_boxes": sum(n_final.values()),
        "true_positives": sum(tp.values()),
        **pr(sum(tp.values()), sum(n_pred.values()), sum(n_final.values())),
        "per_class": {
            c: {
                **{k: per.get(c, Counter()).get(k, 0) for k in OUTCOMES},
                "predictions": n_pred.get(c, 0),
                "reviewed_boxes": n_final.get(c, 0),
                **pr(tp.get(c, 0), n_pred.get(c, 0), n_final.get(c, 0)),
            }
            for c in classes
        },
    }
