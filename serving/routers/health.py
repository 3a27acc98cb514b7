"""Liveness, readiness and Prometheus metrics (no API key: for probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving.deps import ServicesDep
from serving.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="The process is up")
def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="The model is loaded and requests can be scored",
    responses={503: {"model": ReadyOut, "description": "not ready (model loading or failed to load)"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    if services.ready and services.detectors is not None:
        return JSONResponse(ReadyOut(ready=True, model=services.detectors.model_key).model_dump())
    detail = services.load_error or "the model is still loading"
    return JSONResponse(ReadyOut(ready=False, detail=detail).model_dump(), status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    m = services.metrics
    try:
        m.job_backlog.set(services.store.pending_images())
    except Exception:  # noqa: BLE001 - metrics must answer even when the database does not
        m.errors.labels("database").inc()
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
