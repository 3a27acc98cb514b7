"""Radiometric frames in the inspection pipeline.

- :func:`read_thermal` (decode step): reads the temperature map of a radiometric JPEG
  (:mod:`detector.radiometry`), keeps it upright on the image grid, and replaces the pixels
  the model sees by the consistent rendering of :func:`detector.thermal.render` (the camera's
  own palette stretches over whatever is hottest in the frame, often the gravel between rows).
- :func:`thermal_findings` (result step): measures every model finding of a thermal class
  (T max, T mean, T ref of healthy module surface, ΔT), adds the hot spots the radiometric
  finder sees that no model box covers (``source: radiometric``), and rates them by ΔT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from detector.decode import DecodedImage
from detector.priority import PriorityConfig
from detector.radiometry import Radiometry, RadiometryNote, ThermalOverrides, read_radiometry, to_display
from detector.thermal import Hotspot, find_hotspots, measure, module_level, normalised_delta_t, render

# a radiometric hot spot of this pattern is reported as this class
PATTERN_CLASS = {"substring": "pv_diode_fault"}


def read_thermal(image: DecodedImage, overrides: ThermalOverrides | None = None) -> None:
    """Attach the temperature map (and the reading's note) to a decoded JPEG, in place."""
    reading = read_radiometry(image.data, overrides)
    if isinstance(reading, RadiometryNote):
        image.thermal = reading if reading.reason in ("unsupported_format", "corrupt") else None
        return
    celsius = to_display(reading)
    if celsius.shape != image.pixels.shape[:2]:
        image.thermal = RadiometryNote(
            "corrupt", "temperature map does not fit the image: scored as a plain image", reading.format, reading.camera
        )
        return
    image.thermal = reading
    image.celsius = celsius
    image.pixels = render(celsius)


def thermal_info(image: DecodedImage, irradiance_w_m2: float | None) -> dict | None:
    r = image.thermal
    if r is None:
        return None
    if isinstance(r, RadiometryNote):
        return {"format": r.format, "camera": r.camera, "note": r.note}
    assert isinstance(r, Radiometry)
    return {
        "format": r.format,
        "camera": r.camera,
        "params": r.params.model_dump() if r.params else None,
        "param_sources": dict(r.param_sources),
        "irradiance_w_m2": irradiance_w_m2,
    }


def _overlaps(box: Sequence[float], h: Hotspot) -> bool:
    x1, y1, x2, y2 = box
    hx1, hy1, hx2, hy2 = h.box_xyxy
    iw, ih = min(x2, hx2) - max(x1, hx1), min(y2, hy2) - max(y1, hy1)
    if iw <= 0 or ih <= 0:
        return False
    inter = iw * ih
    smaller = min((x2 - x1) * (y2 - y1), (hx2 - hx1) * (hy2 - hy1))
    return inter >= 0.3 * max(smaller, 1e-6)


def thermal_measurements(
    celsius: np.ndarray,
    boxes: np.ndarray,
    class_names: Sequence[str],
    rules: PriorityConfig,
    irradiance_w_m2: float | None,
) -> tuple[list[dict | None], list[Hotspot]]:
    """Per box: its measurement (for classes rated by ΔT; None otherwise), and the radiometric
    hot spots no such box covers."""
    levels = module_level(celsius.astype(np.float32, copy=False))
    mask = levels[0]
    hotspots = find_hotspots(celsius, irradiance_w_m2=irradiance_w_m2, levels=levels)
    out: list[dict | None] = []
    covered: set[int] = set()
    for box, name in zip(boxes, class_names, strict=True):
        rule = rules.classes.get(name)
        if rule is None or rule.delta_t is None:
            out.append(None)
            continue
        m = measure(celsius, tuple(float(v) for v in box), irradiance_w_m2=irradiance_w_m2, mask=mask)
        hit = [i for i, h in enumerate(hotspots) if _overlaps(box, h)]
        covered.update(hit)
        t_max, delta, delta_norm = m.t_max_c, m.delta_t_k, m.delta_t_norm_k
        if hit and hotspots[hit[0]].t_max_c > t_max:
            # the finding is that hot spot: its hottest pixel is the finding's T max, even where the
            # model's box sits a little off it (ΔT against the box's own healthy-module reference)
            t_max = hotspots[hit[0]].t_max_c
            delta = round(t_max - m.t_ref_c, 1)
            delta_norm = normalised_delta_t(delta, irradiance_w_m2)
        out.append(
            {
                "t_max_c": t_max,
                "t_mean_c": m.t_mean_c,
                "t_ref_c": m.t_ref_c,
                "delta_t_k": delta,
                "delta_t_norm_k": delta_norm,
                "reference": m.reference,
                "pattern": hotspots[hit[0]].pattern if hit else None,
                "confirmed": bool(hit),
                "hotspot": hit[0] if hit else None,
            }
        )
    return out, [h for i, h in enumerate(hotspots) if i not in covered]


def hotspot_class(h: Hotspot, names: Sequence[str], assets: Mapping[str, str]) -> str:
    name = PATTERN_CLASS.get(h.pattern, "pv_hotspot")
    return name if name in names else "pv_hotspot"
