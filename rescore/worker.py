"""Scoring a chunk of items in one worker: read -> hash -> (skip known) -> decode -> detect.

The same :class:`ChunkScorer` runs in a local worker process (:mod:`rescore.local_runner`)
and in a Ray actor (:mod:`rescore.ray_runner`), so both modes produce the same results.
Each scorer owns one :class:`detector.Detector` (one ONNX Runtime session with its own
intra-op thread count). Within a chunk, decoding of the next batch overlaps inference of
the current one (the detector's prefetch thread).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.decode import DECODE_ERRORS
from detector.results import ImageError, ImageResult
from rescore.outcome import KNOWN, SCORED, UNREADABLE, Outcome
from rescore.scan import ArchiveReader, ItemReadError, ScanItem, split_flight

TIMING_KEYS = ("read", "hash", "lookup", "decode", "preprocess", "inference", "post")

#: the decoder's error code -> the re-scorer's reason (the decoder's own name for it)
_REASONS = {code: reason for reason, (code, _) in DECODE_ERRORS.items()}


class ModelMismatch(RuntimeError):
    """A worker loaded a model or settings other than the run's (e.g. another file at the same
    path on another node): its results would be stored under the wrong key."""


@dataclass(frozen=True)
class ScorerSpec:
    """Everything a worker needs to build its scorer (picklable)."""

    model: str
    model_key: str  # the run's result key: Detector.model_key
    threads: int
    config: str | None = None
    batch_size: int | None = None
    store_url: str | None = None  # for the known-content lookup; None = off


class KnownResults:
    """A worker's read-only view of the store: which content hashes this model already scored
    (an image moved or copied since the last run is not scored again). Disabled when the
    store cannot be reached from the worker (e.g. a SQLite file on another Ray node)."""

    def __init__(self, url: str | None, model_key: str) -> None:
        from sqlalchemy.engine import make_url

        from storage.store import Store

        self.model_key = model_key
        self.store: Store | None = None
        if not url:
            return
        try:
            u = make_url(url)
            if u.get_backend_name() == "sqlite" and (not u.database or not Path(u.database).is_file()):
                return
            self.store = Store.from_url(url, create=False)
        except Exception:  # noqa: BLE001 - only an optimisation; the writer dedupes anyway
            self.store = None

    def __call__(self, shas: Iterable[str]) -> set[str]:
        if self.store is None:
            return set()
        try:
            return self.store.scored(shas, self.model_key)
        except Exception:  # noqa: BLE001 - a busy or unreachable store: score the images
            return set()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class _TimedBackend:
    """Wraps the detector's backend to measure time spent in the session run alone."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seconds = 0.0

    def run(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self._inner.run(x)
        finally:
            self.seconds += time.perf_counter() - t0

    def run_many(self, xs: Any) -> list[np.ndarray]:
        # several batches in flight (OpenVINO, the default backend on bf16 CPUs): the span of the call,
        # which includes filling the next input tensors (the generator runs inside it)
        t0 = time.perf_counter()
        try:
            return self._inner.run_many(xs)
        finally:
            self.seconds += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ChunkScorer:
    def __init__(self, spec: ScorerSpec) -> None:
        from detector import Detector

        _limit_library_threads(spec.threads)
        self.spec = spec
        self.detector = Detector(spec.model, config=spec.config, threads=spec.threads, batch_size=spec.batch_size)
        if self.detector.model_key != spec.model_key:
            raise ModelMismatch(
                f"{spec.model} loads as {self.detector.model_key} in this worker, not {spec.model_key}: "
                "the same model and settings must be at the same path on every node"
            )
        self._timed = _TimedBackend(self.detector.backend)
        self.detector.backend = self._timed  # type: ignore[assignment]
        self.reader = ArchiveReader()
        self.known = KnownResults(spec.store_url, spec.model_key)

    def close(self) -> None:
        self.reader.close()
        self.known.close()

    def score(self, items: Sequence[ScanItem]) -> tuple[list[Outcome], dict[str, float]]:
        """Outcomes in item order, plus seconds spent per stage (summed over the chunk) and the
        chunk's wall-clock span (``wall_start``/``wall_end``, epoch seconds). Bytes seen twice
        in the chunk go through the model once."""
        t = dict.fromkeys(TIMING_KEYS, 0.0)
        t["wall_start"] = time.time()
        out: list[Outcome | None] = [None] * len(items)
        blobs: dict[int, tuple[bytes, str]] = {}
        first_of: dict[str, int] = {}  # content hash -> the first item of the chunk with it
        copies: dict[int, int] = {}  # item -> the earlier item with the same bytes
        for i, it in enumerate(items):
            t0 = time.perf_counter()
            try:
                data = self.reader.read(it)
            except ItemReadError as e:
                out[i] = Outcome(it.source, it.flight, it.fingerprint, UNREADABLE, error_reason=e.reason, error=str(e))
                continue
            t1 = time.perf_counter()
            sha = hashlib.sha256(data).hexdigest()
            t["read"] += t1 - t0
            t["hash"] += time.perf_counter() - t1
            if not data:
                out[i] = Outcome(
                    it.source,
                    it.flight,
                    it.fingerprint,
                    UNREADABLE,
                    sha,
                    error_reason="empty",
                    error="empty file (0 bytes)",
                )
            elif sha in first_of:
                copies[i] = first_of[sha]
            else:
                first_of[sha] = i
                blobs[i] = (data, sha)
        t0 = time.perf_counter()
        known = self.known(sha for _, sha in blobs.values())
        t["lookup"] += time.perf_counter() - t0
        todo = []
        for i, (data, sha) in blobs.items():
            it = items[i]
            if sha in known:
                out[i] = Outcome(it.source, it.flight, it.fingerprint, KNOWN, sha, size_bytes=len(data))
            else:
                todo.append(i)
        if todo:
            self._detect(items, todo, blobs, out, t)
        for i, j in copies.items():
            first = out[j]
            assert first is not None and first.sha256 is not None
            it = items[i]
            out[i] = first.copy_for(it.source, it.flight, it.fingerprint, first.sha256)
        t["wall_end"] = time.time()
        return [o for o in out if o is not None], t

    def _detect(
        self,
        items: Sequence[ScanItem],
        todo: list[int],
        blobs: dict[int, tuple[bytes, str]],
        out: list[Outcome | None],
        t: dict[str, float],
    ) -> None:
        inf0 = self._timed.seconds
        ms: dict[str, float] = {}
        try:
            results = list(
                self.detector.iter_inspect([(items[i].source, blobs[i][0]) for i in todo], prefetch=True, timings=ms)
            )
        except Exception:  # noqa: BLE001 - one bad image must not cost the chunk: go one by one
            results = []
            for i in todo:
                try:
                    results.extend(
                        self.detector.iter_inspect([(items[i].source, blobs[i][0])], prefetch=False, timings=ms)
                    )
                except Exception as e:  # noqa: BLE001
                    err = ImageError(code="inference_failed", status=500, message=f"{type(e).__name__}: {e}")
                    results.append(ImageResult.failed(err, source=items[i].source))
        for i, r in zip(todo, results, strict=True):
            it = items[i]
            data, sha = blobs[i]
            if not r.ok:
                err = r.error
                out[i] = Outcome(
                    it.source,
                    it.flight,
                    it.fingerprint,
                    UNREADABLE,
                    sha,
                    size_bytes=len(data),
                    error_reason=_REASONS.get(err.code, "error") if err else "error",
                    error=err.message if err else "",
                )
                continue
            site, flight = split_flight(it.flight)
            out[i] = Outcome(
                it.source,
                it.flight,
                it.fingerprint,
                SCORED,
                sha,
                r.in_context(source=it.source, site=site, flight=flight),
                size_bytes=len(data),
            )
        inference = self._timed.seconds - inf0
        t["decode"] += ms.get("decode", 0.0) / 1e3
        # the detector's "detect" covers the session run and NMS; "preprocess" the letterbox
        t["preprocess"] += (ms.get("preprocess", 0.0) + ms.get("detect", 0.0)) / 1e3 - inference
        t["inference"] += inference
        t["post"] += ms.get("post", 0.0) / 1e3


def _limit_library_threads(n: int) -> None:
    """OpenCV (decode, resize) keeps its own thread pool of one thread per core: in a worker
    that shares the machine with others, give it the worker's share only."""
    try:
        import cv2

        cv2.setNumThreads(max(1, n))
    except Exception:  # noqa: BLE001 - only a tuning knob
        pass


def default_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
