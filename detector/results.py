"""The one result type: :class:`ImageResult` with its :class:`Finding` list.

Defined once, here, and used as is by every layer: :meth:`detector.Detector.inspect`
builds it, the API returns it (it is the response model), the store keeps its
:meth:`ImageResult.payload`, ``pvwind inspect`` writes it as JSON, and the GeoJSON /
CSV / Parquet exporters and the annotator read it. A field added to a model here
appears in all of them (the flat export columns come from :func:`finding_row`).

``schema_version`` names the shape; :meth:`ImageResult.from_payload` reads stored
payloads of earlier versions.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, computed_field, field_validator

from detector.decode import DecodedImage
from detector.geo import CameraPose
from detector.priority import Assessment, PriorityLevel, PrioritySummary, priority_rank, summarize

SCHEMA_VERSION = 2

Status = Literal["ok", "error", "pending", "cancelled"]
AssetType = Literal["auto", "pv", "wind"]


def _r(v: float | None, nd: int) -> float | None:
    if v is None or not math.isfinite(float(v)):
        return None
    return round(float(v), nd)


class Box(BaseModel):
    """Pixels of the upright image (EXIF orientation applied)."""

    model_config = ConfigDict(frozen=True)

    x1: float
    y1: float
    x2: float
    y2: float

    @field_validator("x1", "y1", "x2", "y2")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(float(v), 1)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @classmethod
    def of(cls, xyxy: Iterable[float]) -> Box:
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        return cls(x1=x1, y1=y1, x2=x2, y2=y2)


class Location(BaseModel):
    """Where a finding is on the ground."""

    model_config = ConfigDict(frozen=True)

    latitude: float
    longitude: float
    quality: Literal["estimate", "coarse"] = Field(
        description="estimate: the box centre ray-cast to the ground; coarse: the camera's own position"
    )

    @field_validator("latitude", "longitude")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(float(v), 8)


class Thermal(BaseModel):
    """Temperatures of a finding on a radiometric frame (°C; ΔT in kelvin against healthy
    module surface around it, see :mod:`detector.thermal`)."""

    model_config = ConfigDict(frozen=True)

    t_max_c: float
    t_mean_c: float
    t_ref_c: float = Field(description="healthy module surface around the finding (never the ground between rows)")
    delta_t_k: float = Field(description="T max - T ref")
    delta_t_norm_k: float | None = Field(None, description="ΔT x 1000 / irradiance, when the irradiance is given")
    reference: str = Field(description="how T ref was taken: module_ring | frame_modules | ring_all")
    pattern: str | None = Field(None, description="cell | cells | substring | module (radiometric findings)")


class Finding(Assessment):
    """One defect: what, where in the image and on the ground, how sure, and how urgent
    (the :class:`detector.priority.Assessment` fields: priority, action, time frame, level,
    reasons)."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="position in the image's list of findings")
    class_id: int
    class_name: str
    asset: Literal["pv", "wind"] | None = Field(None, description="the asset type of the class")
    confidence: float
    box: Box
    area_frac: float = Field(description="box area / image area")
    location: Location | None = Field(None, description="where the finding is on the ground, if known")
    found_by: Literal["model", "radiometric"] = Field(
        "model", description="model: the detector; radiometric: the temperature map alone (detector.thermal)"
    )
    thermal: Thermal | None = Field(None, description="temperatures and ΔT, on radiometric frames")

    @field_validator("confidence")
    @classmethod
    def _conf(cls, v: float) -> float:
        return round(float(v), 4)

    @field_validator("area_frac")
    @classmethod
    def _area(cls, v: float) -> float:
        return round(float(v), 6)


class ImageInfo(BaseModel):
    format: str | None = None
    mode: str | None = None
    bit_depth: int | None = None
    grayscale: bool | None = None
    orientation: int | None = None


class GeoInfo(BaseModel):
    quality: Literal["estimate", "coarse", "none"] = "none"
    note: str = ""
    gsd_m: float | None = Field(None, description="ground sampling distance at the centre, metres per pixel")


class ThermalInfo(BaseModel):
    """The radiometric reading of a frame: format, camera, the parameters used (and where each
    came from: call, camera or config), or why temperatures are not available."""

    format: str | None = None
    camera: str | None = None
    params: dict[str, float] | None = None
    param_sources: dict[str, str] | None = None
    irradiance_w_m2: float | None = None
    note: str | None = Field(None, description="set when the frame has no usable temperatures")


