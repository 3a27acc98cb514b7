"""Findings across flights (history/): three flights of one PV site made from real DJI XT2
thermal frames of the mirror.

Flight 1 is the 13 frames as they are. Flights 2 and 3 are the same frames re-flown: their
bytes with the EXIF GPS position moved by a flight-wide GPS bias (a few metres) plus a
per-image jitter, and the capture date moved on by six and twelve months, scored by the
real detector. Then what happened on the plant: in flight 2 one hotspot was repaired (its
finding removed) and a bypass-diode fault appeared (a finding added where the model found
nothing); in flight 3 one hotspot grew (box 1.4 x 1.4, ΔT + 5.5 K). The tracks, states,
early warnings and loss totals must be exactly what that implies, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from detector_fixtures import XT2_FRAMES, model_dir, need_xt2
from pg_fixtures import fresh_database, postgres_url  # noqa: F401 - postgres_url is a fixture

from detector.geo import CameraPose, locate_points, metres_per_degree
from detector.results import ImageResult
from history import queries
from history.config import load_history_config, load_sites_config
from history.loss import estimate
from history.match import assign, estimate_offset
from history.rules import early_warning
from history.tracker import match_site
from storage.archive import ArchiveIndex
from storage.database import database_url
from storage.flights import FlightLog
from storage.store import Store

SITE = "plant-a"
BIAS = {2: (2.5, -1.5), 3: (-2.0, 3.0)}  # flight -> GPS bias (north, east) metres
DATES = {1: None, 2: b"2019:08:0", 3: b"2020:02:0"}  # the capture date's first 9 characters


# ------------------------------------------------------------------------------ re-flown frames
def _exif_segment(data: bytes) -> tuple[int, int]:
    """(start, end) of the TIFF data of the EXIF APP1 segment."""
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\0\0":
            return i + 10, i + 2 + length
        i += 2 + length
    raise ValueError("no EXIF segment")


def reflown(data: bytes, north_m: float, east_m: float, date9: bytes | None) -> bytes:
    """The frame with its EXIF GPS position moved (metres) and its capture date changed,
    everything else byte for byte."""
    start, end = _exif_segment(data)
    buf = bytearray(data)
    tiff = memoryview(buf)[start:end]
    bo = "<" if bytes(tiff[:2]) == b"II" else ">"
    u16 = lambda o: struct.unpack(bo + "H", tiff[o : o + 2])[0]  # noqa: E731
    u32 = lambda o: struct.unpack(bo + "I", tiff[o : o + 4])[0]  # noqa: E731

    def entries(ifd: int) -> dict[int, int]:
        return {u16(ifd + 2 + 12 * k): ifd + 2 + 12 * k for k in range(u16(ifd))}

    gps = entries(u32(entries(u32(4))[0x8825] + 8))

    def read(tag: int) -> float:
        off = u32(gps[tag] + 8)
        d, m, s = ((u32(off + 8 * k) / u32(off + 8 * k + 4)) for k in range(3))
        return d + m / 60 + s / 3600

    def write(tag: int, value: float) -> None:
        off = u32(gps[tag] + 8)
        d = int(value)
        m = int((value - d) * 60)
        s = (value - d - m / 60) * 3600
        for k, (num, den) in enumerate(((d, 1), (m, 1), (round(s * 1_000_000), 1_000_000))):
            struct.pack_into(bo + "II", tiff, off + 8 * k, num, den)

    lat, lon = read(2), read(4)  # N / E in these frames
    m_lat, m_lon = metres_per_degree(lat)
    write(2, lat + north_m / m_lat)
    write(4, lon + east_m / m_lon)
    out = bytes(buf)
    if date9 is not None:
        seg = out[start:end]
        for old in (b"2019:02:0",):
            seg = seg.replace(old, date9)
        out = out[:start] + seg + out[end:]
    return out


def _edit(result: ImageResult, findings: list[dict]) -> ImageResult:
    p = result.payload()
    p["findings"] = [{**f, "index": i} for i, f in enumerate(findings)]
    return ImageResult.from_payload(p, source=result.source)


def _added_diode_fault(result: ImageResult, template: dict) -> dict:
    """A bypass-diode fault (a heated substring) on a frame where the model found nothing,
    located on the ground by the detector's own geometry."""
    x1, y1, x2, y2 = 300.0, 200.0, 330.0, 290.0
    pose = CameraPose(**result.camera.to_dict()) if not isinstance(result.camera, CameraPose) else result.camera
    geo = locate_points(pose, np.array([[(x1 + x2) / 2, (y1 + y2) / 2]]), (result.height, result.width))
    f = copy.deepcopy(template)
    f.update(
        class_id=9,
        class_name="pv_diode_fault",
        confidence=0.9,
        box={"x1": x1, "y1": y1, "x2": x2, "y2": y2},
        area_frac=round((x2 - x1) * (y2 - y1) / (result.width * result.height), 6),
        location={"latitude": float(geo.latitude[0]), "longitude": float(geo.longitude[0]), "quality": "estimate"},
        found_by="model",
        priority="P3",
    )
    f["thermal"] = {**(f.get("thermal") or {}), "delta_t_k": 8.0, "pattern": "substring"}
    return f


