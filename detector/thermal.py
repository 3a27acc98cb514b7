"""ΔT analysis on a temperature map (°C, (H, W) float32 from :mod:`detector.radiometry`): pure functions,
numpy and OpenCV only.

- :func:`module_mask` — which pixels are healthy-looking PV module surface (nadir frames).
- :func:`measure` — Tmax and Tmean in a box, the healthy-module reference around it, ΔT and ΔT
  normalised to 1000 W/m² (:class:`Measurement`).
- :func:`find_hotspots` — a radiometric hotspot finder independent of the model (:class:`Hotspot`).
- :func:`render` — the map as an (H, W, 3) uint8 RGB image for the model, over a configured range.

Module surface vs background
----------------------------
At 30-40 m above a PV plant the ground between rows is often hotter than the modules and the
shadows under them are much colder, so a reference taken over "everything around a box" is wrong.
Module glass is the one surface that is both *smooth* (a local standard deviation, over
``texture_window_px``, under ``texture_max_k``: gravel and grass are rough at that scale, glass is
not; the module frames' dark lines are rough too and drop out) and *at the plant's module
temperature*: within ``module_band_k`` = (below, above) kelvin of the local module level. The
local level is a masked box mean over ``background_window_px`` of the smooth pixels near the frame's
modal temperature (the mode of smooth pixels is module glass, which covers most of a nadir frame),
computed twice: the second pass with the first pass's mask. Hot ground (warmer than
the band), shadows (colder), frames, grass, and the hotspots themselves (hotter than the band) are
not module surface.

Reference temperature (``measure``)
-----------------------------------
The median of the module-surface pixels in a ring ``reference_ring_px`` wide around the box (the box
itself excluded). With fewer than ``reference_min_pixels`` such pixels the ring widens (2x, 3x, 4x);
then the median of the frame's module-surface pixels is used (``reference="frame_modules"``); a frame
without any (not a PV scene) falls back to the ring's median of all pixels (``"ring_all"``), which is
then not a module reference, as the result says. ΔT = Tmax - Tref; ΔTn = ΔT x 1000 / G with G the
plane-of-array irradiance in W/m², when given.

Hotspot finder
--------------
1. Excess over the local module level: E = T - level. The level is a robust one: the median of
   module-surface pixels per ``background_block_px`` block, then the median of the blocks within
   ``background_window_px`` (hot ground, shadows, hotspots and one warm module do not move it).
2. Seeds are pixels with E >= ``hotspot_seed_k``; regions grow over E >= half of it (hysteresis,
   8-connected); regions under ``hotspot_min_pixels`` are dropped.
3. Ground is told from modules by shape: a heated cell, substring or module is a compact,
   near-rectangular blob; warm gravel between rows is ragged. A region needs solidity (area / convex
   hull) >= ``hotspot_min_solidity`` and area / its minimum rotated rectangle >=
   ``hotspot_min_rect_fill``. A narrow band running through the whole frame (under a quarter of it
   wide) is the gap between two rows, not a finding (a uniformly warm gap is a rectangle too; a whole
   hot string is lost with it, which the model and the operator still see).
4. ΔT = Tmax - Tref, with Tref from the ring around the region as in ``measure`` (the region itself
   excluded); it must come from module surface (``reference="module_ring"``) and ΔT must reach
   ``hotspot_margin_k``. Texture or "surrounded by glass" tests were tried and dropped: on these
   frames a hot module's internal gradients make it as rough as gravel, and hot modules at a
   table's edge border shadow and ground on two sides.
Pattern guess from the region's area against the module size, estimated from the frame itself (the
median area of the smooth module patches that the frames' dark lines cut the glass into): under
1.5/60 of a module "cell", under 0.2 "cells", under 0.7 "substring" (a bypassed substring heats
about 1/3 of a module), else "module"; "unknown" when no module size could be estimated (fewer than
5 patches). A region touching the frame edge is flagged ``clipped``: its pattern may be understated.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from detector.radiometry import ThermalConfig, load_thermal_config

Pattern = Literal["cell", "cells", "substring", "module", "unknown"]
ReferenceMethod = Literal["module_ring", "frame_modules", "ring_all"]


@dataclass(frozen=True)
class Measurement:
    """Temperatures of a box (°C, ΔT in kelvin), rounded to 0.1."""

    t_max_c: float
    t_mean_c: float
    t_ref_c: float
    delta_t_k: float
    delta_t_norm_k: float | None  # ΔT x 1000 / G, when an irradiance was given
    irradiance_w_m2: float | None
    reference: ReferenceMethod
    reference_pixels: int
    reference_ring_px: int  # the ring width finally used (0 for frame_modules)


@dataclass(frozen=True)
class Hotspot:
    """A radiometric finding: a region of module surface hotter than the healthy modules around it."""

    box_xyxy: tuple[int, int, int, int]  # pixels, x2/y2 exclusive
    pixels: int
    t_max_c: float
    t_ref_c: float
    delta_t_k: float
    delta_t_norm_k: float | None
    pattern: Pattern
    module_fraction: float | None  # region area / one module's area (None when unknown)
    reference: ReferenceMethod
    reference_pixels: int
    clipped: bool  # the region touches the frame edge: its size (and pattern) may be understated


# --- module surface ---------------------------------------------------------------------------------------


def local_std(celsius: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation over a square window (float32)."""
    t = np.nan_to_num(celsius.astype(np.float32), nan=float(np.nanmedian(celsius)))
    m = cv2.blur(t, (window, window))
    return np.sqrt(np.maximum(cv2.blur(t * t, (window, window)) - m * m, 0))


