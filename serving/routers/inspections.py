"""``POST /v1/inspections``: score a small batch and answer at once."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request

from serving.deps import EngineDep, ServicesDep, require_key
from serving.engine import asset_view, rollup
from serving.errors import ApiError, Rejection, busy
from serving.queue import INTERACTIVE, QueueFull
from serving.routers import errors, upload_body
from serving.schemas import ImageOut, InspectionOut, ModelRef, SummaryOut, image_entry
from serving.upload import UploadLimits, read_upload
from serving.validation import check_type, form_fields

router = APIRouter(prefix="/v1", tags=["inspections"], dependencies=[Depends(require_key)])


@router.post(
    "/inspections",
    response_model=InspectionOut,
    summary="Inspect a small batch of images (answered at once)",
    description=(
        "Multipart upload of up to `max_files` images (form field `files`, repeated) with optional "
        "`asset_type` (auto | pv | wind), `site` and `flight`. Each image gets its own entry: status, "
        "size, camera location, defects (class, box, confidence, location, priority) and its rolled-up "
        "priority; `summary` rolls up the batch. A bad image gets an `error` entry and the others are "
        "still scored; if no image can be scored the request fails with the first image's error status."
    ),
    openapi_extra=upload_body("images to inspect"),
    responses=errors(400, 401, 403, 413, 415, 422, 503),
)
async def create_inspection(request: Request, services: ServicesDep, engine: EngineDep) -> InspectionOut:
    s = services.settings
    queue = services.queue
    assert queue is not None
    if queue.depth >= queue.max_images:  # refuse before reading the body
        services.metrics.busy.inc()
        raise busy(s.retry_after_seconds, "the inference queue is full")
    with services.upload_slot():
        upload = await read_upload(request, UploadLimits(s.max_files, s.max_file_bytes, s.max_request_bytes))
    fields = form_fields(upload)

    errors_by_index: dict[int, Rejection] = {}
    accepted = []
    for f in upload.files:
        try:
            if f.error is not None:
                raise f.error
            check_type(f, s.allowed_types)
            accepted.append(f)
        except Rejection as r:
            errors_by_index[f.index] = r

    payloads: dict[int, dict[str, Any]] = {}
    if accepted:
        try:
            slot = queue.reserve(len(accepted))
        except QueueFull:
            services.metrics.busy.inc()
            raise busy(s.retry_after_seconds, "the inference queue is full") from None
        with slot:

            def decode_all() -> list[Any]:
                out = []
                for f in accepted:
                    try:
                        out.append((f, engine.decode(f.data, f.filename)))
                    except Rejection as r:
                        errors_by_index[f.index] = r
                return out

            decoded = await anyio.to_thread.run_sync(decode_all)
            if decoded:
                images = [d for _, d in decoded]
                fut = queue.submit(slot, lambda ctx: engine.score(ctx, images), INTERACTIVE)
                scored = await asyncio.wrap_future(fut)
                for (f, _), p in zip(decoded, scored, strict=True):
                    payloads[f.index] = asset_view(p, fields.asset_type)
            else:
                slot.release()

    entries: list[ImageOut] = []
    for f in upload.files:
        if f.index in payloads:
            entries.append(image_entry(f.index, f.filename, payload=payloads[f.index], size=f.size))
        else:
            r = errors_by_index[f.index]
            entries.append(image_entry(f.index, f.filename, error=r.as_dict(), size=f.size))
            services.metrics.errors.labels(r.code).inc()
    m = services.metrics
    m.images.labels("inspection", "scored").inc(len(payloads))
    m.images.labels("inspection", "rejected").inc(len(entries) - len(payloads))
    for p in payloads.values():
        for d in p.get("defects") or []:
            m.defects.labels(d["class_name"]).inc()

    if not payloads:
        first = errors_by_index[upload.files[0].index]
        names = "; ".join(f"{f.filename}: {errors_by_index[f.index].message}" for f in upload.files[:5])
        more = f" (and {len(upload.files) - 5} more)" if len(upload.files) > 5 else ""
        raise ApiError(first.status, first.code, f"no image could be scored: {names}{more}")

    summary = rollup([e.summary.model_dump() if e.summary else None for e in entries])
    return InspectionOut(
        model=ModelRef(version=engine.info.version, key=engine.version),
        asset_type=fields.asset_type,  # type: ignore[arg-type]
        site=fields.site,
        flight=fields.flight,
        images=entries,
        summary=SummaryOut(**summary),
    )
