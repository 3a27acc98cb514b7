"""bench/widen/widen.py: a YOLO11n grown into a YOLO11s predicts what the YOLO11n predicted."""

from __future__ import annotations

import pytest
from bench_scripts import bench_script

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")


def _module():
    return bench_script("widen/widen.py")


def _small(nc: int = 3):
    from ultralytics.nn.tasks import DetectionModel

    m = DetectionModel("yolo11n.yaml", nc=nc, verbose=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # batch-norm statistics and affine terms away from their initial 0 / 1
        for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
            for t in (bn.weight, bn.bias, bn.running_mean):
                t.copy_(torch.randn(t.shape, generator=g) * 0.5 + (1.0 if t is bn.weight else 0.0))
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
    m.names = {k: f"c{k}" for k in range(nc)}
    return m


def test_the_widened_model_is_a_yolo11s_with_the_same_outputs(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    mod = _module()
    old = _small()
    torch.save({"model": old.half(), "ema": None, "train_args": {"imgsz": 64}}, tmp_path / "n.pt")
    r = mod.widen(tmp_path / "n.pt", tmp_path / "s.pt", noise=0.0)
    assert r["max_rel_diff"] < 1e-4
    ck = torch.load(tmp_path / "s.pt", map_location="cpu", weights_only=False)
    new = ck["model"].float().eval()
    ref = DetectionModel("yolo11s.yaml", nc=3, verbose=False)
    assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert new.names == {0: "c0", 1: "c1", 2: "c2"} and ck["train_args"] == {"imgsz": 64}
    x = torch.rand(1, 3, 96, 128)
    old = old.float().eval()
    with torch.no_grad():
        a, b = old(x)[0], new(x)[0]
    assert float(((a - b).abs() / (1 + a.abs())).max()) < 1e-2  # fp16 storage of both


def test_noise_breaks_the_copies_and_a_wrong_layout_is_refused(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    mod = _module()
    old = _small()
    new = DetectionModel("yolo11s.yaml", nc=3, verbose=False)
    mod.widen_model(old, new, noise=0.01)
    w = new.model[0].conv.weight  # 16 -> 32 output channels: channel 2k and 2k+1 copy channel k
    assert not torch.equal(w[0], w[1])
    assert torch.allclose(w[0], w[1], atol=0.05 * float(w.detach().std()))
    head = new.model[10].m[0].attn
    assert head.num_heads == 2 * old.model[10].m[0].attn.num_heads
    # a YOLO11s as the source: not a YOLO11n, refused with one line
    torch.save({"model": DetectionModel("yolo11s.yaml", nc=3, verbose=False), "ema": None}, tmp_path / "s.pt")
    with pytest.raises(SystemExit, match="not a YOLO11n this script can widen"):
        mod.widen(tmp_path / "s.pt", tmp_path / "x.pt")
