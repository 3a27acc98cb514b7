"""API response schemas (pydantic), translated from the detector's result types.

The database stores ``ImageResult.to_dict()`` payloads (``serving/db.py``); these
models are what the API promises and what ``/docs`` shows. ``image_entry`` and
``defect_entry`` do the translation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Priority = Literal["P1", "P2", "P3", "P4"]
AssetType = Literal["auto", "pv", "wind"]


class ErrorOut(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. truncated_image")
    status: int = Field(description="the HTTP status this error has on its own")
    message: str


class ErrorResponse(BaseModel):
    detail: str
    code: str


class Box(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class GeoPoint(BaseModel):
    latitude: float
    longitude: float
    quality: Literal["estimate", "coarse"] = Field(
        description="estimate: ray-cast to the ground; coarse: the camera position"
    )


class DefectOut(BaseModel):
    class_id: int
    class_name: str
    asset: str | None
    confidence: float
    box: Box = Field(description="pixels of the upright image")
    area_frac: float = Field(description="box area / image area")
    priority: Priority
    action: str
    time_frame: str
    level: int | None = None
    level_label: str | None = None
    reasons: list[str] = []
    location: GeoPoint | None = Field(None, description="where the defect is on the ground, if known")


class CameraOut(BaseModel):
    """Location metadata read from EXIF GPS / DJI XMP."""

    latitude: float | None = None
    longitude: float | None = None
    gps_altitude: float | None = None
    relative_altitude: float | None = None
    gimbal_yaw: float | None = None
    gimbal_pitch: float | None = None
    make: str | None = None
    model: str | None = None
    taken_at: str | None = None


class GeoInfo(BaseModel):
    quality: str
    note: str
    gsd_m: float | None = Field(None, description="ground sampling distance at the centre, metres per pixel")


class SummaryOut(BaseModel):
    worst: Priority | None = Field(description="most urgent priority found; null without defects")
    counts: dict[str, int]
    by_class: dict[str, int]
    defects: int
    images: int
    images_with_defects: int
    images_failed: int


class ImageOut(BaseModel):
    index: int = Field(description="position in the upload")
    filename: str = Field(description="the client's file name, as text only")
    status: Literal["ok", "error", "pending"]
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    asset: str | None = Field(None, description="asset type: as requested, or inferred from the defects for auto")
    camera: CameraOut | None = None
    geo: GeoInfo | None = None
    priority: Priority | None = Field(None, description="the image's roll-up: its most urgent defect")
    summary: SummaryOut | None = None
    defects: list[DefectOut] = []
    error: ErrorOut | None = None


class ModelRef(BaseModel):
    version: str
    key: str = Field(description="version@sha256-prefix: the identity results are stored under")


class InspectionOut(BaseModel):
    model: ModelRef
    asset_type: AssetType
    site: str | None = None
    flight: str | None = None
    images: list[ImageOut]
    summary: SummaryOut


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "cancelled"]
    asset_type: AssetType
    site: str | None = None
    flight: str | None = None
    total: int
    done: int = Field(description="images scored")
    failed: int = Field(description="images that could not be scored")
    pending: int
    progress: float = Field(description="(done + failed) / total")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]


class JobResultsOut(BaseModel):
    job: JobOut
    complete: bool = Field(description="false while images are still pending")
    images: list[ImageOut]
    summary: SummaryOut


class ClassOut(BaseModel):
    id: int
    name: str
    asset: str | None
    description: str


class ModelOut(BaseModel):
    version: str
    key: str
    sha256: str
    input_size: list[int]
    classes: list[ClassOut]
    metrics: dict[str, Any] | None = Field(None, description="metrics.json of the model folder (null if absent)")
    card: str | None = Field(None, description="MODEL_CARD.md (null if absent)")


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    ready: bool
    model: str | None = None
    detail: str | None = None


# ------------------------------------------------------------------------------ translation
def aware(dt: datetime | None) -> datetime | None:
    """Datetimes in UTC: SQLite hands them back naive (stored in UTC), PostgreSQL in the
    server's time zone."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def defect_entry(d: dict[str, Any]) -> DefectOut:
    x1, y1, x2, y2 = d["xyxy"]
    loc = None
    if (
        d.get("latitude") is not None
        and d.get("longitude") is not None
        and d.get("geo_quality") in ("estimate", "coarse")
    ):
        loc = GeoPoint(latitude=d["latitude"], longitude=d["longitude"], quality=d["geo_quality"])
    return DefectOut(
        class_id=d["class_id"],
        class_name=d["class_name"],
        asset=d.get("asset"),
        confidence=d["confidence"],
        box=Box(x1=x1, y1=y1, x2=x2, y2=y2),
        area_frac=d.get("area_frac", 0.0),
        priority=d["priority"],
        action=d.get("action", ""),
        time_frame=d.get("time_frame", ""),
        level=d.get("level"),
        level_label=d.get("level_label"),
        reasons=list(d.get("reasons") or []),
        location=loc,
    )


def image_entry(
    index: int,
    filename: str,
    *,
    payload: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    size: int | None = None,
    sha256: str | None = None,
    pending: bool = False,
) -> ImageOut:
    """One image of a response: a scored payload (already seen through ``asset_view``), or an error."""
    if payload is None:
        return ImageOut(
            index=index,
            filename=filename,
            status="pending" if pending else "error",
            sha256=sha256,
            bytes=size,
            error=ErrorOut(**error) if error else None,
        )
    cam = payload.get("camera")
    geo = payload.get("geo")
    summary = payload.get("summary")
    return ImageOut(
        index=index,
        filename=filename,
        status="ok",
        sha256=payload.get("sha256") or sha256,
        bytes=size,
        width=payload.get("width"),
        height=payload.get("height"),
        format=(payload.get("image") or {}).get("format"),
        asset=payload.get("asset"),
        camera=CameraOut(**{k: v for k, v in cam.items() if k in CameraOut.model_fields}) if cam else None,
        geo=GeoInfo(**geo) if geo else None,
        priority=(summary or {}).get("worst"),
        summary=SummaryOut(**summary) if summary else None,
        defects=[defect_entry(d) for d in payload.get("defects") or []],
    )
