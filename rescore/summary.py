"""The per-site/flight summary and the list of files that could not be scored.

A flight is a folder (its site the folder's first part, :func:`rescore.scan.split_flight`);
each scored result carries its ``site`` and ``flight``, and is added with
:func:`detector.results.add_to`. Written as ``summary.csv`` / ``summary.json`` (images,
unreadable images, images with defects, defects per priority P1-P4 and per class, worst
priority) and ``unreadable.csv`` (source, site, flight, reason, message).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.export import atomic_write
from detector.priority import PRIORITIES, PrioritySummary
from detector.results import ImageResult, add_to

UNREADABLE_COLUMNS = ("source", "site", "flight", "reason", "message")


@dataclass(frozen=True)
class Unreadable:
    source: str
    site: str
    flight: str
    reason: str
    message: str


@dataclass
class FlightSummaries:
    """Summaries per (site, flight) and over everything."""

    flights: dict[tuple[str, str], PrioritySummary] = field(default_factory=dict)
    total: PrioritySummary = field(default_factory=PrioritySummary)
    unreadable: list[Unreadable] = field(default_factory=list)

    def add(self, result: ImageResult) -> None:
        """A result in its context (``site``, ``flight``)."""
        add_to(self.flights.setdefault((result.site or "", result.flight or ""), PrioritySummary()), result)
        add_to(self.total, result)

    def add_unreadable(self, u: Unreadable) -> None:
        self.unreadable.append(u)
        for s in (self.flights.setdefault((u.site, u.flight), PrioritySummary()), self.total):
            s.images += 1
            s.images_failed += 1

    def rows(self) -> list[dict[str, Any]]:
        """One record per flight, sorted by site and flight."""
        return [{"site": site, "flight": flight, **s.to_dict()} for (site, flight), s in sorted(self.flights.items())]


def write_summary_csv(path: Path, summaries: FlightSummaries) -> Path:
    classes = sorted({c for s in summaries.flights.values() for c in s.by_class})
    cols = [
        "site",
        "flight",
        "images",
        "images_failed",
        "images_with_defects",
        "defects",
        "worst",
        *PRIORITIES,
        *classes,
    ]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for (site, flight), s in sorted(summaries.flights.items()):
        w.writerow(
            {
                "site": site,
                "flight": flight,
                "images": s.images,
                "images_failed": s.images_failed,
                "images_with_defects": s.images_with_defects,
                "defects": s.defects,
                "worst": s.worst or "",
                **{p: s.counts.get(p, 0) for p in PRIORITIES},
                **{c: s.by_class.get(c, 0) for c in classes},
            }
        )
    return atomic_write(path, buf.getvalue())


def write_unreadable_csv(path: Path, rows: Sequence[Unreadable]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=UNREADABLE_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({c: getattr(u, c) for c in UNREADABLE_COLUMNS} for u in rows)
    return atomic_write(path, buf.getvalue())


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    return atomic_write(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
