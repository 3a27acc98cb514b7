"""The web viewer: ``/ui`` serves a small static page (``serving/static/``, no build step) that
uploads a flight through ``POST /v1/jobs``, follows the job and browses its results with the
public API only. The page itself needs no key; every API call it makes sends the key the user
entered (kept in the browser's session storage)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from serving.errors import ApiError

STATIC = Path(__file__).resolve().parent.parent / "static"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*\.(html|js|css|svg|png)$")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

router = APIRouter(tags=["viewer"], include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
def ui_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
def index() -> FileResponse:
    return static_file("index.html")


@router.get("/ui/{name}")
def static_file(name: str) -> FileResponse:
    path = STATIC / name
    if not _NAME.match(name) or not path.is_file():
        raise ApiError(404, "not_found", f"no file {name[:64]!r} in the viewer")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=HEADERS)
