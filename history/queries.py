"""What the API and ``pvwind history`` show: sites, flights, open findings with their history,
and the changes between two flights (JSON, GeoJSON, CSV).

Reads only the track tables (and flights / images for counts): the findings' full records
stay in the stored results, referenced by (image hash, model key, finding index).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, func, select

from history.config import load_history_config
from history.loss import total
from history.rules import growth, is_worsened
from storage.flights import FlightLog, FlightRow, flight_name
from storage.store import Store
from storage.tables import Site, Track, TrackObservation

SEEN = ("new", "persistent", "worsened", "reappeared")
ESTIMATE_NOTE = (
    "estimated energy loss: module power x the share a finding of its kind costs x the site's specific yield "
    "(configs/history.yaml, sites.yaml); an estimate, not a measurement"
)


class NotFound(LookupError):
    """An unknown site or flight (the message names it)."""


@dataclass(frozen=True)
class Site_:
    id: int
    name: str
    flights: list[FlightRow]


def _site(store: Store, name: str) -> Site_:
    log = FlightLog(store)
    try:
        name = flight_name(name)
    except ValueError:
        raise NotFound("no site ''") from None
    sid = log.site_id(name)
    if sid is None:
        raise NotFound(f"no site {name!r}")
    return Site_(sid, name, log.flights(name))


def _flight_json(f: FlightRow) -> dict[str, Any]:
    return {
        "name": f.name,
        "date": f.flown_on.isoformat() if f.flown_on else None,
        "date_source": f.date_source,
        "rtk": f.rtk,
        "model": f.model_version,
        "status": f.status,
        "matched": f.matched,
        "offset_m": None if f.offset_east_m is None else {"east": f.offset_east_m, "north": f.offset_north_m},
    }


def _flight_totals(store: Store, flight_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per flight: observations per state, estimated loss of what was seen, loss recovered."""
    out: dict[int, dict[str, Any]] = {
        fid: {"states": dict.fromkeys((*SEEN, "resolved"), 0), "loss_w": 0.0, "loss_kwh_year": 0.0,
              "recovered_w": 0.0, "recovered_kwh_year": 0.0, "warnings": 0}
        for fid in flight_ids
    }  # fmt: skip
    if not flight_ids:
        return out
    with store.session() as s:
        q = (
            select(
                TrackObservation.flight_id,
                TrackObservation.state,
                func.count(),
                func.sum(TrackObservation.loss_w),
                func.sum(TrackObservation.loss_kwh_year),
                func.count(TrackObservation.warnings),
            )
            .where(TrackObservation.flight_id.in_(flight_ids))
            .group_by(TrackObservation.flight_id, TrackObservation.state)
        )
        for fid, state, n, w, kwh, warned in s.execute(q):
            t = out[fid]
            t["states"][state] = int(n)
            if state == "resolved":
                t["recovered_w"] += float(w or 0)
                t["recovered_kwh_year"] += float(kwh or 0)
            else:
                t["loss_w"] += float(w or 0)
                t["loss_kwh_year"] += float(kwh or 0)
                t["warnings"] += int(warned or 0)
    for t in out.values():
        for k in ("loss_w", "loss_kwh_year", "recovered_w", "recovered_kwh_year"):
            t[k] = round(t[k], 3)
        t["findings"] = sum(t["states"][k] for k in SEEN)
    return out


def list_sites(store: Store) -> list[dict[str, Any]]:
    """Every site: flights, the latest flight, open findings, warnings, estimated loss now."""
    log = FlightLog(store)
    out = []
    with store.session() as s:
        open_counts = dict(
            s.execute(
                select(Site.name, func.count(Track.id))
                .join(Track, and_(Track.site_id == Site.id, Track.is_open))
                .group_by(Site.name)
            ).all()
        )
    for name in log.sites():
        flights = log.flights(name)
        last = flights[-1] if flights else None
        totals = _flight_totals(store, [last.id]) if last else {}
        t = totals.get(last.id) if last else None
        out.append(
            {
                "site": name,
                "flights": len(flights),
                "last_flight": _flight_json(last) if last else None,
                "open_findings": int(open_counts.get(name, 0)),
                "warnings": t["warnings"] if t else 0,
                "estimated_loss_w": t["loss_w"] if t else 0.0,
                "estimated_loss_kwh_year": t["loss_kwh_year"] if t else 0.0,
            }
        )
    return out


