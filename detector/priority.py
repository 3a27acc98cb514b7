"""Maintenance priority per defect, per image and per asset/flight.

The rules live in ``configs/priority.yaml`` (see the comments there): a class gives a
base level on its field's scale, modifiers (size, confidence, count in the image,
position zone) move it, and the level maps to a priority ``P1`` (urgent) ... ``P4``
(low) with an action and a time frame.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, model_validator

import configs
from detector.detections import Detections

PRIORITY_PATH = configs.path("priority.yaml")
PRIORITIES = ("P1", "P2", "P3", "P4")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriorityDef(_Strict):
    label: str
    meaning: str = ""
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


class ScaleLevel(_Strict):
    label: str
    priority: str
    action: str
    time_frame: str


class Scale(_Strict):
    description: str = ""
    levels: dict[int, ScaleLevel]


class SizeRule(_Strict):
    min_area_frac: float | None = Field(None, gt=0, le=1)
    min_length_m: float | None = Field(None, gt=0)
    delta: int
    reason: str

    @model_validator(mode="after")
    def _one_measure(self) -> SizeRule:
        if (self.min_area_frac is None) == (self.min_length_m is None):
            raise ValueError("a size rule needs exactly one of min_area_frac, min_length_m")
        return self


class ConfidenceRule(_Strict):
    below: float = Field(gt=0, le=1)
    delta: int
    reason: str


class CountRule(_Strict):
    min: int = Field(ge=2)
    delta: int
    reason: str


class DeltaTRule(_Strict):
    """Rating by measured temperature difference (the criterion of IEC TS 62446-3 and of
    commercial PV thermography): the level comes from ``bands`` (minimum ΔT in K -> level),
    raised to at least ``patterns[pattern]``; size, count and confidence modifiers do not apply.
    Below ``min_irradiance_w_m2`` (or with no irradiance given) the class is provisional."""

    bands: dict[float, int]
    patterns: dict[str, int] = {}
    min_irradiance_w_m2: float = Field(600, gt=0)


class ClassRule(_Strict):
    scale: str
    base: int
    delta_t: DeltaTRule | None = None
    size: list[SizeRule] = []
    count: CountRule | None = None
    confidence: list[ConfidenceRule] | None = None  # None: use defaults
    zones: dict[str, int] = {}
    actions: dict[int, str] = {}


class Defaults(_Strict):
    confidence: list[ConfidenceRule] = []


class UnknownClass(_Strict):
    priority: str
    action: str
    time_frame: str


class PriorityConfig(_Strict):
    priorities: dict[str, PriorityDef]
    scales: dict[str, Scale]
    max_raise: int = Field(2, ge=0)
    max_lower: int = Field(1, ge=0)
    defaults: Defaults = Defaults()
    classes: dict[str, ClassRule]
    unknown_class: UnknownClass

    @model_validator(mode="after")
    def _consistent(self) -> PriorityConfig:
        if tuple(sorted(self.priorities)) != PRIORITIES:
            raise ValueError(f"priorities must be exactly {', '.join(PRIORITIES)}")
        for sname, scale in self.scales.items():
            if not scale.levels:
                raise ValueError(f"scale {sname!r} has no levels")
            lv = sorted(scale.levels)
            if lv != list(range(lv[0], lv[-1] + 1)):
                raise ValueError(f"scale {sname!r}: levels must be consecutive integers, got {lv}")
            for n, level in scale.levels.items():
                if level.priority not in PRIORITIES:
                    raise ValueError(f"scale {sname!r} level {n}: unknown priority {level.priority!r}")
        for cname, rule in self.classes.items():
            if rule.scale not in self.scales:
                raise ValueError(f"class {cname!r}: unknown scale {rule.scale!r}")
            levels = self.scales[rule.scale].levels
            if rule.base not in levels:
                raise ValueError(
                    f"class {cname!r}: base {rule.base} is not a level of {rule.scale!r} ({sorted(levels)})"
                )
            for n in rule.actions:
                if n not in levels:
                    raise ValueError(f"class {cname!r}: action for level {n}, which {rule.scale!r} does not have")
        if self.unknown_class.priority not in PRIORITIES:
            raise ValueError(f"unknown_class: unknown priority {self.unknown_class.priority!r}")
        return self

    def color(self, priority: str) -> str:
        return self.priorities[priority].color


def parse_priority_config(data: dict[str, Any], source: str = "priority config") -> PriorityConfig:
    try:
        return PriorityConfig.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{source}: {e}") from None


@lru_cache(maxsize=8)
def load_priority_config(path: str | Path = PRIORITY_PATH) -> PriorityConfig:
    return parse_priority_config(configs.load(path), str(path))


PriorityLevel = Literal["P1", "P2", "P3", "P4"]


class Assessment(BaseModel):
    """The maintenance rating of one finding (a :class:`detector.results.Finding` carries
    these fields at its top level)."""

    model_config = ConfigDict(frozen=True)

    priority: PriorityLevel = Field(description="P1 (act now) ... P4 (document / monitor)")
    action: str = Field(description="what to do")
    time_frame: str = Field(description="by when")
    scale: str | None = Field(None, description="the field's severity scale the level is on")
    level: int | None = Field(None, description="level on that scale")
    level_label: str | None = None
    base_level: int | None = Field(None, description="the class's level before the modifiers")
    reasons: list[str] = Field(default_factory=list, description="why the level moved from its base")


def assess(
    class_name: str,
    confidence: float,
    *,
    area_frac: float,
    length_m: float | None = None,
    count_in_image: int = 1,
    zone: str | None = None,
    config: PriorityConfig | None = None,
    delta_t_k: float | None = None,
    pattern: str | None = None,
    irradiance_w_m2: float | None = None,
) -> Assessment:
    """Rate one defect.

    ``area_frac``: box area / image area. ``length_m``: the box's longer side on the ground,
    when the ground sampling distance is known. ``count_in_image``: detections of the same
    class in the image (this one included). ``zone``: a position label, e.g. a blade zone.
    """
    cfg = config or load_priority_config()
    rule = cfg.classes.get(class_name)
    if rule is None:
        u = cfg.unknown_class
        return Assessment(
            priority=u.priority, action=u.action, time_frame=u.time_frame, reasons=[f"no rule for class {class_name!r}"]
        )
    scale = cfg.scales[rule.scale]
    if rule.delta_t is not None and delta_t_k is not None:
        return _assess_delta_t(rule, scale, delta_t_k, pattern, irradiance_w_m2)
    ups: list[tuple[int, str]] = []
    for s in rule.size:
        if s.min_area_frac is not None and area_frac >= s.min_area_frac:
            ups.append((s.delta, s.reason))
        elif s.min_length_m is not None and length_m is not None and length_m >= s.min_length_m:
            ups.append((s.delta, s.reason))
    if rule.count is not None and count_in_image >= rule.count.min:
        ups.append((rule.count.delta, rule.count.reason))
    if zone is not None and rule.zones.get(zone):
        ups.append((rule.zones[zone], f"position: {zone}"))
    conf_rules = rule.confidence if rule.confidence is not None else cfg.defaults.confidence
    for c in conf_rules:
        if confidence < c.below:
            ups.append((c.delta, c.reason))
    raise_ = sum(d for d, _ in ups if d > 0)
    lower = -sum(d for d, _ in ups if d < 0)
    delta = min(raise_, cfg.max_raise) - min(lower, cfg.max_lower)
    lo, hi = min(scale.levels), max(scale.levels)
    level = int(np.clip(rule.base + delta, lo, hi))
    entry = scale.levels[level]
    action = rule.actions.get(level, entry.action)
    return Assessment(
        priority=entry.priority,
        action=action,
        time_frame=entry.time_frame,
        scale=rule.scale,
        level=level,
        level_label=entry.label,
        base_level=rule.base,
        reasons=[r for _, r in ups],
    )


def _assess_delta_t(
    rule: ClassRule, scale: Scale, delta_t_k: float, pattern: str | None, irradiance_w_m2: float | None
) -> Assessment:
    dt = rule.delta_t
    assert dt is not None
    lo, hi = min(scale.levels), max(scale.levels)
    bands = sorted(dt.bands.items())
    level, floor = bands[0][1], bands[0][0]
    for min_k, lv in bands:
        if delta_t_k >= min_k:
            level, floor = lv, min_k
    nxt = next((k for k, _ in bands if k > delta_t_k), None)
    band = f">= {floor:g} K" if nxt is None else f"{floor:g}-{nxt:g} K"
    reasons = [f"ΔT {delta_t_k:.1f} K (band {band})"]
    if pattern and dt.patterns.get(pattern, lo) > level:
        level = dt.patterns[pattern]
        reasons.append(f"pattern: {pattern}")
    if irradiance_w_m2 is None:
        reasons.append(f"provisional: irradiance not given (the class needs >= {dt.min_irradiance_w_m2:g} W/m²)")
    elif irradiance_w_m2 < dt.min_irradiance_w_m2:
        reasons.append(f"provisional: irradiance {irradiance_w_m2:g} W/m² below {dt.min_irradiance_w_m2:g} W/m²")
    level = int(np.clip(level, lo, hi))
    entry = scale.levels[level]
    return Assessment(
        priority=entry.priority,
        action=rule.actions.get(level, entry.action),
        time_frame=entry.time_frame,
        scale=rule.scale,
        level=level,
        level_label=entry.label,
        base_level=rule.base,
        reasons=reasons,
    )


def assess_detections(
    dets: Detections,
    names: Sequence[str],
    image_hw: tuple[int, int],
    *,
    gsd_m: float | None = None,
    zone: str | None = None,
    config: PriorityConfig | None = None,
) -> list[Assessment]:
    """Rate every detection of one image."""
    h, w = image_hw
    counts = Counter(int(c) for c in dets.class_id)
    out = []
    for i in range(len(dets)):
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
        c = int(dets.class_id[i])
        name = names[c] if c < len(names) else str(c)
        length = max(x2 - x1, y2 - y1) * gsd_m if gsd_m else None
        out.append(
            assess(
                name,
                float(dets.confidence[i]),
                area_frac=(x2 - x1) * (y2 - y1) / max(h * w, 1),
                length_m=length,
                count_in_image=counts[c],
                zone=zone,
                config=config,
            )
        )
    return out


def priority_rank(priority: str | None) -> int:
    """P1 -> 1 ... P4 -> 4; no finding -> 5 (sorts last)."""
    return PRIORITIES.index(priority) + 1 if priority in PRIORITIES else 5


class PrioritySummary(BaseModel):
    """Roll-up of many findings: the worst priority and counts."""

    worst: PriorityLevel | None = Field(None, description="the most urgent priority found; null without findings")
    counts: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(PRIORITIES, 0), description="per priority")
    by_class: dict[str, int] = Field(default_factory=dict, description="findings per class")
    defects: int = Field(0, description="findings")
    images: int = 0
    images_with_defects: int = 0
    images_failed: int = Field(0, description="images that could not be scored")

    @field_serializer("by_class")
    def _sorted(self, v: dict[str, int]) -> dict[str, int]:
        return dict(sorted(v.items()))

    def add(self, priority: str, class_name: str) -> None:
        self.counts[priority] = self.counts.get(priority, 0) + 1
        self.by_class[class_name] = self.by_class.get(class_name, 0) + 1
        self.defects += 1
        if priority_rank(priority) < priority_rank(self.worst):
            self.worst = priority  # type: ignore[assignment]

    def merge(self, other: PrioritySummary) -> None:
        for p, n in other.counts.items():
            self.counts[p] = self.counts.get(p, 0) + n
        for c, n in other.by_class.items():
            self.by_class[c] = self.by_class.get(c, 0) + n
        self.defects += other.defects
        self.images += other.images
        self.images_with_defects += other.images_with_defects
        self.images_failed += other.images_failed
        if priority_rank(other.worst) < priority_rank(self.worst):
            self.worst = other.worst

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def summarize(findings: Iterable[tuple[str, str]]) -> PrioritySummary:
    """(priority, class name) pairs of one image -> its summary."""
    s = PrioritySummary(images=1)
    for priority, name in findings:
        s.add(priority, name)
    s.images_with_defects = int(s.defects > 0)
    return s
