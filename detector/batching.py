"""Images -> model batches -> detections in original pixels.

A call's images are cut into jobs (the whole image, plus tiles for large frames), the
jobs grouped into batches of one input shape (so a result never depends on what else is
in the call; tiles of several frames of one camera share batches), letterboxed into input
tensors, run, decoded, mapped back to image pixels and - for tiled frames - merged across
tile borders. A batch holds at most ``batch_size`` model-input-sized images worth of pixels,
so a batch of large tiles is short and memory stays bounded.

Two steps, so a caller can prepare each image as it is decoded (in a prefetch thread) and
run the images in groups: :func:`image_jobs` (one image's jobs, the small whole-frame input
filled at once) and :func:`make_plan` (jobs of several images -> batches).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from detector.config import DetectorConfig
from detector.detections import Detections
from detector.letterbox import LetterboxInfo, letterbox_into, rect_shape
from detector.model import Backend
from detector.tiling import Tile, frame_tiles, mark_cut, merge_tiles, should_tile


@dataclass
class Job:
    image: int  # index of the image in the call
    crop: np.ndarray
    tile: Tile | None  # None: the whole image
    shape: tuple[int, int] = (0, 0)  # model input (H, W)
    scale: float = 1.0  # crop pixels -> image pixels (a whole-frame pass on a reduced decode)
    border: int = 0  # grey input pixels around the scaled crop (the whole-frame pass: cfg.border)
    tensor: np.ndarray | None = None  # (3, H, W) float32, filled ahead of the run
    info: LetterboxInfo | None = None

    @property
    def native(self) -> bool:
        return self.tile is not None


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


def frame_border(backend: Backend, cfg: DetectorConfig) -> int:
    """The grey border of the whole-frame input: ``cfg.border`` on a model of dynamic input size
    (the input grows by it), none on a fixed-size one (it would shrink the image instead)."""
    return cfg.border if backend.info.dynamic_hw else 0


def input_hw(backend: Backend, hw: tuple[int, int], border: int = 0) -> tuple[int, int]:
    """The whole-frame input (H, W): the image scaled to the model's size, plus ``border`` on every side."""
    info = backend.info
    if info.dynamic_hw:
        h, w = rect_shape(hw, info.imgsz, info.stride)
        return h + 2 * border, w + 2 * border
    return info.imgsz


def tile_input_hw(backend: Backend, hw: tuple[int, int]) -> tuple[int, int]:
    """A tile runs unscaled: its size rounded up to the stride (or the fixed input, which it fits)."""
    info = backend.info
    if not info.dynamic_hw:
        return info.imgsz
    s = info.stride
    return -(-hw[0] // s) * s, -(-hw[1] // s) * s


def image_tiles(backend: Backend, cfg: DetectorConfig, hw: tuple[int, int], mode: str) -> list[Tile]:
    """The tiles of a frame of ``hw`` (none when it is not tiled)."""
    info = backend.info
    size = max(info.imgsz)
    h, w = hw
    if not should_tile(h, w, size, mode, cfg.tiling_min_scale):
        return []
    tile_size = cfg.tile_size if info.dynamic_hw else min(cfg.tile_size or size, size)
    return frame_tiles(h, w, size, tile_size, cfg.tile_overlap, cfg.max_defect_px, info.stride)


def image_jobs(
    backend: Backend,
    cfg: DetectorConfig,
    index: int,
    array: np.ndarray,
    *,
    tiling: str | None = None,
    whole: np.ndarray | None = None,
    prepare: bool = False,
) -> tuple[list[Job], int]:
    """One image's jobs: the whole-frame pass (on ``whole``, a reduced decode of the same
    frame, when given) and its tiles. ``prepare``: letterbox the whole-frame input now."""
    mode = cfg.tiling if tiling is None else tiling
    h, w = array.shape[:2]
    src = array if whole is None else whole
    border = frame_border(backend, cfg)
    job = Job(index, src, None, input_hw(backend, src.shape[:2], border), w / src.shape[1], border=border)
    if prepare:
        job.tensor = np.empty((3, *job.shape), np.float32)
        job.info = letterbox_into(src, job.tensor, border=border)
    jobs = [job]
    tiles = image_tiles(backend, cfg, (h, w), mode)
    for t in tiles:
        jobs.append(Job(index, t.crop(array), t, tile_input_hw(backend, (t.height, t.width))))
    return jobs, len(tiles)


def batch_capacity(backend: Backend, bs: int, shape: tuple[int, int]) -> int:
    """Jobs of input ``shape`` per batch: ``bs`` model-input-sized images worth of pixels."""
    if not backend.info.dynamic_batch:
        return 1
    ih, iw = backend.info.imgsz
    return max(1, min(bs, bs * ih * iw // (shape[0] * shape[1])))


def make_plan(
    backend: Backend,
    cfg: DetectorConfig,
    arrays: Sequence[np.ndarray],
    jobs: list[Job],
    n_tiles: list[int],
    *,
    batch_size: int | None = None,
) -> Plan:
    """Group the jobs of several images into batches of one input shape, in job order."""
    bs = batch_size or cfg.batch_size
    by_shape: dict[tuple[int, int], list[int]] = {}
    for k, job in enumerate(jobs):
        by_shape.setdefault(job.shape, []).append(k)
    batches = []
    for shape, idxs in by_shape.items():
        cap = batch_capacity(backend, bs, shape)
        batches.extend(Batch(idxs[s : s + cap], shape) for s in range(0, len(idxs), cap))
    return Plan(list(arrays), jobs, n_tiles, batches)


def plan(
    backend: Backend,
    cfg: DetectorConfig,
    arrays: Sequence[np.ndarray],
    *,
    tiling: str | None = None,
    batch_size: int | None = None,
    prepare: bool = False,
    wholes: Sequence[np.ndarray | None] | None = None,
) -> Plan:
    """Cut images into jobs and batches; with ``prepare``, fill the whole-frame inputs now (done
    in the prefetch thread, overlapping inference; tiles are filled batch by batch as they run)."""
    jobs: list[Job] = []
    n_tiles = [0] * len(arrays)
    for i, a in enumerate(arrays):
        whole = wholes[i] if wholes is not None else None
        js, n_tiles[i] = image_jobs(backend, cfg, i, a, tiling=tiling, whole=whole, prepare=prepare)
        jobs.extend(js)
    return make_plan(backend, cfg, arrays, jobs, n_tiles, batch_size=batch_size)


def fill(batch: Batch, jobs: list[Job]) -> None:
    x = np.empty((len(batch.jobs), 3, *batch.shape), np.float32)
    batch.infos = []
    for j, k in enumerate(batch.jobs):
        job = jobs[k]
        if job.tensor is not None and job.info is not None:
            x[j] = job.tensor
            batch.infos.append(job.info)
            job.tensor = None
        else:
            batch.infos.append(letterbox_into(job.crop, x[j], scale_up=not job.native, border=job.border))
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
                xyxy = b.infos[j].to_original(d.xyxy)
                if jobs[k].scale != 1.0:
                    h, w = p.arrays[jobs[k].image].shape[:2]
                    xyxy = xyxy * np.float32(jobs[k].scale)
                    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
                    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
                d = Detections(xyxy, d.confidence, d.class_id)
            per_job[k] = d
        for k in b.jobs:  # the crops and letterbox inputs are no longer needed
            jobs[k].crop = _EMPTY
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


_EMPTY = np.empty((0, 0, 3), np.uint8)
