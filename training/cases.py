"""Regression cases for the model: test-split images picked by a fixed rule, not by what a model finds.

Per class with at least ``min_boxes`` test boxes, two images: the one holding the class's largest
box (its clearest example) and the one at the first quartile of box size (a typical but clear one).
Each case names the image (relative to the dataset mirror), the class and the labelled box.
``tests/test_model_cases.py`` asserts that the shipped model, at its shipped thresholds, finds the
class over that box; ``python -m training.cases`` rewrites ``tests/data/model_cases.json`` from a
build (``build/dataset``) and the mirror.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from training.evaluate import label_path

REPO = Path(__file__).resolve().parent.parent
CASES_FILE = REPO / "tests" / "data" / "model_cases.json"


def pick_cases(dataset: Path, mirror: Path, min_boxes: int = 15) -> list[dict]:
    index = json.loads((dataset / "index.json").read_text())
    names = yaml.safe_load((dataset / "data.yaml").read_text())["names"]
    per: dict[int, list[tuple[float, dict, list[float]]]] = {}
    for r in index:
        if r["split"] != "test":
            continue
        for line in label_path(dataset / r["image"]).read_text().splitlines():
            c, *box = line.split()
            cx, cy, w, h = map(float, box)
            per.setdefault(int(c), []).append((w * h, r, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    cases = []
    for c, boxes in sorted(per.items()):
        if len(boxes) < min_boxes:
            continue
        boxes.sort(key=lambda t: (-t[0], t[1]["image"]))
        for rank, q in (("largest", 0), ("first quartile", len(boxes) // 4)):
            _, r, box = boxes[q]
            cases.append(
                {
                    "class": names[c],
                    "image": str(Path(r["original"]).resolve().relative_to(mirror.resolve())),
                    "box": [round(v, 5) for v in box],
                    "why": f"test split, {rank} {names[c]} box",
                }
            )
    return cases


if __name__ == "__main__":
    from training.build import DEFAULT_OUT, default_mirror

    mirror = default_mirror()
    if mirror is None:
        sys.exit("no dataset mirror (set DATA_MIRROR)")
    cases = pick_cases(DEFAULT_OUT, mirror)
    CASES_FILE.write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases -> {CASES_FILE}")
