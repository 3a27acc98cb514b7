"""The long-lived parts of one running service, started and stopped by the app's lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from serving.auth import KeyStore
from serving.detectors import DetectorPool, ModelNotLoaded
from serving.errors import busy
from serving.metrics import Metrics
from serving.queue import InferenceQueue
from serving.runner import JobRunner
from serving.settings import Settings
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
        self._uploads = 0
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
        self.runner = JobRunner(self.store, pool, self.queue, s, self.metrics)
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
    def upload_slot(self) -> Iterator[None]:
        """One of ``max_concurrent_uploads``; raises ApiError 503 when all are taken. (Used on
        the event loop only, so a plain counter is enough.)"""
        if self._uploads >= self.settings.max_concurrent_uploads:
            self.metrics.busy.inc()
            raise busy(self.settings.retry_after_seconds, "too many uploads in progress")
        self._uploads += 1
        try:
            yield
        finally:
            self._uploads -= 1

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
