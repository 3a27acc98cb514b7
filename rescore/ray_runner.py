"""The same pipeline on Ray: Ray Data carries the items, an actor pool scores them.

    items (driver) --from_items--> Dataset --map_batches(RayScorer, ActorPoolStrategy(size=N))-->
        outcomes --iter_batches--> BatchWriter (driver) --> the store

Each actor holds one :class:`rescore.worker.ChunkScorer` (one ONNX Runtime session
with ``threads`` intra-op threads and ``num_cpus=threads`` reserved), i.e. exactly what a
local worker process runs, so results are identical to ``--workers``. Actors read the
images themselves: on a multi-node cluster the archive must be at the same path on every
node (shared storage). Only the driver writes to the store.

Ray is imported here only, and only for ``--ray``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rescore.outcome import ROW_FIELDS, Outcome
from rescore.scan import ScanItem
from rescore.worker import TIMING_KEYS, ChunkScorer, ScorerSpec
from rescore.writer import BatchWriter, RunStats
from storage.archive import ArchiveIndex


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""


class RayScorer:
    """The actor class for ``map_batches``: one scorer per actor, batches in, outcome columns out."""

    def __init__(self, spec: ScorerSpec) -> None:
        self.scorer = ChunkScorer(spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["source"])
        items = [ScanItem.from_row({k: batch[k][i] for k in batch}) for i in range(n)]
        outcomes, seconds = self.scorer.score(items)
        rows = [o.to_row() for o in outcomes]
        cols: dict[str, np.ndarray] = {}
        for c in ROW_FIELDS:
            if c == "size_bytes":
                cols[c] = np.array([r[c] or 0 for r in rows], dtype=np.int64)
            else:
                cols[c] = np.array([str(r[c]) for r in rows], dtype=object)
        # per-chunk stage timings ride on the first row of the batch
        for k in (*TIMING_KEYS, "wall_start", "wall_end"):
            t = np.zeros(len(rows), np.float64)
            if len(rows):
                t[0] = seconds.get(k, 0.0)
            cols[f"t_{k}"] = t
        return cols


def connect(address: str, *, num_cpus: int | None = None) -> bool:
    """Connect to Ray; returns True if this call started (and so must stop) a local instance.

    ``address``: ``local`` starts a private local instance; ``auto`` joins the cluster this
    machine belongs to (``ray start`` / ``RAY_ADDRESS``) or else starts a local one; anything
    else is a cluster address (``ray://head:10001`` or ``head:6379``). An already initialised
    Ray (e.g. in tests) is used as is.
    """
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable(
            f"--ray needs the 'distributed' extras ({e.name} is missing): pip install -e '.[distributed]'"
        ) from None
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address == "auto":
        try:
            ray.init(address="auto", **kwargs)
            return True
        except ConnectionError:
            address = "local"
    if address == "local":
        ray.init(num_cpus=num_cpus, **kwargs)
        return True
    try:
        ray.init(address=address, **kwargs)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...
        raise RayUnavailable(f"cannot connect to the Ray cluster at {address}: {e}") from None
    return True


def cluster_cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def run_ray(
    items: Sequence[ScanItem],
    spec: ScorerSpec,
    index: ArchiveIndex,
    *,
    actors: int,
    chunk_size: int = 32,
    commit_every: int = 64,
    on_progress: Callable[[int], None] | None = None,
    stats: RunStats | None = None,
    copies: dict[str, list[tuple[ScanItem, str]]] | None = None,
) -> tuple[RunStats, BatchWriter]:
    """Score ``items`` on the connected Ray cluster with ``actors`` scorer actors (``copies``:
    see :class:`~rescore.writer.BatchWriter`)."""
    import ray
    import ray.data

    stats = stats or RunStats("ray", actors, spec.threads, spec.model_key)
    stats.todo = len(items) + sum(len(v) for v in (copies or {}).values())
    writer = BatchWriter(index, stats, commit_every=commit_every, on_progress=on_progress, copies=copies)
    if not items:
        return stats, writer
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for name in ("ray.data", "ray"):  # Ray Data logs plan details at WARNING; errors still raise
        logging.getLogger(name).setLevel(logging.ERROR)
    t_start = time.perf_counter()
    rows = [it.to_row() for it in items]
    # about one chunk per block, and at least two blocks per actor so every actor gets work
    blocks = max(1, min(len(rows), max(-(-len(rows) // max(1, chunk_size)), 2 * actors), 10_000))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(
        RayScorer,
        fn_constructor_kwargs={"spec": spec},
        batch_size=chunk_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=spec.threads,
    )
    first = True
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            if first:
                stats.startup_s = time.perf_counter() - t_start
                first = False
            n = len(batch["source"])
            outcomes = [Outcome.from_row({c: _py(batch[c][i]) for c in ROW_FIELDS}) for i in range(n)]
            seconds = {k: float(np.sum(batch[f"t_{k}"])) for k in TIMING_KEYS}
            starts = batch["t_wall_start"][batch["t_wall_start"] > 0]
            if len(starts):
                seconds["wall_start"] = float(starts.min())
                seconds["wall_end"] = float(batch["t_wall_end"].max())
            writer.add(outcomes, seconds)
        writer.flush()
    except KeyboardInterrupt:
        stats.interrupted = True
        writer.flush()
        raise
    finally:
        stats.elapsed_s = time.perf_counter() - t_start
    return stats, writer


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def shutdown() -> None:
    import ray

    ray.shutdown()
