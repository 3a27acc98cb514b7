"""detector.thermal on the 13 real XT2 frames (against tests/data/thermal_xt2_truth.yaml) and on synthetic maps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detector.radiometry import Radiometry, load_thermal_config, read_radiometry
from detector.thermal import (
    Hotspot,
    classify_pattern,
    find_hotspots,
    measure,
    module_mask,
    normalised_delta_t,
    render,
    render_range,
)

TRUTH = Path(__file__).parent / "data" / "thermal_xt2_truth.yaml"
XT2_DIR = Path("pv_zelestra_ir/data/Test")


def _tolerance(truth_dt: float) -> float:
    return max(5.0, 0.1 * truth_dt)


def _centre_inside(box, other) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def matches(found: Hotspot, truth: dict) -> bool:
    return _iou(found.box_xyxy, truth["box"]) >= 0.3 or _centre_inside(found.box_xyxy, truth["box"])


@pytest.fixture(scope="module")
def frames(mirror) -> dict[str, np.ndarray]:
    """Temperature maps of the 13 frames, by file name."""
    paths = sorted((mirror / XT2_DIR).glob("*.JPG"))
    if not paths:
        pytest.skip(f"no XT2 frames under {mirror / XT2_DIR}")
    out = {}
    for p in paths:
        r = read_radiometry(p.read_bytes())
        assert isinstance(r, Radiometry), (p.name, r)
        out[p.name] = r.celsius
    return out


@pytest.fixture(scope="module")
def truth() -> dict[str, list[dict]]:
    return yaml.safe_load(TRUTH.read_text())


@pytest.fixture(scope="module")
def found(frames) -> dict[str, list[Hotspot]]:
    return {name: find_hotspots(c) for name, c in frames.items()}


def test_truth_covers_the_frames(frames, truth):
    assert len(frames) == 13
    assert set(truth) == set(frames)
    assert sum(1 for v in truth.values() if v) == 4


def test_finder_finds_every_truth_hotspot(found, truth):
    hot = {k: v for k, v in truth.items() if v}
    assert hot
    for name, spots in hot.items():
        for t in spots:
            hits = [f for f in found[name] if matches(f, t)]
            assert hits, f"{name}: missed {t['box']} (found {[f.box_xyxy for f in found[name]]})"
            best = max(hits, key=lambda f: f.delta_t_k)
            assert abs(best.delta_t_k - t["delta_t_k"]) <= _tolerance(t["delta_t_k"]), (name, best, t)


def test_finder_reports_nothing_else(found, truth):
    for name, spots in truth.items():
        extra = [f for f in found[name] if not any(matches(f, t) for t in spots)]
        assert not extra, f"{name}: false hotspot(s) {[(f.box_xyxy, f.delta_t_k) for f in extra]}"


def test_finder_hotspots_are_well_described(found, truth):
    spots = [f for name in truth for f in found[name]]
    assert len(spots) == 4
    for f in spots:
        assert f.reference == "module_ring" and f.reference_pixels >= 200
        assert f.t_max_c > f.t_ref_c and f.delta_t_k == pytest.approx(f.t_max_c - f.t_ref_c, abs=0.11)
        assert f.pattern in ("cell", "cells", "substring", "module")
        assert f.clipped == (f.box_xyxy[3] == 512 or f.box_xyxy[1] == 0 or f.box_xyxy[0] == 0 or f.box_xyxy[2] == 640)
    # the three whole-module hotspots away from the frame edge are classed as modules
    big = [f for f in spots if f.delta_t_k > 40]
    assert len(big) == 3 and all(f.pattern == "module" for f in big)


def test_measure_truth_boxes(frames, truth):
    n = 0
    for name, spots in truth.items():
        for t in spots:
            m = measure(frames[name], tuple(t["box"]))
            n += 1
            assert m.t_max_c == pytest.approx(t["t_max_c"], abs=0.2)
            assert abs(m.t_ref_c - t["t_ref_c"]) <= 4.0, (name, m)
            assert abs(m.delta_t_k - t["delta_t_k"]) <= _tolerance(t["delta_t_k"]), (name, m)
            assert m.reference == "module_ring"
    assert n == 4


def test_reference_excludes_ground_real_frame(frames):
    """A box on glass beside a warm gravel strip: the reference is the glass, not the gravel."""
    c = frames["1e335257-76c0-41af-8d94-3ccff803322b.JPG"]
    mask = module_mask(c)
    # gravel strip between rows at x~300-345, y~0-240 in this frame (warmer than the modules)
    gravel = c[20:230, 305:340]
    glass = c[20:230, 360:440]
    assert np.median(gravel) > np.median(glass) + 1.0
    assert mask[20:230, 360:440].mean() > 0.6 and mask[20:230, 305:340].mean() < 0.5
    m = measure(c, (345, 100, 360, 120), mask=mask)  # a box on the glass edge next to the gravel
    assert abs(m.t_ref_c - float(np.median(glass))) < 1.0
    assert m.t_ref_c < float(np.median(gravel)) - 1.0


def _synthetic() -> np.ndarray:
    """Tables of module glass (40 °C, module frames every 28 px) with ragged, warmer ground between them
    (mean 45 °C, spatially correlated ±2.5 K, like gravel at 40 m), and one module 25 K hot."""
    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (256, 320)).astype(np.float32), (0, 0), 2.0)
    t = (45.0 + noise * (2.5 / noise.std())).astype(np.float32)
    for x0 in (20, 130, 240):
        t[:, x0 : x0 + 70] = 40.0 + rng.normal(0, 0.1, (256, 70))
        t[::28, x0 : x0 + 70] = 38.5  # module frames
        t[:, x0 + 35] = 38.5
    t[113:139, 131:164] = 65.0  # one hot module
    return t


def test_reference_excludes_ground_synthetic():
    t = _synthetic()
    m = measure(t, (131, 113, 164, 139))
    assert m.reference == "module_ring"
    ground = np.r_[t[:, :20].ravel(), t[:, 90:130].ravel()]
    assert np.median(ground) > 44  # the ground is hotter than the glass
    assert abs(m.t_ref_c - 40.0) < 0.5  # the glass, not the ground on its left
    assert m.t_max_c == pytest.approx(65.0, abs=0.1)
    assert m.delta_t_k == pytest.approx(25.0, abs=0.5)
    spots = find_hotspots(t)
    assert len(spots) == 1
    (s,) = spots
    assert _iou(s.box_xyxy, (131, 113, 164, 139)) > 0.7
    assert s.delta_t_k == pytest.approx(25.0, abs=0.5)


def test_clean_synthetic_has_no_hotspot():
    t = _synthetic()
    t[113:139, 131:164] = 40.0
    assert find_hotspots(t) == []


def test_normalisation():
    assert normalised_delta_t(12.0, 600.0) == 20.0
    assert normalised_delta_t(12.0, None) is None
    with pytest.raises(ValueError):
        normalised_delta_t(12.0, 0.0)
    t = _synthetic()
    m = measure(t, (131, 113, 164, 139), irradiance_w_m2=800.0)
    assert m.delta_t_norm_k is not None
    assert m.delta_t_norm_k == pytest.approx(m.delta_t_k * 1000 / 800, abs=0.11)
    (s,) = find_hotspots(t, irradiance_w_m2=500.0)
    assert s.delta_t_norm_k == pytest.approx(s.delta_t_k * 2, abs=0.11)


def test_pattern_guess():
    assert classify_pattern(10, 1000.0) == ("cell", 0.01)
    assert classify_pattern(100, 1000.0)[0] == "cells"
    assert classify_pattern(330, 1000.0)[0] == "substring"
    assert classify_pattern(1000, 1000.0)[0] == "module"
    assert classify_pattern(1000, None) == ("unknown", None)


def test_render_shape_and_range(frames):
    c = next(iter(frames.values()))
    img = render(c)
    assert img.shape == (*c.shape, 3) and img.dtype == np.uint8
    assert img.std() > 10  # not a flat image
    lo, hi = render_range(c)
    cfg = load_thermal_config()
    assert (lo, hi) == pytest.approx(tuple(np.percentile(c, cfg.render_percentiles)), abs=1e-3)
    fixed = render(c, mode="fixed", span_k=40.0, below_k=5.0)
    assert fixed.shape == img.shape and not np.array_equal(fixed, img)
    flo, fhi = render_range(c, mode="fixed", span_k=40.0, below_k=5.0)
    assert fhi - flo == pytest.approx(40.0)
    with pytest.raises(ValueError):
        render(c, colormap="no_such_map")


def test_render_handles_nan():
    t = _synthetic()
    t[0:10, 0:10] = np.nan
    img = render(t)
    assert img.shape == (256, 320, 3) and img.dtype == np.uint8
