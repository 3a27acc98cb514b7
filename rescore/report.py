"""What a run hands over, read back from the store for the scanned items (so a resumed run
reports everything, not only its last part), a chunk of images at a time:

- the finding exports (:mod:`rescore.exports`): ``defects.geojson`` / ``.csv`` / ``.parquet``;
- the per-site/flight summary and the unreadable list (:mod:`rescore.summary`);
- with a previous model's results in the store, the change report (:mod:`rescore.changes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detector.results import ImageResult
from rescore.changes import ChangeReport, ChangeTotals, pick_previous
from rescore.exports import FILES, FORMATS, FindingExports
from rescore.scan import ScanItem, ScanProblem, split_flight
from rescore.summary import FlightSummaries, Unreadable, write_json, write_summary_csv, write_unreadable_csv
from storage.archive import ArchiveIndex
from storage.database import QUERY_CHUNK


@dataclass
class Report:
    out_dir: Path
    model_key: str
    images: int = 0  # scanned items
    with_result: int = 0
    missing: int = 0  # neither a result nor a reason (a run that was stopped)
    summaries: FlightSummaries = field(default_factory=FlightSummaries)
    changes: ChangeTotals | None = None
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def unreadable(self) -> list[Unreadable]:
        return self.summaries.unreadable

    def summary_document(self) -> dict:
        return {
            "model": self.model_key,
            "images": self.images,
            "scored": self.with_result,
            "unreadable": len(self.unreadable),
            "not_scored": self.missing,
            "total": self.summaries.total.to_dict(),
            "flights": self.summaries.rows(),
            "changes": self.changes.to_dict() if self.changes else None,
        }


def _unreadable(source: str, flight: str, reason: str, message: str) -> Unreadable:
    site, flight = split_flight(flight)
    return Unreadable(source, site, flight, reason, message)


def write_report(
    index: ArchiveIndex,
    items: Sequence[ScanItem],
    problems: Sequence[ScanProblem],
    model_key: str,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = FORMATS,
    compare: str | None = "auto",
    min_iou: float = 0.5,
) -> Report:
    """Exports, per-flight summary, unreadable list and change report for the scanned items.

    ``compare``: a model key to diff against, ``"auto"`` (the most recent other key in the
    store with results for these images) or ``None`` (no change report)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = index.store
    rep = Report(out, model_key, images=len(items))
    exports = FindingExports(out, formats)
    rep.notes += exports.notes
    for p in problems:
        rep.summaries.add_unreadable(_unreadable(p.source, p.flight, p.reason, p.message))

    previous: str | None = None
    if compare == "auto":
        first = index.files(it.source for it in items[: QUERY_CHUNK * 4])
        previous = pick_previous(store, model_key, [r.sha256 for r in first.values() if r.sha256])
    elif compare:
        previous = compare
    changes = ChangeReport(out, model_key, previous, min_iou) if previous else None

    ok = False
    try:
        for i in range(0, len(items), QUERY_CHUNK):
            chunk = items[i : i + QUERY_CHUNK]
            rows = index.files(it.source for it in chunk)
            shas = [r.sha256 for r in rows.values() if r.sha256 and not r.error_reason]
            current = store.results_for(shas, model_key)
            before = store.results_for(shas, previous) if previous else {}
            results: list[ImageResult] = []
            for it in chunk:
                r = rows.get(it.source)
                if r is not None and r.error_reason:
                    rep.summaries.add_unreadable(_unreadable(it.source, it.flight, r.error_reason, r.error or ""))
                    continue
                stored = current.get(r.sha256) if r is not None and r.sha256 else None
                if stored is None:
                    rep.missing += 1
                    continue
                site, flight = split_flight(it.flight)
                res = stored.in_context(source=it.source, site=site, flight=flight)
                rep.with_result += 1
                results.append(res)
                rep.summaries.add(res)
                if changes is not None:
                    changes.add(res, before.get(r.sha256))  # type: ignore[union-attr, arg-type]
            exports.add(results)
        ok = True
    finally:
        rep.files.update(exports.close(ok))
        if changes is not None:
            rep.files.update(changes.close(ok))
    # files of an earlier run that this one does not write would be stale
    for fmt in FORMATS:
        if fmt not in rep.files:
            (out / FILES[fmt]).unlink(missing_ok=True)
    if changes is None:
        (out / "changes.csv").unlink(missing_ok=True)
        (out / "changes.json").unlink(missing_ok=True)
    else:
        rep.changes = changes.totals
    rep.files["summary"] = write_summary_csv(out / "summary.csv", rep.summaries)
    rep.files["summary_json"] = write_json(out / "summary.json", rep.summary_document())
    rep.files["unreadable"] = write_unreadable_csv(out / "unreadable.csv", rep.unreadable)
    return rep
