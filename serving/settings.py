"""All settings of the inspection service, in one place.

Every field can be set by an environment variable ``PVWIND_<NAME>`` (e.g.
``PVWIND_MAX_FILE_BYTES=10000000``) or in a ``.env`` file in the working directory;
``pvwind serve`` options override both. The defaults are the documented ones
(``docs/serving.md`` lists them; ``tests/test_serving_units.py`` keeps the two in step).
"""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024

#: Content types the service accepts, detected from the bytes (never from the file name).
KNOWN_TYPES = ("image/jpeg", "image/png", "image/tiff", "image/webp", "image/bmp")


class Settings(BaseSettings):
    """Settings of ``pvwind serve``; environment prefix ``PVWIND_``."""

    model_config = SettingsConfigDict(env_prefix="PVWIND_", env_file=".env", extra="ignore", frozen=True)

    # --- where things are
    model: Path = Field(
        Path("models/current"),
        description="Model directory (model.onnx, metrics.json, MODEL_CARD.md) or an .onnx file.",
    )
    detector_config: Path | None = Field(
        None, description="Detector settings YAML (thresholds, tiling, batch size); default configs/detector.yaml."
    )
    database_url: str = Field(
        "sqlite:///var/pvwind.db",
        description="SQLAlchemy URL for jobs, images and results; postgresql+psycopg://... for several instances.",
    )
    host: str = Field("127.0.0.1", description="Address to bind. Without API keys only a loopback address is allowed.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 = any free port).")

    # --- authentication
    api_keys: str = Field(
        "",
        description="Comma-separated API keys, each either a plain key or its hash 'sha256:<hex>'. Empty = no keys.",
    )
    api_keys_file: Path | None = Field(
        None, description="File with one API key or 'sha256:<hex>' hash per line (# comments)."
    )

    # --- upload limits (4xx when exceeded)
    max_file_bytes: int = Field(40 * MiB, gt=0, description="Bytes per uploaded image (413).")
    max_request_bytes: int = Field(256 * MiB, gt=0, description="Bytes per POST /v1/inspections request (413).")
    max_files: int = Field(32, gt=0, description="Images per POST /v1/inspections request (413).")
    job_max_request_bytes: int = Field(4096 * MiB, gt=0, description="Bytes per POST /v1/jobs request (413).")
    job_max_files: int = Field(2000, gt=0, description="Images per POST /v1/jobs request (413).")
    max_pixels: int | None = Field(
        None,
        gt=0,
        description="Pixels (width x height) per image (413); null: the detector's max_pixels (configs/detector.yaml).",
    )
    allowed_types: Annotated[list[str], NoDecode] = Field(
        ["image/jpeg", "image/png", "image/tiff", "image/webp"],
        description="Accepted image types, recognised by content (415 otherwise).",
    )

    max_concurrent_uploads: int = Field(
        8,
        gt=0,
        description="Uploads read at once (memory bound: this x max_request_bytes); more get 503, unless a "
        "slot holder is below upload_min_bytes_per_second: that one is cut off (408) and the newcomer served.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        ge=0,
        description="Seconds from a request's first byte to the end of its headers; past it 408 and the "
        "connection is closed (a client trickling headers holds no connection). 0 = no deadline.",
    )
    upload_timeout_seconds: float = Field(
        300.0, gt=0, description="Seconds the body of a POST /v1/inspections may take to arrive (408 upload_timeout)."
    )
    upload_min_bytes_per_second: int = Field(
        16384,
        ge=0,
        description="Average bytes/s an upload body must arrive at after upload_grace_seconds (408 "
        "upload_too_slow); 0 = no minimum.",
    )
    upload_grace_seconds: float = Field(
        10.0, ge=0, description="Seconds an upload may start slowly before upload_min_bytes_per_second applies."
    )
    large_image_pixels: int = Field(
        25_000_000,
        gt=0,
        description="An uploaded image whose header says more pixels than this is large: see max_large_decodes.",
    )
    max_large_decodes: int = Field(
        1,
        gt=0,
        description="Large images held decoded at once across the service, by POST /v1/inspections and the job "
        "runners alike (from decode until scored); the others wait.",
    )

    # --- inference and back-pressure
    queue_max_images: int = Field(
        32, gt=0, description="Images waiting for or in inference; a request that does not fit gets 503 + Retry-After."
    )
    inference_workers: int = Field(1, ge=1, description="Threads running the model (each with its own ONNX session).")
    inference_threads: int = Field(0, ge=0, description="CPU threads per ONNX Runtime session (0 = runtime default).")
    retry_after_seconds: int = Field(5, ge=1, description="Retry-After sent with 503 when the service is busy.")

    # --- jobs
    job_max_pending_images: int = Field(
        20_000, gt=0, description="Images not yet scored across all jobs; POST /v1/jobs beyond that gets 503."
    )
    job_chunk_images: int = Field(4, gt=0, description="Images a job scores and commits per step.")
    job_lease_seconds: float = Field(
        60.0, gt=0, description="A running job whose instance stopped renewing for this long is taken over."
    )
    job_poll_seconds: float = Field(2.0, gt=0, description="How often an idle instance looks for queued jobs.")
    job_runners: int = Field(1, ge=0, description="Jobs this instance scores at once (0 = accept jobs, score none).")

    @field_validator("allowed_types", mode="before")
    @classmethod
    def _split_types(cls, v: object) -> object:
        if isinstance(v, str):
            if v.lstrip().startswith("["):
                return json.loads(v)
            return [t.strip() for t in v.split(",") if t.strip()]
        return v

    @field_validator("allowed_types")
    @classmethod
    def _known_types(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in KNOWN_TYPES]
        if unknown:
            raise ValueError(f"unknown image types {unknown}; known: {', '.join(KNOWN_TYPES)}")
        return v

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment (cached; the app factory accepts explicit ones)."""
    return Settings()
