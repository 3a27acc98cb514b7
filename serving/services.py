"""The long-lived parts of one running service, started and stopped by the app's lifespan."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from serving.auth import KeyStore
from serving.detectors import DetectorPool, ModelNotLoaded
from serving.errors import busy
from serving.memory import LargeImages
from serving.metrics import Metrics
from serving.queue import InferenceQueue
from serving.runner import JobRunner
from serving.settings import Settings
from serving.upload import UploadPace, current_pace
from storage.store import Store

log = logging.getLogger("pvwind.serve")


class Services:
    """Settings, keys, metrics and the store exist from the start; the detectors, the inference
    queue and the job runner once the model has loaded (in the background: /healthz answers
    at once, /readyz turns true when scoring works)."""

    def __init__(self, settings: Settings, keys: KeyStore, detectors: DetectorPool | None = None) -> None:
        self.settings = settings
        self.keys = keys
        self.metrics = Metrics()
        self.store = Store.from_url(settings.database_url)
        self.detectors: DetectorPool | None = detectors
        self.queue: InferenceQueue | None = None
        self.runner: JobRunner | None = None
        self.load_error: str | None = None
        self._loader: threading.Thread | None = None
        self._uploads: list[UploadPace] = []
        self.large_images = LargeImages(
            settings.max_large_decodes, self.metrics.large_images.set, self.metrics.large_image_waits.inc
        )
        self._stopping = False

    def start(self) -> None:
        self._loader = threading.Thread(target=self._load, name="model-loader", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        s = self.settings
        try:
            if self.detectors is None:
                log.info("loading model %s", s.model)
                self.detectors = DetectorPool(
                    s.model,
                    workers=s.inference_workers,
                    threads=s.inference_threads,
                    max_pixels=s.max_pixels,
                    config=s.detector_config,
                )
        except ModelNotLoaded as e:
            self.load_error = str(e)
            log.error("model not loaded: %s", e)
            return
        if self._stopping:
            return
        pool = self.detectors
        self.queue = InferenceQueue(pool.detectors, s.queue_max_images, on_depth=self.metrics.queue_depth.set)
        self.runner = JobRunner(self.store, pool, self.queue, s, self.metrics, self.large_images)
        self.runner.start()
        self.metrics.model_loaded.set(1)
        log.info("model %s ready (%d classes, %s)", pool.model_key, len(pool.names), pool.backend)

    def check_queue(self) -> None:
        """503 (busy) when the inference queue is full: called before reading a body."""
        q = self.queue
        if q is not None and q.depth >= q.max_images:
            self.metrics.busy.inc()
            raise busy(self.settings.retry_after_seconds, "the inference queue is full")

    @contextmanager
    def upload_slot(self) -> Iterator[UploadPace]:
        """One of ``max_concurrent_uploads``, with the pace of its body. When all are taken, the
        slowest holder below ``upload_min_bytes_per_second`` (grace period or not) is cut off with
        408 and this request takes its place; if none is that slow, ApiError 503. (Used on the
        event loop only, so plain attributes are enough.)"""
        s = self.settings
        active = [p for p in self._uploads if p.cut_off is None]
        if len(active) >= s.max_concurrent_uploads:
            now = time.monotonic()
            slow = [p for p in active if p.below_minimum(now)]
            if not slow:
                self.metrics.busy.inc()
                raise busy(s.retry_after_seconds, "too many uploads in progress")
            victim = min(slow, key=lambda p: p.received / max(p.age(now), 1e-9))
            victim.cut(
                f"the upload was slower than {s.upload_min_bytes_per_second} bytes/s while another client waited "
                "for an upload slot"
            )
        pace = UploadPace(s.upload_min_bytes_per_second, s.upload_grace_seconds)
        self._uploads.append(pace)
        self.metrics.uploads.set(len(self._uploads))
        token = current_pace.set(pace)
        try:
            yield pace
        finally:
            current_pace.reset(token)
            self._uploads.remove(pace)
            self.metrics.uploads.set(len(self._uploads))

    @property
    def ready(self) -> bool:
        return self.runner is not None

    def stop(self) -> None:
        self._stopping = True
        if self._loader is not None:
            self._loader.join(60)
        if self.runner is not None:
            self.runner.stop()
        if self.queue is not None:
            self.queue.close()
        self.store.close()
