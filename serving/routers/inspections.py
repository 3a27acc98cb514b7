"""``POST /v1/inspections``: score a small batch and answer at once."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from detector.results import total_summary
from serving.deps import DetectorsDep, ServicesDep, require_key
from serving.routers import errors, upload_body
from serving.schemas import InspectionOut, ModelRef
from serving.scoring import nothing_scored, score_upload
from serving.upload import UploadLimits, read_upload
from serving.validation import form_fields

router = APIRouter(prefix="/v1", tags=["inspections"], dependencies=[Depends(require_key)])


@router.post(
    "/inspections",
    response_model=InspectionOut,
    summary="Inspect a small batch of images (answered at once)",
    description=(
        "Multipart upload of up to `max_files` images (form field `files`, repeated) with optional "
        "`asset_type` (auto | pv | wind), `site` and `flight`. Each image gets its own entry: status, "
        "size, camera location, findings (class, box, confidence, location, priority) and its rolled-up "
        "priority; `summary` rolls up the batch. A bad image gets an `error` entry and the others are "
        "still scored; if no image can be scored the request fails with the first image's error status."
    ),
    openapi_extra=upload_body("images to inspect"),
    responses=errors(400, 401, 403, 413, 415, 422, 503),
)
async def create_inspection(request: Request, services: ServicesDep, pool: DetectorsDep) -> InspectionOut:
    s = services.settings
    services.check_queue()  # refuse before reading the body
    limits = UploadLimits(s.max_files, s.max_file_bytes, s.max_request_bytes, s.upload_timeout_seconds)
    with services.upload_slot() as pace:
        upload = await read_upload(request, limits, pace=pace)
    fields = form_fields(upload)
    images = await score_upload(services, pool, upload, fields)
    if not any(r.ok for r in images):
        raise nothing_scored(images)
    return InspectionOut(
        model=ModelRef(version=pool.info.version, key=pool.model_key),
        asset_type=fields.asset_type,  # type: ignore[arg-type]
        site=fields.site,
        flight=fields.flight,
        images=images,
        summary=total_summary(images),
    )