class ImageError(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. truncated_image")
    status: int = Field(description="the HTTP status this error has on its own")
    message: str


#: Fields that describe one request or run, not the image: never stored with a result
#: (one stored result serves every upload of the same bytes), filled in when shown.
CONTEXT_FIELDS = frozenset({"source", "index", "site", "flight", "asset", "annotated"})


class ImageResult(BaseModel):
    """Everything known about one image after inspection."""

    model_config = ConfigDict(validate_assignment=False)

    schema_version: int = SCHEMA_VERSION
    source: str = Field("", description="file name (the client's, as text only) or path")
    index: int | None = Field(None, description="position in the upload or run")
    status: Status = "ok"
    site: str | None = None
    flight: str | None = None
    sha256: str | None = None
    bytes: int | None = Field(None, description="file size")
    width: int | None = None
    height: int | None = None
    image: ImageInfo | None = None
    asset: Literal["pv", "wind"] | None = Field(
        None, description="asset type: as requested, or for auto the one most findings point to"
    )
    model: str | None = Field(None, description="the model key the result was made with (version@hash+settings)")
    camera: CameraPose | None = Field(None, description="location metadata read from EXIF GPS / DJI XMP")
    geo: GeoInfo | None = None
    tiles: int = Field(0, description="tiles the frame was cut into (0: one whole-frame pass)")
    thermal: ThermalInfo | None = Field(None, description="radiometric reading (thermal frames only)")
    summary: PrioritySummary | None = None
    findings: list[Finding] = []
    warnings: list[str] = Field([], description="what to know before trusting the result (e.g. corrupt JPEG data)")
    error: ImageError | None = None
    annotated: str | None = Field(None, description="the annotated copy, relative to the output folder")

    _decoded: DecodedImage | None = PrivateAttr(None)  # kept when asked (keep_images=True), for drawing

    @computed_field(description="the image's roll-up: its most urgent finding")  # type: ignore[prop-decorator]
    @property
    def priority(self) -> PriorityLevel | None:
        return self.summary.worst if self.summary else None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def decoded(self) -> DecodedImage | None:
        return self._decoded

    def keep_decoded(self, image: DecodedImage | None) -> None:
        """Hold (or with None, release) the decoded pixels, e.g. for drawing."""
        self._decoded = image

    # ------------------------------------------------------------------ views
    def for_asset(self, asset_type: str) -> ImageResult:
        """The result as seen for ``asset_type``: ``pv`` / ``wind`` keep only that asset's
        findings (a finding's priority depends only on its own class, so filtering after
        rating equals filtering before) and re-roll the summary; ``auto`` keeps all and names
        the asset most of the detected confidence points to."""
        if not self.ok:
            return self
        findings = self.findings
        if asset_type in ("pv", "wind"):
            findings = [f for f in findings if f.asset in (asset_type, None)]
            asset = asset_type
        else:
            mass: dict[str, float] = {}
            for f in findings:
                if f.asset:
                    mass[f.asset] = mass.get(f.asset, 0.0) + f.confidence
            asset = max(mass, key=mass.__getitem__) if mass else None
        update: dict[str, Any] = {"asset": asset}
        if len(findings) != len(self.findings):
            update["findings"] = findings
            update["summary"] = summarize((f.priority, f.class_name) for f in findings)
        out = self.model_copy(update=update)
        out._decoded = self._decoded
        return out

    def in_context(self, **context: Any) -> ImageResult:
        """This result for one upload or run: ``source``, ``index``, ``site``, ``flight``."""
        bad = set(context) - CONTEXT_FIELDS
        if bad:
            raise ValueError(f"not context fields: {', '.join(sorted(bad))}")
        out = self.model_copy(update=context)
        out._decoded = self._decoded
        return out

    # -------------------------------------------------------------- storage
    def payload(self) -> dict[str, Any]:
        """The stored form: the JSON of everything that belongs to the image and the model,
        without the request context (:data:`CONTEXT_FIELDS`)."""
        return self.model_dump(mode="json", exclude=set(CONTEXT_FIELDS) | {"priority"})

    @classmethod
    def from_payload(cls, payload: dict[str, Any], **context: Any) -> ImageResult:
        """A stored payload (any schema version) in a context (see :meth:`in_context`)."""
        data = upgrade_payload(payload)
        data = {k: v for k, v in data.items() if k not in CONTEXT_FIELDS and k != "priority"}
        return cls.model_validate({**data, **context})

    @classmethod
    def failed(cls, error: ImageError, **context: Any) -> ImageResult:
        return cls(status="error", error=error, **context)


# ---------------------------------------------------------------------- schema versions
def upgrade_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload in the current schema. Version 1 (before the one-result-type
    refactor) had flat ``xyxy`` / ``latitude`` / ``longitude`` / ``geo_quality`` per defect,
    ``defects`` instead of ``findings``, ``ok`` + ``error`` strings and an ``image`` dict."""
    version = int(payload.get("schema_version") or 1)
    if version == SCHEMA_VERSION:
        return payload
    if version != 1:
        raise ValueError(f"stored result has schema version {version}; this release reads 1 and {SCHEMA_VERSION}")
    findings = []
    for d in payload.get("defects") or []:
        loc = None
        if (
            d.get("latitude") is not None
            and d.get("longitude") is not None
            and d.get("geo_quality")
            in (
                "estimate",
                "coarse",
            )
        ):
            loc = {"latitude": d["latitude"], "longitude": d["longitude"], "quality": d["geo_quality"]}
        f = {k: v for k, v in d.items() if k not in ("xyxy", "latitude", "longitude", "geo_quality")}
        f["box"] = dict(zip(("x1", "y1", "x2", "y2"), d["xyxy"], strict=True))
        f["location"] = loc
        findings.append(f)
    err = None
    if payload.get("error"):
        err = {"code": payload.get("error_reason") or "bad_image", "status": 422, "message": payload["error"]}
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "ok" if payload.get("ok", True) and not err else "error",
        "sha256": payload.get("sha256"),
        "width": payload.get("width"),
        "height": payload.get("height"),
        "image": payload.get("image") or None,
        "model": payload.get("model_version"),
        "camera": payload.get("camera"),
        "geo": payload.get("geo"),
        "tiles": payload.get("tiles") or 0,
        "summary": payload.get("summary"),
        "findings": findings,
        "error": err,
    }


# ---------------------------------------------------------------------- flat rows
ROW_CONTEXT = ("source", "site", "flight", "sha256", "model")
_SPREAD = {"box": ("x1", "y1", "x2", "y2"), "location": ("latitude", "longitude", "geo_quality")}


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``Thermal | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in typing.get_args(annotation):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _finding_fields() -> list[str]:
    """The finding's own fields (what and where) first, then its rating."""
    own = [n for n in Finding.model_fields if n not in Assessment.model_fields]
    return own + list(Assessment.model_fields)


def _columns() -> tuple[str, ...]:
    cols = list(ROW_CONTEXT)
    for name in _finding_fields():
        f = Finding.model_fields[name]
        if name in _SPREAD:
            cols += _SPREAD[name]
        elif (m := _nested_model(f.annotation)) is not None:
            cols += [f"{name}_{k}" for k in m.model_fields]
        else:
            cols.append(name)
    return tuple(cols)


def finding_row(result: ImageResult, finding: Finding) -> dict[str, Any]:
    """One finding as a flat record (the CSV / Parquet row and the GeoJSON properties): the
    image's context, then every field of the finding in :data:`ROW_COLUMNS` order, nested
    models spread into ``<field>_<key>`` columns (``box`` into x1..y2, ``location`` into
    latitude, longitude, geo_quality) and lists joined with "; "."""
    row: dict[str, Any] = {k: getattr(result, k) for k in ROW_CONTEXT}
    data = finding.model_dump(mode="json")
    for name in _finding_fields():
        f = Finding.model_fields[name]
        v = data.get(name)
        if name == "box":
            row.update(v)
        elif name == "location":
            v = v or {}
            row.update(latitude=v.get("latitude"), longitude=v.get("longitude"), geo_quality=v.get("quality"))
        elif (m := _nested_model(f.annotation)) is not None:
            v = v or {}
            row.update({f"{name}_{k}": _flat(v.get(k)) for k in m.model_fields})
        else:
            row[name] = _flat(v)
    return row


def _flat(v: Any) -> Any:
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return v


ROW_COLUMNS: tuple[str, ...] = _columns()


# ---------------------------------------------------------------------- roll-ups
def rollup(
    results: Iterable[ImageResult], key: Callable[[ImageResult], str | None] | None = None
) -> dict[str, PrioritySummary]:
    """Summaries per group (default: ``site/flight`` of each result, else ``"all"``), worst first.
    A failed image counts as an image and a failure; a pending one not at all."""
    groups: dict[str, PrioritySummary] = {}
    for r in results:
        if r.status in ("pending", "cancelled"):
            continue
        g = (key(r) if key else "/".join(x for x in (r.site, r.flight) if x)) or "all"
        add_to(groups.setdefault(g, PrioritySummary()), r)
    return dict(sorted(groups.items(), key=lambda kv: (priority_rank(kv[1].worst), kv[0])))


def add_to(total: PrioritySummary, result: ImageResult) -> PrioritySummary:
    """Merge one result's summary into ``total`` (a failure counts as a failed image)."""
    if result.ok and result.summary is not None:
        total.merge(result.summary)
    elif result.status == "error":
        total.images += 1
        total.images_failed += 1
    return total


def total_summary(results: Iterable[ImageResult]) -> PrioritySummary:
    """One summary over all results that are scored or failed."""
    total = PrioritySummary()
    for r in results:
        add_to(total, r)
    return total


__all__ = [
    "CONTEXT_FIELDS",
    "ROW_COLUMNS",
    "SCHEMA_VERSION",
    "Box",
    "Finding",
    "GeoInfo",
    "ImageError",
    "ImageInfo",
    "ImageResult",
    "Location",
    "finding_row",
    "rollup",
    "total_summary",
    "upgrade_payload",
]
