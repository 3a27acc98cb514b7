"""``/v1/jobs``: a large flight scored in the background, persisted, resumable."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from detector.export import to_csv, to_geojson
from detector.results import ImageError, ImageResult, total_summary
from serving.deps import DetectorsDep, ServicesDep, require_key
from serving.errors import ApiError, Rejection, busy
from serving.routers import errors, upload_body
from serving.schemas import JobOut, JobResultsOut, aware
from serving.upload import UploadedFile, UploadLimits, read_upload
from serving.validation import check_type, form_fields
from storage.store import ItemRow, NewImage, NewItem, Store
from storage.tables import Job

router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=[Depends(require_key)])

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
JobId = Annotated[str, Path(description="the job id returned by POST /v1/jobs", max_length=64)]


def job_out(job: Job) -> JobOut:
    pending = job.total - job.done - job.failed
    base = f"/v1/jobs/{job.id}"
    return JobOut(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        asset_type=job.asset_type,  # type: ignore[arg-type]
        site=job.site,
        flight=job.flight,
        total=job.total,
        done=job.done,
        failed=job.failed,
        pending=pending if job.status in ("queued", "running") else 0,
        progress=round((job.done + job.failed) / job.total, 4) if job.total else 1.0,
        created_at=aware(job.created_at),
        started_at=aware(job.started_at),
        finished_at=aware(job.finished_at),
        links={"self": base, "results": f"{base}/results"},
    )


def _get_job(store: Store, job_id: str) -> Job:
    job = store.get_job(job_id) if _JOB_ID.match(job_id) else None
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id[:64]!r}")
    return job


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    summary="Submit a flight as a background job",
    description=(
        "The same multipart upload as `POST /v1/inspections`, for up to `job_max_files` images. The images "
        "are stored (by content hash) before the answer, so the job survives a restart. Files rejected at "
        "upload (type, size, pixels) become error entries of the job. Answers 202 with the job and a "
        "`Location` header."
    ),
    openapi_extra=upload_body("the images of the flight"),
    responses=errors(400, 401, 403, 413, 415, 422, 503),
)
async def create_job(request: Request, services: ServicesDep, pool: DetectorsDep) -> JSONResponse:
    s = services.settings
    store = services.store
    backlog = await anyio.to_thread.run_sync(store.pending_images)
    if backlog >= s.job_max_pending_images:
        services.metrics.busy.inc()
        raise busy(s.retry_after_seconds, f"{backlog} images are waiting in jobs")

    items: dict[int, NewItem] = {}

    def accept(f: UploadedFile) -> NewItem:
        try:
            if f.error is not None:
                raise f.error
            ctype = check_type(f, s.allowed_types)
            assert f.data is not None
            w, h = pool.probe(f.data)
            sha = store.put_image(NewImage(f.data, ctype, w, h))
            return NewItem(f.filename, image_sha256=sha)
        except Rejection as r:
            return NewItem(f.filename, error_code=r.code, error_status=r.status, error_message=r.message)
        finally:
            f.data = None  # stored: do not hold the bytes of the whole flight in memory

    async def on_file(f: UploadedFile) -> None:
        items[f.index] = await anyio.to_thread.run_sync(accept, f)

    with services.upload_slot():
        limits = UploadLimits(s.job_max_files, s.max_file_bytes, s.job_max_request_bytes)
        upload = await read_upload(request, limits, on_file)
    fields = form_fields(upload)
    ordered = [items[f.index] for f in upload.files]
    if all(it.image_sha256 is None for it in ordered):
        first = ordered[0]
        raise ApiError(
            first.error_status or 422,
            first.error_code or "bad_image",
            f"no image could be accepted: {first.filename}: {first.error_message}",
        )
    job = await anyio.to_thread.run_sync(
        lambda: store.create_job(
            ordered,
            model_version=pool.detectors[0].key_for(fields.conditions),
            conditions=fields.conditions.model_dump(exclude_none=True),
            asset_type=fields.asset_type,
            site=fields.site,
            flight=fields.flight,
        )
    )
    rejected = sum(1 for it in ordered if it.image_sha256 is None)
    services.metrics.images.labels("job", "rejected").inc(rejected)
    if services.runner is not None:
        services.runner.wake()
    out = job_out(job)
    return JSONResponse(out.model_dump(mode="json"), status_code=202, headers={"Location": out.links["self"]})


@router.get(
    "/jobs/{job_id}", response_model=JobOut, summary="Job status and progress", responses=errors(401, 403, 404, 422)
)
def get_job(job_id: JobId, services: ServicesDep) -> JobOut:
    return job_out(_get_job(services.store, job_id))


@router.get(
    "/jobs/{job_id}/results",
    response_model=JobResultsOut,
    summary="Job results as JSON, GeoJSON or CSV",
    description=(
        "`format=json` (default): every image in upload order with its defects and priority, plus the "
        "roll-up; `format=geojson`: a FeatureCollection with one Point per defect (null geometry when the "
        "location is unknown); `format=csv`: one row per defect. Available while the job runs "
        "(`complete: false`, pending images listed as pending)."
    ),
    responses={
        **errors(401, 403, 404, 422),
        200: {
            "content": {
                "application/geo+json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
            }
        },
    },
)
def get_results(
    job_id: JobId,
    services: ServicesDep,
    format: Annotated[Literal["json", "geojson", "csv"], Query(description="json | geojson | csv")] = "json",
) -> Response:
    job = _get_job(services.store, job_id)
    images = [item_result(job, r) for r in services.store.job_rows(job.id)]
    if format == "geojson":
        return JSONResponse(to_geojson(images), media_type="application/geo+json")
    if format == "csv":
        return Response(
            to_csv(images),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="job-{job.id}.csv"'},
        )
    out = JobResultsOut(
        job=job_out(job),
        complete=not any(r.status == "pending" for r in images),
        images=images,
        summary=total_summary(images),
    )
    return JSONResponse(out.model_dump(mode="json"))


def item_result(job: Job, row: ItemRow) -> ImageResult:
    """One item of a job: its stored result seen in the job's context, its error, or a
    placeholder (pending while the job runs; cancelled once it was cancelled)."""
    ctx = {"source": row.filename, "index": row.position, "site": job.site, "flight": job.flight}
    if row.result is not None:
        return row.result.in_context(**ctx).for_asset(job.asset_type)
    if row.status == "error":
        err = ImageError(
            code=row.error_code or "error", status=row.error_status or 422, message=row.error_message or ""
        )
        return ImageResult.failed(err, sha256=row.image_sha256, bytes=row.size_bytes, **ctx)
    status = "cancelled" if job.status == "cancelled" else "pending"
    return ImageResult(status=status, sha256=row.image_sha256, bytes=row.size_bytes, **ctx)


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="Cancel a job",
    description="Stops a queued or running job after the images in progress; results so far are kept. "
    "409 if the job has already finished.",
    responses=errors(401, 403, 404, 409, 422),
)
def cancel_job(job_id: JobId, services: ServicesDep) -> JobOut:
    store = services.store
    job = _get_job(store, job_id)
    if job.status not in ("queued", "running"):
        raise ApiError(409, "job_finished", f"job {job.id} has already finished ({job.status})")
    job = store.cancel_job(job.id)
    assert job is not None
    return job_out(job)
