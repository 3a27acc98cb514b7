"""``/v1/jobs/{id}/report`` (the flight report, HTML or PDF) and ``/v1/jobs/{id}/images/{position}``
(an image of the job as a browser-ready JPEG, for the viewer's image-with-boxes)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from sqlalchemy import select

from detector.decode import ImageDecodeError, decode_image
from detector.results import ImageResult
from report import ImageSource, build_html, build_pdf, pdf_available
from report.images import fit, jpeg
from serving.deps import ServicesDep, require_key
from serving.errors import ApiError
from serving.routers import errors
from serving.routers.jobs import JobId, _get_job, item_result
from storage.store import Store
from storage.tables import Job, JobItem

router = APIRouter(prefix="/v1", tags=["reports"], dependencies=[Depends(require_key)])


def job_report_args(store: Store, job: Job) -> tuple[list[ImageResult], dict]:
    """The job's results and the report's title, image source and header lines."""
    images = [item_result(job, r) for r in store.job_rows(job.id)]

    def original(r: ImageResult) -> bytes | None:
        return store.image_bytes([r.sha256]).get(r.sha256) if r.sha256 else None

    where = " / ".join(x for x in (job.site, job.flight) if x)
    meta = [("Job", job.id), ("Status", job.status), ("Asset type", job.asset_type)]
    if job.created_at is not None:
        meta.append(("Submitted", job.created_at.strftime("%Y-%m-%d %H:%M UTC")))
    kwargs = {
        "title": f"Flight report: {where}" if where else f"Flight report: job {job.id[:8]}",
        "source": ImageSource(original=original),
        "meta": meta,
    }
    return images, kwargs


@router.get(
    "/jobs/{job_id}/report",
    summary="The flight report of a job (HTML or PDF)",
    description=(
        "`format=html` (default): one self-contained HTML file (summary by priority, map, findings with "
        "thumbnails, sortable and filterable; no external resources, opens offline); `format=pdf`: the same "
        "content as a PDF (the most urgent findings listed). Made from the results so far while the job runs."
    ),
    response_class=Response,
    responses={
        **errors(401, 403, 404, 422),
        200: {"content": {"text/html": {}, "application/pdf": {}}},
        501: {"description": "PDF requested but WeasyPrint is not installed on the server"},
    },
)
def get_report(
    job_id: JobId,
    services: ServicesDep,
    format: Annotated[Literal["html", "pdf"], Query(description="html | pdf")] = "html",
) -> Response:
    store = services.store
    job = _get_job(store, job_id)
    if format == "pdf" and (why := pdf_available()):
        raise ApiError(501, "pdf_unavailable", why)
    images, kwargs = job_report_args(store, job)
    name = f"job-{job.id}-report"
    if format == "pdf":
        return Response(
            build_pdf(images, **kwargs),
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{name}.pdf"'},
        )
    return Response(
        build_html(images, **kwargs),
        media_type="text/html; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{name}.html"'},
    )


@router.get(
    "/jobs/{job_id}/images/{position}",
    summary="One image of a job as a JPEG",
    description=(
        "The image at `position` (0-based upload order) as stored, decoded upright (EXIF orientation "
        "applied, as the defect boxes are) and re-encoded as a JPEG at most `max_size` pixels on its longer "
        "side; boxes scale by the ratio of this size to the result's `width` / `height`."
    ),
    response_class=Response,
    responses={**errors(401, 403, 404, 422), 200: {"content": {"image/jpeg": {}}}},
)
def get_image(
    job_id: JobId,
    position: Annotated[int, Path(ge=0, le=1_000_000, description="the image's position in the upload")],
    services: ServicesDep,
    max_size: Annotated[int, Query(ge=64, le=8192, description="longer side in pixels")] = 1600,
) -> Response:
    store = services.store
    job = _get_job(store, job_id)
    with store.session() as s:
        found = s.execute(
            select(JobItem.image_sha256).where(JobItem.job_id == job.id, JobItem.position == position)
        ).first()
    if found is None:
        raise ApiError(404, "not_found", f"job {job.id} has no image at position {position}")
    sha = found[0]
    data = store.image_bytes([sha]).get(sha) if sha else None
    if data is None:
        raise ApiError(404, "not_found", f"image {position} of job {job.id} was not stored (it was rejected)")
    try:
        pixels = decode_image(data, max_pixels=services.settings.max_pixels).pixels
    except ImageDecodeError as e:
        raise ApiError(422, e.code, f"image {position} cannot be decoded: {e}") from None
    return Response(
        jpeg(fit(pixels, max_size), 85),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600"},
    )
