"""One image's detections -> its :class:`detector.results.ImageResult`: location on the
ground (:mod:`detector.geo`), maintenance priority (:mod:`detector.priority`), summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from detector.decode import DecodedImage
from detector.detections import Detections
from detector.geo import locate_points, read_pose
from detector.priority import PriorityConfig, assess, assess_detections, summarize
from detector.results import Box, Finding, GeoInfo, ImageInfo, ImageResult, Location, Thermal, ThermalInfo
from detector.thermal_pipeline import hotspot_class, thermal_info, thermal_measurements


def build_result(
    image: DecodedImage,
    dets: Detections,
    *,
    names: Sequence[str],
    assets: Mapping[str, str],
    priority_config: PriorityConfig,
    max_off_nadir_deg: float,
    model_key: str,
    zone: str | None = None,
    tiles: int = 0,
    irradiance_w_m2: float | None = None,
) -> ImageResult:
    """Attach location and priority to one image's detections; on a radiometric frame also
    temperatures and ΔT, and the hot spots the radiometric finder adds."""
    h, w = image.height, image.width
    dets_names = [names[int(c)] if int(c) < len(names) else str(int(c)) for c in dets.class_id]
    measured: list[dict | None] = [None] * len(dets)
    extra = []
    merged: dict[int, int] = {}
    if image.celsius is not None:
        measured, extra = thermal_measurements(image.celsius, dets.xyxy, dets_names, priority_config, irradiance_w_m2)
        # one hot spot, one finding: model boxes of a class that the same radiometric hot spot
        # confirms are merged into the most confident of them (a thermographer reports the module once)
        keep, best = np.ones(len(dets), bool), {}
        for i in np.argsort(-dets.confidence, kind="stable"):
            m = measured[i]
            if m is None or m["hotspot"] is None:
                continue
            key = (dets_names[i], m["hotspot"])
            if key in best:
                keep[i] = False
                merged[best[key]] = merged.get(best[key], 1) + 1
            else:
                best[key] = int(i)
        if not keep.all():
            index = np.flatnonzero(keep)
            remap = {int(old): new for new, old in enumerate(index)}
            merged = {remap[k]: v for k, v in merged.items()}
            dets = dets[keep]
            measured = [measured[i] for i in index]
            dets_names = [dets_names[i] for i in index]
    sources = ["model"] * len(dets) + ["radiometric"] * len(extra)
    if extra:
        xyxy = np.concatenate([dets.xyxy, np.array([x.box_xyxy for x in extra], np.float32).reshape(-1, 4)])
        conf = np.concatenate([dets.confidence, np.ones(len(extra), np.float32)])
        extra_names = [hotspot_class(x, names, assets) for x in extra]
        cls = np.concatenate([dets.class_id, np.array([names.index(n) for n in extra_names], dets.class_id.dtype)])
        dets = Detections(xyxy, conf, cls)
        measured = measured + [
            {
                "t_max_c": x.t_max_c,
                "t_mean_c": None,
                "t_ref_c": x.t_ref_c,
                "delta_t_k": x.delta_t_k,
                "delta_t_norm_k": x.delta_t_norm_k,
                "reference": x.reference,
                "pattern": x.pattern,
                "confirmed": True,
            }
            for x in extra
        ]
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
        thermal = None
        if (m := measured[i]) is not None:
            if m["t_mean_c"] is None:  # a radiometric hot spot: its mean over the box
                box = image.celsius[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]  # type: ignore[index]
                m["t_mean_c"] = round(float(np.nanmean(box)), 1) if box.size else m["t_max_c"]
            rating = assess(
                name,
                float(dets.confidence[i]),
                area_frac=(x2 - x1) * (y2 - y1) / max(h * w, 1),
                config=priority_config,
                delta_t_k=m["delta_t_k"],
                pattern=m["pattern"],
                irradiance_w_m2=irradiance_w_m2,
            )
            note = (
                "found by the radiometric finder alone"
                if sources[i] == "radiometric"
                else (
                    "confirmed by the radiometric finder"
                    if m["confirmed"]
                    else "not confirmed by the radiometric finder"
                )
            )
            if i in merged:
                note += f" (merged {merged[i]} model boxes on this hot spot)"
            rating = rating.model_copy(update={"reasons": [*rating.reasons, note]})
            thermal = Thermal(**{k: v for k, v in m.items() if k not in ("confirmed", "hotspot")})
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
                found_by=sources[i],  # type: ignore[arg-type]
                thermal=thermal,
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
        thermal=ThermalInfo(**info) if (info := thermal_info(image, irradiance_w_m2)) else None,
        summary=summarize((f.priority, f.class_name) for f in findings),
        findings=findings,
        warnings=list(image.warnings),
    )