@pytest.fixture(scope="module")
def flights(tmp_path_factory) -> dict:
    """Three flights of scored results (ImageResult lists) and what was done to them."""
    need_xt2()
    from detector import Detector

    det = Detector(model_dir(), threads=2)
    tmp = tmp_path_factory.mktemp("flights")
    paths: dict[int, list[Path]] = {1: list(XT2_FRAMES)}
    for n in (2, 3):
        folder = tmp / SITE / f"F{n}"
        folder.mkdir(parents=True)
        paths[n] = []
        for k, src in enumerate(XT2_FRAMES):
            jitter = 0.3 * math.sin(k * 1.7 + n), 0.3 * math.cos(k * 2.3 + n)  # per-image GPS noise, metres
            north, east = BIAS[n][0] + jitter[0], BIAS[n][1] + jitter[1]
            dst = folder / src.name
            dst.write_bytes(reflown(src.read_bytes(), north, east, DATES[n]))
            paths[n].append(dst)
    scored = {n: det.inspect(paths[n]) for n in (1, 2, 3)}
    key = det.model_key
    # the scenario's findings: a P2 hotspot (grows in flight 3); the only finding of another
    # frame (repaired in flight 2); a frame without findings (a diode fault appears there in flight 2)
    base = scored[1]
    pv = [[f for f in r.findings if f.asset == "pv"] for r in base]
    grown_img, grown_idx = next(
        (i, f.index)
        for i, fs in enumerate(pv)
        for f in fs
        if f.priority == "P2" and f.thermal and f.thermal.delta_t_k < 20
    )
    removed_img = next(i for i, fs in enumerate(pv) if i != grown_img and len(fs) == 1 and len(base[i].findings) == 1)
    empty_img = next(i for i, r in enumerate(base) if not r.findings and r.camera and r.camera.latitude)
    out = {n: list(rs) for n, rs in scored.items()}
    for n in (2, 3):
        r = out[n][removed_img]
        out[n][removed_img] = _edit(r, [])
        r = out[n][empty_img]
        template = base[grown_img].findings[grown_idx].model_dump(mode="json")
        out[n][empty_img] = _edit(r, [_added_diode_fault(r, template)])
    r = out[3][grown_img]
    fs = [f.model_dump(mode="json") for f in r.findings]
    g = fs[grown_idx]
    cx, cy = (g["box"]["x1"] + g["box"]["x2"]) / 2, (g["box"]["y1"] + g["box"]["y2"]) / 2
    w, h = (g["box"]["x2"] - g["box"]["x1"]) * 1.4, (g["box"]["y2"] - g["box"]["y1"]) * 1.4
    g["box"] = {"x1": cx - w / 2, "y1": cy - h / 2, "x2": cx + w / 2, "y2": cy + h / 2}
    g["area_frac"] = g["area_frac"] * 1.96
    g["thermal"]["delta_t_k"] = round(g["thermal"]["delta_t_k"] + 5.5, 1)
    out[3][grown_img] = _edit(r, fs)
    return {
        "results": out,
        "key": key,
        "removed": (removed_img, 0),
        "grown": (grown_img, grown_idx),
        "empty": empty_img,
        "n_pv": sum(len(fs) for fs in pv),
    }


