"""One image's detections -> its :class:`detector.results.ImageResult`: location on the
ground (:mod:`detector.geo`), maintenance priority (:mod:`detector.priority`), summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from detector.decode import DecodedImage
from detector.detections import Detections
from detector.geo import locate_points, read_pose
from detector.priority import PriorityConfig, assess_detections, summarize
from detector.results import Box, Finding, GeoInfo, ImageInfo, ImageResult, Location


def build_result(
    image: DecodedImage,
    dets: Detections,
    *,
    names: Sequence[str],
    assets: Mapping[str, str],
    priority_config: PriorityConfig,
    model_key: str,
    max_off_nadir_deg: float,
    zone: str | None = None,
    tiles: int = 0,
) -> ImageResult:
    """Attach location and priority to one image's detections."""
    h, w = image.height, image.width
    pose = read_pose(image.metadata, image.stored_hw)
    centres = np.stack([(dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2, (dets.xyxy[:, 1] + dets.xyxy[:, 3]) / 2], 1)
    geo = locate_points(
        pose, centres, image.stored_hw, orientation=image.metadata.orientation, max_off_nadir_deg=max_off_nadir_deg
    )
    ratings = assess_detections(dets, names, (h, w), gsd_m=geo.gsd_m, zone=zone, config=priority_config)
    findings = []
    for i, rating in enumerate(ratings):
        c = int(dets.class_id[i])
        name = names[c] if c < len(names) else str(c)
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
        lat, lon = float(geo.latitude[i]), float(geo.longitude[i])
        located = np.isfinite(lat) and np.isfinite(lon) and geo.quality in ("estimate", "coarse")
        findings.append(
            Finding(
                **rating.model_dump(),
                index=i,
                class_id=c,
                class_name=name,
                asset=assets.get(name),
                confidence=float(dets.confidence[i]),
                box=Box(x1=x1, y1=y1, x2=x2, y2=y2),
                area_frac=(x2 - x1) * (y2 - y1) / max(h * w, 1),
                location=Location(latitude=lat, longitude=lon, quality=geo.quality) if located else None,  # type: ignore[arg-type]
            )
        )
    return ImageResult(
        source=image.source,
        sha256=image.sha256,
        bytes=image.nbytes or None,
        width=w,
        height=h,
        image=ImageInfo(
            format=image.format,
            mode=image.mode,
            bit_depth=image.bit_depth,
            grayscale=image.grayscale,
            orientation=image.metadata.orientation,
        ),
        model=model_key,
        camera=pose if (pose.has_gps or pose.make) else None,
        geo=GeoInfo(quality=geo.quality, note=geo.note, gsd_m=None if geo.gsd_m is None else round(geo.gsd_m, 5)),  # type: ignore[arg-type]
        tiles=tiles,
        summary=summarize((f.priority, f.class_name) for f in findings),
        findings=findings,
    )
