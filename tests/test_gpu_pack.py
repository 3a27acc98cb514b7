"""bench/gpu: the dataset pack that travels to a lent GPU machine, and the checkpoint pack that comes back."""

from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from bench_scripts import bench_script


def _module(name: str):
    return bench_script(f"gpu/{name}.py")


def test_pack_holds_train_and_val_as_small_webp_with_the_labels(mini_dataset: Path, tmp_path: Path) -> None:
    from training.evaluate import label_path, read_data_yaml, split_images

    data = mini_dataset.parent
    dest = _module("pack").pack(data, tmp_path / "out", size=256, quality=60)
    with tarfile.open(dest) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    packed = tmp_path / "x" / "dataset"
    assert not (packed / "images" / "test").exists()  # the test split stays here
    root, names, meta = read_data_yaml(packed / "data.yaml")
    src_root, src_names, src_meta = read_data_yaml(mini_dataset)
    assert root == packed.resolve() and names == src_names
    for split in ("train", "val"):
        src = split_images(src_root, src_meta, split)
        out = split_images(root, meta, split)  # .webp is an image to the training code too
        assert [p.stem for p in out] == [p.stem for p in src] and out
        for p in out[:10]:
            assert p.suffix == ".webp"
            im = cv2.imread(str(p))
            assert im is not None and max(im.shape[:2]) <= 256
            src_label = label_path(data / "images" / split / f"{p.stem}.jpg")
            if src_label.exists():
                assert label_path(p).read_bytes() == src_label.read_bytes()


def test_pack_names_an_unreadable_image(tmp_path: Path) -> None:
    data = tmp_path / "d"
    (data / "images" / "train").mkdir(parents=True)
    (data / "images" / "val").mkdir(parents=True)
    (data / "images" / "train" / "a.jpg").write_bytes(b"not a jpeg")
    (data / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: x}\n")
    with pytest.raises(ValueError, match="a.jpg: not an image"):
        _module("pack").pack(data, tmp_path / "out", size=256, quality=60)


def _checkpoint(path: Path, epoch: int) -> None:
    import torch
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolo11n.yaml", nc=2, verbose=False)
    opt = torch.optim.AdamW(model.parameters())
    torch.save(
        {
            "epoch": epoch,
            "model": None,
            "ema": model.half(),
            "updates": 1,
            "optimizer": opt.state_dict(),
            "train_args": {},
        },
        path,
    )


def test_collect_strips_and_packs_the_newest_checkpoints_and_splits_a_large_one(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("ultralytics")
    collect = _module("collect")
    w = tmp_path / "runs" / "run_a" / "weights"
    w.mkdir(parents=True)
    for name, epoch in (("epoch0.pt", 0), ("epoch1.pt", 1), ("epoch2.pt", 2), ("best.pt", 1), ("last.pt", 2)):
        _checkpoint(w / name, epoch)
    collect.main(tmp_path / "runs", tmp_path / "out")
    with tarfile.open(tmp_path / "out" / "run_a.tar") as tar:
        names = tar.getnames()
    # best, last, then the newest epoch that is not last.pt again (epoch2.pt is), while they fit
    assert names[:3] == ["best.pt", "last.pt", "epoch1.pt"]
    import torch

    ck = torch.load(w / "best.pt", map_location="cpu", weights_only=False)
    assert ck.get("optimizer") is None and ck["model"] is not None  # stripped for the trip
    size = (w / "best.pt").stat().st_size
    monkeypatch.setattr(collect, "LIMIT", size - 1)  # a checkpoint too large for one file
    collect.main(tmp_path / "runs", tmp_path / "out2")
    parts = sorted((tmp_path / "out2").glob("run_a_best.part*"))
    assert len(parts) == 2
    assert b"".join(p.read_bytes() for p in parts) == (w / "best.pt").read_bytes()
    assert np.all([p.stat().st_size <= size for p in parts])


def test_the_offline_results_reader_reads_what_polars_reads(tmp_path: Path, monkeypatch) -> None:
    """train_job's shim for a machine without polars gives Ultralytics the same results dictionary."""
    pytest.importorskip("polars")
    from types import SimpleNamespace

    from ultralytics.engine import trainer as T

    monkeypatch.setattr(T.BaseTrainer, "read_results_csv", T.BaseTrainer.read_results_csv)
    monkeypatch.setattr(T, "check_amp", T.check_amp)
    csv_path = tmp_path / "results.csv"
    csv_path.write_text(
        "epoch,time,train/box_loss,metrics/mAP50(B),lr/pg0\n1,60.5,1.25,0.31,0.002\n2,121.0,1.20,0.35,0.0019\n"
    )
    fake = SimpleNamespace(csv=csv_path)
    expected = T.BaseTrainer.read_results_csv(fake)  # Ultralytics' own, with polars
    _module("train_job").offline_shims()
    got = T.BaseTrainer.read_results_csv(fake)
    assert got == expected and got["metrics/mAP50(B)"] == [0.31, 0.35]
    assert T.check_amp(None) is True
    assert T.BaseTrainer.read_results_csv(SimpleNamespace(csv=tmp_path / "missing.csv")) == {}
