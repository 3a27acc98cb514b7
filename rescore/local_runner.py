"""The re-scoring pipeline: plan what is left, score it in parallel, write it once.

- :func:`plan` splits the scanned items into those to score and those this model has
  already scored (by the file index: unchanged file, known content hash with a result).
- :func:`run_local` scores them in N worker processes (spawned, each with its own ONNX
  Runtime session and ``cores // N`` intra-op threads). The parent process is the only
  writer: it commits outcomes in batches (one transaction each, idempotent inserts on
  ``(image_sha256, model_version)``), so killing the run at any point loses at most the
  batches not yet committed, and re-running continues from there.
- :class:`BatchWriter` is shared with the Ray runner (``ray_runner.py``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from serving.rescore.scan import ScanItem, chunked
from serving.rescore.store import KNOWN, SCORED, UNREADABLE, Outcome, RescoreStore
from serving.rescore.worker import TIMING_KEYS, ChunkScorer, ScorerSpec, default_cores

DECODE_REASONS = ("empty", "not_image", "truncated", "corrupt", "too_large")  # the bytes are bad: no retry


class WorkerDied(RuntimeError):
    """A worker process exited abnormally (crash, out of memory); committed work is kept."""


@dataclass
class Plan:
    todo: list[ScanItem]
    done: list[ScanItem]  # already scored by this model (unchanged file or known hash)
    known_unreadable: list[ScanItem]  # unchanged files that failed to decode before

    @property
    def skipped(self) -> int:
        return len(self.done) + len(self.known_unreadable)


def plan(store: RescoreStore, items: Sequence[ScanItem], model_version: str) -> Plan:
    """What is left to score: every item except unchanged files whose content this model scored
    (or which were found unreadable for a reason in their bytes)."""
    rows = store.file_rows(it.source for it in items)
    candidates: dict[str, str] = {}
    bad: set[str] = set()
    for it in items:
        r = rows.get(it.source)
        if r is None or r.fingerprint != it.fingerprint:
            continue
        if r.error_reason in DECODE_REASONS:
            bad.add(it.source)
        elif r.error_reason is None and r.sha256:
            candidates[it.source] = r.sha256
    scored = store.scored(candidates.values(), model_version)
    todo, done, known_bad = [], [], []
    for it in items:
        if it.source in bad:
            known_bad.append(it)
        elif candidates.get(it.source) in scored:
            done.append(it)
        else:
            todo.append(it)
    return Plan(todo, done, known_bad)


@dataclass
class RunStats:
    mode: str
    workers: int
    threads: int
    model_version: str
    todo: int = 0
    scored: int = 0
    known: int = 0
    unreadable: int = 0
    elapsed_s: float = 0.0
    startup_s: float = 0.0  # until the first chunk came back (process spawn, model load, first chunk)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys((*TIMING_KEYS, "write"), 0.0))
    interrupted: bool = False
    span: tuple[float, float] | None = None  # epoch seconds: first chunk started .. last chunk ended (any worker)

    def add_span(self, start: float, end: float) -> None:
        if start <= 0 or end <= 0:
            return
        self.span = (start, end) if self.span is None else (min(self.span[0], start), max(self.span[1], end))

    @property
    def processed(self) -> int:
        return self.scored + self.known + self.unreadable

    @property
    def images_per_s(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def steady_images_per_s(self) -> float:
        """Rate while the workers were scoring (excludes process start and model loading)."""
        if self.span is None:
            return 0.0
        dt = self.span[1] - self.span[0]
        return self.processed / dt if dt > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "workers": self.workers,
            "threads": self.threads,
            "model_version": self.model_version,
            "todo": self.todo,
            "scored": self.scored,
            "known": self.known,
            "unreadable": self.unreadable,
            "elapsed_s": round(self.elapsed_s, 3),
            "startup_s": round(self.startup_s, 3),
            "images_per_s": round(self.images_per_s, 2),
            "steady_images_per_s": round(self.steady_images_per_s, 2),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "interrupted": self.interrupted,
        }


class BatchWriter:
    """The single writer: buffers outcomes and commits them in batches."""

    def __init__(
        self,
        store: RescoreStore,
        stats: RunStats,
        *,
        commit_every: int = 64,
        max_delay_s: float = 2.0,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.stats = stats
        self.commit_every = max(1, commit_every)
        self.max_delay_s = max_delay_s
        self.on_progress = on_progress
        self._buf: list[Outcome] = []
        self._last = time.monotonic()
        self.unreadable: list[Outcome] = []

    def add(self, outcomes: Sequence[Outcome], seconds: dict[str, float] | None = None) -> None:
        self._buf.extend(outcomes)
        seconds = dict(seconds or {})
        self.stats.add_span(seconds.pop("wall_start", 0.0), seconds.pop("wall_end", 0.0))
        for k, v in seconds.items():
            self.stats.seconds[k] = self.stats.seconds.get(k, 0.0) + v
        if len(self._buf) >= self.commit_every or time.monotonic() - self._last >= self.max_delay_s:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        t0 = time.perf_counter()
        self.store.write(self._buf, self.stats.model_version)
        self.stats.seconds["write"] += time.perf_counter() - t0
        for o in self._buf:
            if o.status == SCORED:
                self.stats.scored += 1
            elif o.status == KNOWN:
                self.stats.known += 1
            elif o.status == UNREADABLE:
                self.stats.unreadable += 1
                self.unreadable.append(o)
        if self.on_progress:
            self.on_progress(len(self._buf))
        self._buf = []
        self._last = time.monotonic()


def split_threads(workers: int, threads: int | None = None, cores: int | None = None) -> int:
    """ONNX Runtime intra-op threads per worker so that workers x threads <= cores."""
    if threads:
        return threads
    return max(1, (cores or default_cores()) // max(1, workers))


# -- local worker processes ----------------------------------------------------------------------
_SCORER: ChunkScorer | None = None


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive its parent (e.g. after ``kill -9``): ask the kernel to send
    SIGKILL when the parent dies, and watch the parent id as a fallback."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(spec: ScorerSpec, parent: int) -> None:
    global _SCORER
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _SCORER = ChunkScorer(spec)


def _score(items: list[ScanItem]) -> tuple[list[Outcome], dict[str, float]]:
    assert _SCORER is not None, "worker not initialised"
    return _SCORER.score(items)


def run_local(
    items: Sequence[ScanItem],
    spec: ScorerSpec,
    store: RescoreStore,
    *,
    workers: int,
    chunk_size: int = 32,
    commit_every: int = 64,
    on_progress: Callable[[int], None] | None = None,
    stats: RunStats | None = None,
) -> tuple[RunStats, BatchWriter]:
    """Score ``items`` in ``workers`` processes; outcomes are committed as they arrive."""
    import multiprocessing as mp

    stats = stats or RunStats("local", workers, spec.threads, spec.model_version)
    stats.todo = len(items)
    writer = BatchWriter(store, stats, commit_every=commit_every, on_progress=on_progress)
    t_start = time.perf_counter()
    first = True
    chunks: Iterator[list[ScanItem]] = chunked(list(items), chunk_size)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(spec, os.getpid()),
    )
    inflight: set[Future] = set()
    try:
        while True:
            while len(inflight) < 2 * workers:
                nxt = next(chunks, None)
                if nxt is None:
                    break
                inflight.add(pool.submit(_score, nxt))
            if not inflight:
                break
            done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    outcomes, seconds = f.result()
                except BrokenProcessPool as e:
                    raise WorkerDied(f"a worker process died ({e})") from None
                if first:
                    stats.startup_s = time.perf_counter() - t_start
                    first = False
                writer.add(outcomes, seconds)
        writer.flush()
    except KeyboardInterrupt:
        stats.interrupted = True
        writer.flush()  # keep what is done
        raise
    finally:
        stats.elapsed_s = time.perf_counter() - t_start
        pool.shutdown(wait=not stats.interrupted, cancel_futures=True)
    return stats, writer


def progress_bar(total: int, *, desc: str, disable: bool = False) -> Any:
    """A tqdm bar on stderr with rate and ETA."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="img",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=disable,
        smoothing=0.1,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]",
    )