def list_flights(store: Store, site: str) -> dict[str, Any]:
    """The site's flights in order, each with its images, states and loss totals."""
    st = _site(store, site)
    ids = [f.id for f in st.flights]
    counts = FlightLog(store).image_counts(ids)
    totals = _flight_totals(store, ids)
    flights = []
    for f in st.flights:
        n, scored = counts.get(f.id, (0, 0))
        flights.append({**_flight_json(f), "images": n, "scored": scored, **totals[f.id]})
    return {
        "site": site,
        "flights": flights,
        "total": {
            "flights": len(flights),
            "recovered_w": total([f["recovered_w"] for f in flights]),
            "recovered_kwh_year": total([f["recovered_kwh_year"] for f in flights]),
        },
        "note": ESTIMATE_NOTE,
    }


def _obs_json(o: Any, flight: str) -> dict[str, Any]:
    return {
        "flight": flight,
        "state": o.state,
        "class_name": o.class_name,
        "source": o.source,
        "image_sha256": o.image_sha256,
        "model": o.model_version,
        "finding_index": o.finding_index,
        "latitude": o.latitude,
        "longitude": o.longitude,
        "distance_m": o.distance_m,
        "area_frac": o.area_frac,
        "area_m2": o.area_m2,
        "length_m": o.length_m,
        "delta_t_k": o.delta_t_k,
        "base_priority": o.base_priority,
        "priority": o.priority,
        "warnings": o.warnings or [],
        "estimated_loss_w": o.loss_w,
        "estimated_loss_kwh_year": o.loss_kwh_year,
        "loss_inputs": o.loss,
    }


def list_findings(
    store: Store, site: str, *, status: str = "open", limit: int = 500, offset: int = 0
) -> dict[str, Any]:
    """Tracks (``status``: open | resolved | all), most urgent first, each with its history."""
    st = _site(store, site)
    names = {f.id: f.name for f in st.flights}
    order = {f.id: i for i, f in enumerate(st.flights)}
    with store.session() as s:
        q = select(Track).where(Track.site_id == st.id)
        if status == "open":
            q = q.where(Track.is_open)
        elif status == "resolved":
            q = q.where(~Track.is_open)
        n = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
        tracks = list(s.scalars(q.order_by(Track.priority, Track.id).offset(offset).limit(limit)))
        hist: dict[int, list[Any]] = {}
        ids = [t.id for t in tracks]
        for i in range(0, len(ids), 500):
            for o in s.execute(select(*OBS_COLUMNS).where(TrackObservation.track_id.in_(ids[i : i + 500]))):
                hist.setdefault(o.track_id, []).append(o)
    items = []
    for t in tracks:
        obs = sorted(hist.get(t.id, []), key=lambda o: order.get(o.flight_id, 0))
        items.append(
            {
                "track": t.id,
                "family": t.family,
                "class_name": t.class_name,
                "asset": t.asset,
                "state": t.state,
                "open": t.is_open,
                "latitude": round(t.latitude, 8),
                "longitude": round(t.longitude, 8),
                "first_flight": names.get(t.first_flight_id),
                "last_flight": names.get(t.last_flight_id),
                "seen": t.seen,
                "priority": t.priority,
                "warnings": t.warnings or [],
                "history": [_obs_json(o, names.get(o.flight_id, "?")) for o in obs],
            }
        )
    return {"site": site, "status": status, "total": n, "offset": offset, "findings": items, "note": ESTIMATE_NOTE}


def _pick(flights: list[FlightRow], value: str | None, default: int) -> tuple[int, FlightRow]:
    """A flight by name or date (YYYY-MM-DD: the first flight that day); ``default`` index if None."""
    if not flights:
        raise NotFound("the site has no flights")
    if value is None:
        i = default if -len(flights) <= default < len(flights) else 0
        return i % len(flights), flights[i]
    for i, f in enumerate(flights):
        if f.name == value:
            return i, f
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    for i, f in enumerate(flights):
        if day is not None and f.flown_on == day:
            return i, f
    raise NotFound(f"no flight {value!r} (flights: {', '.join(f.name for f in flights[-10:])})")


