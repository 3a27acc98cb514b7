"""Building a site's tracks flight by flight (the database side of :mod:`history.match`).

:func:`match_site` finds the site's first flight whose tracks are not up to date (new
images, a new model key, a changed date, or never matched), removes what was built from
that flight on, and matches that flight and every later one in flight order (by date).
The common case, a new latest flight, therefore touches that flight only. Everything runs
in ONE transaction holding the site's row lock, so two service instances finishing jobs of
one site at once build its tracks one after the other, never interleaved.

Per flight: its findings with a ground position (of the site's asset, ``sites.yaml``) are
assigned to the open tracks, then to recently resolved ones (reappeared); the rest start
new tracks. An open track not found counts as resolved only where the flight looked (within
an image's footprint). Each observation gets its growth against the previous one (worsened
or persistent), the early-warning rules and, for PV, the estimated energy loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from detector.results import upgrade_payload
from history import loss as loss_mod
from history.config import HistoryConfig, SitesConfig, load_history_config, load_sites_config
from history.match import Plane, assign, covered, estimate_offset
from history.rules import early_warning, growth, is_worsened
from storage.flights import flight_name, flight_order
from storage.store import Store
from storage.tables import Flight, FlightImage, Result, Site, Track, TrackObservation, utcnow

log = logging.getLogger("pvwind.history")

STATES = ("new", "persistent", "worsened", "resolved", "reappeared")
OBS_COLUMNS = tuple(c.name for c in TrackObservation.__table__.columns if c.name != "id")


@dataclass
class Seen:
    """A finding of the flight being matched."""

    sha: str
    model: str
    index: int
    source: str | None
    class_name: str
    family: str
    asset: str | None
    lat: float
    lon: float
    pattern: str | None
    irradiance: float | None
    metrics: dict[str, Any]


@dataclass
class FlightData:
    findings: list[Seen] = field(default_factory=list)
    cams: list[tuple[float, float, float | None]] = field(default_factory=list)  # lat, lon, footprint radius
    dates: list[date] = field(default_factory=list)
    rtk_images: int = 0
    images: int = 0
    untracked: int = 0  # findings without a ground position (or of another asset)


@dataclass
class TrackMem:
    id: int | None
    family: str
    class_name: str
    asset: str | None
    lat: float
    lon: float
    is_open: bool
    seen: int
    priority: str | None
    warnings: list[dict[str, Any]]
    first_flight_id: int
    last_flight_id: int
    state: str
    first: dict[str, Any] | None = None  # metrics of the first observation
    last: dict[str, Any] | None = None  # metrics of the latest observation where it was seen
    resolved_flight: str | None = None
    resolved_ordinal: int | None = None


@dataclass
class MatchReport:
    site: str
    flights: list[str] = field(default_factory=list)  # the flights (re)matched, in order
    states: dict[str, int] = field(default_factory=dict)  # observations written, per state
    untracked: int = 0


# ------------------------------------------------------------------------------ reading a flight
def _taken_on(value: Any) -> date | None:
    """An EXIF ``2019:02:06 11:59:27`` or ISO time as a date."""
    if not value:
        return None
    text = str(value).strip()[:10].replace(":", "-")
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _rtk(camera: dict[str, Any]) -> bool:
    """A camera record that says its position is RTK-fixed (DJI XMP RtkFlag 50 = fixed)."""
    flag = camera.get("rtk_flag", camera.get("rtk"))
    if isinstance(flag, bool):
        return flag
    try:
        return float(flag) >= 50
    except (TypeError, ValueError):
        return False


def read_flight(
    rows: list[tuple[str, str | None, dict[str, Any]]], model: str, cfg: HistoryConfig, asset: str
) -> FlightData:
    """The trackable findings, camera footprints and capture dates of a flight's stored results."""
    fd = FlightData()
    m = cfg.matching
    for sha, source, payload in rows:
        r = upgrade_payload(payload)
        if r.get("status", "ok") != "ok":
            continue
        fd.images += 1
        cam = r.get("camera") or {}
        geo = r.get("geo") or {}
        gsd = geo.get("gsd_m")
        w, h = r.get("width") or 0, r.get("height") or 0
        if cam.get("latitude") is not None and cam.get("longitude") is not None:
            radius = gsd * max(w, h) / 2.0 if gsd and w and h else None
            fd.cams.append((float(cam["latitude"]), float(cam["longitude"]), radius))
        day = _taken_on(cam.get("taken_at"))
        if day is not None:
            fd.dates.append(day)
        fd.rtk_images += _rtk(cam)
        irradiance = (r.get("thermal") or {}).get("irradiance_w_m2")
        for i, f in enumerate(r.get("findings") or []):
            loc = f.get("location")
            f_asset = f.get("asset")
            if not loc or (asset != "auto" and f_asset not in (asset, None)):
                fd.untracked += 1
                continue
            box = f.get("box") or {}
            bw, bh = max(0.0, box.get("x2", 0) - box.get("x1", 0)), max(0.0, box.get("y2", 0) - box.get("y1", 0))
            thermal = f.get("thermal") or {}
            metrics = {
                "area_frac": f.get("area_frac"),
                "area_m2": round(bw * bh * gsd * gsd, 5) if gsd else None,
                "length_m": round(max(bw, bh) * gsd, 4) if gsd else None,
                "delta_t_k": thermal.get("delta_t_k"),
                "base_priority": f.get("priority"),
            }
            fd.findings.append(
                Seen(
                    sha, model, int(f.get("index", i)), source, f["class_name"], m.family(f["class_name"]), f_asset,
                    float(loc["latitude"]), float(loc["longitude"]), thermal.get("pattern"), irradiance, metrics,
                )
            )  # fmt: skip
    return fd


