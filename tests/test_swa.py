"""bench/swa.py: which checkpoints a weight average of a run takes, and with what weights."""

from __future__ import annotations

import math

import pytest
from bench_scripts import bench_script


def _swa():
    return bench_script("swa.py")


def test_epochs_in_numeric_order_and_the_averages_asked_for(tmp_path):
    swa = _swa()
    w = tmp_path / "run" / "weights"
    w.mkdir(parents=True)
    for name in ("epoch10.pt", "epoch9.pt", "epoch0.pt", "last.pt", "best.pt", "epoch2_restored.pt"):
        (w / name).write_bytes(b"")
    ckpts = swa.epoch_checkpoints(tmp_path / "run")
    assert [p.name for p in ckpts] == ["epoch0.pt", "epoch9.pt", "epoch10.pt"]  # 10 after 9, no last/best
    plans = swa.plan(ckpts, [2], [1.0])
    (k1, parts1, w1), (k2, parts2, w2) = plans
    assert k1 == "tail2" and [p.name for p in parts1] == ["epoch9.pt", "epoch10.pt"] and w1 == [1.0, 1.0]
    assert k2 == "ema1" and parts2 == ckpts
    assert w2 == pytest.approx([math.exp(-2), math.exp(-1), 1.0])  # the last epoch weighs most
    with pytest.raises(ValueError, match="a tail of 4 epochs: the run has 3"):
        swa.plan(ckpts, [4], [])
    with pytest.raises(ValueError, match="horizon must be > 0"):
        swa.plan(ckpts, [], [0])
