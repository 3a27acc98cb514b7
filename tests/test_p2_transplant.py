"""bench/p2/transplant.py: a trained YOLO11n gains a P2 level and keeps its P3-P5 predictions."""

from __future__ import annotations

import pytest
from bench_scripts import bench_script

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")


def _module():
    return bench_script("p2/transplant.py")


def test_transplant_keeps_p3_p5_and_freezes_exactly_the_old_model(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    mod = _module()
    src = DetectionModel("yolo11n.yaml", nc=3, verbose=False)
    src.names = {0: "a", 1: "b", 2: "c"}
    torch.save({"model": src.half(), "ema": None}, tmp_path / "src.pt")
    r = mod.transplant(tmp_path / "src.pt", tmp_path / "p2.pt")
    assert r["strides"] == [8.0, 16.0, 32.0, 4.0] and r["p3_p5_max_abs_diff"] < 1e-4
    new = torch.load(tmp_path / "p2.pt", map_location="cpu", weights_only=False)["model"].float()
    old_names = {
        (mod.NEW_DETECT + k[len(mod.OLD_DETECT) :] if k.startswith(mod.OLD_DETECT) else k)
        for k, _ in src.named_parameters()
    }
    # Ultralytics' rule: a parameter freezes when a "model.<entry>." prefix occurs in its name
    prefixes = [f"model.{x}." for x in mod.FREEZE]
    frozen = {k for k, _ in new.named_parameters() if any(p in k for p in prefixes)}
    assert frozen == {k for k in old_names if ".dfl." not in k}  # Ultralytics freezes the DFL itself
    trainable = {k for k, _ in new.named_parameters()} - frozen
    assert trainable and all(k.startswith(("model.23.", "model.24.", "model.25.", "model.26.cv2.3.", "model.26.cv3.3."))
                             or ".dfl." in k for k in trainable)  # fmt: skip
    # a checkpoint of another layout is refused with one line
    other = DetectionModel("yolo11s.yaml", nc=3, verbose=False)
    torch.save({"model": other, "ema": None}, tmp_path / "s.pt")
    with pytest.raises(SystemExit, match="not a YOLO11n of this layout"):
        mod.transplant(tmp_path / "s.pt", tmp_path / "x.pt")
