"""A trained YOLO11n grown into a YOLO11s that predicts what it predicted (Net2WiderNet).

    .venv/bin/python bench/widen/widen.py --model models/current --out build/widen/init.pt
    .venv/bin/pvwind train --init build/widen/init.pt --set model=yolo11s.yaml ...

YOLO11s is YOLO11n with every channel count doubled (same depth; Detect's box branch stays 64 wide).
Each channel of the trained model becomes two (Chen, Goodfellow & Shlens 2016, "Net2Net"): a layer's
output channels are copied, the next layer's weights over the copies are halved, so the wider network
computes the same function. Channel ``k`` of a widened tensor copies channel ``k // 2`` of the old one,
which keeps ``chunk`` halves and ``Concat`` parts aligned; the attention block (C2PSA) copies whole
heads instead, so every new head is an old head (same key size, same softmax). Checked here on a random
input before any noise. Copies receive identical gradients and would stay copies, so ``--noise`` (a
fraction of each weight tensor's standard deviation, default 0.01) is added to the copied convolution
weights to break the tie. The result: YOLO11s (3.4x the GFLOPs at 512 px) that starts at the small model's
accuracy instead of from scratch, for a GPU run or a CPU continuation (docs/experiments.md).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")


def _dup(old: int, new: int):
    """Channel map of a plain tensor: identical, or each channel twice (k -> k // 2)."""
    import torch

    if new == old:
        return torch.arange(new)
    if new == 2 * old:
        return torch.arange(new) // 2
    raise ValueError(f"{old} -> {new} channels is neither the same nor double")


def _heads(old: int, new: int, per_head: int):
    """Channel map of a head-major tensor: new head h is old head h // 2 (channels of ``per_head``)."""
    import torch

    k = torch.arange(new)
    return (k // per_head // 2) * per_head + k % per_head


def _maps(name: str, conv, old_conv, attn) -> tuple:
    """(output map, input map) of convolution ``name`` (``attn``: its Attention module or None)."""
    o_old, o_new = old_conv.out_channels, conv.out_channels
    i_old, i_new = old_conv.in_channels, conv.in_channels
    out_map, in_map = _dup(o_old, o_new), _dup(i_old, i_new)
    if attn is not None:
        part = name.rsplit(".", 2)[-2]  # qkv / pe / proj
        if part == "qkv":
            out_map = _heads(o_old, o_new, attn.key_dim * 2 + attn.head_dim)
        elif part == "pe":  # depthwise over v's head-major channels
            out_map = in_map = _heads(o_old, o_new, attn.head_dim)
        elif part == "proj":
            in_map = _heads(i_old, i_new, attn.head_dim)
    return out_map, in_map


def widen_model(old, new, noise: float = 0.01, seed: int = 0) -> float:
    """Fill ``new`` (a YOLO11s DetectionModel) from ``old`` (a trained YOLO11n); returns the largest
    relative output difference on a random input before the noise (~1e-5)."""
    import torch
    from torch import nn
    from ultralytics.nn.modules.block import Attention

    old_mods = dict(old.named_modules())
    if 2 * old.model[0].conv.out_channels != new.model[0].conv.out_channels:
        raise ValueError("the source is not half the target's width")
    attn_of = {}
    for name, m in new.named_modules():
        if isinstance(m, Attention):
            for part in ("qkv", "pe", "proj"):
                attn_of[f"{name}.{part}.conv"] = m
    copied = []
    with torch.no_grad():
        for name, m in new.named_modules():
            if not isinstance(m, nn.Conv2d):
                continue
            om = old_mods.get(name)
            if not isinstance(om, nn.Conv2d) or om.kernel_size != m.kernel_size:
                raise ValueError(f"{name}: no matching convolution in the small model")
            out_map, in_map = _maps(name, m, om, attn_of.get(name))
            w = om.weight
            if m.groups == 1:
                counts = torch.bincount(in_map, minlength=om.in_channels).float()
                m.weight.copy_(w[out_map][:, in_map] / counts[in_map].view(1, -1, 1, 1))
            elif m.groups == m.in_channels == m.out_channels and om.groups == om.in_channels:
                m.weight.copy_(w[out_map])  # depthwise: each channel reads its own copy
            else:
                raise ValueError(f"{name}: groups {m.groups} not handled")
            if m.bias is not None:
                m.bias.copy_(om.bias[out_map])
            if len(out_map) > om.out_channels:
                copied.append(m)
            bn_name = name[: -len(".conv")] + ".bn" if name.endswith(".conv") else None
            bn, obn = (new.get_submodule(bn_name), old_mods[bn_name]) if bn_name in old_mods else (None, None)
            if isinstance(bn, nn.BatchNorm2d):
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, attr).copy_(getattr(obn, attr)[out_map])
        new.stride = old.stride.clone()  # the DFL's fixed convolution is a Conv2d: copied above
        new.model[-1].stride = old.model[-1].stride.clone()
        old.eval()
        new.eval()
        x = torch.rand(2, 3, 160, 160)
        a, b = old(x)[0], new(x)[0]  # (batch, 4 box + classes, anchors): boxes in pixels, scores 0-1
        diff = float(((a - b).abs() / (1 + a.abs())).max())
        g = torch.Generator().manual_seed(seed)
        for m in copied:
            m.weight.add_(torch.randn(m.weight.shape, generator=g) * noise * float(m.weight.std()))
    return diff


def widen(weights: Path, out: Path, noise: float = 0.01, seed: int = 0) -> dict:
    import torch
    from ultralytics.nn.tasks import DetectionModel

    ck = torch.load(weights, map_location="cpu", weights_only=False)
    old = (ck.get("ema") or ck["model"]).float()
    new = DetectionModel("yolo11s.yaml", nc=len(old.names), verbose=False)
    try:
        diff = widen_model(old, new, noise=noise, seed=seed)
    except (ValueError, IndexError) as e:
        sys.exit(f"widen: {weights} is not a YOLO11n this script can widen ({e})")
    if diff > 1e-3:
        sys.exit(f"widen: the widened model's outputs differ from the source by {diff}")
    new.names, new.args = old.names, getattr(old, "args", {})
    keep = {k: v for k, v in ck.items() if k not in ("model", "ema", "optimizer")}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**keep, "model": copy.deepcopy(new).half(), "ema": None, "optimizer": None}, out)
    params = (sum(p.numel() for p in old.parameters()), sum(p.numel() for p in new.parameters()))
    return {"out": str(out), "max_rel_diff": diff, "params": params, "noise": noise}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/current"), help="model folder or .pt")
    ap.add_argument("--out", type=Path, default=Path("build/widen/init.pt"))
    ap.add_argument("--noise", type=float, default=0.01, help="symmetry-breaking noise (x weight std)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    weights = a.model / "weights.pt" if a.model.is_dir() else a.model
    if not weights.is_file():
        sys.exit(f"widen: {weights} does not exist")
    r = widen(weights, a.out, a.noise, a.seed)
    print(
        f"{r['out']}: {r['params'][0]:,} -> {r['params'][1]:,} parameters, max relative difference before noise "
        f"{r['max_rel_diff']:.1e}, noise {r['noise']}"
    )


if __name__ == "__main__":
    main()
