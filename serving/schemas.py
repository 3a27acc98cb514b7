"""API schemas around the domain model. Each image of a response IS a
:class:`detector.results.ImageResult` (the same JSON as ``pvwind inspect``, the store and
the exports); these models only add the envelope: the model in service, the job, the
batch summary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from detector.priority import PrioritySummary
from detector.results import AssetType, ImageResult


class ErrorResponse(BaseModel):
    detail: str
    code: str


class ModelRef(BaseModel):
    version: str = Field(description="the model folder's name")
    key: str = Field(description="version@sha256-prefix+settings: the identity results are stored under")


class InspectionOut(BaseModel):
    model: ModelRef
    asset_type: AssetType
    site: str | None = None
    flight: str | None = None
    images: list[ImageResult]
    summary: PrioritySummary


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
    images: list[ImageResult]
    summary: PrioritySummary


class ClassOut(BaseModel):
    id: int
    name: str
    asset: str | None
    description: str


class ModelOut(BaseModel):
    version: str
    key: str
    backend: str = Field(description="the inference runtime in use (onnxruntime, openvino)")
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


def aware(dt: datetime | None) -> datetime | None:
    """Datetimes in UTC: SQLite hands them back naive (stored in UTC), PostgreSQL in the
    server's time zone."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