def changes(store: Store, site: str, from_: str | None = None, to: str | None = None) -> dict[str, Any]:
    """What changed from one flight to a later one (default: the last two): each track as
    new, persistent, worsened, resolved or reappeared, with its growth, warnings and loss;
    totals of the estimated loss at both flights and the loss recovered by what was resolved."""
    st = _site(store, site)
    fl = st.flights
    j, f_to = _pick(fl, to, len(fl) - 1)
    i, f_from = _pick(fl, from_, j - 1 if j > 0 else 0) if from_ is not None or j > 0 else (j, f_to)
    if i > j:
        i, j, f_from, f_to = j, i, f_to, f_from
    between = [f.id for f in fl[i + 1 : j + 1]]
    names = {f.id: f.name for f in fl}
    cfg = load_history_config().worsened
    with store.session() as s:
        a = {o.track_id: o for o in s.execute(_obs_query(f_from.id))}
        c = {o.track_id: o for o in s.execute(_obs_query(f_to.id))}
        resolved_between: set[int] = set()
        for k in range(0, len(between), 500):
            q = select(TrackObservation.track_id).where(
                TrackObservation.flight_id.in_(between[k : k + 500]), TrackObservation.state == "resolved"
            )
            resolved_between.update(s.scalars(q))
        ids = sorted(set(a) | set(c))
    order = {f.id: n for n, f in enumerate(fl)}
    items: list[dict[str, Any]] = []
    not_covered = 0
    for tid in ids:
        oa, oc = a.get(tid), c.get(tid)
        t = oc if oc is not None else oa
        in_a = oa is not None and oa.state != "resolved"
        in_c = oc is not None and oc.state != "resolved"
        g = None
        if i == j:
            state = oc.state if oc is not None else "persistent"
        elif in_c and in_a:
            g = growth(_m(oa), _m(oc))
            state = "worsened" if is_worsened(g, cfg) else "persistent"
        elif in_c:
            state = "new" if order.get(t.first_flight_id, 0) > i else "reappeared"
        elif in_a and tid in resolved_between:
            state = "resolved"
        elif in_a:
            not_covered += 1  # seen before, not looked at since
            continue
        else:
            continue
        now = oc if in_c else oa
        assert now is not None
        items.append(
            {
                "track": tid,
                "state": state,
                "family": t.family,
                "class_name": now.class_name,
                "asset": t.asset,
                "latitude": now.latitude,
                "longitude": now.longitude,
                "priority": now.priority,
                "base_priority": now.base_priority,
                "warnings": (now.warnings or []) if in_c else [],
                "growth": g,
                "from": _obs_json(oa, names[f_from.id]) if in_a else None,
                "to": _obs_json(oc, names[f_to.id]) if in_c else None,
                "estimated_loss_w": now.loss_w if in_c else 0.0,
                "estimated_loss_kwh_year": now.loss_kwh_year if in_c else 0.0,
                "recovered_w": (oa.loss_w or 0.0) if state == "resolved" else 0.0,
                "recovered_kwh_year": (oa.loss_kwh_year or 0.0) if state == "resolved" else 0.0,
            }
        )
    rank = {"worsened": 0, "new": 1, "reappeared": 2, "resolved": 3, "persistent": 4}
    items.sort(key=lambda x: (rank[x["state"]], x["priority"] or "P9", x["track"]))
    counts = dict.fromkeys(("new", "persistent", "worsened", "resolved", "reappeared"), 0)
    for x in items:
        counts[x["state"]] += 1
    seen_a = [o for o in a.values() if o.state != "resolved"]
    seen_c = [o for o in c.values() if o.state != "resolved"]
    return {
        "site": site,
        "from": _flight_json(f_from),
        "to": _flight_json(f_to),
        "counts": {**counts, "not_covered": not_covered},
        "warnings": [
            {"track": x["track"], "class_name": x["class_name"], "priority": x["priority"], "warnings": x["warnings"]}
            for x in items
            if x["warnings"]
        ],
        "estimated_loss": {
            "from_w": total([o.loss_w for o in seen_a]),
            "from_kwh_year": total([o.loss_kwh_year for o in seen_a]),
            "to_w": total([o.loss_w for o in seen_c]),
            "to_kwh_year": total([o.loss_kwh_year for o in seen_c]),
            "recovered_w": total([x["recovered_w"] for x in items]),
            "recovered_kwh_year": total([x["recovered_kwh_year"] for x in items]),
            "note": ESTIMATE_NOTE,
        },
        "changes": items,
    }


