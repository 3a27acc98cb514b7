"""Scoring a chunk of items in one worker: read -> hash -> (skip known) -> decode -> detect.

The same :class:`ChunkScorer` runs in a local worker process (``pipeline.py``) and in a
Ray actor (``ray_runner.py``), so both modes produce the same payloads. Each scorer owns
one :class:`detector.engine.Detector` (one ONNX Runtime session with its own intra-op
thread count). Within a chunk, decoding of the next batch overlaps inference of the
current one (the detector's prefetch thread).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.rescore.scan import ArchiveReader, ItemReadError, ScanItem, sha256_hex
from serving.rescore.store import KNOWN, SCORED, UNREADABLE, KnownResults, Outcome, media_type

TIMING_KEYS = ("read", "hash", "lookup", "decode", "preprocess", "inference", "post")


@dataclass(frozen=True)
class ScorerSpec:
    """Everything a worker needs to build its scorer (picklable)."""

    model: str
    model_version: str  # the result key (serving.engine.model_key)
    threads: int
    config: str | None = None
    batch_size: int | None = None
    store_url: str | None = None  # for the known-hash lookup; None = off


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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ChunkScorer:
    def __init__(self, spec: ScorerSpec) -> None:
        from detector.engine import Detector

        _limit_library_threads(spec.threads)
        self.spec = spec
        self.detector = Detector(spec.model, config=spec.config, threads=spec.threads, batch_size=spec.batch_size)
        self._timed = _TimedBackend(self.detector.backend)
        self.detector.backend = self._timed  # type: ignore[assignment]
        self.reader = ArchiveReader()
        self.known = KnownResults(spec.store_url, spec.model_version)

    def close(self) -> None:
        self.reader.close()
        self.known.close()

    def score(self, items: Sequence[ScanItem]) -> tuple[list[Outcome], dict[str, float]]:
        """Outcomes in item order, plus seconds spent per stage (summed over the chunk) and the
        chunk's wall-clock span (``wall_start``/``wall_end``, epoch seconds)."""
        t = dict.fromkeys(TIMING_KEYS, 0.0)
        t["wall_start"] = time.time()
        out: list[Outcome | None] = [None] * len(items)
        blobs: dict[int, tuple[bytes, str]] = {}
        for i, it in enumerate(items):
            t0 = time.perf_counter()
            try:
                data = self.reader.read(it)
            except ItemReadError as e:
                out[i] = Outcome(it.source, it.group, it.fingerprint, UNREADABLE, error_reason=e.reason, error=str(e))
                continue
            t1 = time.perf_counter()
            if not data:
                out[i] = Outcome(
                    it.source,
                    it.group,
                    it.fingerprint,
                    UNREADABLE,
                    sha256_hex(data),
                    error_reason="empty",
                    error="empty file (0 bytes)",
                )
            else:
                blobs[i] = (data, sha256_hex(data))
            t["read"] += t1 - t0
            t["hash"] += time.perf_counter() - t1
        t0 = time.perf_counter()
        known = self.known(sha for _, sha in blobs.values())
        t["lookup"] += time.perf_counter() - t0
        todo = []
        for i, (data, sha) in blobs.items():
            it = items[i]
            if sha in known:
                out[i] = Outcome(it.source, it.group, it.fingerprint, KNOWN, sha, size_bytes=len(data))
            else:
                todo.append(i)
        if todo:
            self._detect(items, todo, blobs, out, t)
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
        try:
            results = self.detector.inspect([(items[i].source, blobs[i][0]) for i in todo], prefetch=True)
        except Exception:  # noqa: BLE001 - one bad image must not cost the chunk: go one by one
            results = []
            for i in todo:
                try:
                    results.extend(self.detector.inspect([(items[i].source, blobs[i][0])], prefetch=False))
                except Exception as e:  # noqa: BLE001
                    results.append(_failed(items[i].source, e))
        for i, r in zip(todo, results, strict=True):
            it = items[i]
            data, sha = blobs[i]
            tm = r.timings_ms
            t["decode"] += tm.get("decode", 0.0) / 1e3
            t["preprocess"] += tm.get("detect", 0.0) / 1e3
            t["post"] += tm.get("post", 0.0) / 1e3
            if not r.ok:
                out[i] = Outcome(
                    it.source,
                    it.group,
                    it.fingerprint,
                    UNREADABLE,
                    sha,
                    size_bytes=len(data),
                    error_reason=r.error_reason or "error",
                    error=_strip_source(r.error or "", it.source),
                )
                continue
            payload = r.to_dict()
            payload.pop("timings_ms", None)
            payload["model_version"] = self.spec.model_version
            payload["group"] = it.group
            out[i] = Outcome(
                it.source,
                it.group,
                it.fingerprint,
                SCORED,
                sha,
                payload,
                media_type=media_type(r.image_info.get("format")),
                size_bytes=len(data),
            )
        inference = self._timed.seconds - inf0
        t["inference"] += inference
        t["preprocess"] -= inference  # "detect" covers letterbox + session run + NMS


def _strip_source(message: str, source: str) -> str:
    """Decode errors read "<source>: <problem>"; the source has its own column."""
    prefix = f"{source}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _failed(source: str, e: Exception) -> Any:
    from detector.results import ImageResult

    return ImageResult(source=source, error=f"{source}: {type(e).__name__}: {e}", error_reason="error")


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
