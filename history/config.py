"""The settings of ``history/``: ``configs/history.yaml`` (matching, growth, early warning,
loss fractions) and the per-site plant data ``configs/sites.yaml`` (or ``$PVWIND_SITES``).
The YAML files hold every default; this module only validates them."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import configs

SITES_ENV = "PVWIND_SITES"
HISTORY_ENV = "PVWIND_HISTORY_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Matching(_Strict):
    families: dict[str, list[str]]
    gate_m: float = Field(gt=0)
    gate_rtk_m: float = Field(gt=0)
    gate_wind_m: float = Field(gt=0)
    offset_search_m: float = Field(ge=0)
    offset_min_pairs: int = Field(ge=1)
    class_change_penalty_m: float = Field(ge=0)
    reappear_within_flights: int = Field(ge=0)
    coverage_radius_m: float = Field(gt=0)

    def family(self, class_name: str) -> str:
        for fam, classes in self.families.items():
            if class_name in classes:
                return fam
        return class_name


class Worsened(_Strict):
    area_growth_pct: float | None = Field(None, gt=0)
    delta_t_rise_k: float | None = Field(None, gt=0)
    priority_up: bool = True


class Rule(_Strict):
    name: str
    reason: str
    raise_: int = Field(1, alias="raise", ge=1, le=3)
    since: Literal["first", "previous"] = "first"
    families: list[str] | None = None
    classes: list[str] | None = None
    assets: list[Literal["pv", "wind"]] | None = None
    states: list[Literal["new", "persistent", "worsened", "reappeared"]] | None = None
    base_priority: list[Literal["P1", "P2", "P3", "P4"]] | None = None
    delta_t_rise_k: float | None = None
    area_growth_pct: float | None = None
    seen_flights: int | None = Field(None, ge=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _has_condition(self) -> Rule:
        conds = (self.delta_t_rise_k, self.area_growth_pct, self.seen_flights, self.states, self.base_priority)
        if all(c is None for c in conds):
            raise ValueError(
                f"rule {self.name}: needs a condition (delta_t_rise_k, area_growth_pct, seen_flights, ...)"
            )
        return self


class EarlyWarning(_Strict):
    max_raise: int = Field(ge=0, le=3)
    sticky: bool = True
    rules: list[Rule]


class LossRule(_Strict):
    fraction: float | None = Field(None, ge=0, le=1)
    fraction_of_bypass: float | None = Field(None, gt=0, le=1)  # x 1/bypass_diodes of the module
    per_k: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0, le=1)
    coverage: bool = False
    min: float | None = Field(None, ge=0, le=1)
    default: float | None = Field(None, ge=0, le=1)
    per: Literal["module", "string"] = "module"


class LossConfig(_Strict):
    patterns: dict[str, LossRule]
    classes: dict[str, LossRule]


class HistoryConfig(_Strict):
    matching: Matching
    worsened: Worsened
    early_warning: EarlyWarning
    loss: LossConfig


class SitePlant(_Strict):
    module_power_wp: float = Field(gt=0)
    module_size_m: tuple[float, float]
    bypass_diodes: int = Field(ge=1)
    modules_per_string: int = Field(ge=1)
    specific_yield_kwh_per_kwp: float = Field(gt=0)
    rtk: bool = False
    asset: Literal["auto", "pv", "wind"] = "auto"  # track only this asset's findings (auto: all)


class SitesConfig(_Strict):
    default: SitePlant
    sites: dict[str, dict[str, Any]] = {}
    source: str = ""

    def plant(self, site: str) -> tuple[SitePlant, str]:
        """The site's plant data and where it came from (``sites.yaml: NAME`` or ``... default``)."""
        own = self.sites.get(site)
        if own is None:
            return self.default, f"{self.source}: default (site {site!r} not listed)"
        return SitePlant.model_validate({**self.default.model_dump(), **own}), f"{self.source}: {site}"


class HistoryConfigError(ValueError):
    """A history or sites file is invalid (the message names the file)."""


def _parse(model: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise HistoryConfigError(f"{source}: {where}: {first['msg']}") from None


@lru_cache(maxsize=8)
def _load_history(path: str) -> HistoryConfig:
    try:
        return _parse(HistoryConfig, configs.load(path), path)
    except configs.ConfigError as e:
        raise HistoryConfigError(str(e)) from None


@lru_cache(maxsize=8)
def _load_sites(path: str) -> SitesConfig:
    try:
        data = configs.load(path)
    except configs.ConfigError as e:
        raise HistoryConfigError(str(e)) from None
    return _parse(SitesConfig, {**data, "source": Path(path).name}, path)


def load_history_config(path: str | Path | None = None) -> HistoryConfig:
    """``path``, else ``$PVWIND_HISTORY_CONFIG``, else the shipped ``configs/history.yaml``."""
    return _load_history(str(path or os.environ.get(HISTORY_ENV) or configs.path("history.yaml")))


def load_sites_config(path: str | Path | None = None) -> SitesConfig:
    """``path``, else ``$PVWIND_SITES``, else the shipped example ``configs/sites.yaml``."""
    return _load_sites(str(path or os.environ.get(SITES_ENV) or configs.path("sites.yaml")))
