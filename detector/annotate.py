"""Annotated images: boxes coloured by maintenance priority, labelled with class and score.

Uses OpenCV's built-in Hershey font, so nothing is downloaded at run time.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detector.priority import PriorityConfig, load_priority_config
from detector.results import ImageResult

_FALLBACK = (200, 200, 200)


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def annotate(image: np.ndarray, result: ImageResult, config: PriorityConfig | None = None) -> np.ndarray:
    """Draw ``result``'s findings on a copy of the RGB image; worst priority drawn last (on top)."""
    cfg = config or load_priority_config()
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    scale = max(0.4, min(h, w) / 900)
    thick = max(1, round(scale * 2))
    order = sorted(result.findings, key=lambda d: d.priority, reverse=True)  # P4 first, P1 last
    for d in order:
        color = _rgb(cfg.color(d.priority)) if d.priority in cfg.priorities else _FALLBACK
        x1, y1, x2, y2 = (int(round(v)) for v in d.box.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        label = f"{d.priority} {d.class_name} {d.confidence:.2f}"
        if d.thermal is not None:
            label += f" {d.thermal.t_max_c:.0f}C dT{d.thermal.delta_t_k:.0f}K"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, max(1, thick - 1))
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(y2 + th + 4, h - base)
        tx = min(max(0, x1), max(0, w - tw))
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty + base), color, -1)
        text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(
            out, label, (tx + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, text_color, max(1, thick - 1), cv2.LINE_AA
        )
    return out


def save_annotated(
    image: np.ndarray, result: ImageResult, path: str | Path, config: PriorityConfig | None = None
) -> Path:
    """Write the annotated image (JPEG or PNG by suffix)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    drawn = annotate(image, result, config)
    ok = cv2.imwrite(str(p), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise OSError(f"cannot write {p}")
    return p
