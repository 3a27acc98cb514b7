"""The :class:`Detector`: an exported model plus its settings; images in,
:class:`~detector.detections.Detections` or :class:`~detector.results.ImageResult` out.

    from detector import Detector
    det = Detector("models/current")                     # or an .onnx path; backend="openvino"
    dets = det.predict(["a.jpg", rgb_array])              # list[Detections], original pixels
    results = det.inspect(["f1.jpg", ("upload.jpg", raw)])  # decode -> detect -> geo -> priority

Arrays passed in are RGB (H, W, 3) uint8, or single-channel (H, W) of any integer or
float type (stretched like a thermal frame). Paths and bytes are decoded by
:func:`detector.decode.decode_image`. Batching and tiling: :mod:`detector.batching`;
result assembly: :mod:`detector.assemble`.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector import batching
from detector.assemble import build_result
from detector.config import Conditions, DetectorConfig, load_detector_config
from detector.decode import DecodedImage, ImageDecodeError, as_rgb8, decode_image
from detector.detections import Detections
from detector.model import Backend, ModelInfo, load_backend
from detector.priority import PriorityConfig, load_priority_config
from detector.radiometry import ThermalOverrides, load_thermal_config
from detector.results import ImageError, ImageResult
from detector.thermal_pipeline import read_thermal

ImageInput = np.ndarray | DecodedImage | str | os.PathLike | bytes
Source = str | os.PathLike | bytes | DecodedImage | tuple[str, bytes]


@dataclass
class _Entry:
    source: Any
    image: DecodedImage | ImageDecodeError
    decode_ms: float
    jobs: list[batching.Job]
    n_tiles: int
    prepare_ms: float
    pixels: int


@dataclass
class _Prepared:
    decoded: list[tuple[Any, DecodedImage | ImageDecodeError, float]]  # (source, image or error, decode ms)
    plan: batching.Plan  # for the images that decoded, in order
    prepare_ms: float


class Detector:
    """An exported YOLO model plus the settings to run it.

    One ``Detector`` per worker: ONNX Runtime sessions may be shared between threads, but
    the OpenVINO backend serialises calls with a lock, so sharing one costs throughput.
    For one-image requests (a web service) ``inspect(..., prefetch=False)`` skips the
    decode thread.
    """

    #: Settings that never change the result of an image that is scored: speed (runtime,
    #: threads, batching), where the rules file lives (the rules themselves are
    #: fingerprinted) and the pixel ceiling (it decides whether an image is accepted, not
    #: what its result is). Every other setting, including one added later, changes results.
    NEUTRAL_SETTINGS = frozenset(
        {
            "model",
            "backend",
            "int8_max_map50_drop",
            "precision",
            "openvino_hint",
            "threads",
            "graph_optimization",
            "spin_wait",
            "warmup",
            "batch_size",
            "priority_config",
            "max_pixels",
        }
    )

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
            int8_max_map50_drop=cfg.int8_max_map50_drop,
        )
        self.info: ModelInfo = self.backend.info
        if cfg.border % self.info.stride:
            raise ValueError(
                f"border must be a multiple of the model's stride ({self.info.stride} px), got {cfg.border}"
            )
        self.names: tuple[str, ...] = self.info.names
        #: per-class thresholds shipped with the model (thresholds.json beside model.onnx)
        self.model_thresholds = load_model_thresholds(self.info.path, self.names) if cfg.model_thresholds else {}
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
            self.assets: dict[str, str] = {n: tax.by_name(n).asset for n in self.names if n in tax.names}
        except Exception:  # noqa: BLE001 - the taxonomy only adds the asset label
            self.assets = {}
        self.model_key = f"{self.info.version}@{self.info.sha256[:12]}+{self.settings_fingerprint()}"

    # -- settings -------------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return max(self.info.imgsz)

    def settings_fingerprint(self) -> str:
        """8 hex digits naming the result-changing settings and the priority rules. Part of
        :attr:`model_key`, the identity results are stored under: model folder name + start
        of the file hash (a model re-exported in place never reuses old results) + this."""
        cfg = self.config.model_dump(mode="json", exclude=set(self.NEUTRAL_SETTINGS))
        if cfg.get("tile_overlap") != "auto":  # only the auto overlap reads it: keys stay as before
            cfg.pop("max_defect_px", None)
        doc = {"detector": cfg, "priority": self.priority_config.model_dump(mode="json")}
        if self.model_thresholds:  # thresholds.json is beside the model file, not in its hash
            doc["model_thresholds"] = self.model_thresholds
        if self.config.radiometric:  # the radiometric reading, rendering and finder settings
            doc["thermal"] = load_thermal_config().model_dump(mode="json")
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:8]

    def thresholds(self, conf: float | None = None) -> np.ndarray:
        """Per-class confidence thresholds; an explicit ``conf`` overrides all of them."""
        if conf is not None:
            return np.full(len(self.names), float(conf), np.float32)
        t = np.full(len(self.names), self.config.conf, np.float32)
        for name, v in {**self.model_thresholds, **self.config.class_conf}.items():
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
        p = batching.plan(self.backend, self.config, arrays, tiling=tiling, batch_size=batch_size)
        return batching.execute(self.backend, self.config, p, self.thresholds(conf), iou=iou, max_det=max_det)

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
        size = chunk_size or self._chunk_size()
        buf: list[ImageInput] = []
        for im in images:
            buf.append(im)
            if len(buf) >= size:
                yield from self.predict(buf, conf=conf, iou=iou, max_det=max_det, tiling=tiling)
                buf = []
        if buf:
            yield from self.predict(buf, conf=conf, iou=iou, max_det=max_det, tiling=tiling)

    def _chunk_size(self) -> int:
        # enough images per chunk to keep every parallel request of the backend busy
        return self.config.batch_size * getattr(self.backend, "parallel", 1)

    def _pixels(self, im: ImageInput) -> np.ndarray:
        if isinstance(im, DecodedImage):
            return im.pixels
        if isinstance(im, np.ndarray):
            return as_rgb8(im, self.config.stretch_percentiles)
        return self.decode(im).pixels

    def decode(
        self, source: str | os.PathLike | bytes, name: str | None = None, conditions: Conditions | None = None
    ) -> DecodedImage:
        """Decode an image; a radiometric thermal frame (``radiometric: true``) also gets its
        temperature map (with ``conditions`` over the configured radiometric parameters), and
        its pixels become the consistent rendering the model expects."""
        d = decode_image(
            source,
            name=name,
            max_pixels=self.config.max_pixels,
            stretch_percentiles=self.config.stretch_percentiles,
            corrupt_jpeg=self.config.corrupt_jpeg,
        )
        if self.config.radiometric and d.format in ("JPEG", "MPO"):  # DJI writes MPO (multi-picture) JPEGs
            c = (conditions or Conditions()).over(self.config)
            overrides = ThermalOverrides(
                emissivity=c.emissivity,
                reflected_temp_c=c.reflected_temp_c,
                distance_m=c.distance_m,
                relative_humidity=c.relative_humidity,
            )
            read_thermal(d, overrides)
            d.conditions = c
        return d

    def key_for(self, conditions: Conditions | None) -> str:
        """The result key under ``conditions``: :attr:`model_key` when they add nothing to the
        configured ones, else the model key plus 8 hex of the conditions."""
        if conditions is None or conditions.over(self.config) == Conditions().over(self.config):
            return self.model_key
        doc = json.dumps(conditions.over(self.config).model_dump(), sort_keys=True)
        return f"{self.model_key}~{hashlib.sha256(doc.encode()).hexdigest()[:8]}"

    # -- the full pipeline -------------------------------------------------------------------------
    def inspect(self, sources: Iterable[Source], **kwargs: Any) -> list[ImageResult]:
        """Decode -> detect -> locate -> prioritise, one :class:`ImageResult` per input.

        A file that cannot be decoded gives a result with ``status="error"`` instead of
        raising. Keyword arguments as for :meth:`iter_inspect`.
        """
        return list(self.iter_inspect(sources, **kwargs))

    def iter_inspect(
        self,
        sources: Iterable[Source],
        *,
        conf: float | None = None,
        tiling: str | None = None,
        zone: str | None = None,
        chunk_size: int | None = None,
        prefetch: bool = True,
        keep_images: bool = False,
        timings: dict[str, float] | None = None,
        conditions: Conditions | None = None,
    ) -> Iterator[ImageResult]:
        """Stream results in input order; decoding of the next chunk overlaps inference.

        ``sources``: paths, bytes, ``(name, bytes)`` pairs or decoded images. ``zone``: a
        position label for the priority rules (e.g. a blade zone). ``keep_images``: leave
        the decoded image on ``result.decoded`` (e.g. to draw it). ``timings``: a dict that
        accumulates milliseconds per stage (decode, preprocess, detect, post). ``conditions``:
        the flight's irradiance and radiometric parameters over the configured ones.
        """
        size = chunk_size or self._chunk_size()
        if not prefetch:
            buf: list[Any] = []
            for s in sources:
                buf.append(s)
                if len(buf) >= size:
                    yield from self._finish(self._prepare(buf, tiling, conditions), conf, zone, keep_images, timings)
                    buf = []
            if buf:
                yield from self._finish(self._prepare(buf, tiling, conditions), conf, zone, keep_images, timings)
            return
        yield from self._prefetched(sources, size, tiling, conditions, conf, zone, keep_images, timings)

    #: pixels of decoded frames per model run (a chunk ends at `chunk_size` images or here) and
    #: waiting decoded ahead of it: bounds memory on full-resolution frames (3 bytes a pixel)
    CHUNK_PIXELS = 24_000_000
    AHEAD_PIXELS = 48_000_000

    def _prefetched(
        self,
        sources: Iterable[Source],
        size: int,
        tiling: str | None,
        conditions: Conditions | None,
        conf: float | None,
        zone: str | None,
        keep_images: bool,
        timings: dict[str, float] | None,
    ) -> Iterator[ImageResult]:
        """A decode thread decodes (and letterboxes the whole-frame input of) one image after the
        other while the model runs the previous ones; it stays at most AHEAD_PIXELS ahead. The
        images it has ready are run together (tiles of several frames share batches) up to
        ``size`` images or CHUNK_PIXELS pixels."""
        ready: queue.Queue = queue.Queue()
        cond = threading.Condition()
        ahead = [0]
        stop = threading.Event()

        def produce() -> None:
            try:
                for it in sources:
                    if stop.is_set():
                        return
                    e = self._prepare_one(it, tiling, conditions)
                    with cond:
                        while ahead[0] > 0 and ahead[0] + e.pixels > self.AHEAD_PIXELS and not stop.is_set():
                            cond.wait(0.5)
                        ahead[0] += e.pixels
                    ready.put(e)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                ready.put(exc)
            finally:
                ready.put(None)

        worker = threading.Thread(target=produce, name="pvwind-decode", daemon=True)
        worker.start()
        try:
            done = False
            while not done:
                entries: list[_Entry] = []
                px = 0
                while len(entries) < size and (not entries or px < self.CHUNK_PIXELS):
                    e = ready.get()
                    if e is None:
                        done = True
                        break
                    if isinstance(e, BaseException):
                        raise e
                    entries.append(e)
                    px += e.pixels
                if entries:
                    yield from self._finish(self._assemble(entries), conf, zone, keep_images, timings)
                    with cond:
                        ahead[0] -= px
                        cond.notify_all()
        finally:
            stop.set()
            with cond:
                cond.notify_all()
            worker.join(timeout=60)

    def _prepare_one(self, it: Any, tiling: str | None, conditions: Conditions | None) -> _Entry:
        t0 = time.perf_counter()
        try:
            if isinstance(it, DecodedImage):
                d: DecodedImage | ImageDecodeError = it
            elif isinstance(it, tuple):
                d = self.decode(it[1], name=it[0], conditions=conditions)
            else:
                d = self.decode(it, conditions=conditions)
        except ImageDecodeError as e:
            d = e
        t1 = time.perf_counter()
        if not isinstance(d, DecodedImage):
            return _Entry(it, d, (t1 - t0) * 1e3, [], 0, 0.0, 0)
        jobs, n_tiles = batching.image_jobs(self.backend, self.config, 0, d.pixels, tiling=tiling, prepare=True)
        return _Entry(it, d, (t1 - t0) * 1e3, jobs, n_tiles, (time.perf_counter() - t1) * 1e3, d.pixels[..., 0].size)

    def _assemble(self, entries: list[_Entry]) -> _Prepared:
        arrays, jobs, n_tiles = [], [], []
        for e in entries:
            if isinstance(e.image, DecodedImage):
                for j in e.jobs:
                    j.image = len(arrays)
                jobs.extend(e.jobs)
                n_tiles.append(e.n_tiles)
                arrays.append(e.image.pixels)
        t0 = time.perf_counter()
        p = batching.make_plan(self.backend, self.config, arrays, jobs, n_tiles)
        prep = sum(e.prepare_ms for e in entries) + (time.perf_counter() - t0) * 1e3
        return _Prepared([(e.source, e.image, e.decode_ms) for e in entries], p, prep)

    def _prepare(self, items: list[Any], tiling: str | None, conditions: Conditions | None = None) -> _Prepared:
        return self._assemble([self._prepare_one(it, tiling, conditions) for it in items])

    def _finish(
        self,
        prepared: _Prepared,
        conf: float | None,
        zone: str | None,
        keep_images: bool,
        timings: dict[str, float] | None,
    ) -> list[ImageResult]:
        t0 = time.perf_counter()
        dets = batching.execute(self.backend, self.config, prepared.plan, self.thresholds(conf))
        detect_ms = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        out = []
        j = 0
        for src, d, _ in prepared.decoded:
            if not isinstance(d, DecodedImage):
                err = ImageError(code=d.code, status=d.status, message=d.detail)
                out.append(ImageResult.failed(err, source=_label(src), model=self.model_key))
                continue
            r = self.build_result(d, dets[j], zone=zone, tiles=prepared.plan.n_tiles[j])
            j += 1
            if keep_images:
                r.keep_decoded(d)
            out.append(r)
        if timings is not None:
            for k, v in (
                ("decode", sum(ms for _, _, ms in prepared.decoded)),
                ("preprocess", prepared.prepare_ms),
                ("detect", detect_ms),
                ("post", (time.perf_counter() - t1) * 1e3),
            ):
                timings[k] = timings.get(k, 0.0) + v
        return out

    def build_result(
        self, image: DecodedImage, dets: Detections, *, zone: str | None = None, tiles: int = 0
    ) -> ImageResult:
        """Attach location and priority to one image's detections."""
        return build_result(
            image,
            dets,
            names=self.names,
            assets=self.assets,
            priority_config=self.priority_config,
            max_off_nadir_deg=self.config.max_off_nadir_deg,
            zone=zone,
            tiles=tiles,
            irradiance_w_m2=(image.conditions or Conditions().over(self.config)).irradiance_w_m2,
            model_key=self.key_for(image.conditions),
        )


def load_model_thresholds(model_path: Path, names: Sequence[str]) -> dict[str, float]:
    """``{class: threshold}`` from ``thresholds.json`` beside the model file ({} when absent);
    classes the model does not have are ignored."""
    f = Path(model_path).parent / "thresholds.json"
    if not f.is_file():
        return {}
    try:
        classes = json.loads(f.read_text())["classes"]
        return {k: float(v["threshold"]) for k, v in classes.items() if k in names}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{f}: not a thresholds file ({e})") from None


def _label(src: Any) -> str:
    if isinstance(src, tuple):
        return str(src[0])
    if isinstance(src, str | os.PathLike):
        return str(Path(src))
    return "<bytes>"