# ------------------------------------------------------------------------------ the site's state
def _lock_site(s: Session, site_id: int) -> None:
    """The site's row lock (PostgreSQL) / the database write lock (SQLite), until commit."""
    s.execute(update(Site).where(Site.id == site_id).values(name=Site.name))


def _metrics(o: TrackObservation, flight_name: str) -> dict[str, Any]:
    return {
        "area_frac": o.area_frac,
        "area_m2": o.area_m2,
        "length_m": o.length_m,
        "delta_t_k": o.delta_t_k,
        "base_priority": o.base_priority,
        "flight": flight_name,
        "loss_w": o.loss_w,
        "loss_kwh_year": o.loss_kwh_year,
        "loss": o.loss,
    }


def _load_tracks(s: Session, site_id: int, names: dict[int, str], ordinal: dict[int, int]) -> list[TrackMem]:
    tracks: dict[int, TrackMem] = {}
    for t in s.scalars(select(Track).where(Track.site_id == site_id)):
        tracks[t.id] = TrackMem(
            t.id, t.family, t.class_name, t.asset, t.latitude, t.longitude, t.is_open, t.seen, t.priority,
            list(t.warnings or []), t.first_flight_id, t.last_flight_id, t.state,
        )  # fmt: skip
        if not t.is_open:
            tracks[t.id].resolved_flight = names.get(t.last_flight_id)
            tracks[t.id].resolved_ordinal = ordinal.get(t.last_flight_id)
    # the first observation of each track, and the latest one of each open track
    q = (
        select(TrackObservation)
        .join(Track, Track.id == TrackObservation.track_id)
        .where(
            Track.site_id == site_id,
            (TrackObservation.flight_id == Track.first_flight_id)
            | (Track.is_open & (TrackObservation.flight_id == Track.last_flight_id)),
        )
    )
    for o in s.scalars(q):
        t = tracks[o.track_id]
        mt = _metrics(o, names.get(o.flight_id, "?"))
        if o.flight_id == t.first_flight_id:
            t.first = mt
        if t.is_open and o.flight_id == t.last_flight_id:
            t.last = mt
    return list(tracks.values())


