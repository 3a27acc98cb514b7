"""The inference engine: images in, :class:`Detections` / :class:`ImageResult` out.

    from detector import Detector
    det = Detector("models/current")                     # or an .onnx path; backend="openvino"
    dets = det.predict(["a.jpg", rgb_array])              # list[Detections], original pixels
    results = det.inspect(["f1.jpg", ("upload.jpg", raw)])  # decode -> detect -> geo -> priority

Arrays passed in are RGB (H, W, 3) uint8, or single-channel (H, W) of any integer or
float type (stretched like a thermal frame). Paths and bytes are decoded by
:func:`detector.decode.decode_image`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.config import DetectorConfig, load_detector_config
from detector.decode import DecodedImage, ImageDecodeError, decode_image, stretch_to_uint8
from detector.detections import Detections
from detector.geo import locate_points, read_pose
from detector.letterbox import LetterboxInfo, letterbox_into, rect_shape
from detector.model import Backend, ModelInfo, load_backend
from detector.priority import PriorityConfig, assess_detections, load_priority_config, summarize
from detector.results import Defect, ImageResult
from detector.tiling import Tile, mark_cut, merge_tiles, plan_tiles, should_tile

ImageInput = np.ndarray | DecodedImage | str | os.PathLike | bytes


@dataclass
class _Job:
    image: int  # index of the image in the call
    crop: np.ndarray
    tile: Tile | None  # None: the whole image


@dataclass
class _Batch:
    jobs: list[int]
    shape: tuple[int, int]  # model input (H, W)
    tensor: np.ndarray | None = None
    infos: list[LetterboxInfo] = field(default_factory=list)


@dataclass
class _Plan:
    arrays: list[np.ndarray]
    jobs: list[_Job]
    n_tiles: list[int]
    batches: list[_Batch]


@dataclass
class _Prepared:
    decoded: list[tuple[Any, DecodedImage | ImageDecodeError, float]]  # (source, image or error, decode ms)
    plan: _Plan  # for the images that decoded, in order
    prepare_ms: float


class Detector:
    """An exported YOLO model plus the settings to run it.

    One ``Detector`` per worker: ONNX Runtime sessions may be shared between threads, but
    the OpenVINO backend serialises calls with a lock, so sharing one costs throughput.
    For one-image requests (a web service) ``inspect(..., prefetch=False)`` skips the
    decode thread.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        config: DetectorConfig | str | os.PathLike | None = None,
        priority_config: PriorityConfig | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(config, DetectorConfig):
            cfg = config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
            cfg = DetectorConfig.model_validate(cfg.model_dump())
        else:
            cfg = load_detector_config(config, **overrides)
        self.config = cfg
        self.backend: Backend = load_backend(
            model if model is not None else cfg.model,
            backend=cfg.backend,
            threads=cfg.threads,
            optimization=cfg.graph_optimization,
            precision=cfg.precision,
            warmup=cfg.warmup,
            spin_wait=cfg.spin_wait,
            openvino_hint=cfg.openvino_hint,
        )
        self.info: ModelInfo = self.backend.info
        self.names: tuple[str, ...] = self.info.names
        unknown = sorted(set(cfg.class_conf) - set(self.names))
        if unknown:
            raise ValueError(f"class_conf names classes the model does not have: {', '.join(unknown)}")
        if priority_config is not None:
            self.priority_config = priority_config
        elif cfg.priority_config:
            self.priority_config = load_priority_config(cfg.priority_config)
        else:
            self.priority_config = load_priority_config()
        try:
            from detector.taxonomy import load_taxonomy

            tax = load_taxonomy()
            self._assets = {n: tax.by_name(n).asset for n in self.names if n in tax.names}
        except Exception:  # noqa: BLE001 - the taxonomy only adds the asset label
            self._assets = {}

    # -- settings -------------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return max(self.info.imgsz)

    #: Settings that only change how fast results come (or where the rules file lives: the
    #: rules themselves are fingerprinted); every other setting changes results.
    SPEED_SETTINGS = frozenset(
        {
            "model",
            "backend",
            "precision",
            "openvino_hint",
            "threads",
            "graph_optimization",
            "spin_wait",
            "warmup",
            "batch_size",
            "priority_config",
        }
    )

    def settings_fingerprint(self) -> str:
        """8 hex digits naming the result-changing settings and the priority rules, so
        stored results are only reused for the same model *and* the same settings. A
        setting added later counts as result-changing unless listed in SPEED_SETTINGS."""
        cfg = self.config.model_dump(mode="json", exclude=set(self.SPEED_SETTINGS))
        doc = {"detector": cfg, "priority": self.priority_config.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:8]

    def thresholds(self, conf: float | None = None) -> np.ndarray:
        """Per-class confidence thresholds; an explicit ``conf`` overrides all of them."""
        if conf is not None:
            return np.full(len(self.names), float(conf), np.float32)
        t = np.full(len(self.names), self.config.conf, np.float32)
        for name, v in self.config.class_conf.items():
            t[self.names.index(name)] = v
        return t

    # -- detection -------------------------------------------------------------------------------
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        tiling: str | None = None,
        batch_size: int | None = None,
    ) -> list[Detections]:
        """Detections per image, boxes in original-image pixels.

        ``conf`` overrides the per-class thresholds (e.g. 0.001 for mAP); ``tiling`` is
        ``"off"``, ``"auto"`` or ``"on"``. Undecodable paths/bytes raise ImageDecodeError.
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif isinstance(images, np.ndarray | DecodedImage | str | os.PathLike | bytes):
            images = [images]
        arrays = [self._pixels(im) for im in images]
        return self._detect(arrays, conf=conf, iou=iou, max_det=max_det, tiling=tiling, batch_size=batch_size)[0]

    def iter_predict(
        self,
        images: Iterable[ImageInput],
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        tiling: str | None = None,
        chunk_size: int | None = None,
    ) -> Iterator[Detections]:
        """:meth:`predict` over a long sequence, a chunk at a time (bounded memory), in order."""
        size = chunk_size or self.config.batch_size * getattr(self.backend, "parallel", 1)
        buf: list[ImageInput] = []
        for im in images:
            buf.append(im)
            if len(buf) >= size:
                yield from self.predict(buf, conf=conf, iou=iou, max_det=max_det, tiling=tiling)
                buf = []
        if buf:
            yield from self.predict(buf, conf=conf, iou=iou, max_det=max_det, tiling=tiling)

    def _pixels(self, im: ImageInput) -> np.ndarray:
        if isinstance(im, DecodedImage):
            return im.pixels
        if isinstance(im, np.ndarray):
            return as_rgb8(im, self.config.stretch_percentiles)
        return self.decode(im).pixels

    def decode(self, source: str | os.PathLike | bytes, name: str | None = None) -> DecodedImage:
        return decode_image(
            source, name=name, max_pixels=self.config.max_pixels, stretch_percentiles=self.config.stretch_percentiles
        )

    def _detect(
        self,
        arrays: Sequence[np.ndarray],
        *,
        conf: float | None,
        iou: float | None,
        max_det: int | None,
        tiling: str | None,
        batch_size: int | None,
    ) -> tuple[list[Detections], list[int]]:
        plan = self._plan(arrays, tiling=tiling, batch_size=batch_size)
        return self._execute(plan, conf=conf, iou=iou, max_det=max_det), plan.n_tiles

    def _input_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        if self.info.dynamic_hw:
            return rect_shape(hw, self.info.imgsz, self.info.stride)
        return self.info.imgsz

    def _plan(
        self, arrays: Sequence[np.ndarray], *, tiling: str | None, batch_size: int | None, prepare: bool = False
    ) -> _Plan:
        """Cut images into jobs (whole image + tiles), group jobs of one input shape into batches
        (so results do not depend on what else is in the call), and - with ``prepare`` - fill
        the input tensors now (done in the prefetch thread, overlapping inference)."""
        cfg = self.config
        mode = cfg.tiling if tiling is None else tiling
        bs = batch_size or cfg.batch_size
        if not self.info.dynamic_batch:
            bs = 1
        tile_size = cfg.tile_size or self.input_size
        jobs: list[_Job] = []
        n_tiles = [0] * len(arrays)
        for i, a in enumerate(arrays):
            h, w = a.shape[:2]
            jobs.append(_Job(i, a, None))
            if should_tile(h, w, self.input_size, mode, cfg.tiling_min_scale):
                tiles = plan_tiles(h, w, tile_size, cfg.tile_overlap)
                n_tiles[i] = len(tiles)
                jobs.extend(_Job(i, t.crop(a), t) for t in tiles)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for k, job in enumerate(jobs):
            by_shape.setdefault(self._input_hw(job.crop.shape[:2]), []).append(k)
        batches = [_Batch(idxs[s : s + bs], shape) for shape, idxs in by_shape.items() for s in range(0, len(idxs), bs)]
        # prepare up front only while the tensors stay small (tiled 4000x3000 frames would not)
        if prepare and len(jobs) <= 4 * bs:
            for b in batches:
                self._fill(b, jobs)
        return _Plan(list(arrays), jobs, n_tiles, batches)

    @staticmethod
    def _fill(batch: _Batch, jobs: list[_Job]) -> None:
        x = np.empty((len(batch.jobs), 3, *batch.shape), np.float32)
        batch.infos = [letterbox_into(jobs[k].crop, x[j]) for j, k in enumerate(batch.jobs)]
        batch.tensor = x

    def _execute(self, plan: _Plan, *, conf: float | None, iou: float | None, max_det: int | None) -> list[Detections]:
        cfg = self.config
        iou = cfg.iou if iou is None else iou
        max_det = cfg.max_det if max_det is None else max_det
        thr = self.thresholds(conf)
        jobs, end2end = plan.jobs, self.info.end2end
        per_job: list[Detections] = [Detections.empty()] * len(jobs)

        def tensors() -> Iterator[np.ndarray]:
            for b in plan.batches:
                if b.tensor is None:
                    self._fill(b, jobs)  # filled here, while the backend runs the previous batches
                x, b.tensor = b.tensor, None  # the backend holds the only reference: freed after the run
                yield x  # type: ignore[misc]

        if getattr(self.backend, "parallel", 1) > 1:
            outputs: Iterable[np.ndarray] = self.backend.run_many(tensors())
        else:  # one batch at a time through run() (which wrappers, e.g. timers, may override)
            outputs = (self.backend.run(x) for x in tensors())
        for b, raw in zip(plan.batches, outputs, strict=True):
            for j, k in enumerate(b.jobs):
                d = Detections.from_yolo_output(raw[j], conf=thr, iou=iou, max_det=max_det, end2end=end2end)
                if len(d):
                    d = Detections(b.infos[j].to_original(d.xyxy), d.confidence, d.class_id)
                per_job[k] = d
        parts: list[list[Detections]] = [[] for _ in plan.arrays]
        for job, d in zip(jobs, per_job, strict=True):
            if job.tile is not None:
                d = d.shifted(job.tile.x0, job.tile.y0)
                h, w = plan.arrays[job.image].shape[:2]
                d = d.with_data(mergeable=mark_cut(d, job.tile, h, w))
            elif plan.n_tiles[job.image]:
                d = d.with_data(mergeable=np.ones(len(d), bool))
            parts[job.image].append(d)
        out = []
        for i, p in enumerate(parts):
            if plan.n_tiles[i]:
                m = merge_tiles(p, iou=iou, merge_threshold=cfg.tile_merge_threshold, max_det=max_det)
                out.append(Detections(m.xyxy, m.confidence, m.class_id))
            else:
                out.append(p[0])
        return out

    # -- the full pipeline -------------------------------------------------------------------------
    def inspect(
        self,
        sources: Iterable[str | os.PathLike | bytes | DecodedImage | tuple[str, bytes]],
        **kwargs: Any,
    ) -> list[ImageResult]:
        """Decode -> detect -> locate -> prioritise, one :class:`ImageResult` per input.

        A file that cannot be decoded gives a result with ``error`` set instead of raising.
        Keyword arguments as for :meth:`iter_inspect`.
        """
        return list(self.iter_inspect(sources, **kwargs))

    def iter_inspect(
        self,
        sources: Iterable[str | os.PathLike | bytes | DecodedImage | tuple[str, bytes]],
        *,
        conf: float | None = None,
        tiling: str | None = None,
        zone: str | None = None,
        group: str | None = None,
        chunk_size: int | None = None,
        prefetch: bool = True,
        keep_images: bool = False,
    ) -> Iterator[ImageResult]:
        """Stream results in input order; decoding of the next chunk overlaps inference.

        ``sources``: paths, bytes, ``(name, bytes)`` pairs or decoded images. ``zone``: a
        position label for the priority rules (e.g. a blade zone). ``group``: asset or
        flight id stored on each result (for :func:`detector.results.rollup`). ``keep_images``:
        leave the decoded image on ``result.image`` (e.g. to draw it).
        """
        # enough images per chunk to keep every parallel request of the backend busy
        size = chunk_size or self.config.batch_size * getattr(self.backend, "parallel", 1)

        def chunks() -> Iterator[list[Any]]:
            buf: list[Any] = []
            for s in sources:
                buf.append(s)
                if len(buf) >= size:
                    yield buf
                    buf = []
            if buf:
                yield buf

        def prepare(items: list[Any]) -> _Prepared:
            decoded: list[tuple[Any, DecodedImage | ImageDecodeError, float]] = []
            for it in items:
                t0 = time.perf_counter()
                try:
                    if isinstance(it, DecodedImage):
                        d: DecodedImage | ImageDecodeError = it
                    elif isinstance(it, tuple):
                        d = self.decode(it[1], name=it[0])
                    else:
                        d = self.decode(it)
                except ImageDecodeError as e:
                    d = e
                decoded.append((it, d, (time.perf_counter() - t0) * 1e3))
            t0 = time.perf_counter()
            ok = [d for _, d, _ in decoded if isinstance(d, DecodedImage)]
            plan = self._plan([d.pixels for d in ok], tiling=tiling, batch_size=None, prepare=True)
            return _Prepared(decoded, plan, (time.perf_counter() - t0) * 1e3 / max(len(ok), 1))

        if not prefetch:
            for items in chunks():
                yield from self._finish(prepare(items), conf, zone, group, keep_images)
            return
        # a worker thread decodes and letterboxes the next chunks while this one runs the model
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pvwind-decode") as pool:
            pending: deque[Future] = deque()
            it = chunks()
            for items in it:
                pending.append(pool.submit(prepare, items))
                if len(pending) >= 2:
                    break
            while pending:
                done = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(prepare, nxt))
                yield from self._finish(done, conf, zone, group, keep_images)

    def _finish(
        self,
        prepared: _Prepared,
        conf: float | None,
        zone: str | None,
        group: str | None,
        keep_images: bool = False,
    ) -> list[ImageResult]:
        decoded, plan = prepared.decoded, prepared.plan
        t0 = time.perf_counter()
        dets = self._execute(plan, conf=conf, iou=None, max_det=None)
        per_image_ms = (time.perf_counter() - t0) * 1e3 / max(len(dets), 1)
        out = []
        j = 0
        for src, d, decode_ms in decoded:
            if not isinstance(d, DecodedImage):
                out.append(
                    ImageResult(
                        source=_label(src),
                        group=group,
                        model_version=self.info.version,
                        error=str(d),
                        error_reason=d.reason,
                        names=self.names,
                    )
                )
                continue
            t1 = time.perf_counter()
            r = self.build_result(d, dets[j], zone=zone, group=group)
            r.tiles = plan.n_tiles[j]
            j += 1
            if keep_images:
                r.image = d
            r.timings_ms = {
                "decode": decode_ms,
                "preprocess": prepared.prepare_ms,
                "detect": per_image_ms,
                "post": (time.perf_counter() - t1) * 1e3,
            }
            out.append(r)
        return out

    def build_result(
        self, image: DecodedImage, dets: Detections, *, zone: str | None = None, group: str | None = None
    ) -> ImageResult:
        """Attach location and priority to one image's detections."""
        h, w = image.height, image.width
        pose = read_pose(image.metadata, image.stored_hw)
        centres = np.stack([(dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2, (dets.xyxy[:, 1] + dets.xyxy[:, 3]) / 2], 1)
        geo = locate_points(
            pose,
            centres,
            image.stored_hw,
            orientation=image.metadata.orientation,
            max_off_nadir_deg=self.config.max_off_nadir_deg,
        )
        assessments = assess_detections(
            dets, self.names, (h, w), gsd_m=geo.gsd_m, zone=zone, config=self.priority_config
        )
        defects = []
        for i, a in enumerate(assessments):
            c = int(dets.class_id[i])
            name = self.names[c] if c < len(self.names) else str(c)
            box = tuple(float(v) for v in dets.xyxy[i])
            lat, lon = float(geo.latitude[i]), float(geo.longitude[i])
            defects.append(
                Defect(
                    index=i,
                    class_id=c,
                    class_name=name,
                    confidence=float(dets.confidence[i]),
                    xyxy=box,  # type: ignore[arg-type]
                    area_frac=(box[2] - box[0]) * (box[3] - box[1]) / max(h * w, 1),
                    assessment=a,
                    latitude=lat if np.isfinite(lat) else None,
                    longitude=lon if np.isfinite(lon) else None,
                    geo_quality=geo.quality,
                    asset=self._assets.get(name),
                )
            )
        summary = summarize((d.priority, d.class_name) for d in defects)
        return ImageResult(
            source=image.source,
            image_id=image.sha256[:16],
            sha256=image.sha256,
            width=w,
            height=h,
            detections=dets,
            names=self.names,
            defects=defects,
            summary=summary,
            camera=pose if (pose.has_gps or pose.make) else None,
            geo_quality=geo.quality,
            geo_note=geo.note,
            gsd_m=geo.gsd_m,
            image_info={
                "format": image.format,
                "mode": image.mode,
                "bit_depth": image.bit_depth,
                "grayscale": image.grayscale,
                "orientation": image.metadata.orientation,
            },
            group=group,
            model_version=self.info.version,
        )


def as_rgb8(a: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Any image array -> (H, W, 3) uint8 (RGB assumed for 3 channels; alpha dropped)."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        g = a if a.dtype == np.uint8 else stretch_to_uint8(a, percentiles)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {a.shape}")
    if a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = (np.clip(np.nan_to_num(a), 0, 1) * 255).round()
        elif a.dtype == np.uint16:
            a = a / 257.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError("empty image array")
    return a


def _label(src: Any) -> str:
    if isinstance(src, tuple):
        return str(src[0])
    if isinstance(src, str | os.PathLike):
        return str(Path(src))
    return "<bytes>"
