"""Scoring an upload of ``POST /v1/inspections`` at once: check each file, decode it off
the event loop, run the model through the inference queue, and give every file its
:class:`~detector.results.ImageResult` (an error entry for a rejected one; the others are
still scored)."""

from __future__ import annotations

import asyncio

import anyio

from detector.decode import DecodedImage
from detector.results import ImageResult
from serving.detectors import DetectorPool, score
from serving.errors import ApiError, Rejection, busy
from serving.queue import INTERACTIVE, QueueFull
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

            def decode_all() -> list[tuple[UploadedFile, DecodedImage]]:
                out = []
                for f in accepted:
                    try:
                        out.append((f, pool.decode(f.data or b"", f.filename, fields.conditions)))
                    except Rejection as r:
                        rejected[f.index] = r
                return out

            decoded = await anyio.to_thread.run_sync(decode_all)
            if decoded:
                images = [d for _, d in decoded]
                fut = queue.submit(slot, lambda det: score(det, images), INTERACTIVE)
                for (f, _), r in zip(decoded, await asyncio.wrap_future(fut), strict=True):
                    scored[f.index] = r
            else:
                slot.release()
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


def nothing_scored(results: list[ImageResult]) -> ApiError:
    """The request's error when no image could be scored: the first image's status."""
    first = results[0].error
    assert first is not None
    names = "; ".join(f"{r.source}: {r.error.message}" for r in results[:5] if r.error)
    more = f" (and {len(results) - 5} more)" if len(results) > 5 else ""
    return ApiError(first.status, first.code, f"no image could be scored: {names}{more}")