OBS_COLUMNS = tuple(c for c in TrackObservation.__table__.columns if c.name != "id")


def _obs_query(flight_id: int) -> Any:
    """The observations of one flight as rows (no ORM objects: 5,000 of them are read per
    change list), with their track's family, asset and first flight."""
    return (
        select(*OBS_COLUMNS, Track.family, Track.asset, Track.first_flight_id)
        .join(Track, Track.id == TrackObservation.track_id)
        .where(TrackObservation.flight_id == flight_id)
    )


def _m(o: Any) -> dict[str, Any]:
    return {
        "area_frac": o.area_frac,
        "area_m2": o.area_m2,
        "delta_t_k": o.delta_t_k,
        "base_priority": o.base_priority,
    }


# ------------------------------------------------------------------------------ GIS exports
CHANGE_COLUMNS = (
    "site", "from_flight", "to_flight", "track", "state", "family", "class_name", "asset", "latitude", "longitude",
    "priority", "base_priority", "warnings", "area_growth_pct", "delta_t_rise_k", "from_delta_t_k", "to_delta_t_k",
    "from_area_m2", "to_area_m2", "image_sha256", "finding_index", "source", "estimated_loss_w",
    "estimated_loss_kwh_year", "recovered_w", "recovered_kwh_year",
)  # fmt: skip


def change_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per change (the CSV rows and the GeoJSON properties)."""
    rows = []
    for x in result["changes"]:
        g = x.get("growth") or {}
        fr, to = x.get("from") or {}, x.get("to") or {}
        ref = to or fr
        rows.append(
            {
                "site": result["site"],
                "from_flight": result["from"]["name"],
                "to_flight": result["to"]["name"],
                "track": x["track"],
                "state": x["state"],
                "family": x["family"],
                "class_name": x["class_name"],
                "asset": x["asset"],
                "latitude": x["latitude"],
                "longitude": x["longitude"],
                "priority": x["priority"],
                "base_priority": x["base_priority"],
                "warnings": "; ".join(w["reason"] for w in x["warnings"]),
                "area_growth_pct": None if g.get("area_growth_pct") is None else round(g["area_growth_pct"], 1),
                "delta_t_rise_k": None if g.get("delta_t_rise_k") is None else round(g["delta_t_rise_k"], 2),
                "from_delta_t_k": fr.get("delta_t_k"),
                "to_delta_t_k": to.get("delta_t_k"),
                "from_area_m2": fr.get("area_m2"),
                "to_area_m2": to.get("area_m2"),
                "image_sha256": ref.get("image_sha256"),
                "finding_index": ref.get("finding_index"),
                "source": ref.get("source"),
                "estimated_loss_w": x["estimated_loss_w"],
                "estimated_loss_kwh_year": x["estimated_loss_kwh_year"],
                "recovered_w": x["recovered_w"],
                "recovered_kwh_year": x["recovered_kwh_year"],
            }
        )
    return rows


def changes_geojson(result: dict[str, Any]) -> dict[str, Any]:
    feats = []
    for row in change_rows(result):
        geom = None
        if row["latitude"] is not None and row["longitude"] is not None:
            geom = {"type": "Point", "coordinates": [row["longitude"], row["latitude"]]}
        feats.append({"type": "Feature", "geometry": geom, "properties": row})
    return {
        "type": "FeatureCollection",
        "features": feats,
        "properties": {
            "site": result["site"],
            "from": result["from"],
            "to": result["to"],
            "counts": result["counts"],
            "estimated_loss": result["estimated_loss"],
        },
    }


def changes_csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CHANGE_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in change_rows(result):
        w.writerow(row)
    return buf.getvalue()
