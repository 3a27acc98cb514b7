"""``/v1/sites``: findings across flights (``history/``): a site's flights, its open findings
with their history, the changes between two flights (JSON, GeoJSON, CSV), early warnings
and the estimated energy loss. Flights come from jobs with ``site`` (and ``flight``), from
``pvwind rescore`` and ``pvwind inspect --out-db``; a site's tracks are built when a flight
completes, or on demand with ``POST /v1/sites/{site}/match``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from history import queries
from history.tracker import match_site
from serving.deps import ServicesDep, require_key
from serving.errors import ApiError
from serving.routers import errors

router = APIRouter(prefix="/v1", tags=["sites"], dependencies=[Depends(require_key)])

SiteName = Annotated[str, Path(description="the site, as given with the flights' images", max_length=200)]
FlightRef = Annotated[
    str | None, Query(description="a flight's name, or a date YYYY-MM-DD (the first flight that day)", max_length=200)
]
_JSON: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {"schema": {"type": "object"}}}}}


def _not_found(e: queries.NotFound) -> ApiError:
    return ApiError(404, "not_found", str(e))


@router.get(
    "/sites",
    summary="Sites with their latest flight, open findings and estimated loss",
    responses={**errors(401, 403), **_JSON},
)
def get_sites(services: ServicesDep) -> JSONResponse:
    return JSONResponse({"sites": queries.list_sites(services.store)})


@router.get(
    "/sites/{site}/flights",
    summary="A site's flights in date order",
    description="Each flight with its date (given, or from the images' capture time), images, findings per "
    "state (new, persistent, worsened, resolved, reappeared), warnings, the estimated energy loss of what "
    "it found and the loss recovered by what was resolved since the flight before (estimates).",
    responses={**errors(401, 403, 404, 422), **_JSON},
)
def get_flights(site: SiteName, services: ServicesDep) -> JSONResponse:
    try:
        return JSONResponse(queries.list_flights(services.store, site))
    except queries.NotFound as e:
        raise _not_found(e) from None


@router.get(
    "/sites/{site}/findings",
    summary="A site's findings (tracks) with their history across flights",
    description="`status=open` (default): what is still there after the latest flight that looked; each "
    "track with its priority (raised by the early-warning rules, with reasons) and one entry per flight.",
    responses={**errors(401, 403, 404, 422), **_JSON},
)
def get_findings(
    site: SiteName,
    services: ServicesDep,
    status: Annotated[Literal["open", "resolved", "all"], Query(description="open | resolved | all")] = "open",
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JSONResponse:
    try:
        return JSONResponse(queries.list_findings(services.store, site, status=status, limit=limit, offset=offset))
    except queries.NotFound as e:
        raise _not_found(e) from None


@router.get(
    "/sites/{site}/changes",
    summary="What changed between two flights: JSON, GeoJSON or CSV",
    description="From `from` to `to` (default: the last two flights): every track as new, persistent, "
    "worsened, resolved or reappeared, with its growth (area, ΔT), early warnings and estimated loss; "
    "totals of the estimated loss at both flights and the loss recovered. `format=geojson`: one Point per "
    "change; `format=csv`: one row per change.",
    responses={
        **errors(401, 403, 404, 422),
        200: {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/geo+json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
            }
        },
    },
)
def get_changes(
    site: SiteName,
    services: ServicesDep,
    from_: Annotated[FlightRef, Query(alias="from")] = None,
    to: FlightRef = None,
    format: Annotated[Literal["json", "geojson", "csv"], Query(description="json | geojson | csv")] = "json",
) -> Response:
    try:
        res = queries.changes(services.store, site, from_, to)
    except queries.NotFound as e:
        raise _not_found(e) from None
    if format == "geojson":
        return JSONResponse(queries.changes_geojson(res), media_type="application/geo+json")
    if format == "csv":
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{site}-{res['to']['name']}")[:120]
        return Response(
            queries.changes_csv(res),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="changes-{name}.csv"'},
        )
    return JSONResponse(res)


@router.post(
    "/sites/{site}/match",
    summary="Bring the site's tracks up to date now",
    description="Matches the flights whose tracks are not up to date (normally done when a flight's job "
    "finishes); `rematch=true` rebuilds all of them from the first flight (after a change of the history "
    "settings or the plant data).",
    responses={**errors(401, 403, 404, 422), **_JSON},
)
def post_match(
    site: SiteName,
    services: ServicesDep,
    rematch: Annotated[bool, Query(description="rebuild from the first flight")] = False,
) -> JSONResponse:
    rep = match_site(services.store, site, rematch=rematch)
    if not rep.flights and site not in queries.FlightLog(services.store).sites():
        raise ApiError(404, "not_found", f"no site {site!r}")
    return JSONResponse({"site": site, "matched": rep.flights, "states": rep.states, "untracked": rep.untracked})
