"""The report's map: an SVG drawn here, no base layer. Each image is its ground footprint (the
four corners ray-cast to the ground, as the findings are) or, when that is not known, its camera
position; the findings sit on it as dots coloured by priority. A scale bar and a north arrow give
distances and direction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

from detector.geo import locate_points, metres_per_degree
from detector.priority import priority_rank
from detector.results import ImageResult

WIDTH, HEIGHT, PAD = 960, 540, 28


@dataclass(frozen=True)
class MapPoint:
    """A finding's position (``id`` as in the report's table)."""

    id: int
    image: int
    latitude: float
    longitude: float
    priority: str
    label: str


def footprint(result: ImageResult) -> list[tuple[float, float]] | None:
    """(lat, lon) of the image's four corners on the ground, when its pose allows an estimate."""
    cam = result.camera
    if cam is None or not cam.has_gps or not result.width or not result.height:
        return None
    if result.geo is None or result.geo.quality != "estimate":
        return None
    orientation = (result.image.orientation if result.image else None) or 1
    w, h = result.width, result.height
    stored_hw = (w, h) if orientation in (5, 6, 7, 8) else (h, w)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    est = locate_points(cam, corners, stored_hw, orientation)
    if est.quality != "estimate" or not np.isfinite(est.latitude).all():
        return None
    return list(zip(est.latitude.tolist(), est.longitude.tolist(), strict=True))


def _nice(length_m: float) -> float:
    """1, 2 or 5 x 10^k metres, at most ``length_m``."""
    if length_m <= 0:
        return 1.0
    k = 10 ** math.floor(math.log10(length_m))
    return max(m * k for m in (1, 2, 5) if m * k <= length_m)


def svg_map(
    results: Sequence[ImageResult], points: Sequence[MapPoint], colors: dict[str, str], names: Sequence[str]
) -> str | None:
    """The map as an inline ``<svg>``, or None when no image has a position."""
    shapes: list[tuple[int, list[tuple[float, float]]]] = []
    cams: list[tuple[int, float, float]] = []
    for i, r in enumerate(results):
        fp = footprint(r)
        if fp:
            shapes.append((i, fp))
        elif r.camera is not None and r.camera.has_gps:
            cams.append((i, float(r.camera.latitude), float(r.camera.longitude)))  # type: ignore[arg-type]
    lats = [p.latitude for p in points] + [c[1] for c in cams] + [la for _, fp in shapes for la, _ in fp]
    lons = [p.longitude for p in points] + [c[2] for c in cams] + [lo for _, fp in shapes for _, lo in fp]
    if not lats:
        return None
    lat0, lon0 = (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2
    m_lat, m_lon = metres_per_degree(lat0)
    span_x = max((max(lons) - min(lons)) * m_lon, 20.0)
    span_y = max((max(lats) - min(lats)) * m_lat, 20.0)
    scale = min((WIDTH - 2 * PAD) / span_x, (HEIGHT - 2 * PAD) / span_y)  # pixels per metre

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return WIDTH / 2 + (lon - lon0) * m_lon * scale, HEIGHT / 2 - (lat - lat0) * m_lat * scale

    out = [
        f'<svg class="map" viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="map of the findings">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#f6f7f4"/>',
    ]
    for i, fp in shapes:
        pts = " ".join("{:.1f},{:.1f}".format(*xy(la, lo)) for la, lo in fp)
        out.append(
            f'<polygon class="fp" data-image="{i}" points="{pts}" fill="#8aa0b4" fill-opacity="0.12" '
            f'stroke="#6b8196" stroke-width="0.8"><title>{escape(names[i])}</title></polygon>'
        )
    for i, la, lo in cams:
        x, y = xy(la, lo)
        out.append(
            f'<rect class="cam" data-image="{i}" x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" '
            f'fill="none" stroke="#555" stroke-width="1"><title>camera: {escape(names[i])}</title></rect>'
        )
    for p in sorted(points, key=lambda p: -priority_rank(p.priority)):  # P1 drawn last, on top
        x, y = xy(p.latitude, p.longitude)
        fill = colors.get(p.priority, "#999")
        out.append(
            f'<circle class="f" data-f="{p.id}" cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{fill}" '
            f'stroke="#222" stroke-width="0.8"><title>{escape(p.label)}</title></circle>'
        )
    bar_m = _nice(span_x / 5)
    bar_px = bar_m * scale
    y = HEIGHT - 12
    out.append(
        f'<g class="scale" font-family="sans-serif" font-size="12" fill="#333">'
        f'<rect x="{PAD}" y="{y - 6}" width="{bar_px:.1f}" height="4" fill="#333"/>'
        f'<text x="{PAD + bar_px + 6:.1f}" y="{y - 1}">{bar_m:g} m</text></g>'
        f'<g class="north" font-family="sans-serif" font-size="13" fill="#333">'
        f'<path d="M{WIDTH - 24} {PAD + 6} l-7 16 l7 -5 l7 5 z"/>'
        f'<text x="{WIDTH - 28}" y="{PAD + 36}">N</text></g>'
    )
    out.append("</svg>")
    return "".join(out)
