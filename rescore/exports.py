"""The finding exports of a run, written a chunk of results at a time (an archive of
millions never sits in memory): ``defects.geojson``, ``defects.csv`` and
``defects.parquet``.

The features and rows are the detector's (:func:`detector.export.geojson_features`,
:func:`detector.export.rows`, columns :data:`detector.results.ROW_COLUMNS`); Parquet
holds the same rows, typed from the result model. Each file is written to a temporary
name and moved into place only when complete.
"""

from __future__ import annotations

import json
import os
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from detector.export import csv_writer, geojson_features, rows
from detector.results import ROW_COLUMNS, Box, Finding, ImageResult, Location

FORMATS = ("geojson", "csv", "parquet")
FILES = {"geojson": "defects.geojson", "csv": "defects.csv", "parquet": "defects.parquet"}


class _Partial:
    """A file written under a temporary name in its folder, moved into place by ``close(True)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        self.tmp = Path(tmp)

    def finish(self, ok: bool) -> None:
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class _GeoJSON(_Partial):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.f: IO[str] = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.f.write('{"type": "FeatureCollection", "features": [\n')
        self.first = True

    def add(self, results: Sequence[ImageResult]) -> None:
        for feat in geojson_features(results):
            self.f.write(("" if self.first else ",\n") + json.dumps(feat, ensure_ascii=False))
            self.first = False

    def close(self, ok: bool) -> None:
        self.f.write("\n]}\n")
        self.f.close()
        self.finish(ok)


class _CSV(_Partial):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.f: IO[str] = open(self.tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self.w = csv_writer(self.f)

    def add(self, results: Sequence[ImageResult]) -> None:
        self.w.writerows(rows(results))

    def close(self, ok: bool) -> None:
        self.f.close()
        self.finish(ok)


def column_types() -> dict[str, type]:
    """The Python type (int, float, bool or str) of every :data:`ROW_COLUMNS` column, from the
    result models' annotations: a column is a field of the image or the finding, a field of
    the box or location, or ``<field>_<key>`` of a nested model; anything else is text."""
    fields: dict[str, Any] = {}
    for model in (ImageResult, Finding, Box, Location):
        for name, f in model.model_fields.items():
            fields.setdefault(name, f.annotation)
            nested = _nested_model(f.annotation)
            if nested is not None:
                for k, sub in nested.model_fields.items():
                    fields.setdefault(f"{name}_{k}", sub.annotation)
    return {c: _base_type(fields.get(c)) for c in ROW_COLUMNS}


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for a in (annotation, *typing.get_args(annotation)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _base_type(annotation: Any) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is not typing.Literal and len(args) == 1:
        annotation = args[0]  # X | None
    for t in (bool, int, float):
        if annotation is t:
            return t
    return str


class _Parquet(_Partial):
    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.types = column_types()
        arrow = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
        self.schema = pa.schema([pa.field(c, arrow[t]) for c, t in self.types.items()])
        super().__init__(path)
        self.writer = pq.ParquetWriter(str(self.tmp), self.schema)

    def add(self, results: Sequence[ImageResult]) -> None:
        typed = [{c: self._value(c, row.get(c)) for c in self.types} for row in rows(results)]
        if typed:
            self.writer.write_table(self.pa.Table.from_pylist(typed, schema=self.schema))

    def _value(self, column: str, v: Any) -> Any:
        if v is None or v == "":
            return None
        t = self.types[column]
        return t(v) if t is not str else (v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict) else str(v))

    def close(self, ok: bool) -> None:
        self.writer.close()
        self.finish(ok)


class FindingExports:
    """The chosen exports in ``out_dir``; :meth:`add` a chunk of results at a time, then :meth:`close`."""

    def __init__(self, out_dir: Path, formats: Sequence[str]) -> None:
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown export format(s): {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
        self.notes: list[str] = []
        self.sinks: dict[str, Any] = {}
        makers = {"geojson": _GeoJSON, "csv": _CSV, "parquet": _Parquet}
        for fmt in FORMATS:
            if fmt not in formats:
                continue
            try:
                self.sinks[fmt] = makers[fmt](out_dir / FILES[fmt])
            except ImportError:
                self.notes.append("Parquet export skipped: pyarrow is not installed (pip install pyarrow)")

    def add(self, results: Sequence[ImageResult]) -> None:
        for sink in self.sinks.values():
            sink.add(results)

    def close(self, ok: bool) -> dict[str, Path]:
        """Finish every file (``ok``) or drop them; returns the written files by format."""
        for sink in self.sinks.values():
            sink.close(ok)
        return {fmt: sink.path for fmt, sink in self.sinks.items()} if ok else {}
