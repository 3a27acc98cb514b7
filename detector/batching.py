"""Images -> model batches -> detections in original pixels.

A call's images are cut into jobs (the whole image, plus tiles for large frames), the
jobs grouped into batches of one input shape (so a result never depends on what else is
in the call), letterboxed into input tensors, run, decoded, mapped back to image pixels
and - for tiled frames - merged across tile borders.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from detector.config import DetectorConfig
from detector.detections import Detections
from detector.letterbox import LetterboxInfo, letterbox_into, rect_shape
from detector.model import Backend
from detector.tiling import Tile, mark_cut, merge_tiles, plan_tiles, should_tile


@dataclass
class Job:
    image: int  # index of the image in the call
    crop: np.ndarray
    tile: Tile | None  # None: the whole image


@dataclass
class Batch:
    jobs: list[int]
    shape: tuple[int, int]  # model input (H, W)
    tensor: np.ndarray | None = None
    infos: list[LetterboxInfo] = field(default_factory=list)


@dataclass
class Plan:
    arrays: list[np.ndarray]
    jobs: list[Job]
    n_tiles: list[int]
    batches: list[Batch]


def input_hw(backend: Backend, hw: tuple[int, int]) -> tuple[int, int]:
    info = backend.info
    if info.dynamic_hw:
        return rect_shape(hw, info.imgsz, info.stride)
    return info.imgsz


def plan(
    backend: Backend,
    cfg: DetectorConfig,
    arrays: Sequence[np.ndarray],
    *,
    tiling: str | None = None,
    batch_size: int | None = None,
    prepare: bool = False,
) -> Plan:
    """Cut images into jobs and batches; with ``prepare``, fill the input tensors now (done in
    the prefetch thread, overlapping inference) while they stay small."""
    info = backend.info
    size = max(info.imgsz)
    mode = cfg.tiling if tiling is None else tiling
    bs = batch_size or cfg.batch_size
    if not info.dynamic_batch:
        bs = 1
    tile_size = cfg.tile_size or size
    jobs: list[Job] = []
    n_tiles = [0] * len(arrays)
    for i, a in enumerate(arrays):
        h, w = a.shape[:2]
        jobs.append(Job(i, a, None))
        if should_tile(h, w, size, mode, cfg.tiling_min_scale):
            tiles = plan_tiles(h, w, tile_size, cfg.tile_overlap)
            n_tiles[i] = len(tiles)
            jobs.extend(Job(i, t.crop(a), t) for t in tiles)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for k, job in enumerate(jobs):
        by_shape.setdefault(input_hw(backend, job.crop.shape[:2]), []).append(k)
    batches = [Batch(idxs[s : s + bs], shape) for shape, idxs in by_shape.items() for s in range(0, len(idxs), bs)]
    if prepare and len(jobs) <= 4 * bs:  # tiled 4000x3000 frames would make large tensors
        for b in batches:
            fill(b, jobs)
    return Plan(list(arrays), jobs, n_tiles, batches)


def fill(batch: Batch, jobs: list[Job]) -> None:
    x = np.empty((len(batch.jobs), 3, *batch.shape), np.float32)
    batch.infos = [letterbox_into(jobs[k].crop, x[j]) for j, k in enumerate(batch.jobs)]
    batch.tensor = x


def execute(
    backend: Backend,
    cfg: DetectorConfig,
    p: Plan,
    thresholds: np.ndarray,
    *,
    iou: float | None = None,
    max_det: int | None = None,
) -> list[Detections]:
    """Run a plan; one :class:`Detections` per image, boxes in image pixels."""
    iou = cfg.iou if iou is None else iou
    max_det = cfg.max_det if max_det is None else max_det
    jobs, end2end = p.jobs, backend.info.end2end
    per_job: list[Detections] = [Detections.empty()] * len(jobs)

    def tensors() -> Iterator[np.ndarray]:
        for b in p.batches:
            if b.tensor is None:
                fill(b, jobs)  # filled here, while the backend runs the previous batches
            x, b.tensor = b.tensor, None  # the backend holds the only reference: freed after the run
            yield x  # type: ignore[misc]

    if getattr(backend, "parallel", 1) > 1:
        outputs: Iterable[np.ndarray] = backend.run_many(tensors())
    else:  # one batch at a time through run() (which wrappers, e.g. timers, may override)
        outputs = (backend.run(x) for x in tensors())
    for b, raw in zip(p.batches, outputs, strict=True):
        for j, k in enumerate(b.jobs):
            d = Detections.from_yolo_output(raw[j], conf=thresholds, iou=iou, max_det=max_det, end2end=end2end)
            if len(d):
                d = Detections(b.infos[j].to_original(d.xyxy), d.confidence, d.class_id)
            per_job[k] = d
    parts: list[list[Detections]] = [[] for _ in p.arrays]
    for job, d in zip(jobs, per_job, strict=True):
        if job.tile is not None:
            d = d.shifted(job.tile.x0, job.tile.y0)
            h, w = p.arrays[job.image].shape[:2]
            d = d.with_data(mergeable=mark_cut(d, job.tile, h, w))
        elif p.n_tiles[job.image]:
            d = d.with_data(mergeable=np.ones(len(d), bool))
        parts[job.image].append(d)
    out = []
    for i, parts_i in enumerate(parts):
        if p.n_tiles[i]:
            m = merge_tiles(parts_i, iou=iou, merge_threshold=cfg.tile_merge_threshold, max_det=max_det)
            out.append(Detections(m.xyxy, m.confidence, m.class_id))
        else:
            out.append(parts_i[0])
    return out
