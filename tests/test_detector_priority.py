"""detector.priority: the shipped rules (configs/priority.yaml) pinned on constructed cases, plus roll-ups."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from detector.detections import Detections
from detector.priority import (
    PRIORITY_PATH,
    assess,
    assess_detections,
    load_priority_config,
    parse_priority_config,
)
from detector.results import ImageError, ImageResult, rollup
from detector.taxonomy import load_taxonomy

CFG = load_priority_config()


def rate(name, conf=0.9, area=0.001, **kw):
    return assess(name, conf, area_frac=area, config=CFG, **kw)


def test_every_taxonomy_class_has_a_rule():
    assert set(load_taxonomy().names) == set(CFG.classes)


@pytest.mark.parametrize(
    "name,priority,level",
    [
        ("pv_physical_damage", "P1", 4),  # broken glass: CoA 3, safety
        ("pv_electrical_damage", "P1", 4),  # burn marks: fire risk
        ("pv_diode_fault", "P2", 3),  # CoA 2 major: a substring out
        ("pv_hotspot", "P3", 2),  # CoA 2 minor: one small hot spot
        ("pv_bird_drop", "P4", 1),
        ("pv_soiling", "P4", 1),
        ("blade_damage", "P3", 3),  # category 3
        ("blade_oil_leak", "P4", 2),
        ("blade_pinhole", "P4", 2),
        ("blade_dirt", "P4", 1),
    ],
)
def test_base_priorities(name, priority, level):
    a = rate(name)
    assert (a.priority, a.level, a.base_level) == (priority, level, level) and a.reasons == []
    assert a.action and a.time_frame


def test_size_count_and_confidence_modifiers():
    big = rate("pv_hotspot", area=0.05)
    assert (big.priority, big.level) == ("P2", 3) and "larger than 2%" in big.reasons[0]
    many = assess("pv_hotspot", 0.9, area_frac=0.001, count_in_image=3, config=CFG)
    assert many.priority == "P2" and "3 or more" in many.reasons[0]
    both = assess("pv_hotspot", 0.9, area_frac=0.05, count_in_image=4, config=CFG)
    assert (both.priority, both.level) == ("P1", 4) and len(both.reasons) == 2
    unsure = rate("pv_hotspot", conf=0.3)
    assert (unsure.priority, unsure.level) == ("P4", 1) and "low confidence" in unsure.reasons[0]
    # up and down together: +1 (size) -1 (confidence)
    mixed = rate("pv_hotspot", conf=0.3, area=0.05)
    assert mixed.level == 2


def test_raise_is_capped_and_levels_clamp_to_the_scale():
    # blade damage: size (+1), length (+1), count (+1), tip (+1) -> capped at +2 -> category 5
    a = assess("blade_damage", 0.9, area_frac=0.2, length_m=0.5, count_in_image=3, zone="tip", config=CFG)
    assert (a.level, a.priority) == (5, "P1") and len(a.reasons) == 4
    assert a.action.startswith("stop the turbine")
    # already at the top of the scale: stays there
    assert rate("pv_physical_damage", area=0.5).level == 4


def test_length_rule_needs_a_known_ground_size():
    assert rate("blade_damage", length_m=None).level == 3
    assert rate("blade_damage", length_m=0.2).level == 3
    assert rate("blade_damage", length_m=0.31).level == 4


def test_zone_modifier():
    assert rate("blade_damage", zone="tip").priority == "P2"
    assert rate("blade_damage", zone="root").priority == "P3"
    assert rate("blade_pinhole", zone="tip").level == 3


def test_class_specific_actions():
    assert rate("pv_soiling").action == "clean with the next cleaning round"
    assert rate("pv_soiling", area=0.4).action == "schedule cleaning of the affected rows"
    low_conf_glass = rate("pv_physical_damage", conf=0.2)
    assert low_conf_glass.priority == "P2" and low_conf_glass.action == "verify the damage and replace the module"
    assert rate("blade_dirt").action == "document; no action"


def test_unknown_class_is_flagged_for_review():
    a = rate("some_new_class")
    assert a.priority == "P3" and a.level is None and "no rule" in a.reasons[0]


def test_assess_detections_counts_per_class_and_uses_image_area():
    dets = Detections(
        [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [0, 0, 50, 50]],
        [0.9, 0.9, 0.9, 0.9],
        [8, 8, 8, 9],
    )
    names = load_taxonomy().names
    a = assess_detections(dets, names, (100, 100), config=CFG)
    # three hot spots in the image -> each one step up; 10x10 of 100x100 = 1% (< 2%): no size step
    assert [x.priority for x in a[:3]] == ["P2"] * 3
    # the diode fault: 25% of the image, count 1 -> base
    assert a[3].priority == "P2" and a[3].level == 3
    # with a ground sampling distance, blade damage length is measured in metres
    d2 = Detections([[0, 0, 100, 10]], [0.9], [0])
    assert assess_detections(d2, names, (1000, 1000), gsd_m=0.005, config=CFG)[0].level == 4  # 0.5 m
    assert assess_detections(d2, names, (1000, 1000), gsd_m=None, config=CFG)[0].level == 3


def _result(group, findings, error=None):
    from detector.priority import summarize

    if error is not None:
        err = ImageError(code="corrupt_image", status=422, message=error)
        return ImageResult.failed(err, source=f"{group}/x.jpg", flight=group)
    return ImageResult(source=f"{group}/x.jpg", flight=group, summary=summarize(findings))


def test_rollup_per_group():
    results = [
        _result("flight_a", [("P3", "pv_hotspot"), ("P4", "pv_soiling")]),
        _result("flight_a", []),
        _result("flight_a", [("P1", "pv_physical_damage")]),
        _result("flight_b", [("P4", "pv_soiling")]),
        _result("flight_b", [], error="broken"),
    ]
    groups = rollup(results)
    assert list(groups) == ["flight_a", "flight_b"]  # worst first
    a, b = groups["flight_a"], groups["flight_b"]
    assert a.worst == "P1" and a.counts == {"P1": 1, "P2": 0, "P3": 1, "P4": 1}
    assert (a.images, a.images_with_defects, a.defects) == (3, 2, 3)
    assert a.by_class == {"pv_hotspot": 1, "pv_soiling": 1, "pv_physical_damage": 1}
    assert b.worst == "P4" and (b.images, b.images_failed) == (2, 1)
    everything = rollup(results, key=lambda r: "site")
    assert everything["site"].defects == 4 and everything["site"].worst == "P1"


def test_config_validation_messages():
    raw = yaml.safe_load(PRIORITY_PATH.read_text())
    bad = copy.deepcopy(raw)
    bad["classes"]["pv_hotspot"]["base"] = 7
    with pytest.raises(ValueError, match="base 7"):
        parse_priority_config(bad)
    bad = copy.deepcopy(raw)
    bad["scales"]["pv_coa"]["levels"][2]["priority"] = "P9"
    with pytest.raises(ValueError, match="P9"):
        parse_priority_config(bad)
    bad = copy.deepcopy(raw)
    del bad["scales"]["blade_category"]["levels"][3]
    with pytest.raises(ValueError, match="consecutive"):
        parse_priority_config(bad)
    bad = copy.deepcopy(raw)
    bad["classes"]["pv_soiling"]["size"][0]["min_lenght_m"] = 1  # typo
    with pytest.raises(ValueError):
        parse_priority_config(bad)
    # an operator's edit takes effect
    edited = copy.deepcopy(raw)
    edited["classes"]["pv_soiling"]["base"] = 3
    cfg = parse_priority_config(edited)
    assert assess("pv_soiling", 0.9, area_frac=0.01, config=cfg).priority == "P2"
    assert np.isclose(cfg.max_raise, 2)


def test_diode_faults_escalate_by_affected_substrings():
    """A diode-fault box is one substring (cells merged at build time): one or two in a frame are a
    module fault (P2); three or more in one frame point at a string or inverter issue (P1)."""
    names = load_taxonomy().names
    for n, expected in ((1, "P2"), (2, "P2"), (3, "P1"), (12, "P1")):
        boxes = [[i * 40.0, 0, i * 40.0 + 12, 36] for i in range(n)]
        dets = Detections(boxes, [0.9] * n, [names.index("pv_diode_fault")] * n)
        a = assess_detections(dets, names, (512, 640), config=CFG)
        assert {x.priority for x in a} == {expected}, n
