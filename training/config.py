"""``configs/train.yaml`` as a validated settings object, with command-line overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

import configs

REPO = Path(__file__).resolve().parent.parent  # training works in a checkout: build/, models/ beside it
TRAIN_CONFIG = configs.path("train.yaml")


class PromotionRule(BaseModel):
    """When a new model replaces ``models/current`` (``promotion:`` in configs/train.yaml)."""

    model_config = ConfigDict(extra="forbid")
    cost_tolerance: Annotated[float, Field(ge=0)]
    costlier_min_gain: Annotated[float, Field(ge=0)]
    costlier_confidence: Annotated[float, Field(ge=0.5, lt=1)]
    draws: Annotated[int, Field(ge=1)]


class WeightAverage(BaseModel):
    """Ultralytics' EMA of the weights (``ema:`` in configs/train.yaml)."""

    model_config = ConfigDict(extra="forbid")
    decay: Annotated[float, Field(gt=0, lt=1)]
    tau: Annotated[float, Field(gt=0)]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    # every default is in configs/train.yaml (documented there); none is repeated here
    model: str
    init: str
    pretrained_url: str | None
    imgsz: int
    epochs: int
    hours: float | None
    batch: int
    fast_cpu: str | bool
    seed: int
    workers: int
    cache: str | bool
    int8: bool
    ci_draws: Annotated[int, Field(ge=0)]
    fraction: float
    rare_class_repeat: float | None
    copy_paste_classes: list[str] | None
    transpose: Annotated[float, Field(ge=0, le=1)]
    device: str | int | None
    promotion: PromotionRule
    ema: WeightAverage
    ultralytics: dict[str, Any]


def _parse_value(v: str) -> Any:
    return yaml.safe_load(v)


def load_train_config(
    path: Path = TRAIN_CONFIG, overrides: dict[str, Any] | None = None, sets: list[str] | None = None
) -> TrainConfig:
    """Read the YAML file, then apply ``overrides`` (None values ignored) and
    ``sets`` (``key=value``, ``section.key=value`` for a section such as ``ema``; unknown top-level
    keys go to ``ultralytics``)."""
    data = configs.load(path)
    if Path(path) != TRAIN_CONFIG:  # a partial file sits on top of the shipped defaults
        data = {**configs.load(TRAIN_CONFIG), **data}
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    fields = set(TrainConfig.model_fields)
    for item in sets or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        head, _, sub = k.partition(".")
        if sub and head in fields and isinstance(data.get(head), dict):  # a key of a section: ema.decay=0.999
            data[head] = {**data[head], sub: _parse_value(v)}
        elif k in fields:
            data[k] = _parse_value(v)
        else:
            data.setdefault("ultralytics", {})[k] = _parse_value(v)
    return TrainConfig.model_validate(data)


def fast_path_words(mode: str | bool | None, device: str | None = None) -> str:
    """What a ``training.fast_cpu`` record means, in words (older records hold a bool). On a CUDA
    ``device`` the CPU path is not used at all: Ultralytics' AMP (float16) trains there."""
    if device not in (None, "", "cpu"):
        return f"not used (CUDA device {device}: Ultralytics AMP, float16)"
    if mode is True:
        mode = "bf16"
    return {
        "bf16": "bf16 autocast + channels-last",
        "channels_last": "channels-last memory, float32 (no bf16 units)",
    }.get(str(mode), "off (stock Ultralytics float32)")
