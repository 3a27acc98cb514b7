"""A YOLO11 model with a stride-4 (P2) detection level, started from a trained YOLO11 model folder.

    .venv/bin/python bench/p2/transplant.py --model models/current --out build/p2/init.pt
    .venv/bin/pvwind train --init build/p2/init.pt --set model=bench/p2/yolo11n-p2.yaml \
        --set 'freeze=[0,1,...,22,"26.cv2.0","26.cv2.1","26.cv2.2","26.cv3.0","26.cv3.1","26.cv3.2"]' ...

``yolo11n-p2.yaml`` is YOLO11 with a side branch (P3's output upsampled and joined with the backbone's
stride-4 features) and a fourth Detect level listed last, so every tensor of the trained model keeps
its name and shape except Detect's layer index (23 -> 26), which this script renames. The result
predicts exactly as the model it came from on P3-P5 (checked here on a random input) and adds a P2
level whose class scores start near zero. Training with the ``freeze`` list above trains only the new
branch and its Detect level: the soup's own weights and batch-norm statistics stay as they were.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
YAML = HERE / "yolo11n-p2.yaml"
OLD_DETECT, NEW_DETECT = "model.23.", "model.26."
# the freeze list for `pvwind train --set freeze=...`: YOLO11's layers and Detect's P3-P5 convolutions
FREEZE = [*range(23), *(f"26.{c}.{level}" for c in ("cv2", "cv3") for level in range(3))]


def transplant(weights: Path, out: Path) -> dict:
    import torch
    from ultralytics.nn.tasks import DetectionModel

    ck = torch.load(weights, map_location="cpu", weights_only=False)
    old = (ck.get("ema") or ck["model"]).float()
    new = DetectionModel(str(YAML), nc=len(old.names), verbose=False)
    sd = new.state_dict()
    for k, v in old.state_dict().items():
        nk = NEW_DETECT + k[len(OLD_DETECT) :] if k.startswith(OLD_DETECT) else k
        if nk not in sd or sd[nk].shape != v.shape:
            sys.exit(f"transplant: {weights} is not a YOLO11n of this layout ({k} {tuple(v.shape)})")
        sd[nk] = v.clone()
    new.load_state_dict(sd)
    new.names, new.args = old.names, getattr(old, "args", {})
    new.eval()
    old.eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        a, b = old(x)[0], new(x)[0]
    diff = float((a - b[..., : a.shape[-1]]).abs().max())
    if diff > 1e-4:
        sys.exit(f"transplant: P3-P5 outputs differ from the source model by {diff}")
    keep = {k: v for k, v in ck.items() if k not in ("model", "ema", "optimizer")}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**keep, "model": copy.deepcopy(new).half(), "ema": None, "optimizer": None}, out)
    return {"out": str(out), "p3_p5_max_abs_diff": diff, "strides": new.stride.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/current"), help="model folder or .pt")
    ap.add_argument("--out", type=Path, default=Path("build/p2/init.pt"))
    a = ap.parse_args()
    weights = a.model / "weights.pt" if a.model.is_dir() else a.model
    if not weights.is_file():
        sys.exit(f"transplant: {weights} does not exist")
    r = transplant(weights, a.out)
    print(f"{r['out']}: strides {r['strides']}, P3-P5 max abs diff {r['p3_p5_max_abs_diff']:.1e}")
    print("freeze=" + str(FREEZE).replace("'", '"').replace(" ", ""))


if __name__ == "__main__":
    main()
