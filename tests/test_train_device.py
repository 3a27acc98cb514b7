"""`pvwind train --device 0` trains the same recipe on a CUDA machine: Ultralytics' device
argument, AMP on, the CPU fast path off. There is no GPU here, so Ultralytics' ``train`` is
the one thing replaced (a fault - no CUDA device - we cannot otherwise get past); everything
up to the call is the real code."""

from __future__ import annotations

import pytest

pytest.importorskip("ultralytics")

from training.config import load_train_config  # noqa: E402


def _captured_train(monkeypatch, tmp_path, **overrides):
    from ultralytics import YOLO

    seen: dict = {}

    def fake_train(self, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop: no CUDA here")

    monkeypatch.setattr(YOLO, "train", fake_train)
    from training.train import Init, train

    cfg = load_train_config(overrides=overrides)
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images\nval: images\nnames: {0: a}\n")
    with pytest.raises(RuntimeError, match="no CUDA"):
        train(cfg, data, tmp_path / "run", init=Init(None, "scratch"), log=lambda m: None)
    return seen


def test_device_0_means_cuda_amp_and_the_stock_trainer(monkeypatch, tmp_path):
    seen = _captured_train(monkeypatch, tmp_path, device="0")
    from ultralytics.models.yolo.detect import DetectionTrainer

    from training.fastcpu import FastCPUDetectionTrainer

    assert seen["device"] == "0" and seen["amp"] is True
    assert seen["trainer"] is DetectionTrainer and seen["trainer"] is not FastCPUDetectionTrainer


def test_the_default_is_the_cpu_without_amp(monkeypatch, tmp_path):
    seen = _captured_train(monkeypatch, tmp_path)
    assert seen["device"] == "cpu" and seen["amp"] is False