def _rollback(s: Session, site_id: int, flight_ids: list[int], ordinal: dict[int, int]) -> None:
    """Remove what was built from these flights on and put the remaining tracks back as they
    were after the last flight that stays."""
    if not flight_ids:
        return
    touched = set(
        s.scalars(select(TrackObservation.track_id).where(TrackObservation.flight_id.in_(flight_ids)).distinct())
    )
    s.execute(delete(TrackObservation).where(TrackObservation.flight_id.in_(flight_ids)))
    s.execute(delete(Track).where(Track.site_id == site_id, Track.first_flight_id.in_(flight_ids)))
    left = list(s.scalars(select(Track.id).where(Track.id.in_(touched)))) if touched else []
    if not left:
        return
    obs: dict[int, list[TrackObservation]] = {}
    for o in s.scalars(select(TrackObservation).where(TrackObservation.track_id.in_(left))):
        obs.setdefault(o.track_id, []).append(o)
    updates = []
    for tid, os_ in obs.items():
        os_.sort(key=lambda o: ordinal.get(o.flight_id, 0))
        last = os_[-1]
        seen = [o for o in os_ if o.state != "resolved"]
        updates.append(
            {
                "id": tid,
                "last_flight_id": last.flight_id,
                "state": last.state,
                "is_open": last.state != "resolved",
                "seen": len(seen),
                "priority": seen[-1].priority if seen else None,
                "warnings": seen[-1].warnings if seen else None,
            }
        )
    if updates:
        s.execute(update(Track), updates)


# ------------------------------------------------------------------------------ matching
def match_site(
    store: Store,
    site: str,
    *,
    cfg: HistoryConfig | None = None,
    sites: SitesConfig | None = None,
    rematch: bool = False,
) -> MatchReport:
    """Bring the site's tracks up to date (``rematch``: rebuild them from the first flight)."""
    cfg = cfg or load_history_config()
    sites = sites or load_sites_config()
    try:
        site = flight_name(site)
    except ValueError:
        return MatchReport(site)
    plant, plant_source = sites.plant(site)
    report = MatchReport(site)
    with store.session() as s, s.begin():
        site_id = s.scalar(select(Site.id).where(Site.name == site))
        if site_id is None:
            return report
        _lock_site(s, site_id)
        flights = list(s.scalars(select(Flight).where(Flight.site_id == site_id)))
        stale = [f for f in flights if rematch or f.matched_at is None]
        if not stale:
            return report
        cache: dict[int, FlightData] = {}
        for f in stale:  # the date from the capture time first: it decides the order
            cache[f.id] = _read(s, f, cfg, plant.asset)
            if f.date_source != "given":
                day = min(cache[f.id].dates) if cache[f.id].dates else None
                f.flown_on, f.date_source = day, "images" if day else "none"
        s.flush()
        flights.sort(key=flight_order)
        ordinal = {f.id: i for i, f in enumerate(flights)}
        names = {f.id: f.name for f in flights}
        start = min(ordinal[f.id] for f in stale)
        todo = flights[start:]
        _rollback(s, site_id, [f.id for f in todo], ordinal)
        s.flush()
        tracks = _load_tracks(s, site_id, names, ordinal)
        prev_rtk: bool | None = flights[start - 1].rtk if start > 0 else None
        for f in todo:
            fd = cache.get(f.id) or _read(s, f, cfg, plant.asset)
            rtk = f.rtk if f.rtk is not None else (plant.rtk or (fd.images > 0 and fd.rtk_images == fd.images))
            counts = _match_flight(
                s, site_id, f, ordinal[f.id], fd, tracks, cfg, plant, plant_source, bool(rtk and prev_rtk)
            )
            prev_rtk = bool(rtk)
            report.flights.append(f.name)
            report.untracked += fd.untracked
            for k, v in counts.items():
                report.states[k] = report.states.get(k, 0) + v
    log.info("site %s: matched %d flight(s): %s", site, len(report.flights), report.states)
    return report


def _read(s: Session, f: Flight, cfg: HistoryConfig, asset: str) -> FlightData:
    if not f.model_version:
        return FlightData()
    rows = s.execute(
        select(FlightImage.image_sha256, FlightImage.source, Result.payload)
        .join(
            Result,
            (Result.image_sha256 == FlightImage.image_sha256) & (Result.model_version == FlightImage.model_version),
        )
        .where(FlightImage.flight_id == f.id, FlightImage.model_version == f.model_version)
        .order_by(FlightImage.image_sha256)
    ).all()
    return read_flight([tuple(r) for r in rows], f.model_version, cfg, asset)


