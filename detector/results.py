"""``ImageResult``: one image's detections plus everything known about the image.

Built by :meth:`detector.engine.Detector.inspect`; written by :mod:`detector.export`;
drawn by :mod:`detector.annotate`. ``detections`` (column arrays) stays the source of
truth; ``defects`` is the per-defect view with priority and location for people and
JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from detector.decode import DecodedImage
from detector.detections import Detections
from detector.geo import CameraPose
from detector.priority import Assessment, PrioritySummary, priority_rank

SCHEMA_VERSION = 1


@dataclass
class Defect:
    index: int
    class_id: int
    class_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]
    area_frac: float
    assessment: Assessment
    latitude: float | None = None
    longitude: float | None = None
    geo_quality: str = "none"
    asset: str | None = None

    @property
    def priority(self) -> str:
        return self.assessment.priority

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Defect:
        """The inverse of :meth:`to_dict` (for stored results)."""
        a = Assessment(
            priority=d["priority"],
            action=d.get("action", ""),
            time_frame=d.get("time_frame", ""),
            scale=d.get("scale"),
            level=d.get("level"),
            level_label=d.get("level_label"),
            base=d.get("base_level"),
            reasons=tuple(d.get("reasons") or ()),
        )
        return cls(
            index=d["index"],
            class_id=d["class_id"],
            class_name=d["class_name"],
            confidence=d["confidence"],
            xyxy=tuple(d["xyxy"]),  # type: ignore[arg-type]
            area_frac=d.get("area_frac", 0.0),
            assessment=a,
            latitude=d.get("latitude"),
            longitude=d.get("longitude"),
            geo_quality=d.get("geo_quality", "none"),
            asset=d.get("asset"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "class_id": self.class_id,
            "class_name": self.class_name,
            "asset": self.asset,
            "confidence": round(self.confidence, 4),
            "xyxy": [round(v, 1) for v in self.xyxy],
            "area_frac": round(self.area_frac, 6),
            **self.assessment.to_dict(),
            "latitude": _round(self.latitude, 8),
            "longitude": _round(self.longitude, 8),
            "geo_quality": self.geo_quality,
        }


@dataclass
class ImageResult:
    source: str
    image_id: str = ""
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    detections: Detections = field(default_factory=Detections.empty)
    names: tuple[str, ...] = ()
    defects: list[Defect] = field(default_factory=list)
    summary: PrioritySummary = field(default_factory=PrioritySummary)
    camera: CameraPose | None = None
    geo_quality: str = "none"
    geo_note: str = ""
    gsd_m: float | None = None
    image_info: dict[str, Any] = field(default_factory=dict)
    tiles: int = 0
    group: str | None = None
    model_version: str | None = None
    error: str | None = None
    error_reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    image: DecodedImage | None = field(default=None, repr=False)  # kept only when asked (keep_images=True)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def worst_priority(self) -> str | None:
        return self.summary.worst

    @classmethod
    def from_dict(cls, payload: dict[str, Any], source: str | None = None, group: str | None = None) -> ImageResult:
        """Rebuild a result from its :meth:`to_dict` form (a stored result), for the exporters.
        Detections and the camera pose are not restored; ``defects`` and ``summary`` are."""
        geo = payload.get("geo") or {}
        return cls(
            source=source if source is not None else payload.get("source", ""),
            image_id=payload.get("image_id", ""),
            sha256=payload.get("sha256"),
            width=payload.get("width"),
            height=payload.get("height"),
            defects=[Defect.from_dict(d) for d in payload.get("defects") or []],
            summary=PrioritySummary(**payload["summary"]) if payload.get("summary") else PrioritySummary(),
            geo_quality=geo.get("quality", "none"),
            geo_note=geo.get("note", ""),
            gsd_m=geo.get("gsd_m"),
            group=group if group is not None else payload.get("group"),
            model_version=payload.get("model_version"),
            error=payload.get("error"),
            error_reason=payload.get("error_reason"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "image_id": self.image_id,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "group": self.group,
            "ok": self.ok,
            "error": self.error,
            "error_reason": self.error_reason,
            "model_version": self.model_version,
            "image": self.image_info,
            "tiles": self.tiles,
            "camera": self.camera.to_dict() if self.camera else None,
            "geo": {"quality": self.geo_quality, "note": self.geo_note, "gsd_m": _round(self.gsd_m, 5)},
            "summary": self.summary.to_dict(),
            "defects": [d.to_dict() for d in self.defects],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def rollup(
    results: Iterable[ImageResult], key: Callable[[ImageResult], str | None] | None = None
) -> dict[str, PrioritySummary]:
    """Per asset/flight summaries: worst finding and counts per priority and class.

    ``key`` maps a result to its group (default: ``result.group``, else ``"all"``).
    """
    groups: dict[str, PrioritySummary] = {}
    for r in results:
        g = (key(r) if key else r.group) or "all"
        s = groups.setdefault(g, PrioritySummary())
        if r.ok:
            s.merge(r.summary)
        else:
            s.images += 1
            s.images_failed += 1
    return dict(sorted(groups.items(), key=lambda kv: (priority_rank(kv[1].worst), kv[0])))


def _round(v: float | None, nd: int) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(float(v), nd)
