"""Growth between observations, the "worsened" state and the early-warning rules.

An observation's metrics are a dict: ``area_frac``, ``area_m2`` (with a ground sampling
distance), ``length_m``, ``delta_t_k``, ``base_priority``, ``flight`` (its flight's name).
:func:`growth` compares two of them; :func:`is_worsened` applies ``worsened`` of
``configs/history.yaml``; :func:`early_warning` applies its rules and gives the raised
priority with its reasons.
"""

from __future__ import annotations

from typing import Any

from detector.priority import PRIORITIES, priority_rank
from history.config import EarlyWarning, Rule, Worsened


def growth(ref: dict[str, Any], cur: dict[str, Any]) -> dict[str, float | bool | None]:
    """Change from ``ref`` to ``cur``: area growth (%: in m² when both have it, else as a
    share of the image), ΔT rise (K), and whether the detector's priority went up."""
    if ref.get("area_m2") and cur.get("area_m2") is not None:
        area = (cur["area_m2"] / ref["area_m2"] - 1.0) * 100.0
    elif ref.get("area_frac") and cur.get("area_frac") is not None:
        area = (cur["area_frac"] / ref["area_frac"] - 1.0) * 100.0
    else:
        area = None
    dt = None
    if ref.get("delta_t_k") is not None and cur.get("delta_t_k") is not None:
        dt = cur["delta_t_k"] - ref["delta_t_k"]
    up = bool(
        ref.get("base_priority")
        and cur.get("base_priority")
        and priority_rank(cur["base_priority"]) < priority_rank(ref["base_priority"])
    )
    return {"area_growth_pct": area, "delta_t_rise_k": dt, "priority_up": up}


def is_worsened(g: dict[str, Any], cfg: Worsened) -> bool:
    if (
        cfg.area_growth_pct is not None
        and g["area_growth_pct"] is not None
        and g["area_growth_pct"] >= cfg.area_growth_pct
    ):
        return True
    if cfg.delta_t_rise_k is not None and g["delta_t_rise_k"] is not None and g["delta_t_rise_k"] >= cfg.delta_t_rise_k:
        return True
    return bool(cfg.priority_up and g["priority_up"])


def raise_priority(priority: str | None, steps: int) -> str | None:
    if priority not in PRIORITIES or steps <= 0:
        return priority
    return PRIORITIES[max(0, PRIORITIES.index(priority) - steps)]


def _applies(rule: Rule, ctx: dict[str, Any]) -> dict[str, Any] | None:
    """The values a rule's reason shows when it holds for ``ctx``; None when it does not."""
    if rule.families is not None and ctx["family"] not in rule.families:
        return None
    if rule.classes is not None and ctx["class_name"] not in rule.classes:
        return None
    if rule.assets is not None and ctx["asset"] not in rule.assets:
        return None
    if rule.states is not None and ctx["state"] not in rule.states:
        return None
    cur = ctx["current"]
    if rule.base_priority is not None and cur.get("base_priority") not in rule.base_priority:
        return None
    values: dict[str, Any] = {"seen_flights": ctx["seen"], "resolved_flight": ctx.get("resolved_flight") or "?"}
    if rule.seen_flights is not None and ctx["seen"] < rule.seen_flights:
        return None
    if rule.delta_t_rise_k is not None or rule.area_growth_pct is not None:
        ref = ctx["first"] if rule.since == "first" else ctx["previous"]
        if ref is None:
            return None
        g = growth(ref, cur)
        values["since_flight"] = ref.get("flight") or "?"
        if rule.delta_t_rise_k is not None:
            if g["delta_t_rise_k"] is None or g["delta_t_rise_k"] < rule.delta_t_rise_k:
                return None
            values["delta_t_rise_k"] = g["delta_t_rise_k"]
        if rule.area_growth_pct is not None:
            if g["area_growth_pct"] is None or g["area_growth_pct"] < rule.area_growth_pct:
                return None
            values["area_growth_pct"] = g["area_growth_pct"]
    return values


def early_warning(ctx: dict[str, Any], cfg: EarlyWarning) -> tuple[str | None, list[dict[str, Any]]]:
    """(priority after the rules, the warnings that raised it: ``{"rule", "reason", "raise"}``).

    ``ctx``: ``family``, ``class_name``, ``asset``, ``state``, ``seen`` (flights seen in,
    this one included), ``current`` / ``first`` / ``previous`` (metrics; first and previous
    None for a new track), ``resolved_flight`` (a reappeared track), and for ``sticky``
    rules ``kept`` (the track's raised priority and warnings so far)."""
    base = ctx["current"].get("base_priority")
    warnings: list[dict[str, Any]] = []
    steps = 0
    for rule in cfg.rules:
        values = _applies(rule, ctx)
        if values is None:
            continue
        try:
            reason = rule.reason.format(**values)
        except (KeyError, IndexError, ValueError):
            reason = rule.reason
        warnings.append({"rule": rule.name, "reason": reason, "raise": rule.raise_})
        steps += rule.raise_
    priority = raise_priority(base, min(steps, cfg.max_raise))
    kept_priority, kept = ctx.get("kept") or (None, [])
    if cfg.sticky and kept:
        names = {w["rule"] for w in warnings}
        warnings += [w for w in kept if w["rule"] not in names]
        if kept_priority and priority_rank(kept_priority) < priority_rank(priority):
            priority = kept_priority
    return priority, warnings
