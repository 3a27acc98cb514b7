"""Memory bounds shared by the request path and the job runner: which images are large (from
their header, nothing decoded), the service-wide permits for holding large images decoded, and
handing freed heap back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import anyio
from PIL import Image as PILImage


def header_pixels(data: bytes) -> int | None:
    """Width x height from the image header (no pixel decoded); None when unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad headers (and on bombs)
        return None
    return w * h


def decode_plan(sizes: Sequence[int | None], limit: int) -> tuple[list[list[int]], list[int]]:
    """How to decode images of these header sizes within ``limit`` pixels: (groups, large). ``groups``
    are positions of the images up to ``limit`` each, in order, in groups of at most ``limit`` pixels
    in all (decoded and scored together); ``large`` the others, each decoded alone under a permit
    (an unreadable header counts as large: its decode is refused quickly, under the permit)."""
    groups: list[list[int]] = []
    large: list[int] = []
    total = 0
    for i, px in enumerate(sizes):
        if px is None or px > limit:
            large.append(i)
            continue
        if not groups or total + px > limit:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += px
    return groups, large


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, "malloc_trim", None)  # glibc only
    except OSError:
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``; nothing elsewhere).
    Decoding and tiling a large image leave the allocator's arenas large; without this the
    process keeps that size after the arrays are freed."""
    if _TRIM is not None:
        _TRIM(0)


class LargeImages:
    """At most ``limit`` large images held decoded at once, across requests (and threads).
    A holder keeps its permit from decode until the model has scored the image."""

    def __init__(
        self,
        limit: int,
        on_change: Callable[[int], None] | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.active = 0
        self._cond = threading.Condition()
        self._on_change = on_change
        self._on_wait = on_wait

    def try_acquire(self) -> bool:
        with self._cond:
            if self.active >= self.limit:
                return False
            self.active += 1
            self._changed()
            return True

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._changed()
            self._cond.notify()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.active)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """A permit for one large image (waits on the event loop without blocking it)."""
        if not self.try_acquire():
            if self._on_wait is not None:
                self._on_wait()
            while not self.try_acquire():
                await anyio.sleep(0.05)
        try:
            yield
        finally:
            self.release()

    @contextmanager
    def hold_sync(self) -> Iterator[None]:
        """The same for a worker thread (e.g. a job runner)."""
        with self._cond:
            if self.active >= self.limit and self._on_wait is not None:
                self._on_wait()
            while self.active >= self.limit:
                self._cond.wait()
            self.active += 1
            self._changed()
        try:
            yield
        finally:
            self.release()
