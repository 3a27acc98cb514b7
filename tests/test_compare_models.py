"""training.metrics.paired_bootstrap (bench/compare_models.py; the promotion of a costlier model): the paired
bootstrap that says whether a val difference is more than noise."""

from __future__ import annotations

import numpy as np

from training.metrics import ImageBoxes


def _bootstrap():
    from training.metrics import paired_bootstrap

    return paired_bootstrap


def _scene(n: int, seed: int = 0) -> tuple[list[ImageBoxes], list[ImageBoxes], list[ImageBoxes]]:
    """n images with one box each; a perfect model, and one that finds the box in every other image."""
    rng = np.random.default_rng(seed)
    gts, perfect, half = [], [], []
    for i in range(n):
        x, y = rng.uniform(10, 200, 2)
        box = np.array([[x, y, x + 40, y + 30]])
        cls = np.array([i % 2])
        gts.append(ImageBoxes(i + 1, 320, 320, box, cls))
        perfect.append(ImageBoxes(i + 1, 320, 320, box.copy(), cls, np.array([0.9])))
        found = i % 4 < 2
        half.append(ImageBoxes(i + 1, 320, 320, box[:found].copy(), cls[:found], np.array([0.9])[:found]))
    return gts, perfect, half


def test_a_clearly_better_model_is_ahead_in_every_draw() -> None:
    gts, perfect, half = _scene(40)
    r = _bootstrap()(gts, half, perfect, ["a", "b"], n=30, seed=1)
    assert r["map50"]["b"] > 0.99 and r["map50"]["a"] < 0.6
    assert r["map50"]["ci95"][0] > 0.3 and r["map50"]["share_b_ahead"] == 1.0
    assert r["map50_95"]["delta"] > 0


def test_the_same_model_twice_differs_by_nothing() -> None:
    gts, _, half = _scene(30)
    r = _bootstrap()(gts, half, half, ["a", "b"], n=20, seed=2)
    assert r["map50"]["delta"] == 0 and r["map50"]["ci95"] == [0.0, 0.0]
    assert r["map50"]["share_b_ahead"] == 0.0
