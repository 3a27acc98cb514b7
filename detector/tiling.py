"""Sliced inference for frames much larger than the model input.

A 4000x3000 drone frame shrunk to 416 px loses defects a few pixels wide. Instead the
frame is cut into overlapping tiles that run at native resolution, the tiles run in
batches, and their detections - shifted to frame coordinates - are merged with those of
one whole-frame pass (which keeps objects larger than a tile). Objects up to the overlap
appear whole in a neighbouring tile; ``merge_tiles`` joins the fragments of larger ones.

``plan_grid`` (the default plan) cuts a frame into equal, stride-aligned tiles of at most
``tile_size`` pixels a side (the model has dynamic height/width, so a tile larger than the
model input still runs unscaled), overlapping by the largest expected defect: compute goes
into overlaps only as far as needed. ``plan_tiles`` is the earlier plan (square tiles of the
model input, a fixed fraction of overlap), kept for comparison and ``tile_size: 0``.
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


def _axis(length: int, max_tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    if length <= max_tile:
        return [(0, length)]
    n = math.ceil((length - overlap) / (max_tile - overlap))
    # the smallest aligned side with which n tiles cover the length overlapping by >= overlap
    size = min(max_tile, -(-math.ceil((length + (n - 1) * overlap) / n) // align) * align)
    starts = [round(i * (length - size) / (n - 1)) for i in range(n)]
    return [(s, s + size) for s in starts]


def plan_grid(height: int, width: int, max_tile: int, overlap_px: int, align: int = 32) -> list[Tile]:
    """Equal tiles of at most ``max_tile`` pixels a side (a multiple of ``align`` where the frame
    is larger), spread evenly so the last ends at the border, neighbours overlapping by at least
    ``overlap_px``. Row-major order."""
    if max_tile <= 0:
        raise ValueError("tile size must be positive")
    max_tile = max(align, max_tile // align * align)
    overlap_px = max(0, int(overlap_px))
    if overlap_px >= max_tile // 2:
        raise ValueError(f"tile overlap {overlap_px} px must be under half the tile side {max_tile}")
    ys = _axis(height, max_tile, overlap_px, align)
    xs = _axis(width, max_tile, overlap_px, align)
    return [Tile(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


def frame_tiles(
    height: int, width: int, input_size: int, tile_size: int, overlap: str | float, max_defect_px: int, stride: int = 32
) -> list[Tile]:
    """The tiles for one frame under the detector's settings (``tile_size``, ``tile_overlap``,
    ``max_defect_px``): the grid plan, or the earlier square plan for ``tile_size: 0`` with a
    fractional overlap."""
    size = tile_size or input_size
    if overlap == "auto":
        return plan_grid(height, width, size, max_defect_px, stride)
    if not tile_size:
        return plan_tiles(height, width, size, float(overlap))
    return plan_grid(height, width, size, round(float(overlap) * size), stride)


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
