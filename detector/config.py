"""Inference settings, validated. ``configs/detector.yaml`` holds every default (with its
documentation); this model only names and checks the keys, so a key missing from the file
is an error rather than a silently different default."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import configs

DETECTOR_CONFIG_PATH = configs.path("detector.yaml")


class DetectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    model: str | None
    backend: Literal["auto", "onnxruntime", "openvino"]
    int8_max_map50_drop: float = Field(ge=0, le=1)
    precision: Literal["bf16", "f32", "f16"]
    openvino_hint: Literal["latency", "throughput"]
    threads: int = Field(ge=0)
    graph_optimization: Literal["disable", "basic", "extended", "all"]
    spin_wait: bool
    warmup: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    conf: float = Field(ge=0, lt=1)
    model_thresholds: bool
    class_conf: dict[str, float]
    iou: float = Field(gt=0, le=1)
    border: int = Field(ge=0)
    max_det: int = Field(ge=1)
    tiling: Literal["off", "auto", "on"]
    tiling_min_scale: float = Field(ge=1)
    tile_size: int = Field(ge=0)
    tile_overlap: Literal["auto"] | float
    max_defect_px: int = Field(ge=0)
    tile_merge_threshold: float = Field(gt=0, le=1)
    max_pixels: int = Field(gt=0)
    stretch_percentiles: tuple[float, float]
    corrupt_jpeg: Literal["warn", "reject"]
    max_off_nadir_deg: float = Field(ge=0, le=90)
    radiometric: bool
    irradiance_w_m2: float | None = Field(gt=0)
    emissivity: float | None = Field(gt=0, le=1)
    reflected_temp_c: float | None
    distance_m: float | None = Field(ge=0)
    relative_humidity: float | None = Field(ge=0, le=100)
    priority_config: str | None

    @field_validator("backend", mode="before")
    @classmethod
    def _alias_backend(cls, v: Any) -> Any:
        return {"ort": "onnxruntime", "ov": "openvino"}.get(v, v)

    @field_validator("tile_overlap")
    @classmethod
    def _overlap(cls, v: str | float) -> str | float:
        if v != "auto" and not 0 <= float(v) < 0.9:
            raise ValueError("tile_overlap must be auto or a fraction in [0, 0.9)")
        return v

    @field_validator("precision", mode="before")
    @classmethod
    def _alias_precision(cls, v: Any) -> Any:
        return {"fp32": "f32", "float32": "f32", "fp16": "f16", "bfloat16": "bf16"}.get(v, v)

    @field_validator("class_conf")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        for k, t in v.items():
            if not 0 <= t < 1:
                raise ValueError(f"class_conf[{k}] must be in [0, 1), got {t}")
        return v

    @field_validator("stretch_percentiles")
    @classmethod
    def _percentiles(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError("stretch_percentiles must satisfy 0 <= low < high <= 100")
        return v


@lru_cache(maxsize=1)
def shipped_defaults() -> DetectorConfig:
    """configs/detector.yaml as shipped (for library functions called without settings)."""
    return load_detector_config()


def load_detector_config(path: str | Path | None = None, **overrides: Any) -> DetectorConfig:
    """The YAML file (default ``configs/detector.yaml``) with ``overrides`` applied (``None`` values ignored)."""
    p = Path(path) if path else DETECTOR_CONFIG_PATH
    if not p.is_file():
        raise FileNotFoundError(f"detector config not found: {p}")
    data = configs.load(p)
    if path and p != DETECTOR_CONFIG_PATH:
        # a partial file (only the keys it changes) sits on top of the shipped defaults
        data = {**configs.load(DETECTOR_CONFIG_PATH), **data}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return DetectorConfig.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{p}: {e}") from None


class Conditions(BaseModel):
    """The conditions of one flight or request (all optional): irradiance on the module plane
    and the radiometric parameters. A value given here overrides configs/detector.yaml's for
    that call; ``None`` keeps it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    irradiance_w_m2: float | None = Field(None, gt=0, le=2000)
    emissivity: float | None = Field(None, gt=0, le=1)
    reflected_temp_c: float | None = Field(None, ge=-40, le=500)
    distance_m: float | None = Field(None, ge=0, le=10_000)
    relative_humidity: float | None = Field(None, ge=0, le=100)

    def over(self, cfg: DetectorConfig) -> Conditions:
        """These conditions with the config's values where none is given."""
        return Conditions(**{k: v if v is not None else getattr(cfg, k) for k, v in self.model_dump().items()})

    @property
    def empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())
