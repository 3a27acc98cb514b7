"""The loaded model: version, classes, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serving.deps import EngineDep, require_key
from serving.routers import errors
from serving.schemas import ClassOut, ModelOut

router = APIRouter(prefix="/v1", tags=["model"], dependencies=[Depends(require_key)])


@router.get("/model", response_model=ModelOut, summary="The model in service", responses=errors(401, 403, 503))
def get_model(engine: EngineDep) -> ModelOut:
    return ModelOut(
        version=engine.info.version,
        key=engine.version,
        sha256=engine.info.sha256,
        input_size=list(engine.info.imgsz),
        classes=[ClassOut(id=c.id, name=c.name, asset=c.asset, description=c.description) for c in engine.classes],
        metrics=engine.metrics,
        card=engine.card,
    )
