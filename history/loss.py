"""Estimated energy loss of a PV finding: Wp lost and kWh per year, always an estimate.

lost Wp = module power (STC) x fraction x modules affected; kWh/year = lost kWp x the site's
specific yield (kWh/kWp/year). The fraction comes from the finding's thermal pattern
(``configs/history.yaml`` ``loss.patterns``: a heated substring is one bypassed substring,
a module or string 100 %) or else from its class (``loss.classes``: a cell hotspot a small
ΔT-dependent share, soiling its covered share of the module). With the irradiance of the
flight, the loss at that moment (W) is given too: lost Wp x G / 1000. The sources of each
default are in the comments of ``configs/history.yaml``; every estimate carries its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from history.config import LossConfig, LossRule, SitePlant


@dataclass(frozen=True, slots=True)
class Loss:
    loss_w: float  # Wp (STC) lost
    loss_kwh_year: float
    detail: dict[str, Any]


def _fraction(rule: LossRule, plant: SitePlant, delta_t_k: float | None, area_m2: float | None) -> tuple[float, str]:
    if rule.fraction_of_bypass is not None:
        f = rule.fraction_of_bypass / plant.bypass_diodes
        return f, f"{rule.fraction_of_bypass:g} of 1/{plant.bypass_diodes} substrings bypassed"
    if rule.coverage:
        if area_m2 is None:
            return float(rule.default or 0.0), "coverage unknown (no ground sampling distance): default share"
        module = plant.module_size_m[0] * plant.module_size_m[1]
        f = min(1.0, max(float(rule.min or 0.0), area_m2 / module))
        return f, f"covers {area_m2:.3f} m² of a {module:.2f} m² module"
    f = float(rule.fraction or 0.0)
    why = f"{f:g} of the module"
    if rule.per_k and delta_t_k is not None:
        f += rule.per_k * max(0.0, delta_t_k)
        why = f"{rule.fraction or 0:g} + {rule.per_k:g}/K x ΔT {delta_t_k:.1f} K"
    if rule.max is not None and f > rule.max:
        f, why = rule.max, why + f", capped at {rule.max:g}"
    return f, why


def estimate(
    class_name: str,
    pattern: str | None,
    delta_t_k: float | None,
    area_m2: float | None,
    plant: SitePlant,
    plant_source: str,
    cfg: LossConfig,
    irradiance_w_m2: float | None = None,
) -> Loss | None:
    """The loss of one PV finding (None: a class with no loss rule, e.g. a blade finding)."""
    rule, basis = None, ""
    if pattern and pattern in cfg.patterns:
        rule, basis = cfg.patterns[pattern], f"pattern {pattern}"
    elif class_name in cfg.classes:
        rule, basis = cfg.classes[class_name], f"class {class_name}"
    if rule is None:
        return None
    fraction, why = _fraction(rule, plant, delta_t_k, area_m2)
    modules = plant.modules_per_string if rule.per == "string" else 1
    loss_w = plant.module_power_wp * fraction * modules
    kwh = loss_w / 1000.0 * plant.specific_yield_kwh_per_kwp
    detail: dict[str, Any] = {
        "estimate": True,
        "basis": basis,
        "fraction": round(fraction, 4),
        "why": why,
        "modules": modules,
        "module_power_wp": plant.module_power_wp,
        "specific_yield_kwh_per_kwp": plant.specific_yield_kwh_per_kwp,
        "plant": plant_source,
    }
    if irradiance_w_m2:
        detail["irradiance_w_m2"] = irradiance_w_m2
        detail["loss_w_at_flight"] = round(loss_w * irradiance_w_m2 / 1000.0, 2)
    return Loss(round(loss_w, 3), round(kwh, 3), detail)


def total(values: list[float | None]) -> float:
    return round(sum(v for v in values if v), 3)


__all__ = ["Loss", "estimate", "total"]
