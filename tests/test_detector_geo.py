"""detector.geo: GPS/XMP reading and per-defect latitude/longitude, checked against independent answers.

The expected positions are worked out here with plain trigonometry on the image
geometry and the spherical "destination point" formula, not with detector.geo's
own code (which uses a ray-plane intersection and WGS84 metres-per-degree).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from detector_fixtures import MIRROR, XT2_FRAMES, need_xt2
from PIL import Image

from detector.decode import decode_image, read_metadata
from detector.geo import dms_to_degrees, haversine_m, locate_points, parse_dji_xmp, read_pose, upright_to_stored

R_EARTH = 6371008.8


def destination(lat: float, lon: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """Spherical destination point (independent of the code under test)."""
    p1, l1, b, d = math.radians(lat), math.radians(lon), math.radians(bearing_deg), dist_m / R_EARTH
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), math.degrees(l2)


def bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360


LAT0, LON0 = 45.0 + 30 / 60 + 15.5 / 3600, 7.0 + 15 / 60 + 30.0 / 3600


def make_drone_jpeg(
    *,
    w: int = 1000,
    h: int = 750,
    rel_alt: float | None = 50.0,
    yaw: float = 0.0,
    pitch: float = -90.0,
    gps: bool = True,
    south_west: bool = False,
    xmp_extra: tuple[str, ...] = (),
) -> bytes:
    """A JPEG with the metadata a DJI drone writes: EXIF GPS + optics, XMP (attribute form)."""
    exif = Image.Exif()
    exif[0x010F] = "DJI"
    exif[0x0110] = "TESTCAM"
    if gps:
        exif[0x8825] = {
            1: "S" if south_west else "N",
            2: (45.0, 30.0, 15.5),
            3: "W" if south_west else "E",
            4: (7.0, 15.0, 30.0),
            5: b"\x00",
            6: 432.1,
        }
    # 10 mm lens on a 10 mm wide sensor (1000 px per cm): focal length = 1000 px for a 1000 px image
    exif[0x8769] = {0x920A: 10.0, 0xA20E: 1000.0, 0xA20F: 1000.0, 0xA210: 3, 0xA002: w, 0xA003: h}
    fields = [f'drone-dji:GimbalYawDegree="{yaw:+.2f}"', f'drone-dji:GimbalPitchDegree="{pitch:+.2f}"']
    fields += ['drone-dji:GimbalRollDegree="+0.00"', 'drone-dji:FlightYawDegree="+12.30"']
    if rel_alt is not None:
        fields.append(f'drone-dji:RelativeAltitude="{rel_alt:+.2f}"')
    fields += list(xmp_extra)
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" '
        + " ".join(fields)
        + "/></rdf:RDF></x:xmpmeta>"
    )
    b = io.BytesIO()
    Image.new("RGB", (w, h), (90, 90, 90)).save(b, "JPEG", exif=exif.tobytes(), xmp=xmp.encode())
    return b.getvalue()


def _locate(data: bytes, points):
    d = decode_image(data)
    pose = read_pose(d.metadata, d.stored_hw)
    return pose, locate_points(pose, np.asarray(points, float), d.stored_hw, d.metadata.orientation)


def test_reads_gps_xmp_and_optics():
    pose, _ = _locate(make_drone_jpeg(yaw=30.0), [[0, 0]])
    assert pose.latitude == pytest.approx(LAT0) and pose.longitude == pytest.approx(LON0)
    assert pose.relative_altitude == 50.0 and pose.gimbal_yaw == 30.0 and pose.gimbal_pitch == -90.0
    assert pose.flight_yaw == pytest.approx(12.3) and pose.gps_altitude == pytest.approx(432.1)
    assert pose.sensor_width_mm == pytest.approx(10.0) and pose.focal_length_px == pytest.approx(1000.0)
    assert pose.hfov_deg == pytest.approx(2 * math.degrees(math.atan(0.5)))  # 53.13 deg
    sw, _ = _locate(make_drone_jpeg(south_west=True), [[0, 0]])
    assert sw.latitude == pytest.approx(-LAT0) and sw.longitude == pytest.approx(-LON0)


def test_rtk_status_reaches_the_history_tracker():
    from history.tracker import _rtk

    fixed, _ = _locate(
        make_drone_jpeg(
            xmp_extra=('drone-dji:RtkFlag="50"', 'drone-dji:RtkStdLon="0.012"', 'drone-dji:RtkStdLat="0.02"')
        ),
        [[0, 0]],
    )
    assert fixed.rtk_flag == 50 and fixed.rtk_fixed and fixed.rtk_std_m == pytest.approx(0.02)
    floating, _ = _locate(make_drone_jpeg(xmp_extra=('drone-dji:RtkFlag="34"',)), [[0, 0]])
    assert floating.rtk_flag == 34 and not floating.rtk_fixed and floating.rtk_std_m is None
    plain, _ = _locate(make_drone_jpeg(), [[0, 0]])
    assert plain.rtk_flag is None and "rtk_flag" not in plain.to_dict()
    # the stored camera record is what the tracker reads: a fixed solution gets the RTK gate
    assert _rtk(fixed.to_dict()) and not _rtk(floating.to_dict()) and not _rtk(plain.to_dict())


def test_real_dji_frame_without_rtk():
    path = MIRROR / "thermal_formats" / "DJI_XTS.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not in the mirror")
    pose = read_pose(read_metadata(path), (512, 640))  # a metadata sample: its pixel data is cut short
    assert pose.rtk_flag == 0 and not pose.rtk_fixed and pose.has_gps
    # the XT S writes its XMP under the older "DJI:" prefix, not "drone-dji:"
    assert pose.relative_altitude == pytest.approx(37.7) and pose.gimbal_yaw == pytest.approx(91.3)
    assert pose.gimbal_pitch == pytest.approx(19.9) and pose.flight_yaw == pytest.approx(86.2)


@pytest.mark.parametrize("yaw", [0.0, 30.0, -120.0])
def test_nadir_positions_match_independent_answers(yaw):
    # points: centre, right edge middle, top middle, bottom-left corner
    pts = [[500, 375], [1000, 375], [500, 0], [0, 750]]
    _, geo = _locate(make_drone_jpeg(yaw=yaw), pts)
    assert geo.quality == "estimate" and geo.gsd_m == pytest.approx(0.05)
    # nadir, 50 m, f = 1000 px: 1 px = 5 cm; image "up" points along the yaw
    expected = [
        (LAT0, LON0),
        destination(LAT0, LON0, yaw + 90, 500 * 0.05),
        destination(LAT0, LON0, yaw, 375 * 0.05),
        destination(LAT0, LON0, yaw + 180 + math.degrees(math.atan2(500, 375)), math.hypot(500, 375) * 0.05),
    ]
    for i, (elat, elon) in enumerate(expected):
        err = haversine_m(geo.latitude[i], geo.longitude[i], elat, elon)
        assert err < 0.15, (i, err)


def test_tilted_camera_centre_lands_ahead():
    # 10 degrees off nadir, facing north: the image centre is 50 * tan(10 deg) = 8.82 m north
    _, geo = _locate(make_drone_jpeg(pitch=-80.0), [[500, 375]])
    assert geo.quality == "estimate"
    elat, elon = destination(LAT0, LON0, 0.0, 50 * math.tan(math.radians(10)))
    assert haversine_m(geo.latitude[0], geo.longitude[0], elat, elon) < 0.1


def test_coarse_and_none():
    _, oblique = _locate(make_drone_jpeg(pitch=-45.0), [[0, 0], [900, 700]])
    assert oblique.quality == "coarse" and "oblique" in oblique.note
    assert np.allclose(oblique.latitude, LAT0) and np.allclose(oblique.longitude, LON0)
    _, no_alt = _locate(make_drone_jpeg(rel_alt=None), [[0, 0]])
    assert no_alt.quality == "coarse" and "RelativeAltitude" in no_alt.note
    _, no_gps = _locate(make_drone_jpeg(gps=False), [[0, 0]])
    assert no_gps.quality == "none" and np.isnan(no_gps.latitude).all()


def test_real_xt2_frames():
    need_xt2()
    d = decode_image(XT2_FRAMES[0])
    pose = read_pose(d.metadata, d.stored_hw)
    # EXIF: 15 deg 40' 54.4006336" N, 78 deg 16' 23.5784912" E; XMP: 39 m, pitch -90, yaw -90.9
    assert pose.latitude == pytest.approx(15 + 40 / 60 + 54.4006336 / 3600)
    assert pose.longitude == pytest.approx(78 + 16 / 60 + 23.5784912 / 3600)
    assert (pose.relative_altitude, pose.gimbal_pitch) == (39.0, -90.0)
    assert pose.gimbal_yaw == pytest.approx(-90.9, abs=1e-4) and pose.flight_yaw == pytest.approx(-90.7, abs=1e-4)
    # Zenmuse XT2 640 with the 19 mm lens: 32 x 26 degree field of view (DJI spec)
    assert pose.hfov_deg == pytest.approx(32.0, abs=0.3)
    geo = locate_points(pose, np.array([[320, 256], [0, 0], [320, 0]], float), d.stored_hw)
    assert geo.quality == "estimate"
    lat, lon = pose.latitude, pose.longitude
    assert haversine_m(geo.latitude[0], geo.longitude[0], lat, lon) < 0.01
    corner = math.hypot(39 * math.tan(math.radians(16)), 39 * math.tan(math.radians(13)))  # 14.3 m
    assert haversine_m(geo.latitude[1], geo.longitude[1], lat, lon) == pytest.approx(corner, abs=0.5)
    # the top of the frame faces the gimbal yaw (-90.9 deg: west)
    assert bearing(lat, lon, geo.latitude[2], geo.longitude[2]) == pytest.approx(360 - 90.9, abs=0.5)


def test_every_xt2_frame_has_a_location():
    need_xt2()
    for f in XT2_FRAMES:
        d = decode_image(f)
        pose = read_pose(d.metadata, d.stored_hw)
        geo = locate_points(pose, np.array([[100.0, 100.0]]), d.stored_hw)
        assert geo.quality == "estimate", (f, geo.note)
        assert haversine_m(geo.latitude[0], geo.longitude[0], pose.latitude, pose.longitude) < 20


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_to_stored_inverts_exif_transpose(orientation):
    from PIL import ImageOps

    stored = np.zeros((30, 50), np.uint8)
    stored[7, 41] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = Image.fromarray(stored)
    im.info["exif"] = exif.tobytes()
    b = io.BytesIO()
    im.save(b, "PNG", exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(b.getvalue()))))
    y, x = np.argwhere(upright == 255)[0]
    # pixel centres: (x + 0.5, y + 0.5) upright must land on (41.5, 7.5) stored
    back = upright_to_stored(np.array([[x + 0.5, y + 0.5]]), orientation, (30, 50))[0]
    assert back.tolist() == pytest.approx([41.5, 7.5])


def test_xmp_and_dms_parsing_edge_cases():
    assert parse_dji_xmp("") == {}
    assert parse_dji_xmp('drone-dji:RelativeAltitude="+12.5" drone-dji:GimbalYawDegree="-3"') == {
        "RelativeAltitude": 12.5,
        "GimbalYawDegree": -3.0,
    }
    assert parse_dji_xmp("<drone-dji:RelativeAltitude>39.000000</drone-dji:RelativeAltitude>") == {
        "RelativeAltitude": 39.0
    }
    assert parse_dji_xmp('drone-dji:RelativeAltitude="abc"') == {}
    assert parse_dji_xmp("<DJI:GimbalYawDegree>-4.5</DJI:GimbalYawDegree>") == {"GimbalYawDegree": -4.5}
    assert parse_dji_xmp("<DJI:GimbalYawDegree>-4.5</drone-dji:GimbalYawDegree>") == {}  # unbalanced
    assert parse_dji_xmp('Camera:GimbalYawDegree="3"') == {}
    assert dms_to_degrees((10, 30, 0), "S") == -10.5 and dms_to_degrees("junk", "N") is None
