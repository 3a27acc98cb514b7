"""``configs/train.yaml`` as a validated settings object, with command-line overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

REPO = Path(__file__).resolve().parent.parent
TRAIN_CONFIG = REPO / "configs" / "train.yaml"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = "yolo11n.yaml"
    init: str = "auto"
    pretrained_url: str | None = None
    imgsz: int = 416
    epochs: int = 100
    hours: float | None = None
    batch: int = 16
    fast_cpu: str | bool = "auto"
    seed: int = 0
    workers: int = 2
    cache: str | bool = "ram"
    int8: bool = False
    fraction: float = 1.0
    ultralytics: dict[str, Any] = {}


def _parse_value(v: str) -> Any:
    return yaml.safe_load(v)


def load_train_config(
    path: Path = TRAIN_CONFIG, overrides: dict[str, Any] | None = None, sets: list[str] | None = None
) -> TrainConfig:
    """Read the YAML file, then apply ``overrides`` (None values ignored) and
    ``sets`` (``key=value``; unknown top-level keys go to ``ultralytics``)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    fields = set(TrainConfig.model_fields)
    for item in sets or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        if k in fields:
            data[k] = _parse_value(v)
        else:
            data.setdefault("ultralytics", {})[k] = _parse_value(v)
    return TrainConfig.model_validate(data)