def sites_file(tmp: Path) -> Path:
    p = tmp / "sites.yaml"
    p.write_text(
        "default: {module_power_wp: 400, module_size_m: [1.7, 1.0], bypass_diodes: 3, modules_per_string: 20,\n"
        "          specific_yield_kwh_per_kwp: 1500, rtk: false, asset: auto}\n"
        f"sites:\n  {SITE}: {{asset: pv}}\n"
    )
    return p


def record(store: Store, flights: dict, sites_path: Path) -> list:
    """Store each flight's results, record it as a flight of the site, match after each."""
    reports = []
    index, log = ArchiveIndex(store), FlightLog(store)
    for n in (1, 2, 3):
        rs = flights["results"][n]
        index.write([], rs, flights["key"])
        log.record(SITE, f"F{n}", [(r.sha256, Path(r.source).name) for r in rs], flights["key"], complete=True)
        reports.append(match_site(store, SITE, sites=load_sites_config(sites_path)))
    return reports


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = Store.from_url(database_url(str(tmp_path / "results.db")))
    else:
        s = Store.from_url(fresh_database(request.getfixturevalue("postgres_url")))
    yield s
    s.close()


# ------------------------------------------------------------------------------ the scenario
def test_three_flights_give_exactly_the_tracks_states_warnings_and_losses(flights, store, tmp_path):
    sites = sites_file(tmp_path)
    reports = record(store, flights, sites)
    n = flights["n_pv"]
    assert [r.flights for r in reports] == [["F1"], ["F2"], ["F3"]]
    assert reports[0].states == {"new": n}
    assert reports[1].states == {"persistent": n - 1, "resolved": 1, "new": 1}
    assert reports[2].states == {"persistent": n - 1, "worsened": 1}  # the diode fault persists, one grew

    fl = queries.list_flights(store, SITE)["flights"]
    assert [f["name"] for f in fl] == ["F1", "F2", "F3"]
    assert [f["date"] for f in fl] == ["2019-02-06", "2019-08-06", "2020-02-06"]  # from the capture time
    assert all(f["date_source"] == "images" for f in fl)
    # the GPS bias of each flight is found and removed (within the per-image jitter)
    for f, k in zip(fl[1:], (2, 3), strict=True):
        assert f["offset_m"]["north"] == pytest.approx(BIAS[k][0], abs=0.35)
        assert f["offset_m"]["east"] == pytest.approx(BIAS[k][1], abs=0.35)

    tracks = queries.list_findings(store, SITE, status="all")["findings"]
    assert len(tracks) == n + 1
    by_src = {}
    for t in tracks:
        first = t["history"][0]
        by_src[(first["source"], first["finding_index"], first["class_name"])] = t
    names = [Path(p).name for p in XT2_FRAMES]
    removed = next(t for t in tracks if t["history"][0]["source"] == names[flights["removed"][0]])
    grown = by_src[next(k for k in by_src if k[0] == names[flights["grown"][0]] and k[1] == flights["grown"][1])]
    added = next(t for t in tracks if t["class_name"] == "pv_diode_fault")
    # states per flight
    assert [h["state"] for h in removed["history"]] == ["new", "resolved"] and not removed["open"]
    assert [h["state"] for h in grown["history"]] == ["new", "persistent", "worsened"]
    assert [h["state"] for h in added["history"]] == ["new", "persistent"] and added["first_flight"] == "F2"
    others = [t for t in tracks if t["track"] not in (removed["track"], grown["track"], added["track"])]
    assert len(others) == n - 2
    assert all([h["state"] for h in t["history"]] == ["new", "persistent", "persistent"] for t in others)
    # matched despite the bias: every re-observation within a metre of the track
    assert all(h["distance_m"] < 1.0 for t in tracks for h in t["history"][1:] if h["distance_m"] is not None)
    # the early warning: the grown hotspot, P2 by its ΔT (< 20 K), raised to P1 with the reason
    g3 = grown["history"][-1]
    assert g3["base_priority"] == "P2" and g3["priority"] == "P1" and grown["priority"] == "P1"
    assert [w["rule"] for w in g3["warnings"]] == ["hotspot_heating"]
    assert g3["warnings"][0]["reason"] == "ΔT rose by 5.5 K since F1"
    assert g3["area_frac"] == pytest.approx(grown["history"][0]["area_frac"] * 1.96, rel=1e-3)
    assert not any(h["warnings"] for t in others + [added, removed] for h in t["history"])
    # the estimated loss: per finding from its pattern / class and the site's plant data
    plant = load_sites_config(sites).plant(SITE)[0]
    assert added["history"][1]["estimated_loss_w"] == pytest.approx(400 / 3, abs=1e-3)  # 1 of 3 substrings
    assert added["history"][1]["loss_inputs"]["estimate"] is True
    assert added["history"][1]["estimated_loss_kwh_year"] == pytest.approx(400 / 3 * 1.5, abs=1e-3)
    loss1 = {t["track"]: t["history"][0]["estimated_loss_w"] for t in tracks if t["first_flight"] == "F1"}
    r_loss = loss1[removed["track"]]
    rem = removed["history"][0]
    dt = rem["delta_t_k"]
    cfg = load_history_config().loss
    expected = estimate("pv_hotspot", None if rem["loss_inputs"]["basis"].startswith("class") else "x", dt,
                        rem["area_m2"], plant, "", cfg)  # fmt: skip
    if rem["loss_inputs"]["basis"] == "class pv_hotspot":
        assert r_loss == pytest.approx(expected.loss_w, abs=1e-3)
    f1, f2, f3 = (f["loss_w"] for f in fl)
    assert f1 == pytest.approx(sum(loss1.values()), abs=1e-2)
    assert f2 == pytest.approx(f1 - r_loss + 400 / 3, abs=1e-2)
    # flight 3 differs from flight 2 only by the grown hotspot: its loss (a ΔT-dependent fraction for a
    # cell hotspot, one module for a module pattern) accounts for the whole change
    grown_loss = [h["estimated_loss_w"] for h in grown["history"]]
    assert f3 == pytest.approx(f2 + grown_loss[-1] - grown_loss[-2], abs=1e-2)
    assert grown_loss[-1] >= grown_loss[-2]
    assert [f["recovered_w"] for f in fl] == [0.0, pytest.approx(r_loss, abs=1e-3), 0.0]
    assert fl[1]["recovered_kwh_year"] == pytest.approx(r_loss * 1.5, abs=1e-2)

    # the change list between the last two flights, and across all three
    c = queries.changes(store, SITE)
    assert (c["from"]["name"], c["to"]["name"]) == ("F2", "F3")
    assert c["counts"] == {"new": 0, "persistent": n - 1, "worsened": 1, "resolved": 0, "reappeared": 0,
                           "not_covered": 0}  # fmt: skip
    assert c["changes"][0]["track"] == grown["track"] and c["changes"][0]["state"] == "worsened"
    assert c["warnings"] == [{"track": grown["track"], "class_name": "pv_hotspot", "priority": "P1",
                              "warnings": g3["warnings"]}]  # fmt: skip
    c13 = queries.changes(store, SITE, "F1", "2020-02-06")
    assert c13["counts"] == {"new": 1, "persistent": n - 2, "worsened": 1, "resolved": 1, "reappeared": 0,
                             "not_covered": 0}  # fmt: skip
    assert c13["estimated_loss"]["recovered_w"] == pytest.approx(r_loss, abs=1e-3)
    assert c13["estimated_loss"]["to_w"] == pytest.approx(f3, abs=1e-2)
    gj = queries.changes_geojson(c13)
    assert len(gj["features"]) == n + 1 and all(f["geometry"]["type"] == "Point" for f in gj["features"])
    rows = list(csv.DictReader(io.StringIO(queries.changes_csv(c13))))
    assert sorted(r["state"] for r in rows) == sorted(["new", "worsened", "resolved"] + ["persistent"] * (n - 2))
    # matching again changes nothing; a rebuild from the first flight gives the same
    assert match_site(store, SITE).flights == []

    def norm(fs: list[dict]) -> list[str]:
        return sorted(json.dumps({k: v for k, v in t.items() if k != "track"}, sort_keys=True) for t in fs)

    before = norm(queries.list_findings(store, SITE, status="all")["findings"])
    match_site(store, SITE, sites=load_sites_config(sites), rematch=True)
    assert norm(queries.list_findings(store, SITE, status="all")["findings"]) == before


