"""The single writer of a run and its statistics, shared by both runners.

Workers (processes or Ray actors) only read; the driver process commits their outcomes
in batches, each batch (images, results, file-index rows) in ONE transaction with
idempotent inserts (:meth:`storage.archive.ArchiveIndex.write`). Killing the run at any
point loses at most the batches not yet committed, and a re-run continues from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rescore.outcome import KNOWN, SCORED, UNREADABLE, Outcome
from rescore.scan import ScanItem
from rescore.worker import TIMING_KEYS
from storage.archive import ArchiveIndex


@dataclass
class RunStats:
    mode: str
    workers: int
    threads: int
    model_key: str
    todo: int = 0
    scored: int = 0  # went through the model
    known: int = 0  # content this model had scored (stored before, or a copy scored in this run)
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
            "model_key": self.model_key,
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
    """Buffers outcomes and commits them in batches. ``copies``: items set aside because they
    hold the same bytes as an item being scored (:func:`rescore.plan.plan_run`); each is
    recorded with that item's outcome, in the same batch."""

    def __init__(
        self,
        index: ArchiveIndex,
        stats: RunStats,
        *,
        commit_every: int = 64,
        max_delay_s: float = 2.0,
        on_progress: Callable[[int], None] | None = None,
        copies: dict[str, list[tuple[ScanItem, str]]] | None = None,
    ) -> None:
        self.index = index
        self.stats = stats
        self.commit_every = max(1, commit_every)
        self.max_delay_s = max_delay_s
        self.on_progress = on_progress
        self.copies = dict(copies or {})
        self._buf: list[Outcome] = []
        self._last = time.monotonic()
        self.unreadable: list[Outcome] = []

    def add(self, outcomes: Sequence[Outcome], seconds: dict[str, float] | None = None) -> None:
        for o in outcomes:
            self._buf.append(o)
            for item, sha in self.copies.pop(o.source, ()):
                self._buf.append(o.copy_for(item.source, item.flight, item.fingerprint, sha))
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
        results = [o.result for o in self._buf if o.status == SCORED and o.result is not None]
        self.index.write([o.file_record() for o in self._buf], results, self.stats.model_key)
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
