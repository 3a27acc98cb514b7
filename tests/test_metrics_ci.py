"""Bootstrap intervals drawn by source group (training/metrics.py): copies of one photo are one sample."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faster_coco_eval")

from training.metrics import ImageBoxes, coco_map, draw_clusters, map_ci  # noqa: E402


def _photos(n_photos: int, copies: int, found: set[int]) -> tuple[list[ImageBoxes], list[ImageBoxes], list[str]]:
    """``n_photos`` photos, each stored ``copies`` times (one box each); the model finds the box in the
    photos of ``found`` (in all their copies, score 0.9) and puts a wrong box in the others (0.6)."""
    gts, preds, clusters = [], [], []
    rng = np.random.default_rng(0)
    for p in range(n_photos):
        x, y = rng.uniform(10, 150, 2)
        box = np.array([[x, y, x + 40, y + 30]])
        for _ in range(copies):
            i = len(gts) + 1
            gts.append(ImageBoxes(i, 320, 320, box, np.array([0])))
            hit = box if p in found else np.array([[250.0, 250.0, 300.0, 300.0]])
            score = np.array([0.9 if p in found else 0.6])
            preds.append(ImageBoxes(i, 320, 320, hit.copy(), np.array([0]), score))
            clusters.append(f"photo{p}")
    return gts, preds, clusters


def test_a_draw_keeps_each_group_whole_and_draws_as_many_groups_as_there_are():
    clusters = ["a", "a", "a", "b", "c", "c"]
    rng = np.random.default_rng(3)
    for _ in range(20):
        idx = draw_clusters(clusters, rng)
        drawn = [clusters[i] for i in idx]
        # a group comes with all its images; three groups drawn, with replacement
        assert all(drawn.count(c) % {"a": 3, "b": 1, "c": 2}[c] == 0 for c in set(drawn))
        assert sum(drawn.count(c) // {"a": 3, "b": 1, "c": 2}[c] for c in set(drawn)) == 3


def test_copies_of_one_photo_widen_the_interval_to_what_the_photos_support():
    gts, preds, clusters = _photos(8, 5, found={0, 1, 2, 3})
    point = coco_map(gts, preds, ["defect"])["map50"]
    by_photo = map_ci(gts, preds, ["defect"], clusters, draws=150, seed=1)
    by_image = map_ci(gts, preds, ["defect"], [str(i) for i in range(len(gts))], draws=150, seed=1)
    assert by_photo["clusters"] == 8 and by_image["clusters"] == 40
    for r in (by_photo, by_image):
        lo, hi = r["map50"]
        assert lo <= point <= hi
        assert r["per_class"]["defect"]["map50"] == r["map50"]  # one class: its AP is the mean
    width = lambda r: r["map50"][1] - r["map50"][0]  # noqa: E731
    assert width(by_photo) > 1.5 * width(by_image)


def test_a_perfect_model_has_no_spread_and_a_bad_cluster_list_is_refused():
    gts, preds, clusters = _photos(5, 2, found=set(range(5)))
    r = map_ci(gts, preds, ["defect"], clusters, draws=20)
    assert r["map50"] == [1.0, 1.0] and r["draws"] == 20 and r["level"] == 0.95
    with pytest.raises(ValueError, match="cluster ids for"):
        map_ci(gts, preds, ["defect"], clusters[:-1], draws=5)
    with pytest.raises(ValueError, match="at least one draw"):
        map_ci(gts, preds, ["defect"], clusters, draws=0)


def test_paired_bootstrap_draws_pairs_by_group():
    from training.metrics import paired_bootstrap

    gts, half, clusters = _photos(8, 5, found={0, 1, 2, 3})
    _, better, _ = _photos(8, 5, found={0, 1, 2, 3, 4})
    by_photo = paired_bootstrap(gts, half, better, ["defect"], n=100, seed=0, clusters=clusters)
    by_image = paired_bootstrap(gts, half, better, ["defect"], n=100, seed=0)
    assert by_photo["groups"] == 8 and by_image["groups"] == 40
    assert by_photo["map50"]["delta"] == by_image["map50"]["delta"] > 0
    # one photo more found: by photo that is one sample of eight, so some draws miss it entirely
    assert by_photo["map50"]["ci95"][0] == 0.0 < by_image["map50"]["ci95"][0]