def test_a_flight_recorded_late_rebuilds_the_later_ones(flights, tmp_path):
    """Flights recorded out of order (F3 before F2) end up matched in date order."""
    store = Store.from_url(database_url(str(tmp_path / "r.db")))
    sites = load_sites_config(sites_file(tmp_path))
    index, log = ArchiveIndex(store), FlightLog(store)
    for n in (1, 3, 2):
        rs = flights["results"][n]
        index.write([], rs, flights["key"])
        log.record(SITE, f"F{n}", [(r.sha256, None) for r in rs], flights["key"], complete=True)
        match_site(store, SITE, sites=sites)
    fl = queries.list_flights(store, SITE)["flights"]
    assert [f["name"] for f in fl] == ["F1", "F2", "F3"]
    assert [f["states"]["resolved"] for f in fl] == [0, 1, 0]
    assert fl[2]["states"]["worsened"] == 1 and fl[1]["states"]["new"] == 1
    store.close()


# ------------------------------------------------------------------------------ API and CLI
def test_api_lists_flights_findings_and_changes(flights, tmp_path):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from fastapi.testclient import TestClient

    from serving.errors import ApiError
    from serving.routers import sites as sites_router

    store = Store.from_url(database_url(str(tmp_path / "api.db")))
    record(store, flights, sites_file(tmp_path))
    app = FastAPI()
    app.state.services = SimpleNamespace(store=store, keys=SimpleNamespace(enabled=True, check=lambda k: k == "k1"))
    app.include_router(sites_router.router)
    app.add_exception_handler(
        ApiError, lambda _req, e: JSONResponse({"detail": e.message, "code": e.code}, status_code=e.status)
    )
    client = TestClient(app)
    h = {"X-API-Key": "k1"}
    assert client.get("/v1/sites", headers={"X-API-Key": "nope"}).status_code == 401
    r = client.get("/v1/sites", headers=h).json()["sites"]
    assert r[0]["site"] == SITE and r[0]["flights"] == 3 and r[0]["warnings"] == 1
    fl = client.get(f"/v1/sites/{SITE}/flights", headers=h).json()
    assert [f["states"]["resolved"] for f in fl["flights"]] == [0, 1, 0]
    op = client.get(f"/v1/sites/{SITE}/findings", params={"status": "open"}, headers=h).json()
    assert op["total"] == flights["n_pv"] and all(t["open"] for t in op["findings"])
    assert op["findings"][0]["priority"] == "P1" and len(op["findings"][0]["history"]) >= 1
    ch = client.get(f"/v1/sites/{SITE}/changes", params={"from": "F1", "to": "F3"}, headers=h)
    assert ch.json()["counts"]["resolved"] == 1
    gj = client.get(f"/v1/sites/{SITE}/changes", params={"format": "geojson"}, headers=h)
    assert gj.headers["content-type"].startswith("application/geo+json") and gj.json()["type"] == "FeatureCollection"
    cs = client.get(f"/v1/sites/{SITE}/changes", params={"format": "csv"}, headers=h)
    assert cs.text.splitlines()[0].startswith("site,from_flight,to_flight,track,state")
    assert client.get("/v1/sites/nowhere/flights", headers=h).status_code == 404
    assert client.get(f"/v1/sites/{SITE}/changes", params={"to": "F9"}, headers=h).status_code == 404
    assert client.post(f"/v1/sites/{SITE}/match", headers=h).json()["matched"] == []
    store.close()