def masked_mean(values: np.ndarray, mask: np.ndarray, window: int) -> np.ndarray:
    """Box mean of ``values`` over ``mask`` pixels only (NaN where the window holds none)."""
    w = mask.astype(np.float32)
    num = cv2.boxFilter(np.where(mask, values, 0).astype(np.float32), -1, (window, window), normalize=True)
    den = cv2.boxFilter(w, -1, (window, window), normalize=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-3, num / np.maximum(den, 1e-6), np.nan).astype(np.float32)


def modal_temperature(celsius: np.ndarray, mask: np.ndarray | None = None, bin_k: float = 0.5) -> float | None:
    """The most frequent temperature (histogram mode, ``bin_k`` bins) of the masked finite pixels."""
    t = celsius[mask] if mask is not None else celsius.ravel()
    t = t[np.isfinite(t)]
    if t.size == 0:
        return None
    lo, hi = float(t.min()), float(t.max())
    if hi - lo < bin_k:
        return float(np.median(t))
    hist, edges = np.histogram(t, bins=np.arange(lo, hi + bin_k, bin_k))
    k = int(hist.argmax())
    return float(edges[k] + bin_k / 2)


def nanmedian_last(x: np.ndarray) -> np.ndarray:
    """``np.nanmedian(x, axis=-1)`` (NaN where a row has no finite value), by one sort: NaNs sort
    last, so the middle of each row's finite values is found by index. ~10x numpy's masked path."""
    s = np.sort(x, axis=-1)
    n = np.isfinite(x).sum(-1)
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0)[..., None], -1)[..., 0]
    hi = np.take_along_axis(s, np.maximum(n // 2, 0)[..., None], -1)[..., 0]
    hi = np.where(n % 2 == 1, lo, hi)
    return np.where(n > 0, (lo + hi) / 2, np.nan).astype(x.dtype, copy=False)


def block_median_level(
    celsius: np.ndarray, mask: np.ndarray, block: int, window: int, min_fraction: float = 0.2
) -> np.ndarray:
    """A robust local level: the median of ``mask`` pixels per ``block``-pixel block (blocks under
    ``min_fraction`` masked count as empty), then the median over the blocks within ``window`` pixels,
    bilinearly upsampled. NaN where no block nearby has module pixels. One warm module among its
    neighbours does not move a median, as it moves a mean."""
    h, w = celsius.shape
    bh, bw = -(-h // block), -(-w // block)
    a = np.full((bh * block, bw * block), np.nan, np.float32)
    a[:h, :w] = np.where(mask, celsius, np.nan)
    blocks = a.reshape(bh, block, bw, block).transpose(0, 2, 1, 3).reshape(bh, bw, block * block)
    enough = np.isfinite(blocks).sum(-1) >= min_fraction * block * block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are expected
        med = np.where(enough, nanmedian_last(np.where(enough[..., None], blocks, np.float32(0.0))), np.nan)
        nb = max(1, round(window / block)) | 1
        pad = nb // 2
        p = np.pad(med, pad, constant_values=np.nan)
        stack = np.stack([p[i : i + bh, j : j + bw] for i in range(nb) for j in range(nb)], -1)
        level = nanmedian_last(stack.astype(np.float32, copy=False))
    return cv2.resize(level, (bw * block, bh * block), interpolation=cv2.INTER_LINEAR)[:h, :w]


def module_level(celsius: np.ndarray, config: ThermalConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask, level): the module-surface mask and the local module temperature (°C, float32) of each pixel."""
    cfg = config or load_thermal_config()
    t = celsius.astype(np.float32, copy=False)
    finite = np.isfinite(t)
    smooth = (local_std(t, cfg.texture_window_px) < cfg.texture_max_k) & finite
    below, above = cfg.module_band_k
    mode = modal_temperature(t, smooth)
    if mode is None:
        return np.zeros(t.shape, bool), np.full(t.shape, np.nan, np.float32)
    level = np.full(t.shape, mode, np.float32)
    mask = smooth & (t >= mode - below) & (t <= mode + above)
    for _ in range(2):
        lv = block_median_level(t, mask, cfg.background_block_px, cfg.background_window_px)
        level = np.where(np.isfinite(lv), lv, mode).astype(np.float32)
        mask = smooth & (t >= level - below) & (t <= level + above)
    return mask, level


def module_mask(celsius: np.ndarray, config: ThermalConfig | None = None) -> np.ndarray:
    """Boolean (H, W): pixels of smooth module surface at the local module temperature."""
    return module_level(celsius, config)[0]


def module_area_px(mask: np.ndarray, min_patches: int = 5) -> float | None:
    """One module's area in pixels, from the mask's patches (the glass between the frames' dark lines);
    None when too few patches look like modules."""
    n, _lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    areas = stats[1:, cv2.CC_STAT_AREA]
    fill = areas / np.maximum(stats[1:, cv2.CC_STAT_WIDTH] * stats[1:, cv2.CC_STAT_HEIGHT], 1)
    candidates = areas[(areas >= 100) & (fill > 0.7)]
    if candidates.size < min_patches:
        return None
    return float(np.median(candidates))


# --- measure -----------------------------------------------------------------------------------------------


def _clip_box(box_xyxy: tuple[float, float, float, float], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    x1, y1, x2, y2 = box_xyxy
    x1, y1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    x2, y2 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    return x1, y1, max(x1 + 1, x2), max(y1 + 1, y2)


def _ring(box: tuple[int, int, int, int], width: int, shape: tuple[int, int], inner: np.ndarray | None = None):
    """Slices of the ring's bounding window and a boolean ring mask within it (box or ``inner`` excluded)."""
    h, w = shape
    x1, y1, x2, y2 = box
    X1, Y1, X2, Y2 = max(0, x1 - width), max(0, y1 - width), min(w, x2 + width), min(h, y2 + width)
    ring = np.ones((Y2 - Y1, X2 - X1), bool)
    if inner is None:
        ring[y1 - Y1 : y2 - Y1, x1 - X1 : x2 - X1] = False
    else:
        ring &= ~inner[Y1:Y2, X1:X2]
    return (slice(Y1, Y2), slice(X1, X2)), ring


def reference_temperature(
    celsius: np.ndarray,
    box: tuple[int, int, int, int],
    mask: np.ndarray,
    config: ThermalConfig,
    exclude: np.ndarray | None = None,
) -> tuple[float, ReferenceMethod, int, int]:
    """(Tref, method, pixel count, ring width) for an integer box: see the module docstring."""
    width = config.reference_ring_px
    for k in (1, 2, 3, 4):
        win, ring = _ring(box, width * k, celsius.shape, exclude)
        sel = ring & mask[win]
        vals = celsius[win][sel]
        vals = vals[np.isfinite(vals)]
        if vals.size >= config.reference_min_pixels:
            return float(np.median(vals)), "module_ring", int(vals.size), width * k
    vals = celsius[mask]
    vals = vals[np.isfinite(vals)]
    if vals.size >= config.reference_min_pixels:
        return float(np.median(vals)), "frame_modules", int(vals.size), 0
    win, ring = _ring(box, width, celsius.shape, exclude)
    vals = celsius[win][ring]
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        vals = celsius[np.isfinite(celsius)]
    return float(np.median(vals)) if vals.size else float("nan"), "ring_all", int(vals.size), width


def measure(
    celsius: np.ndarray,
    box_xyxy: tuple[float, float, float, float],
    *,
    irradiance_w_m2: float | None = None,
    mask: np.ndarray | None = None,
    config: ThermalConfig | None = None,
) -> Measurement:
    """Tmax, Tmean, healthy-module Tref, ΔT (and ΔTn at 1000 W/m² with an irradiance) of a box in pixels.

    ``mask`` (from :func:`module_mask`) can be passed to measure many boxes of one frame cheaply.
    """
    cfg = config or load_thermal_config()
    if irradiance_w_m2 is not None and irradiance_w_m2 <= 0:
        raise ValueError(f"irradiance must be positive, got {irradiance_w_m2}")
    m = module_mask(celsius, cfg) if mask is None else mask
    box = _clip_box(box_xyxy, celsius.shape[:2])
    x1, y1, x2, y2 = box
    inside = celsius[y1:y2, x1:x2]
    inside = inside[np.isfinite(inside)]
    t_max = float(inside.max()) if inside.size else float("nan")
    t_mean = float(inside.mean()) if inside.size else float("nan")
    t_ref, method, n, width = reference_temperature(celsius, box, m, cfg)
    dt = t_max - t_ref
    return Measurement(
        t_max_c=round(t_max, 1),
        t_mean_c=round(t_mean, 1),
        t_ref_c=round(t_ref, 1),
        delta_t_k=round(dt, 1),
        delta_t_norm_k=normalised_delta_t(dt, irradiance_w_m2),
        irradiance_w_m2=irradiance_w_m2,
        reference=method,
        reference_pixels=n,
        reference_ring_px=width,
    )


def normalised_delta_t(delta_t_k: float, irradiance_w_m2: float | None) -> float | None:
    """ΔT scaled to 1000 W/m² (ΔTn = ΔT x 1000 / G), rounded to 0.1; None without an irradiance."""
    if irradiance_w_m2 is None:
        return None
    if irradiance_w_m2 <= 0:
        raise ValueError(f"irradiance must be positive, got {irradiance_w_m2}")
    return round(delta_t_k * 1000.0 / irradiance_w_m2, 1)


# --- hotspot finder ------------------------------------------------------------------------------------------


def classify_pattern(pixels: int, module_px: float | None) -> tuple[Pattern, float | None]:
    """Pattern guess from the region's area as a fraction of one module (see the module docstring)."""
    if not module_px:
        return "unknown", None
    frac = pixels / module_px
    if frac < 1.5 / 60:
        p: Pattern = "cell"
    elif frac < 0.2:
        p = "cells"
    elif frac < 0.7:
        p = "substring"
    else:
        p = "module"
    return p, round(frac, 2)


def find_hotspots(
    celsius: np.ndarray,
    *,
    irradiance_w_m2: float | None = None,
    margin_k: float | None = None,
    config: ThermalConfig | None = None,
    levels: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Hotspot]:
    """Regions of module surface at least ``margin_k`` (default ``hotspot_margin_k``) hotter than the
    healthy modules around them, hottest first. Independent of any model. ``levels``: this frame's
    :func:`module_level`, when already computed."""
    cfg = config or load_thermal_config()
    margin = cfg.hotspot_margin_k if margin_k is None else margin_k
    t = celsius.astype(np.float32, copy=False)
    mask, level = levels if levels is not None else module_level(t, cfg)
    if not mask.any():
        return []
    excess = np.nan_to_num(t - level, nan=0.0)
    seeds = excess >= cfg.hotspot_seed_k
    if not seeds.any():
        return []
    grown = (excess >= cfg.hotspot_seed_k / 2).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    seeded = np.unique(lab[seeds])
    module_px = module_area_px(mask)
    found: list[Hotspot] = []
    for k in seeded:
        if k == 0:
            continue
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < cfg.hotspot_min_pixels:
            continue
        box = (x, y, x + w, y + h)
        if (h == t.shape[0] and w < t.shape[1] // 4) or (w == t.shape[1] and h < t.shape[0] // 4):
            continue  # a narrow band through the whole frame: the gap between two rows, not a module
        region = lab == k
        if not _compact(region[y : y + h, x : x + w], cfg.hotspot_min_solidity, cfg.hotspot_min_rect_fill):
            continue
        vals = t[y : y + h, x : x + w][region[y : y + h, x : x + w]]
        t_max = float(np.nanmax(vals))
        t_ref, method, nref, _ = reference_temperature(t, box, mask, cfg, exclude=region)
        dt = t_max - t_ref
        if method != "module_ring" or not dt >= margin:
            continue
        pattern, frac = classify_pattern(area, module_px)
        found.append(
            Hotspot(
                box_xyxy=box,
                pixels=area,
                t_max_c=round(t_max, 1),
                t_ref_c=round(t_ref, 1),
                delta_t_k=round(dt, 1),
                delta_t_norm_k=normalised_delta_t(dt, irradiance_w_m2),
                pattern=pattern,
                module_fraction=frac,
                reference=method,
                reference_pixels=nref,
                clipped=x == 0 or y == 0 or x + w == t.shape[1] or y + h == t.shape[0],
            )
        )
    return sorted(found, key=lambda f: -f.delta_t_k)


def _compact(region: np.ndarray, min_solidity: float, min_rect_fill: float) -> bool:
    """A heated cell, substring or module is a compact, near-rectangular blob; warm ground between rows
    is ragged. Solidity = area / convex-hull area, rect fill = area / minimum-area rotated rectangle."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return False
    area = float(region.sum())
    c = max(contours, key=cv2.contourArea)
    hull = cv2.contourArea(cv2.convexHull(c))
    (_, _), (rw, rh), _ = cv2.minAreaRect(c)
    # contour areas run through pixel centres, so tiny blobs score above 1: they pass
    return area >= min_solidity * hull and area >= min_rect_fill * rw * rh


# --- rendering -----------------------------------------------------------------------------------------------


def render_range(celsius: np.ndarray, config: ThermalConfig | None = None, **overrides: object) -> tuple[float, float]:
    """(low, high) °C that :func:`render` maps to the colour map's ends."""
    cfg = config or load_thermal_config()
    mode = overrides.get("mode") or cfg.render_range
    finite = celsius[np.isfinite(celsius)]
    if finite.size == 0:
        return 0.0, 1.0
    if mode == "percentile":
        p = overrides.get("percentiles") or cfg.render_percentiles
        lo, hi = (float(v) for v in np.percentile(finite, p))
    elif mode == "fixed":
        span = float(overrides.get("span_k") or cfg.render_span_k)
        below = overrides.get("below_k")
        below = float(cfg.render_below_k if below is None else below)
        mask = module_mask(celsius, cfg)
        base = float(np.median(celsius[mask])) if mask.any() else float(np.median(finite))
        lo, hi = base - below, base - below + span
    else:
        raise ValueError(f"render range must be 'percentile' or 'fixed', got {mode!r}")
    return lo, max(hi, lo + 1e-3)


def render(
    celsius: np.ndarray,
    *,
    mode: Literal["percentile", "fixed"] | None = None,
    percentiles: tuple[float, float] | None = None,
    span_k: float | None = None,
    below_k: float | None = None,
    colormap: str | None = None,
    config: ThermalConfig | None = None,
) -> np.ndarray:
    """The temperature map as an (H, W, 3) uint8 RGB image through an OpenCV colour map.

    Range: ``mode="percentile"`` (each frame's own ``percentiles``) or ``"fixed"`` (``span_k`` kelvin from
    ``below_k`` under the frame's module temperature); defaults from ``configs/thermal.yaml``.
    """
    cfg = config or load_thermal_config()
    lo, hi = render_range(celsius, cfg, mode=mode, percentiles=percentiles, span_k=span_k, below_k=below_k)
    t = np.nan_to_num(celsius.astype(np.float32), nan=lo)
    u8 = np.clip((t - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    name = (colormap or cfg.render_colormap).upper()
    cmap = getattr(cv2, f"COLORMAP_{name}", None)
    if cmap is None:
        raise ValueError(f"unknown OpenCV colour map {name!r}")
    return cv2.cvtColor(cv2.applyColorMap(u8, cmap), cv2.COLOR_BGR2RGB)
