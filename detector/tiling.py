"""Sliced inference for frames much larger than the model input.

A 4000x3000 drone frame shrunk to 640 px loses defects a few pixels wide. Instead the
frame is cut into overlapping tiles (by default of the model's input size, so tiles
run at native resolution), the tiles run in batches, and their detections - shifted
to frame coordinates - are merged with those of one whole-frame pass (which keeps
objects larger than a tile). Objects cut by a tile border appear whole in the
neighbouring tile, thanks to the overlap; ``merge_tiles`` joins the fragments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detector.detections import Detections
from detector.nms import batched_nms, merge_overlapping

TILING_MODES = ("off", "auto", "on")


@dataclass(frozen=True)
class Tile:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0 : self.y1, self.x0 : self.x1]


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / step) + 1
    # spread the tiles evenly so the last one ends exactly at the border
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def plan_tiles(height: int, width: int, tile_size: int, overlap: float = 0.2) -> list[Tile]:
    """Overlapping tiles covering the frame; neighbours overlap by at least ``overlap`` of a tile."""
    if tile_size <= 0:
        raise ValueError("tile_size must be positive")
    if not 0 <= overlap < 1:
        raise ValueError("tile overlap must be in [0, 1)")
    step = max(1, int(tile_size * (1 - overlap)))
    tiles = []
    for y in _starts(height, tile_size, step):
        for x in _starts(width, tile_size, step):
            tiles.append(Tile(x, y, min(x + tile_size, width), min(y + tile_size, height)))
    return tiles


def should_tile(height: int, width: int, input_size: int, mode: str = "auto", min_scale: float = 2.0) -> bool:
    """``auto``: tile when whole-frame inference would shrink the frame by more than ``min_scale``."""
    if mode not in TILING_MODES:
        raise ValueError(f"tiling must be one of {TILING_MODES}, got {mode!r}")
    if mode == "off":
        return False
    if mode == "on":
        return max(height, width) > input_size
    return max(height, width) / input_size > min_scale


def mark_cut(dets: Detections, tile: Tile, height: int, width: int, margin: float = 2.0) -> np.ndarray:
    """Which detections (in frame coordinates) touch an edge of ``tile`` that lies inside the frame."""
    x1, y1, x2, y2 = dets.xyxy.T
    cut = np.zeros(len(dets), bool)
    if tile.x0 > 0:
        cut |= x1 <= tile.x0 + margin
    if tile.y0 > 0:
        cut |= y1 <= tile.y0 + margin
    if tile.x1 < width:
        cut |= x2 >= tile.x1 - margin
    if tile.y1 < height:
        cut |= y2 >= tile.y1 - margin
    return cut


def merge_tiles(
    parts: list[Detections],
    iou: float = 0.7,
    merge_threshold: float = 0.5,
    max_det: int = 300,
) -> Detections:
    """Merge detections from tiles and the whole-frame pass (all in frame coordinates).

    Each part carries a boolean column ``mergeable``: true for whole-frame detections and
    for tile detections touching an inner tile border (possibly a fragment). First
    class-aware NMS removes duplicates from overlapping tiles; then boxes of one class
    whose intersection covers more than ``merge_threshold`` of the smaller box are merged
    (union box, best score) when one of them is mergeable. That reassembles objects cut by
    tile borders, while two complete small defects side by side stay apart.
    """
    dets = Detections.merge(parts)
    if len(dets) == 0:
        return dets
    keep = batched_nms(dets.xyxy, dets.confidence, dets.class_id, iou)
    dets = dets[keep]
    mergeable = dets.data.get("mergeable")
    dets = merge_overlapping(dets, threshold=merge_threshold, metric="ios", mergeable=mergeable)
    return dets.sorted()[:max_det]