def _match_flight(
    s: Session,
    site_id: int,
    f: Flight,
    ordinal: int,
    fd: FlightData,
    tracks: list[TrackMem],
    cfg: HistoryConfig,
    plant: Any,
    plant_source: str,
    rtk: bool,
) -> dict[str, int]:
    m = cfg.matching
    obs = fd.findings
    live = [t for t in tracks if t.is_open]
    window = [
        t
        for t in tracks
        if not t.is_open
        and t.resolved_ordinal is not None
        and ordinal - t.resolved_ordinal <= m.reappear_within_flights
    ]
    pts = [(t.lat, t.lon) for t in live + window] + [(o.lat, o.lon) for o in obs] + [(c[0], c[1]) for c in fd.cams]
    plane = Plane(*pts[0]) if pts else Plane(0.0, 0.0)
    o_xy = plane.to_xy([o.lat for o in obs], [o.lon for o in obs])
    o_fam = [o.family for o in obs]
    o_cls = [o.class_name for o in obs]
    base_gate = m.gate_rtk_m if rtk else m.gate_m
    gates = np.array([m.gate_wind_m if o.asset == "wind" else base_gate for o in obs], np.float64)

    def xy(ts: list[TrackMem]) -> np.ndarray:
        return plane.to_xy([t.lat for t in ts], [t.lon for t in ts])

    l_xy = xy(live)
    offset, _pairs = estimate_offset(
        l_xy, [t.family for t in live], o_xy, o_fam,
        search_m=m.offset_search_m, gate_m=base_gate, min_pairs=m.offset_min_pairs,
    )  # fmt: skip
    o_c = o_xy - offset
    pairs = assign(
        l_xy, [t.family for t in live], [t.class_name for t in live], o_c, o_fam, o_cls, gates,
        class_penalty_m=m.class_change_penalty_m,
    )  # fmt: skip
    taken = {oi for _, oi, _ in pairs}
    rest = [i for i in range(len(obs)) if i not in taken]
    again: list[tuple[int, int, float]] = []
    if window and rest:
        sub = assign(
            xy(window), [t.family for t in window], [t.class_name for t in window], o_c[rest],
            [o_fam[i] for i in rest], [o_cls[i] for i in rest], gates[rest], class_penalty_m=m.class_change_penalty_m,
        )  # fmt: skip
        again = [(ti, rest[oi], d) for ti, oi, d in sub]
        taken |= {oi for _, oi, _ in again}

    rows: list[dict[str, Any]] = []
    track_updates: list[dict[str, Any]] = []
    counts: dict[str, int] = {}

    def observe(t: TrackMem, oi: int, state: str, dist: float | None) -> None:
        o = obs[oi]
        cur = {**o.metrics, "flight": f.name}
        if state == "persistent" and t.last is not None and is_worsened(growth(t.last, cur), cfg.worsened):
            state = "worsened"
        seen = t.seen + 1 if t.id is not None else 1
        ctx = {
            "family": o.family, "class_name": o.class_name, "asset": o.asset, "state": state, "seen": seen,
            "current": cur, "first": t.first, "previous": t.last, "resolved_flight": t.resolved_flight,
            "kept": (t.priority, t.warnings) if state in ("persistent", "worsened") else None,
        }  # fmt: skip
        priority, warnings = early_warning(ctx, cfg.early_warning)
        est = None
        if o.asset == "pv":
            est = loss_mod.estimate(
                o.class_name, o.pattern, o.metrics["delta_t_k"], o.metrics["area_m2"], plant, plant_source, cfg.loss,
                o.irradiance,
            )  # fmt: skip
        cur.update(
            loss_w=est.loss_w if est else None,
            loss_kwh_year=est.loss_kwh_year if est else None,
            loss=est.detail if est else None,
        )
        # the track's place: the mean of where it was seen (bias-corrected), its latest class
        c_lat, c_lon = plane.to_latlon(o_c[oi])
        n = min(t.seen, 4) if t.id is not None else 0
        t.lat = (t.lat * n + float(c_lat[0])) / (n + 1)
        t.lon = (t.lon * n + float(c_lon[0])) / (n + 1)
        if t.first is None:
            t.first = cur
        t.class_name, t.last, t.seen, t.state, t.is_open = o.class_name, cur, seen, state, True
        t.priority, t.warnings, t.last_flight_id = priority, warnings, f.id
        t.resolved_flight = t.resolved_ordinal = None
        rows.append(
            {
                "track": t, "flight_id": f.id, "state": state, "image_sha256": o.sha, "model_version": o.model,
                "finding_index": o.index, "source": o.source, "class_name": o.class_name, "latitude": o.lat,
                "longitude": o.lon, "distance_m": None if dist is None else round(dist, 3),
                "area_frac": o.metrics["area_frac"], "area_m2": o.metrics["area_m2"],
                "length_m": o.metrics["length_m"], "delta_t_k": o.metrics["delta_t_k"],
                "base_priority": o.metrics["base_priority"], "priority": priority, "warnings": warnings or None,
                "loss_w": cur["loss_w"], "loss_kwh_year": cur["loss_kwh_year"], "loss": cur["loss"],
            }
        )  # fmt: skip
        counts[state] = counts.get(state, 0) + 1

    for ti, oi, d in pairs:
        observe(live[ti], oi, "persistent", d)
    for ti, oi, d in again:
        observe(window[ti], oi, "reappeared", d)
    new_tracks: list[TrackMem] = []
    for oi in range(len(obs)):
        if oi in taken:
            continue
        o = obs[oi]
        t = TrackMem(None, o.family, o.class_name, o.asset, 0.0, 0.0, True, 0, None, [], f.id, f.id, "new")
        new_tracks.append(t)
        observe(t, oi, "new", None)
    # open tracks not found: resolved where this flight looked
    missing = [t for i, t in enumerate(live) if i not in {ti for ti, _, _ in pairs}]
    if missing and fd.images:
        if fd.cams:
            cams = plane.to_xy([c[0] for c in fd.cams], [c[1] for c in fd.cams]) - offset
            radii = np.array([c[2] or m.coverage_radius_m for c in fd.cams], np.float64)
            seen_by = covered(xy(missing), cams, radii)
        else:  # no camera positions at all: the flight is taken to cover the site
            seen_by = np.ones(len(missing), bool)
        for t, inside in zip(missing, seen_by, strict=True):
            if not inside:
                continue
            last = t.last or {}
            rows.append(
                {
                    "track": t, "flight_id": f.id, "state": "resolved", "class_name": t.class_name,
                    "base_priority": last.get("base_priority"), "priority": t.priority,
                    "loss_w": last.get("loss_w"), "loss_kwh_year": last.get("loss_kwh_year"), "loss": last.get("loss"),
                }
            )  # fmt: skip
            t.is_open, t.state, t.last_flight_id = False, "resolved", f.id
            t.resolved_flight, t.resolved_ordinal = f.name, ordinal
            counts["resolved"] = counts.get("resolved", 0) + 1

    # write: the new tracks (for their ids), the observations, the changed tracks, the flight
    if new_tracks:
        objs = [
            Track(
                site_id=site_id, family=t.family, class_name=t.class_name, asset=t.asset, first_flight_id=f.id,
                last_flight_id=f.id, state=t.state, is_open=True, latitude=t.lat, longitude=t.lon, seen=t.seen,
                priority=t.priority, warnings=t.warnings or None,
            )
            for t in new_tracks
        ]  # fmt: skip
        s.add_all(objs)
        s.flush()
        for t, obj in zip(new_tracks, objs, strict=True):
            t.id = obj.id
        tracks.extend(new_tracks)
    changed = {id(r["track"]): r["track"] for r in rows if r["state"] != "new"}
    for t in changed.values():
        track_updates.append(
            {
                "id": t.id, "class_name": t.class_name, "last_flight_id": t.last_flight_id, "state": t.state,
                "is_open": t.is_open, "latitude": t.lat, "longitude": t.lon, "seen": t.seen, "priority": t.priority,
                "warnings": t.warnings or None,
            }
        )  # fmt: skip
    if track_updates:
        s.execute(update(Track), track_updates)
    for r in rows:
        r["track_id"] = r.pop("track").id
        for k in OBS_COLUMNS:
            r.setdefault(k, None)
    if rows:
        s.execute(insert(TrackObservation), rows)
    f.offset_east_m, f.offset_north_m = round(float(offset[0]), 3), round(float(offset[1]), 3)
    f.matched_at = utcnow()
    s.flush()
    return counts


def flights_to_match(store: Store) -> list[str]:
    """Sites with a flight whose tracks are not up to date."""
    with store.session() as s:
        q = select(Site.name).join(Flight, Flight.site_id == Site.id).where(Flight.matched_at.is_(None)).distinct()
        return sorted(s.scalars(q))
