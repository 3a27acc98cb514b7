"""Findings across flights at scale: a site with 100 flights x 5,000 findings.

    .venv/bin/python bench/history.py [--flights 100] [--findings 5000] [--no-postgres]

Two parts, on SQLite and (when the PostgreSQL server binaries are installed) on a private
PostgreSQL server started as the tests do (tests/pg_fixtures.py):

1. matching: two flights of ``--findings`` synthetic findings (500 images of 10 findings,
   positions moved by a GPS bias and noise between the flights, 2 % repaired, 2 % new)
   stored as results and recorded as flights; the time of ``match_site`` for the first
   flight and for the second against the tracks of the first (the work a completed flight
   costs the service);
2. the change list: the track tables of ``--flights`` flights x ``--findings`` findings
   written in bulk (each flight resolving 1 % and adding 1 % new), then the time of
   ``history.queries.changes`` for the last two flights and for the first against the last,
   of the flight list and of one page of open findings with their history. The target is a
   change list under one second.

Prints the command and the timings; writes build/bench/history.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from sqlalchemy import insert, select  # noqa: E402

from detector.geo import metres_per_degree  # noqa: E402
from detector.results import ImageResult  # noqa: E402
from history import queries  # noqa: E402
from history.tracker import match_site  # noqa: E402
from storage.archive import ArchiveIndex  # noqa: E402
from storage.database import database_url  # noqa: E402
from storage.flights import FlightLog  # noqa: E402
from storage.store import Store  # noqa: E402
from storage.tables import Flight, Site, Track, TrackObservation, utcnow  # noqa: E402

LAT0, LON0 = 15.68, 78.27
KEY = "bench@000000000000+00000000"


def _finding(i: int, lat: float, lon: float, dt: float) -> dict:
    return {
        "index": i, "class_id": 8, "class_name": "pv_hotspot", "asset": "pv", "confidence": 0.8,
        "box": {"x1": 10.0, "y1": 10.0, "x2": 30.0, "y2": 25.0}, "area_frac": 0.0009,
        "location": {"latitude": lat, "longitude": lon, "quality": "estimate"},
        "priority": "P3", "action": "repair", "time_frame": "90 days", "level": 2, "scale": "pv_coa", "reasons": [],
        "found_by": "model", "thermal": {"t_max_c": 60.0, "t_mean_c": 55.0, "t_ref_c": 45.0, "delta_t_k": dt,
                                          "reference": "module_ring", "pattern": "cell"},
    }  # fmt: skip


def synthetic_flight(xy: np.ndarray, tag: str, day: str, per_image: int = 10) -> list[ImageResult]:
    """Results of images of ``per_image`` findings each at the east/north positions ``xy`` (m)."""
    m_lat, m_lon = metres_per_degree(LAT0)
    out = []
    for k in range(0, len(xy), per_image):
        pts = xy[k : k + per_image]
        cx, cy = pts.mean(axis=0)
        lat = lambda y: LAT0 + y / m_lat  # noqa: E731
        lon = lambda x: LON0 + x / m_lon  # noqa: E731
        sha = hashlib.sha256(f"{tag}-{k}".encode()).hexdigest()
        payload = {
            "schema_version": 2, "status": "ok", "sha256": sha, "width": 640, "height": 512,
            "camera": {"latitude": lat(cy), "longitude": lon(cx), "taken_at": f"{day} 12:00:00"},
            "geo": {"quality": "estimate", "gsd_m": 0.05},
            "findings": [_finding(i, lat(p[1]), lon(p[0]), 8.0) for i, p in enumerate(pts)],
        }  # fmt: skip
        out.append(ImageResult.from_payload(payload, source=f"{tag}/img{k:06d}.jpg"))
    return out


def bench_matching(url: str, n: int) -> dict:
    rng = np.random.default_rng(1)
    side = math.sqrt(n) * 4.0  # findings ~4 m apart: a dense plant
    xy1 = rng.uniform(0, side, (n, 2))
    keep = rng.random(n) > 0.02
    xy2 = np.concatenate([xy1[keep], rng.uniform(0, side, (n - int(keep.sum()), 2))])
    xy2 = xy2 + np.array([2.0, -1.5]) + rng.normal(0, 0.3, xy2.shape)
    store = Store.from_url(url)
    index, log = ArchiveIndex(store), FlightLog(store)
    out = {}
    for name, xy, day in (("F1", xy1, "2026:05:01"), ("F2", xy2, "2026:11:01")):
        rs = synthetic_flight(xy, name, day)
        index.write([], rs, KEY)
        log.record("bench", name, [(r.sha256, r.source) for r in rs], KEY, complete=True)
        t = time.perf_counter()
        rep = match_site(store, "bench")
        out[f"match_{name}_s"] = round(time.perf_counter() - t, 3)
        out[f"states_{name}"] = rep.states
    store.close()
    return out


def bulk_site(url: str, n_flights: int, n: int) -> Store:
    """The track tables of a site with ``n_flights`` x ``n`` findings, written directly."""
    rng = np.random.default_rng(2)
    store = Store.from_url(url)
    with store.session() as s, s.begin():
        site = Site(name="big", created_at=utcnow())
        s.add(site)
        s.flush()
        flights = [
            Flight(site_id=site.id, name=f"F{k:03d}", flown_on=date(2020, 1, 1) + timedelta(days=30 * k),
                   date_source="images", status="complete", model_version=KEY, matched_at=utcnow(),
                   offset_east_m=0.0, offset_north_m=0.0, created_at=utcnow())
            for k in range(n_flights)
        ]  # fmt: skip
        s.add_all(flights)
        s.flush()
        fids = [f.id for f in flights]
    churn = max(1, n // 100)
    open_tracks: list[int] = []
    next_track = 1
    with store.session() as s:
        base = int(s.scalar(select(Track.id).order_by(Track.id.desc()).limit(1)) or 0)
    next_track = base + 1
    for k, fid in enumerate(fids):
        rows, tracks = [], []
        resolved = set(rng.choice(len(open_tracks), churn, replace=False)) if k and open_tracks else set()
        still = []
        for j, tid in enumerate(open_tracks):
            state = "resolved" if j in resolved else "persistent"
            rows.append(_obs(tid, fid, state, rng))
            if state != "resolved":
                still.append(tid)
        new = n - len(still)
        for _ in range(new):
            tracks.append({"id": next_track, "site_id": 1, "family": "pv_thermal", "class_name": "pv_hotspot",
                           "asset": "pv", "first_flight_id": fid, "last_flight_id": fid, "state": "new",
                           "is_open": True, "latitude": LAT0 + rng.random() * 0.003,
                           "longitude": LON0 + rng.random() * 0.003, "seen": 1, "priority": "P3",
                           "warnings": None})  # fmt: skip
            rows.append(_obs(next_track, fid, "new", rng))
            still.append(next_track)
            next_track += 1
        open_tracks = still
        with store.session() as s, s.begin():
            if tracks:
                s.execute(insert(Track), tracks)
            s.execute(insert(TrackObservation), rows)
    with store.session() as s, s.begin():  # the tracks' summary after the last flight
        s.execute(Track.__table__.update().values(last_flight_id=fids[-1], state="persistent"))
    return store


def _obs(tid: int, fid: int, state: str, rng: np.random.Generator) -> dict:
    dt = float(rng.uniform(4, 20))
    return {
        "track_id": tid, "flight_id": fid, "state": state, "image_sha256": None if state == "resolved" else "0" * 64,
        "model_version": KEY, "finding_index": 0, "source": None, "class_name": "pv_hotspot",
        "latitude": LAT0 + rng.random() * 0.003, "longitude": LON0 + rng.random() * 0.003, "distance_m": 0.5,
        "area_frac": 0.001, "area_m2": 0.3, "length_m": 0.7, "delta_t_k": dt, "base_priority": "P3",
        "priority": "P3", "warnings": None, "loss_w": 8.0 + dt * 0.4, "loss_kwh_year": 12.0, "loss": None,
    }  # fmt: skip


def timed(fn, repeat: int = 3) -> float:  # noqa: ANN001
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return round(best, 3)


def bench_queries(url: str, n_flights: int, n: int) -> dict:
    t = time.perf_counter()
    store = bulk_site(url, n_flights, n)
    out: dict = {"write_s": round(time.perf_counter() - t, 1)}
    with store.session() as s:
        out["observations"] = s.query(TrackObservation).count()
    last = queries.changes(store, "big")
    out["changes_last_two"] = last["counts"]
    out["changes_last_two_s"] = timed(lambda: queries.changes(store, "big"))
    out["changes_last_two_json_s"] = timed(lambda: json.dumps(queries.changes(store, "big")))
    out["changes_first_last_s"] = timed(lambda: queries.changes(store, "big", "F000", f"F{n_flights - 1:03d}"))
    out["changes_csv_s"] = timed(lambda: queries.changes_csv(queries.changes(store, "big")))
    out["flights_s"] = timed(lambda: queries.list_flights(store, "big"))
    out["open_findings_page_s"] = timed(lambda: queries.list_findings(store, "big", limit=500))
    store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flights", type=int, default=100)
    ap.add_argument("--findings", type=int, default=5000)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    report: dict = {
        "flights": args.flights,
        "findings": args.findings,
        "machine": platform.processor() or platform.machine(),
    }
    backends: list[tuple[str, object]] = []
    tmp = Path(tempfile.mkdtemp(prefix="pvwind-bench-history-"))
    backends.append(("sqlite", lambda name: database_url(str(tmp / f"{name}.db"))))
    pg = None
    if not args.no_postgres:
        try:
            import pg_fixtures

            pg = pg_fixtures.postgres_url._get_wrapped_function()()
            server = next(pg)
            backends.append(("postgresql", lambda name: pg_fixtures.fresh_database(server, prefix=name)))
        except BaseException as e:  # noqa: BLE001 - pytest.skip when the binaries are missing
            print(f"postgresql: skipped ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    try:
        for name, make in backends:
            print(f"\n== {name}")
            m = bench_matching(make("match"), args.findings)
            print(f"match flight 1 ({args.findings} findings, all new): {m['match_F1_s']:.2f} s {m['states_F1']}")
            print(f"match flight 2 against {args.findings} tracks: {m['match_F2_s']:.2f} s {m['states_F2']}")
            q = bench_queries(make("big"), args.flights, args.findings)
            print(f"{args.flights} flights x {args.findings} findings: {q['observations']} observations "
                  f"written in {q['write_s']} s")  # fmt: skip
            for k in ("changes_last_two_s", "changes_last_two_json_s", "changes_first_last_s", "changes_csv_s",
                      "flights_s", "open_findings_page_s"):  # fmt: skip
                print(f"  {k[:-2]:<24} {q[k]:.3f} s")
            report[name] = {**m, **q}
    finally:
        if pg is not None:
            try:
                next(pg)
            except StopIteration:
                pass
    out = REPO / "build" / "bench" / "history.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
