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
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "labels").mkdir(exist_ok=True)
    for i, label in enumerate(["0 0.5 0.5 0.1 0.1\n", "", ""]):  # one image of class a, two backgrounds
        (tmp_path / "images" / f"{i}.jpg").write_bytes(b"")
        (tmp_path / "labels" / f"{i}.txt").write_text(label)
    data.write_text(f"path: {tmp_path}\ntrain: images\nval: images\nnames: {{0: a}}\n")
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


def test_rare_class_images_are_repeated_in_the_list_ultralytics_trains_on(monkeypatch, tmp_path):
    import json
    from pathlib import Path

    seen = _captured_train(monkeypatch, tmp_path, rare_class_repeat=0.9)
    data = Path(seen["data"])
    assert data.name == "data_repeated.yaml"
    entries = (data.parent / "train_repeated.txt").read_text().split()
    # class a is in 1 of 3 images: repeat factor sqrt(0.9 / (1/3)) = 1.64, backgrounds once
    assert entries.count(str((tmp_path / "images" / "1.jpg").resolve())) == 1
    assert 1 <= entries.count(str((tmp_path / "images" / "0.jpg").resolve())) <= 2
    summary = json.loads((tmp_path / "run" / "sampling.json").read_text())
    assert summary["images"] == 3 and summary["images_per_class"]["a"][0] == 1
    assert json.loads((tmp_path / "run" / "init.json").read_text())["description"] == "scratch"


def test_repeat_factors_follow_class_frequency():
    from training.sampling import repeat_factors

    classes = [{0}] * 8 + [{1}] + [set()]  # class 0 in 80 % of images, class 1 in 10 %
    r = repeat_factors(classes, 0.4)
    assert r[0] == 1.0 and r[-1] == 1.0
    assert r[8] == pytest.approx(2.0)  # sqrt(0.4 / 0.1)
