"""The ONE adapter between the service and ``detector/``.

Everything the service needs from the detector goes through here: loading the model,
decoding uploaded bytes (the detector's decoder, its typed ``ImageDecodeError`` and its
pixel ceiling), scoring decoded images into per-image results (``ImageResult.to_dict()``
payloads, which is what the database stores), and the GeoJSON/CSV export.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from detector.decode import DecodedImage, ImageDecodeError
from detector.engine import Detector
from detector.export import CSV_COLUMNS, csv_rows, to_geojson
from detector.model import ModelLoadError, resolve_model_path
from detector.priority import PRIORITIES, PrioritySummary, summarize
from detector.results import ImageResult
from detector.taxonomy import load_taxonomy
from serving.errors import Rejection
from serving.store import ScoredResult

log = logging.getLogger("pvwind.engine")

# ImageDecodeError.reason -> (HTTP status, error code)
DECODE_STATUS: dict[str, tuple[int, str]] = {
    "empty": (422, "empty_file"),
    "not_image": (415, "unsupported_type"),
    "truncated": (422, "truncated_image"),
    "corrupt": (422, "corrupt_image"),
    "too_large": (413, "too_many_pixels"),
    "unreadable": (422, "unreadable_image"),
}

ASSET_TYPES = ("auto", "pv", "wind")


class EngineLoadError(RuntimeError):
    """The model cannot be loaded (message names the file and the problem)."""


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    asset: str | None
    description: str


def model_key(version: str, sha256: str, settings: str = "") -> str:
    """The identity results are stored under: model folder name + start of the file hash
    (a model re-exported in place never reuses old results) + the fingerprint of the
    result-changing settings (new thresholds or priority rules re-score, and the change
    report shows what they changed)."""
    return f"{version}@{sha256[:12]}" + (f"+{settings}" if settings else "")


class Engine:
    """A loaded model: one ``Detector`` per inference worker (they are not shared between threads)."""

    def __init__(
        self,
        model: str | Path,
        *,
        workers: int = 1,
        threads: int = 0,
        max_pixels: int | None = None,
        config: str | Path | None = None,
    ) -> None:
        try:
            path = resolve_model_path(model)
            self.detectors = [
                Detector(path, config=config, threads=threads or None, max_pixels=max_pixels)
                for _ in range(max(1, workers))
            ]
        except (ModelLoadError, ValueError, OSError) as e:
            raise EngineLoadError(str(e)) from e
        det = self.detectors[0]
        self.info = det.info
        self.names: tuple[str, ...] = det.names
        self.max_pixels = det.config.max_pixels
        self.model_dir = path.parent if path.name == "model.onnx" else None
        self.version = model_key(self.info.version, self.info.sha256, det.settings_fingerprint())
        self.classes = self._classes()
        self.metrics = self._read_json("metrics.json")
        self.card = self._read_text("MODEL_CARD.md")

    # ---------------------------------------------------------------- model facts
    def _classes(self) -> list[ClassInfo]:
        try:
            tax = {c.name: c for c in load_taxonomy().classes}
        except Exception:  # noqa: BLE001 - the taxonomy only adds descriptions
            tax = {}
        return [
            ClassInfo(i, n, tax[n].asset if n in tax else None, tax[n].description if n in tax else "")
            for i, n in enumerate(self.names)
        ]

    def _read_json(self, name: str) -> dict[str, Any] | None:
        if self.model_dir is None or not (self.model_dir / name).is_file():
            return None
        try:
            return json.loads((self.model_dir / name).read_text())
        except (OSError, ValueError):
            log.warning("cannot read %s", self.model_dir / name)
            return None

    def _read_text(self, name: str) -> str | None:
        if self.model_dir is None or not (self.model_dir / name).is_file():
            return None
        return (self.model_dir / name).read_text(errors="replace")

    @property
    def contexts(self) -> list[Detector]:
        """One per inference worker thread (the queue hands each task its worker's detector)."""
        return self.detectors

    # ---------------------------------------------------------------- decoding
    def decode(self, data: bytes, name: str) -> DecodedImage:
        """Decode uploaded bytes with the detector's decoder; raises Rejection (4xx) on bad input."""
        det = self.detectors[0]
        try:
            return det.decode(data, name=name)
        except ImageDecodeError as e:
            status, code = DECODE_STATUS.get(e.reason, (422, "bad_image"))
            msg = str(e)
            prefix = f"{name}: "
            raise Rejection(status, code, msg[len(prefix) :] if msg.startswith(prefix) else msg) from None

    def probe(self, data: bytes) -> tuple[int, int]:
        """(width, height) from the header only, checked against the pixel ceiling; raises
        Rejection. For job uploads: the full decode happens when the job scores the image."""
        try:
            with PILImage.open(io.BytesIO(data)) as im:
                w, h = im.size
        except PILImage.DecompressionBombError:
            raise Rejection(413, "too_many_pixels", "image dimensions are too large") from None
        except Exception:  # noqa: BLE001 - Pillow raises many types on bad headers
            raise Rejection(422, "corrupt_image", "unreadable image header") from None
        if w * h > self.max_pixels:
            raise Rejection(
                413,
                "too_many_pixels",
                f"image has {w}x{h} = {w * h / 1e6:.0f} MP, above the {self.max_pixels / 1e6:.0f} MP limit",
            )
        return w, h

    # ---------------------------------------------------------------- scoring
    def score(self, ctx: Detector, images: Sequence[DecodedImage]) -> list[dict[str, Any]]:
        """Detect, locate and prioritise: one ``ImageResult.to_dict()`` payload per image."""
        results = ctx.inspect(list(images), prefetch=False)
        out = []
        for r in results:
            d = r.to_dict()
            d.pop("timings_ms", None)
            d["model_version"] = self.version
            out.append(d)
        return out

    @staticmethod
    def stored_result(sha: str, payload: dict[str, Any]) -> ScoredResult:
        summary = payload.get("summary") or {}
        return ScoredResult(
            image_sha256=sha,
            payload=payload,
            n_defects=len(payload.get("defects") or []),
            priority=summary.get("worst"),
        )


# -------------------------------------------------------------------- result views
def asset_view(payload: dict[str, Any], asset_type: str) -> dict[str, Any]:
    """The payload as seen for ``asset_type``: ``pv``/``wind`` keep only that asset's defects
    (a defect's priority depends only on its own class, so filtering afterwards equals
    filtering first) and re-roll the image summary; ``auto`` keeps all. ``asset`` is the
    given type, or for ``auto`` the asset most of the detected confidence points to."""
    defects = payload.get("defects") or []
    if asset_type in ("pv", "wind"):
        defects = [d for d in defects if d.get("asset") in (asset_type, None)]
        asset: str | None = asset_type
    else:
        mass: dict[str, float] = {}
        for d in defects:
            if d.get("asset"):
                mass[d["asset"]] = mass.get(d["asset"], 0.0) + float(d.get("confidence") or 0)
        asset = max(mass, key=mass.__getitem__) if mass else None
    out = dict(payload)
    if len(defects) != len(payload.get("defects") or []):
        s = summarize((d["priority"], d["class_name"]) for d in defects).to_dict()
        out["summary"] = s
    out["defects"] = defects
    out["asset"] = asset
    return out


def rollup(summaries: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Batch roll-up of per-image summaries (``None`` = an image that could not be scored)."""
    total = PrioritySummary()
    for s in summaries:
        if s is None:
            total.images += 1
            total.images_failed += 1
        else:
            total.merge(PrioritySummary(**s))
    return total.to_dict()


# -------------------------------------------------------------------- export
def image_result(payload: dict[str, Any], source: str, group: str | None = None) -> ImageResult:
    """The detector's ``ImageResult`` of a stored ``to_dict()`` payload, for its exporters."""
    return ImageResult.from_dict(payload, source=source, group=group)


def export_geojson(items: Sequence[tuple[str, dict[str, Any]]], group: str | None = None) -> dict[str, Any]:
    """(file name, payload) pairs -> the detector's GeoJSON FeatureCollection (one Point per defect)."""
    return to_geojson([image_result(p, name, group) for name, p in items])


def export_csv(items: Sequence[tuple[str, dict[str, Any]]], group: str | None = None) -> str:
    """(file name, payload) pairs -> the detector's CSV (one row per defect)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(csv_rows([image_result(p, name, group) for name, p in items]))
    return buf.getvalue()


__all__ = [
    "ASSET_TYPES",
    "PRIORITIES",
    "ClassInfo",
    "Engine",
    "EngineLoadError",
    "asset_view",
    "export_csv",
    "export_geojson",
    "model_key",
    "rollup",
]
