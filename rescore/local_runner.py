"""Scoring in local worker processes: :func:`run_local`.

N worker processes are spawned, each with its own ONNX Runtime session and ``cores // N``
intra-op threads (:func:`split_threads`); they get chunks of items and return outcomes,
which the parent commits through the single :class:`rescore.writer.BatchWriter`. A worker
dies with its parent (``kill -9`` of the run leaves no orphan scoring on).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from rescore.outcome import Outcome
from rescore.scan import ScanItem, chunked
from rescore.worker import ChunkScorer, ScorerSpec, default_cores
from rescore.writer import BatchWriter, RunStats
from storage.archive import ArchiveIndex


class WorkerDied(RuntimeError):
    """A worker process exited abnormally (crash, out of memory); committed work is kept."""


def split_threads(workers: int, threads: int | None = None, cores: int | None = None) -> int:
    """ONNX Runtime intra-op threads per worker so that workers x threads <= cores."""
    if threads:
        return threads
    return max(1, (cores or default_cores()) // max(1, workers))


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
    index: ArchiveIndex,
    *,
    workers: int,
    chunk_size: int = 32,
    commit_every: int = 64,
    on_progress: Callable[[int], None] | None = None,
    stats: RunStats | None = None,
    copies: dict[str, list[tuple[ScanItem, str]]] | None = None,
) -> tuple[RunStats, BatchWriter]:
    """Score ``items`` in ``workers`` processes; outcomes (and those of ``copies``, see
    :class:`~rescore.writer.BatchWriter`) are committed as they arrive."""
    import multiprocessing as mp

    stats = stats or RunStats("local", workers, spec.threads, spec.model_key)
    stats.todo = len(items) + sum(len(v) for v in (copies or {}).values())
    writer = BatchWriter(index, stats, commit_every=commit_every, on_progress=on_progress, copies=copies)
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
