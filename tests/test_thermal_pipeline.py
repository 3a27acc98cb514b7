"""Thermal inspection end to end on the 13 real DJI Zenmuse XT2 frames: the pipeline reads the
temperatures, shows the model a consistent rendering, measures ΔT, adds what the radiometric
finder sees, and rates hot spots by ΔT. Truth: tests/data/thermal_xt2_truth.yaml (hand-checked,
independent of detector/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from detector_fixtures import XT2_FRAMES, model_dir

from detector import Detector
from detector.export import rows

TRUTH = yaml.safe_load((Path(__file__).parent / "data" / "thermal_xt2_truth.yaml").read_text())
THERMAL = ("pv_hotspot", "pv_diode_fault")


def _hits(box, truth_box) -> bool:
    """Overlap of at least 30 % of the smaller box."""
    iw = min(box[2], truth_box[2]) - max(box[0], truth_box[0])
    ih = min(box[3], truth_box[3]) - max(box[1], truth_box[1])
    if iw <= 0 or ih <= 0:
        return False
    area = min((box[2] - box[0]) * (box[3] - box[1]), (truth_box[2] - truth_box[0]) * (truth_box[3] - truth_box[1]))
    return iw * ih >= 0.3 * area


@pytest.fixture(scope="module")
def results():
    if len(XT2_FRAMES) != 13:
        pytest.skip("the 13 XT2 frames are not in the mirror")
    det = Detector(model_dir(), threads=1)
    return {Path(r.source).name: r for r in det.inspect(XT2_FRAMES)}


def test_every_real_hotspot_is_found_with_its_delta_t_and_clean_frames_stay_clean(results):
    assert set(results) == set(TRUTH)
    found = 0
    for name, truth in TRUTH.items():
        r = results[name]
        assert r.ok and r.thermal is not None and r.thermal.format == "flir" and r.thermal.params
        hot = [f for f in r.findings if f.class_name in THERMAL]
        if not truth:
            assert hot == [], (name, hot)
            continue
        for t in truth:
            match = [f for f in hot if _hits(f.box.xyxy, t["box"])]
            assert len(match) == 1, (name, t, hot)  # one hot spot, one finding (model boxes on it merged)
            best = max(match, key=lambda f: f.thermal.delta_t_k)
            assert best.thermal is not None and abs(best.thermal.delta_t_k - t["delta_t_k"]) <= max(
                5, 0.1 * t["delta_t_k"]
            )
            assert best.thermal.t_ref_c < best.thermal.t_max_c
            if t["delta_t_k"] >= 20:
                assert best.priority == "P1", (name, best)
            found += 1
    assert found == sum(len(v) for v in TRUTH.values()) == 4


def test_priority_reasons_and_exports_carry_the_temperatures(results):
    hot = [(r, f) for r in results.values() for f in r.findings if f.thermal is not None]
    assert hot
    for _, f in hot:
        assert any(x.startswith("ΔT ") for x in f.reasons)
        assert any("provisional" in x for x in f.reasons)  # no irradiance given
        assert any("radiometric finder" in x for x in f.reasons)
    r, f = hot[0]
    row = [x for x in rows([r]) if x["index"] == f.index][0]
    assert row["thermal_delta_t_k"] == f.thermal.delta_t_k and row["source"] == r.source


def test_irradiance_and_radiometric_switch(results):
    det = Detector(model_dir(), threads=1, irradiance_w_m2=500)
    name = next(n for n, t in TRUTH.items() if t and t[0]["delta_t_k"] > 40)
    r = det.inspect([next(p for p in XT2_FRAMES if p.name == name)])[0]
    f = max((f for f in r.findings if f.thermal), key=lambda f: f.thermal.delta_t_k)
    assert f.thermal.delta_t_norm_k == pytest.approx(f.thermal.delta_t_k * 2, abs=0.2)
    assert any("500 W/m² below 600" in x for x in f.reasons)
    plain = Detector(model_dir(), threads=1, radiometric=False)
    assert plain.model_key != det.model_key
    p = plain.inspect([next(p for p in XT2_FRAMES if p.name == name)])[0]
    assert p.thermal is None and all(f.thermal is None for f in p.findings)


def test_a_dji_rjpeg_gets_the_unsupported_note(tmp_path):
    sample = Path(XT2_FRAMES[0]).parents[3] / "thermal_formats" / "M3T_DJI_0001_R.JPG" if XT2_FRAMES else None
    if sample is None or not sample.is_file():
        pytest.skip("no thermal_formats samples")
    r = Detector(model_dir(), threads=1).inspect([sample])[0]
    assert r.ok and r.thermal is not None and "not supported" in (r.thermal.note or "")
