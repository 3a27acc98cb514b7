"""Inference settings (``configs/detector.yaml``), validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DETECTOR_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "detector.yaml"


class DetectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    model: str | None = None
    backend: Literal["onnxruntime", "openvino"] = "onnxruntime"
    precision: Literal["bf16", "f32", "f16"] = "bf16"
    openvino_hint: Literal["latency", "throughput"] = "throughput"
    threads: int = Field(0, ge=0)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    spin_wait: bool = False
    warmup: int = Field(1, ge=0)
    batch_size: int = Field(8, ge=1)
    conf: float = Field(0.25, ge=0, lt=1)
    class_conf: dict[str, float] = {}
    iou: float = Field(0.7, gt=0, le=1)
    max_det: int = Field(300, ge=1)
    tiling: Literal["off", "auto", "on"] = "auto"
    tiling_min_scale: float = Field(2.0, ge=1)
    tile_size: int = Field(0, ge=0)
    tile_overlap: float = Field(0.2, ge=0, lt=0.9)
    tile_merge_threshold: float = Field(0.5, gt=0, le=1)
    max_pixels: int = Field(150_000_000, gt=0)
    stretch_percentiles: tuple[float, float] = (1.0, 99.0)
    max_off_nadir_deg: float = Field(20.0, ge=0, le=90)
    priority_config: str | None = None

    @field_validator("backend", mode="before")
    @classmethod
    def _alias_backend(cls, v: Any) -> Any:
        return {"ort": "onnxruntime", "ov": "openvino"}.get(v, v)

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


def load_detector_config(path: str | Path | None = None, **overrides: Any) -> DetectorConfig:
    """The YAML file (default ``configs/detector.yaml``) with ``overrides`` applied (``None`` values ignored)."""
    p = Path(path) if path else DETECTOR_CONFIG_PATH
    data: dict[str, Any] = {}
    if p.is_file():
        with open(p) as f:
            data = yaml.safe_load(f) or {}
    elif path:
        raise FileNotFoundError(f"detector config not found: {p}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return DetectorConfig.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{p}: {e}") from None
