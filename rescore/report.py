"""What a re-scoring run hands over, read back from the store for the scanned archive.

Into one folder:

- ``defects.geojson`` / ``defects.csv`` / ``defects.parquet``: one feature / row per defect
  (the detector's GeoJSON and CSV writers; Parquet has the same columns, typed);
- ``summary.csv`` / ``summary.json``: per site and flight (a flight is a folder), images,
  unreadable images, defects per priority and per class;
- ``unreadable.csv``: every file that could not be scored, with the reason;
- ``changes.csv`` / ``changes.json``: with a previous model's results in the store, per
  image the defects that are new, vanished or re-prioritised (a defect is the same one
  when class matches and boxes overlap, IoU >= 0.5).

Everything is streamed in chunks of images, so an archive of millions fits in memory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from detector.export import CSV_COLUMNS, csv_rows, to_geojson
from detector.priority import PRIORITIES, PrioritySummary
from serving.rescore.scan import ScanItem, ScanProblem
from serving.rescore.store import QUERY_CHUNK, RescoreStore

FORMATS = ("geojson", "csv", "parquet")
UNREADABLE_COLUMNS = ("source", "group", "reason", "message")
CHANGE_COLUMNS = (
    "source",
    "group",
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
_FLOAT_COLUMNS = ("confidence", "x1", "y1", "x2", "y2", "area_frac", "latitude", "longitude")
_INT_COLUMNS = ("defect", "level")


@dataclass
class Unreadable:
    source: str
    group: str
    reason: str
    message: str


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
        return dict(self.__dict__)


@dataclass
class Report:
    out_dir: Path
    model_version: str
    images: int = 0  # scanned items
    with_result: int = 0
    missing: int = 0  # neither a result nor a reason (a run that was stopped)
    unreadable: list[Unreadable] = field(default_factory=list)
    groups: dict[str, PrioritySummary] = field(default_factory=dict)
    total: PrioritySummary = field(default_factory=PrioritySummary)
    changes: ChangeTotals | None = None
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- change report --------------------------------------------------------------------------------
def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def diff_defects(
    old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], iou: float = 0.5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """(new defects, vanished defects, re-prioritised (old, new) pairs) of one image.

    Defects of two models are the same finding when the class matches and the boxes overlap
    by ``iou`` or more; pairs are matched greedily, best overlap first."""
    pairs = sorted(
        (
            (_iou(o["xyxy"], n["xyxy"]), i, j)
            for i, o in enumerate(old)
            for j, n in enumerate(new)
            if o["class_name"] == n["class_name"]
        ),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    used_old: set[int] = set()
    used_new: set[int] = set()
    matched: list[tuple[int, int]] = []
    for v, i, j in pairs:
        if v < iou:
            break
        if i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        matched.append((i, j))
    appeared = [n for j, n in enumerate(new) if j not in used_new]
    vanished = [o for i, o in enumerate(old) if i not in used_old]
    changed = [(old[i], new[j]) for i, j in sorted(matched) if old[i].get("priority") != new[j].get("priority")]
    return appeared, vanished, changed


def _change_rows(source: str, group: str, old: list[dict], new: list[dict], iou: float) -> list[dict[str, Any]]:
    appeared, vanished, changed = diff_defects(old, new, iou)
    rows = []

    def row(kind: str, o: dict | None, n: dict | None) -> dict[str, Any]:
        box = (n or o)["xyxy"]  # type: ignore[index]
        return {
            "source": source,
            "group": group,
            "change": kind,
            "class_name": (n or o)["class_name"],  # type: ignore[index]
            "old_priority": o["priority"] if o else "",
            "new_priority": n["priority"] if n else "",
            "old_confidence": o["confidence"] if o else "",
            "new_confidence": n["confidence"] if n else "",
            "x1": box[0],
            "y1": box[1],
            "x2": box[2],
            "y2": box[3],
        }

    rows += [row("new", None, n) for n in appeared]
    rows += [row("vanished", o, None) for o in vanished]
    rows += [row("reprioritised", o, n) for o, n in changed]
    return rows


def pick_previous(store: RescoreStore, model_version: str, shas: Sequence[str]) -> str | None:
    """The most recent other model version with results for any of these images."""
    for v in store.other_versions(model_version):
        for i in range(0, len(shas), QUERY_CHUNK):
            if store.scored(shas[i : i + QUERY_CHUNK], v):
                return v
    return None


# -- writers ---------------------------------------------------------------------------------------
@contextmanager
def _atomic(path: Path) -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _typed(row: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in _FLOAT_COLUMNS:
            out[k] = float(v) if v not in ("", None) else None
        elif k in _INT_COLUMNS:
            out[k] = int(v) if v not in ("", None) else None
        else:
            out[k] = v
    out.update(extra)
    return out


class _ParquetSink:
    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.pq = pa, pq
        fields = []
        for c in (*CSV_COLUMNS, "sha256", "model_version"):
            t = pa.float64() if c in _FLOAT_COLUMNS else pa.int64() if c in _INT_COLUMNS else pa.string()
            fields.append(pa.field(c, t))
        self.schema = pa.schema(fields)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer = pq.ParquetWriter(str(self.tmp), self.schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.writer.write_table(self.pa.Table.from_pylist(rows, schema=self.schema))

    def close(self, ok: bool) -> None:
        self.writer.close()
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_report(
    store: RescoreStore,
    items: Sequence[ScanItem],
    problems: Sequence[ScanProblem],
    model_version: str,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = FORMATS,
    compare: str | None = "auto",
    iou: float = 0.5,
) -> Report:
    """Exports, per-flight summary, unreadable list and change report for the scanned items.

    ``compare``: a model version to diff against, ``"auto"`` (the most recent other version
    in the store with results for these images) or ``None`` (no change report)."""
    from serving.engine import image_result

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(out, model_version, images=len(items))
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s): {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    sink: _ParquetSink | None = None
    if "parquet" in formats:
        try:
            sink = _ParquetSink(out / "defects.parquet")
        except ImportError:
            rep.notes.append("Parquet export skipped: pyarrow is not installed (pip install pyarrow)")

    for p in problems:
        rep.unreadable.append(Unreadable(p.source, p.group, p.reason, p.message))
        _fail(rep, p.group)

    previous: str | None = None
    if compare == "auto":
        rows0 = store.file_rows(it.source for it in items[: QUERY_CHUNK * 4])
        previous = pick_previous(store, model_version, [r.sha256 for r in rows0.values() if r.sha256])
    elif compare:
        previous = compare
    if previous:
        rep.changes = ChangeTotals(previous)

    ok = False
    with (
        _atomic(out / "defects.geojson") as gj,
        _atomic(out / "defects.csv") as cf,
        _atomic(out / "changes.csv") as chf,
    ):
        gj.write('{"type": "FeatureCollection", "features": [\n')
        first_feature = True
        cw = csv.DictWriter(cf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        cw.writeheader()
        chw = csv.DictWriter(chf, fieldnames=CHANGE_COLUMNS, lineterminator="\n")
        chw.writeheader()
        try:
            for i in range(0, len(items), QUERY_CHUNK):
                chunk = items[i : i + QUERY_CHUNK]
                rows = store.file_rows(it.source for it in chunk)
                shas = [r.sha256 for r in rows.values() if r.sha256 and not r.error_reason]
                cur = store.payloads(shas, model_version)
                prev = store.payloads(shas, previous) if previous else {}
                results = []
                for it in chunk:
                    r = rows.get(it.source)
                    if r is not None and r.error_reason:
                        rep.unreadable.append(Unreadable(it.source, it.group, r.error_reason, r.error or ""))
                        _fail(rep, it.group)
                        continue
                    payload = cur.get(r.sha256) if r is not None and r.sha256 else None
                    if payload is None:
                        rep.missing += 1
                        continue
                    rep.with_result += 1
                    res = image_result(payload, it.source, it.group)
                    results.append((res, r.sha256))  # type: ignore[union-attr]
                    rep.groups.setdefault(it.group, PrioritySummary()).merge(res.summary)
                    rep.total.merge(res.summary)
                    if rep.changes is not None:
                        old = prev.get(r.sha256)  # type: ignore[union-attr, arg-type]
                        if old is None:
                            rep.changes.not_in_previous += 1
                            continue
                        crow = _change_rows(
                            it.source, it.group, old.get("defects") or [], payload.get("defects") or [], iou
                        )
                        rep.changes.images_compared += 1
                        rep.changes.images_changed += bool(crow)
                        for c in crow:
                            setattr(rep.changes, c["change"], getattr(rep.changes, c["change"]) + 1)
                        chw.writerows(crow)
                images = [res for res, _ in results]
                if "geojson" in formats:
                    for feat in to_geojson(images)["features"]:
                        gj.write(("" if first_feature else ",\n") + json.dumps(feat, ensure_ascii=False))
                        first_feature = False
                crows = csv_rows(images)
                if "csv" in formats:
                    cw.writerows(crows)
                if sink is not None:
                    shas_by_source = {res.source: sha for res, sha in results}
                    sink.write(
                        [
                            _typed(row, {"sha256": shas_by_source[row["source"]], "model_version": model_version})
                            for row in crows
                        ]
                    )
            gj.write("\n]}\n")
            ok = True
        finally:
            if sink is not None:
                sink.close(ok)
    for fmt, name in (("geojson", "defects.geojson"), ("csv", "defects.csv")):
        if fmt in formats:
            rep.files[fmt] = out / name
        else:
            (out / name).unlink(missing_ok=True)
    if sink is not None:
        rep.files["parquet"] = out / "defects.parquet"
    if rep.changes is None:
        (out / "changes.csv").unlink(missing_ok=True)
        (out / "changes.json").unlink(missing_ok=True)
    else:
        rep.files["changes"] = out / "changes.csv"
        rep.files["changes_json"] = _write_json(
            out / "changes.json", {"current": model_version, **rep.changes.to_dict()}
        )
    rep.files["summary"] = _write_summary_csv(out / "summary.csv", rep)
    rep.files["summary_json"] = _write_json(out / "summary.json", summary_document(rep))
    rep.files["unreadable"] = _write_unreadable(out / "unreadable.csv", rep.unreadable)
    return rep


def _fail(rep: Report, group: str) -> None:
    for s in (rep.groups.setdefault(group, PrioritySummary()), rep.total):
        s.images += 1
        s.images_failed += 1


def split_group(group: str) -> tuple[str, str]:
    """``site/flight/...`` -> (site, the whole folder path as the flight)."""
    return group.split("/", 1)[0], group


def summary_document(rep: Report) -> dict[str, Any]:
    return {
        "model_version": rep.model_version,
        "images": rep.images,
        "scored": rep.with_result,
        "unreadable": len(rep.unreadable),
        "not_scored": rep.missing,
        "total": rep.total.to_dict(),
        "flights": [{"site": split_group(g)[0], "flight": g, **s.to_dict()} for g, s in sorted(rep.groups.items())],
        "changes": rep.changes.to_dict() if rep.changes else None,
    }


def _write_summary_csv(path: Path, rep: Report) -> Path:
    classes = sorted({c for s in rep.groups.values() for c in s.by_class})
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
    for g, s in sorted(rep.groups.items()):
        site, flight = split_group(g)
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
    with _atomic(path) as f:
        f.write(buf.getvalue())
    return path


def _write_unreadable(path: Path, rows: Sequence[Unreadable]) -> Path:
    with _atomic(path) as f:
        w = csv.DictWriter(f, fieldnames=UNREADABLE_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows({"source": u.source, "group": u.group, "reason": u.reason, "message": u.message} for u in rows)
    return path


def _write_json(path: Path, doc: dict[str, Any]) -> Path:
    with _atomic(path) as f:
        f.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return path
