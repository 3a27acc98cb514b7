"""Scoring an upload of ``POST /v1/inspections`` at once: check each file, decode it off
the event loop, run the model through the inference queue, and give every file its
:class:`~detector.results.ImageResult` (an error entry for a rejected one; the others are
still scored).

Memory: the images of a request whose header says at most ``large_image_pixels`` are decoded
and scored together, in groups of at most that many pixels in all; each larger one is decoded
and scored on its own, holding one of the service's ``max_large_decodes`` permits from decode
until the model has scored it, and its pixels are freed (and the heap trimmed) before the
request answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio

from detector.decode import DecodedImage
from detector.results import ImageResult
from serving.detectors import DetectorPool, score
from serving.errors import ApiError, Rejection, busy
from serving.memory import decode_plan, header_pixels, release_memory
from serving.queue import INTERACTIVE, QueueFull, Slot
from serving.services import Services
from serving.upload import Upload, UploadedFile
from serving.validation import FormFields, check_type


async def score_upload(services: Services, pool: DetectorPool, upload: Upload, fields: FormFields) -> list[ImageResult]:
    """One result per uploaded file, in upload order, in the request's context."""
    s = services.settings
    rejected: dict[int, Rejection] = {}
    accepted: list[UploadedFile] = []
    for f in upload.files:
        try:
            if f.error is not None:
                raise f.error
            check_type(f, s.allowed_types)
            accepted.append(f)
        except Rejection as r:
            rejected[f.index] = r
    scored: dict[int, ImageResult] = {}
    if accepted:
        queue = services.queue
        assert queue is not None
        try:
            slot = queue.reserve(len(accepted))
        except QueueFull:
            services.metrics.busy.inc()
            raise busy(s.retry_after_seconds, "the inference queue is full") from None
        with slot:
            sizes = await anyio.to_thread.run_sync(lambda: [header_pixels(f.data or b"") for f in accepted])
            # at most large_image_pixels decoded at once; each larger image alone, under a permit
            groups, large = decode_plan(sizes, s.large_image_pixels)
            for group in groups:
                await _score_group(services, pool, slot, [accepted[i] for i in group], fields, scored, rejected)
            for i in large:
                async with services.large_images.hold():
                    await _score_group(services, pool, slot, [accepted[i]], fields, scored, rejected)
                    await anyio.to_thread.run_sync(release_memory)
            slot.release()  # the images refused by the decoder
    out = []
    for f in upload.files:
        ctx = {"source": f.filename, "index": f.index, "site": fields.site, "flight": fields.flight}
        if f.index in scored:
            out.append(scored[f.index].in_context(**ctx).for_asset(fields.asset_type))
        else:
            out.append(
                ImageResult.failed(rejected[f.index].as_error(), bytes=f.size or None, model=pool.model_key, **ctx)
            )
    services.metrics.count_results("inspection", out)
    return out


async def _score_group(
    services: Services,
    pool: DetectorPool,
    slot: Slot,
    files: Sequence[UploadedFile],
    fields: FormFields,
    scored: dict[int, ImageResult],
    rejected: dict[int, Rejection],
) -> None:
    """Decode ``files`` off the event loop and score them in one task; their pixels are
    referenced by nothing once this returns."""

    def decode_all() -> list[tuple[int, DecodedImage]]:
        out = []
        for f in files:
            try:
                out.append((f.index, pool.decode(f.data or b"", f.filename, fields.conditions)))
            except Rejection as r:
                rejected[f.index] = r
        return out

    decoded = await anyio.to_thread.run_sync(decode_all)
    if not decoded:
        return
    indexes = [i for i, _ in decoded]
    # the task must not keep the pixels alive after it has run (a worker holds its last task)
    box = [[d for _, d in decoded]]
    del decoded

    def run(det: object) -> list[ImageResult]:
        return score(det, box.pop())  # type: ignore[arg-type]

    queue = services.queue
    assert queue is not None
    slot.n -= len(indexes)  # this group's images get a slot of their own, released once scored
    fut = queue.submit(Slot(queue, len(indexes)), run, INTERACTIVE)
    for i, r in zip(indexes, await asyncio.wrap_future(fut), strict=True):
        scored[i] = r


def nothing_scored(results: list[ImageResult]) -> ApiError:
    """The request's error when no image could be scored: the first image's status."""
    first = results[0].error
    assert first is not None
    names = "; ".join(f"{r.source}: {r.error.message}" for r in results[:5] if r.error)
    more = f" (and {len(results) - 5} more)" if len(results) > 5 else ""
    return ApiError(first.status, first.code, f"no image could be scored: {names}{more}")
