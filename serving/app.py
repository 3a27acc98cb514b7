"""The FastAPI application factory."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from serving.auth import KeyStore
from serving.detectors import DetectorPool
from serving.errors import ApiError
from serving.metrics import MetricsMiddleware
from serving.routers import health, inspections, jobs, model, reports, review, sites, ui
from serving.services import Services
from serving.settings import Settings, get_settings
from serving.upload import CONDITION_FIELDS

log = logging.getLogger("pvwind.serve")

DESCRIPTION = """\
Defect detection for drone inspections of PV plants and wind farms.

* `POST /v1/inspections`: a small batch, answered at once.
* `POST /v1/jobs`: a whole flight, scored in the background; poll `GET /v1/jobs/{id}`,
  fetch `GET /v1/jobs/{id}/results` as JSON, GeoJSON or CSV.

Authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>` on every `/v1` route
(a service without configured keys serves only its own machine).
Errors: `{"detail": "...", "code": "..."}` with a 4xx status naming the problem.
"""


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}

#: query parameters the access log shows with their value; every other value is masked
LOGGED_QUERY_PARAMS = ("format",)


def redact_query(path: str) -> str:
    """A logged path with the query's values masked (a client may put a key in the URL, and
    keys are never printed): ``/v1/model?api_key=***``."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    shown = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        if name in LOGGED_QUERY_PARAMS:
            shown.append(item)
        elif eq and len(name) <= 32 and name.replace("_", "").replace("-", "").isalnum():
            shown.append(f"{name}=***")
        else:  # a bare value or a strange name: possibly a key itself
            shown.append("***")
    return f"{base}?{'&'.join(shown)}"


class RedactQuery(logging.Filter):
    """Masks query values in uvicorn's access-log records (args: client, method, path, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a for a in record.args):
            record.args = tuple(redact_query(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        return True


def install_log_redaction() -> None:
    """On the access logger (after uvicorn has configured logging; idempotent)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQuery) for f in access.filters):
        access.addFilter(RedactQuery())


def _allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


def create_app(
    settings: Settings | None = None, *, keys: KeyStore | None = None, detectors: DetectorPool | None = None
) -> FastAPI:
    """The service. ``detectors`` may be passed pre-loaded (e.g. by a test or a benchmark)."""
    settings = settings or get_settings()
    keys = keys if keys is not None else KeyStore.load(settings.api_keys, settings.api_keys_file)
    services = Services(settings, keys, detectors)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_redaction()
        services.start()
        try:
            yield
        finally:
            services.stop()

    app = FastAPI(
        title="pvwind-inspect",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        services.metrics.errors.labels(exc.code).inc()
        return JSONResponse({"detail": exc.message, "code": exc.code}, exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # list every method the path supports, not only the first route's
            headers["Allow"] = ", ".join(_allowed_methods(app, request.scope))
        return JSONResponse(
            {"detail": exc.detail, "code": _HTTP_CODES.get(exc.status_code, "http_error")},
            exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        services.metrics.errors.labels("invalid_request").inc()
        return JSONResponse({"detail": "; ".join(problems), "code": "invalid_request"}, 422)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error", "code": "internal_error"}, 500)

    app.add_middleware(MetricsMiddleware, metrics=services.metrics)
    routers = (inspections, jobs, reports, review, sites, model, health, ui)
    for r in (m.router for m in routers):
        app.include_router(r)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # a copy: the generated schema shares dicts with the routes' openapi_extra (one per process)
            app.openapi_schema = describe_uploads(copy.deepcopy(FastAPI.openapi(app)), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def describe_uploads(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The upload bodies as this service's settings make them: at most ``max_files`` /
    ``job_max_files`` files of the allowed types."""
    for path, max_files, conditions in (
        ("/v1/inspections", settings.max_files, True),
        ("/v1/jobs", settings.job_max_files, True),
    ):
        body = spec.get("paths", {}).get(path, {}).get("post", {}).get("requestBody", {})
        form = body.get("content", {}).get("multipart/form-data")
        if form is None:
            continue
        props = form["schema"]["properties"]
        props["files"]["maxItems"] = max_files
        form["encoding"]["files"]["contentType"] = ", ".join(settings.allowed_types)
        if not conditions:
            for name in CONDITION_FIELDS:
                props.pop(name, None)
    return spec
