"""``GET /v1/jobs/{id}/review``: a job's predictions as pre-annotations for human review
(:mod:`review`): Label Studio tasks, CVAT for images 1.1 XML, COCO JSON, a YOLO zip, or a
bundle zip with all of them plus ``review_manifest.json`` (what ``pvwind review import
--predictions`` compares the corrected export against).

Images are referenced by the file names they were uploaded with, never copied: point the
tool at the folder holding them (Label Studio: ``LOCAL_FILES_DOCUMENT_ROOT``, or a URL prefix
with ``image_url_prefix``; CVAT: a task made from the same files or a connected share).
"""

from __future__ import annotations

import io
import re
import tempfile
import zipfile
from pathlib import Path as FsPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from review.export import export
from review.items import model_of
from serving.deps import ServicesDep, require_key
from serving.errors import ApiError
from serving.routers import errors
from serving.routers.jobs import item_result

router = APIRouter(prefix="/v1", tags=["review"], dependencies=[Depends(require_key)])

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
JobId = Annotated[str, Path(description="the job id returned by POST /v1/jobs", max_length=64)]
Format = Literal["labelstudio", "cvat", "yolo", "coco", "bundle"]
_FILES = {"labelstudio": "labelstudio_tasks.json", "cvat": "cvat_annotations.xml", "coco": "coco.json"}
_TYPES = {"labelstudio": "application/json", "cvat": "application/xml", "coco": "application/json"}


def _zip(folder: FsPath) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()


@router.get(
    "/jobs/{job_id}/review",
    summary="A job's predictions as pre-annotations for Label Studio, CVAT, YOLO or COCO",
    description=(
        "Every scored image of the job in review order (most urgent, then least confident findings first). "
        "`format=labelstudio`: Label Studio tasks with `predictions` (model version, scores); "
        "`cvat`: CVAT for images 1.1 XML; `coco`: COCO JSON with scores; `yolo`: a zip of YOLO label files; "
        "`bundle`: a zip with all four, the Label Studio labelling config and `review_manifest.json`. "
        "Images are referenced by their upload file names. `X-Review-Complete: false` while the job still runs."
    ),
    responses={
        **errors(401, 403, 404, 409, 422),
        200: {
            "content": {
                # Label Studio: a list of tasks; COCO: one object
                "application/json": {
                    "schema": {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]}
                },
                "application/xml": {"schema": {"type": "string"}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
            }
        },
    },
)
def get_review(
    job_id: JobId,
    services: ServicesDep,
    format: Annotated[Format, Query(description="labelstudio | cvat | yolo | coco | bundle")] = "labelstudio",
    image_url_prefix: Annotated[
        str | None,
        Query(
            max_length=500,
            pattern=r"^[^\s\x00-\x1f]*$",
            description="Label Studio: image URL = prefix + '/' + file name (default: a local-files reference)",
        ),
    ] = None,
) -> Response:
    store = services.store
    job = store.get_job(job_id) if _JOB_ID.match(job_id) else None
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id[:64]!r}")
    images = [item_result(job, r) for r in store.job_rows(job.id)]
    scored = [r for r in images if r.ok]
    if not scored:
        raise ApiError(409, "nothing_scored", f"job {job.id} has no scored image yet ({job.status})")
    complete = "false" if any(r.status == "pending" for r in images) else "true"
    name = f"job-{job.id}"
    with tempfile.TemporaryDirectory(prefix="pvwind-review-") as tmp:
        out = FsPath(tmp) / name
        formats = ("labelstudio", "cvat", "yolo", "coco") if format == "bundle" else (format,)
        export(
            scored,
            out,
            formats=formats,
            name=name,
            model=model_of(scored) if scored else job.model_version,
            url_prefix=image_url_prefix,
            resolve_files=False,
        )
        headers = {"X-Review-Complete": complete}
        if format in _FILES:
            return Response((out / _FILES[format]).read_bytes(), media_type=_TYPES[format], headers=headers)
        if format == "yolo":
            body = _zip(out / "yolo")
        else:
            body = _zip(out)
    headers["Content-Disposition"] = f'attachment; filename="{name}-{format}.zip"'
    return Response(body, media_type="application/zip", headers=headers)