def test_inspect_out_db_records_flights_and_history_reports_them(tmp_path, capsys):
    """``pvwind inspect --site --flight --out-db`` then ``pvwind history`` (real frames)."""
    need_xt2()
    from pvwind.cli import COMMANDS, main

    COMMANDS.setdefault("history", ("pvwind.commands.history", "serve", "findings across flights"))
    db = tmp_path / "h.db"
    frames = [str(p) for p in XT2_FRAMES[:6]]
    assert main(["inspect", *frames, "--out", str(tmp_path / "o1"), "--site", "s1", "--flight", "may",
                 "--out-db", str(db), "--no-annotate", "--quiet", "--model", str(model_dir())]) == 0  # fmt: skip
    assert main(["inspect", *frames[:4], "--out", str(tmp_path / "o2"), "--site", "s1", "--flight", "june",
                 "--flight-date", "2030-06-01", "--out-db", str(db), "--no-annotate", "--quiet",
                 "--model", str(model_dir())]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["history", "s1", "--db", str(db), "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["from"]["name"], res["to"]["name"]) == ("may", "june")
    assert res["to"]["date"] == "2030-06-01" and res["to"]["date_source"] == "given"
    assert res["counts"]["new"] == 0 and res["counts"]["worsened"] == 0  # the same frames again
    assert main(["history", "--db", str(db), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["site"] == "s1"
    assert main(["history", "s2", "--db", str(db)]) == 2
    assert "no site 's2'" in capsys.readouterr().err
    assert main(["inspect", frames[0], "--out", str(tmp_path / "o3"), "--out-db", str(db), "--quiet"]) == 2
    assert "give --site" in capsys.readouterr().err


# ------------------------------------------------------------------------------ units
def test_assignment_is_one_to_one_and_tolerates_a_gps_bias():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 200, (300, 2))
    fam = ["a"] * 150 + ["b"] * 150
    o = t + np.array([2.8, -2.1]) + rng.normal(0, 0.15, t.shape)  # bias beyond the 3 m gate
    off, pairs = estimate_offset(t, fam, o, fam, search_m=10, gate_m=3, min_pairs=3)
    assert off == pytest.approx([2.8, -2.1], abs=0.1) and pairs > 250
    got = assign(t, fam, fam, o - off, fam, fam, np.full(len(o), 3.0))
    assert sorted((i, j) for i, j, _ in got) == [(i, i) for i in range(300)]
    # no match across families, nor beyond the gate
    assert assign(t[:1], ["a"], ["a"], t[:1], ["b"], ["b"], np.array([3.0])) == []
    assert assign(t[:1], ["a"], ["a"], t[:1] + 3.5, ["a"], ["a"], np.array([3.0])) == []
    # two tracks close together, two findings: the pairing that minimises the total distance
    two = np.array([[0.0, 0.0], [0.8, 0.0]])
    got = assign(two, ["a", "a"], ["a", "a"], two + [0.5, 0.0], ["a", "a"], ["a", "a"], np.array([3.0, 3.0]))
    assert [(i, j) for i, j, _ in got] == [(0, 0), (1, 1)]


def test_loss_fractions_follow_the_config():
    cfg = load_history_config().loss
    plant = load_sites_config().default
    sub = estimate("pv_hotspot", "substring", 12.0, None, plant, "x", cfg)
    assert sub.loss_w == pytest.approx(plant.module_power_wp / plant.bypass_diodes, abs=1e-3)
    assert sub.loss_kwh_year == pytest.approx(sub.loss_w / 1000 * plant.specific_yield_kwh_per_kwp, abs=1e-3)
    mod = estimate("pv_hotspot", "module", 30.0, None, plant, "x", cfg)
    assert mod.loss_w == plant.module_power_wp
    string = estimate("pv_hotspot", "string", 30.0, None, plant, "x", cfg)
    assert string.loss_w == plant.module_power_wp * plant.modules_per_string
    cell = estimate("pv_hotspot", "cell", 10.0, None, plant, "x", cfg)
    assert cell.detail["fraction"] == pytest.approx(0.02 + 0.001 * 10)
    assert estimate("pv_hotspot", None, 500.0, None, plant, "x", cfg).detail["fraction"] == 0.10  # capped
    area = plant.module_size_m[0] * plant.module_size_m[1]
    soil = estimate("pv_soiling", None, None, area / 4, plant, "x", cfg, irradiance_w_m2=800)
    assert soil.detail["fraction"] == pytest.approx(0.25, abs=1e-4)
    assert soil.detail["loss_w_at_flight"] == pytest.approx(soil.loss_w * 0.8, abs=0.01)
    assert estimate("pv_soiling", None, None, None, plant, "x", cfg).detail["fraction"] == 0.05
    assert estimate("blade_damage", None, None, 1.0, plant, "x", cfg) is None


def test_early_warning_rules():
    cfg = load_history_config().early_warning

    def m(**kw: object) -> dict:
        return {"area_frac": 0.01, "area_m2": None, "delta_t_k": None, "base_priority": "P3", "flight": "F1", **kw}

    ctx = {"family": "blade_damage", "class_name": "blade_damage", "asset": "wind", "state": "persistent", "seen": 2}
    grew = early_warning({**ctx, "current": m(area_frac=0.0131), "first": m(), "previous": m()}, cfg)
    assert grew[0] == "P2" and grew[1][0]["reason"] == "grew by 31 % since F1"
    assert early_warning({**ctx, "current": m(area_frac=0.0129), "first": m(), "previous": m()}, cfg)[0] == "P3"
    three = {**ctx, "family": "pv_surface", "class_name": "pv_soiling", "seen": 3, "current": m(), "first": m(),
             "previous": m()}  # fmt: skip
    assert early_warning(three, cfg)[0] == "P2"
    assert early_warning({**three, "seen": 2}, cfg)[0] == "P3"
    # sticky: a raised priority stays raised while the track is open
    kept = early_warning({**three, "seen": 2, "kept": ("P2", [{"rule": "x", "reason": "r", "raise": 1}])}, cfg)
    assert kept[0] == "P2" and kept[1][0]["rule"] == "x"


def test_rescore_records_site_and_flight_folders(tmp_path, capsys):
    """``pvwind rescore`` on SITE/FLIGHT/ folders: the flights of the site, matched."""
    need_xt2()
    from pvwind.cli import main

    for n, (north, east) in ((1, (0.0, 0.0)), (2, BIAS[2])):
        folder = tmp_path / "archive" / "plant-b" / f"2019-0{n}"
        folder.mkdir(parents=True)
        for src in XT2_FRAMES[:4]:
            (folder / src.name).write_bytes(reflown(src.read_bytes(), north, east, None))
    db = tmp_path / "r.db"
    args = ["rescore", str(tmp_path / "archive"), "--out", str(db), "--workers", "1", "--no-export", "--quiet"]
    assert main([*args, "--model", str(model_dir())]) == 0
    store = Store.from_url(database_url(str(db)))
    fl = FlightLog(store).flights("plant-b")
    assert [(f.name, f.status, f.matched) for f in fl] == [("2019-01", "complete", True), ("2019-02", "complete", True)]
    c = queries.changes(store, "plant-b")
    assert c["counts"]["new"] == 0 and c["counts"]["resolved"] == 0 and c["counts"]["persistent"] > 0
    assert c["to"]["offset_m"] is not None  # too few findings here for a bias estimate: 2.9 m is within the gate
    store.close()


def test_a_job_with_a_site_is_a_flight_matched_when_it_finishes(flights, tmp_path):
    """``Store.create_job`` records the job's images as a flight; the runner's end of a job
    completes it and matches the site (serving/runner.py)."""
    from serving.runner import JobRunner
    from storage.store import NewItem, ScoredResult

    store = Store.from_url(database_url(str(tmp_path / "jobs.db")))
    ArchiveIndex(store).write([], flights["results"][1], flights["key"])  # the images are stored
    items = [NewItem(Path(r.source).name, image_sha256=r.sha256) for r in flights["results"][1]]
    items.append(NewItem("bad.jpg", error_code="bad_image", error_status=422, error_message="x"))
    job = store.create_job(items, model_version=flights["key"], asset_type="pv", site=" plant  c ", flight="may")
    store.create_job(items[:2], model_version=flights["key"], asset_type="pv", site="plant c", flight=None)
    store.create_job(items[:2], model_version=flights["key"], asset_type="pv", site=None, flight="x")
    log = FlightLog(store)
    assert log.sites() == ["plant c"]
    fl = {f.name: f for f in log.flights("plant c")}
    assert set(fl) == {"may"} | {n for n in fl if n.startswith("job-")} and len(fl) == 2
    assert fl["may"].status == "open" and log.image_counts([fl["may"].id])[fl["may"].id] == (13, 13)
    owner = "t"
    assert store.claim_job(owner, 60) == job.id
    outcomes = [(i, ScoredResult(items[i].image_sha256, r)) for i, r in enumerate(flights["results"][1])]
    store.complete_items(job.id, owner, 60, flights["key"], outcomes)
    assert store.finish_job(job.id, owner)
    runner = JobRunner(store, None, None, None, None)  # type: ignore[arg-type]
    runner._flight_done(job.id)
    may = {f.name: f for f in log.flights("plant c")}["may"]
    assert may.status == "complete" and may.matched
    assert queries.list_flights(store, "plant c ")["flights"][0]["findings"] > 0
    store.close()
