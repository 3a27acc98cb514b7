"""Repeat-factor sampling for rare classes (Gupta et al., LVIS, 2019): images holding a rare class
appear more than once in an epoch's training list.

A class ``c`` present in a fraction ``f_c`` of the training images gets the repeat factor
``r_c = max(1, sqrt(t / f_c))``; an image is repeated ``max_c r_c`` times over its classes (1 for a
background image), rounded stochastically with a fixed seed so the expected count is exact. The list
goes to Ultralytics as a text file of image paths (it keeps duplicates); validation and test are
untouched.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from training.evaluate import label_path, read_data_yaml, split_images


def image_classes(images: list[Path]) -> list[set[int]]:
    """The classes labelled in each image (its YOLO label file; none when it has no file)."""
    out = []
    for im in images:
        lab = label_path(im)
        lines = lab.read_text().splitlines() if lab.exists() else []
        out.append({int(line.split()[0]) for line in lines if line.strip()})
    return out


def repeat_factors(classes: list[set[int]], threshold: float) -> list[float]:
    """Per image, its repeat factor (>= 1)."""
    n = len(classes)
    freq = Counter(c for cs in classes for c in cs)
    r_class = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in freq.items()}
    return [max((r_class[c] for c in cs), default=1.0) for cs in classes]


def write_repeated_data_yaml(data_yaml: Path, dest: Path, threshold: float, seed: int = 0) -> tuple[Path, dict]:
    """A copy of ``data_yaml`` in ``dest`` whose ``train`` is a list with rare-class images repeated;
    returns its path and a summary (images before / after, per-class images before / after)."""
    root, _, data = read_data_yaml(Path(data_yaml))
    images = split_images(root, data, "train")
    classes = image_classes(images)
    factors = repeat_factors(classes, threshold)
    rng = np.random.default_rng(seed)
    counts = [int(math.floor(r)) + int(rng.random() < r - math.floor(r)) for r in factors]
    lines = [str(p.resolve()) for p, k in zip(images, counts, strict=True) for _ in range(k)]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "train_repeated.txt").write_text("\n".join(lines) + "\n")
    data = {**data, "path": str(root.resolve()), "train": str((dest / "train_repeated.txt").resolve())}
    out = dest / "data_repeated.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    names = data["names"]
    before, after = Counter(), Counter()
    for cs, k in zip(classes, counts, strict=True):
        for c in cs:
            before[names[c]] += 1
            after[names[c]] += k
    summary = {
        "threshold": threshold,
        "images": len(images),
        "entries": len(lines),
        "images_per_class": {c: [before[c], after[c]] for c in sorted(before)},
    }
    return out, summary
