"""The bounded inference queue: model work runs on worker threads, off the event loop.

A request first *reserves* room for its images (``QueueFull`` -> 503 + Retry-After when
there is none), then decodes them and submits one task. Capacity counts images from the
reservation until the task has run, so decoded pixels waiting for the model are bounded
by ``queue_max_images``. Interactive requests (priority 0) go before job chunks (1).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
INTERACTIVE, BACKGROUND = 0, 1


class QueueFull(Exception):
    """No room for more images now."""


class QueueClosed(Exception):
    """The service is shutting down."""


@dataclass(order=True)
class _Task(Generic[T]):
    priority: int
    seq: int
    fn: Callable[[Any], T] = field(compare=False)
    future: Future = field(compare=False)
    slot: Slot = field(compare=False)


class Slot:
    """Room for ``n`` images, held from reservation until the work is done (or released)."""

    def __init__(self, q: InferenceQueue, n: int) -> None:
        self._q = q
        self.n = n
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._q._release(self.n)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.release()


class InferenceQueue:
    """``contexts[i]`` is handed to every task run by worker thread ``i`` (e.g. its model session)."""

    def __init__(
        self,
        contexts: list[Any],
        max_images: int,
        on_depth: Callable[[int], None] | None = None,
        on_run: Callable[[float], None] | None = None,
    ) -> None:
        self.max_images = max_images
        self._contexts = contexts
        self._tasks: queue.PriorityQueue[_Task] = queue.PriorityQueue()
        self._lock = threading.Lock()
        self._depth = 0
        self._seq = itertools.count()
        self._on_depth = on_depth
        self._on_run = on_run
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(ctx,), name=f"inference-{i}", daemon=True)
            for i, ctx in enumerate(contexts)
        ]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Images reserved, waiting or being scored."""
        return self._depth

    def _set_depth(self, delta: int) -> None:
        self._depth += delta
        if self._on_depth is not None:
            self._on_depth(self._depth)

    def reserve(self, n: int, *, wait: bool = False) -> Slot:
        """Room for ``n`` images. Raises QueueFull unless ``wait`` (background work never
        gets refused; it is small and bounded by the number of job runners)."""
        with self._lock:
            if self._closed:
                raise QueueClosed()
            # a request larger than the whole queue still runs, alone
            if not wait and self._depth > 0 and self._depth + n > self.max_images:
                raise QueueFull()
            self._set_depth(n)
            return Slot(self, n)

    def _release(self, n: int) -> None:
        with self._lock:
            self._set_depth(-n)

    def submit(self, slot: Slot, fn: Callable[[Any], T], priority: int = INTERACTIVE) -> Future[T]:
        """Run ``fn(context)`` on a worker; the slot is released when it has run."""
        fut: Future[T] = Future()
        if self._closed:
            slot.release()
            raise QueueClosed()
        self._tasks.put(_Task(priority, next(self._seq), fn, fut, slot))
        return fut

    def _work(self, ctx: Any) -> None:
        while True:
            task = self._tasks.get()
            if task.fn is None:  # stop marker
                return
            if not task.future.set_running_or_notify_cancel():
                task.slot.release()
                continue
            t0 = time.perf_counter()
            try:
                result = task.fn(ctx)
            except BaseException as e:  # handed to the waiting request or job
                task.slot.release()
                task.future.set_exception(e)
            else:
                if self._on_run is not None:
                    self._on_run(time.perf_counter() - t0)
                task.slot.release()  # before the waiter sees the result: its room is free again
                task.future.set_result(result)
                del result
            # the task (its function, and through it the request's decoded pixels) must not stay alive
            # while this thread waits for the next one
            del task

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking work, let queued tasks finish, stop the workers."""
        with self._lock:
            self._closed = True
        for _ in self._threads:
            self._tasks.put(_Task(99, next(self._seq), None, None, None))  # type: ignore[arg-type]
        for t in self._threads:
            t.join(timeout)
