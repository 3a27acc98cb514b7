"""The loaded model: version, classes, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serving.deps import DetectorsDep, require_key
from serving.routers import errors
from serving.schemas import ClassOut, ModelOut

router = APIRouter(prefix="/v1", tags=["model"], dependencies=[Depends(require_key)])


@router.get("/model", response_model=ModelOut, summary="The model in service", responses=errors(401, 403, 503))
def get_model(pool: DetectorsDep) -> ModelOut:
    return ModelOut(
        version=pool.info.version,
        key=pool.model_key,
        backend=pool.backend,
        sha256=pool.info.sha256,
        input_size=list(pool.info.imgsz),
        classes=[ClassOut(id=c.id, name=c.name, asset=c.asset, description=c.description) for c in pool.classes],
        metrics=pool.metrics,
        card=pool.card,
    )
