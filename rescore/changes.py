"""The change report: per image, the findings of the current model against those of a
previous one (another model key in the same store).

A finding of the new model is the *same finding* as one of the old model when the class
matches and the boxes overlap with IoU >= 0.5 (matched greedily, best overlap first).
``changes.csv`` has one row per change: ``new`` (no old counterpart), ``vanished`` (no new
counterpart) and ``reprioritised`` (matched, priority differs); ``changes.json`` the totals.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from detector.export import atomic_write
from detector.nms import iou
from detector.results import Finding, ImageResult
from storage.database import QUERY_CHUNK
from storage.store import Store

CHANGE_COLUMNS = (
    "source",
    "site",
    "flight",
    "change",
    "class_name",
    "old_priority",
    "new_priority",
    "old_confidence",
    "new_confidence",
    "x1",
    "y1",
    "x2",
    "y2",
)


def diff_findings(
    old: Sequence[Finding], new: Sequence[Finding], min_iou: float = 0.5
) -> tuple[list[Finding], list[Finding], list[tuple[Finding, Finding]]]:
    """(new findings, vanished findings, re-prioritised (old, new) pairs) of one image."""
    pairs = sorted(
        (
            (iou(o.box.xyxy, n.box.xyxy), i, j)
            for i, o in enumerate(old)
            for j, n in enumerate(new)
            if o.class_name == n.class_name
        ),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    used_old: set[int] = set()
    used_new: set[int] = set()
    matched: list[tuple[int, int]] = []
    for v, i, j in pairs:
        if v < min_iou:
            break
        if i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        matched.append((i, j))
    appeared = [n for j, n in enumerate(new) if j not in used_new]
    vanished = [o for i, o in enumerate(old) if i not in used_old]
    changed = [(old[i], new[j]) for i, j in sorted(matched) if old[i].priority != new[j].priority]
    return appeared, vanished, changed


def change_rows(previous: ImageResult, current: ImageResult, min_iou: float = 0.5) -> list[dict[str, Any]]:
    """The ``changes.csv`` rows of one image (``current`` carries the source, site and flight)."""
    appeared, vanished, changed = diff_findings(previous.findings, current.findings, min_iou)

    def row(kind: str, o: Finding | None, n: Finding | None) -> dict[str, Any]:
        f = n or o
        assert f is not None
        x1, y1, x2, y2 = f.box.xyxy
        return {
            "source": current.source,
            "site": current.site,
            "flight": current.flight,
            "change": kind,
            "class_name": f.class_name,
            "old_priority": o.priority if o else "",
            "new_priority": n.priority if n else "",
            "old_confidence": o.confidence if o else "",
            "new_confidence": n.confidence if n else "",
            "x1": x1,
            "y1": y1,
            "x2": x2,
            "y2": y2,
        }

    return (
        [row("new", None, n) for n in appeared]
        + [row("vanished", o, None) for o in vanished]
        + [row("reprioritised", o, n) for o, n in changed]
    )


def pick_previous(store: Store, model_key: str, shas: Sequence[str]) -> str | None:
    """The most recent other model key with results for any of these images."""
    for v in store.other_versions(model_key):
        for i in range(0, len(shas), QUERY_CHUNK):
            if store.scored(shas[i : i + QUERY_CHUNK], v):
                return v
    return None


@dataclass
class ChangeTotals:
    previous: str
    images_compared: int = 0
    images_changed: int = 0
    new: int = 0
    vanished: int = 0
    reprioritised: int = 0
    not_in_previous: int = 0  # images scored now that the previous model never saw

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChangeReport:
    """``changes.csv`` written image by image, with running totals; :meth:`close` writes ``changes.json``."""

    def __init__(self, out_dir: Path, current: str, previous: str, min_iou: float = 0.5) -> None:
        self.out_dir = out_dir
        self.current = current
        self.totals = ChangeTotals(previous)
        self.min_iou = min_iou
        out_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = out_dir / ".changes.csv.partial"
        self._f: IO[str] = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self._w = csv.DictWriter(self._f, fieldnames=CHANGE_COLUMNS, lineterminator="\n")
        self._w.writeheader()

    def add(self, current: ImageResult, previous: ImageResult | None) -> None:
        t = self.totals
        if previous is None:
            t.not_in_previous += 1
            return
        rows = change_rows(previous, current, self.min_iou)
        t.images_compared += 1
        t.images_changed += bool(rows)
        for r in rows:
            setattr(t, r["change"], getattr(t, r["change"]) + 1)
        self._w.writerows(rows)

    def close(self, ok: bool) -> dict[str, Path]:
        self._f.close()
        if not ok:
            self._tmp.unlink(missing_ok=True)
            return {}
        csv_path = self._tmp.replace(self.out_dir / "changes.csv")
        doc = {"current": self.current, **self.totals.to_dict()}
        json_path = atomic_write(self.out_dir / "changes.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return {"changes": csv_path, "changes_json": json_path}
