"""Where a defect is on the ground.

Reads the camera position from EXIF GPS and, for DJI drones, the XMP fields
(``RelativeAltitude``, ``GimbalYawDegree``/``GimbalPitchDegree``/``GimbalRollDegree``,
``FlightYawDegree``...), plus the focal length and sensor size (or field of view).

For a near-nadir shot (gimbal pitch within ``max_off_nadir_deg`` of straight down)
with a known height above ground, heading and field of view, each pixel's viewing
ray is intersected with a flat ground plane ``RelativeAltitude`` metres below the
camera (pinhole model, principal point at the image centre), giving a latitude and
longitude per defect: ``quality="estimate"``. Error sources: terrain that is not at
the take-off elevation, GPS error (a few metres without RTK), lens distortion.
Otherwise every defect gets the camera's own position, ``quality="coarse"``; without
GPS, ``quality="none"``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detector.decode import ImageMetadata

# EXIF tags (IFD0 / Exif IFD / GPS IFD)
TAG_MAKE, TAG_MODEL, TAG_DATETIME = 0x010F, 0x0110, 0x0132
TAG_DATETIME_ORIGINAL = 0x9003
TAG_FOCAL_LENGTH, TAG_FOCAL_35MM = 0x920A, 0xA405
TAG_FP_XRES, TAG_FP_YRES, TAG_FP_UNIT = 0xA20E, 0xA20F, 0xA210
TAG_EXIF_WIDTH, TAG_EXIF_HEIGHT = 0xA002, 0xA003
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON, GPS_ALT_REF, GPS_ALT = 1, 2, 3, 4, 5, 6
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # inch, cm, mm, micrometre
_DIAG_35MM = math.hypot(36.0, 24.0)

DJI_FIELDS = (
    "AbsoluteAltitude",
    "RelativeAltitude",
    "GimbalRollDegree",
    "GimbalYawDegree",
    "GimbalPitchDegree",
    "FlightRollDegree",
    "FlightYawDegree",
    "FlightPitchDegree",
    "CalibratedFocalLength",
    "CalibratedOpticalCenterX",
    "CalibratedOpticalCenterY",
    "RtkFlag",
    "RtkStdLon",
    "RtkStdLat",
    "RtkStdHgt",
)


@dataclass
class CameraPose:
    """What the metadata says about the camera when the frame was taken."""

    latitude: float | None = None
    longitude: float | None = None
    gps_altitude: float | None = None  # metres above sea level (EXIF)
    relative_altitude: float | None = None  # metres above the take-off point (DJI XMP)
    gimbal_yaw: float | None = None  # degrees clockwise from north
    gimbal_pitch: float | None = None  # degrees, -90 = straight down
    gimbal_roll: float | None = None
    flight_yaw: float | None = None
    flight_pitch: float | None = None
    flight_roll: float | None = None
    focal_length_mm: float | None = None
    focal_length_35mm: float | None = None
    sensor_width_mm: float | None = None
    sensor_height_mm: float | None = None
    focal_length_px: float | None = None  # in stored-image pixels, if known
    hfov_deg: float | None = None  # horizontal field of view of the stored image
    make: str | None = None
    model: str | None = None
    taken_at: str | None = None
    # DJI XMP RtkFlag: 0 no RTK, 16 single point, 34 float, 50 fixed (centimetre position)
    rtk_flag: int | None = None
    rtk_std_m: float | None = None  # horizontal standard deviation the RTK receiver reports

    @property
    def rtk_fixed(self) -> bool:
        """The position is an RTK fixed solution (history matching then uses its tighter gate)."""
        return self.rtk_flag is not None and self.rtk_flag >= 50

    @property
    def has_gps(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    @property
    def yaw(self) -> float | None:
        return self.gimbal_yaw if self.gimbal_yaw is not None else self.flight_yaw

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class GeoEstimate:
    """Latitudes/longitudes for a set of image points."""

    latitude: np.ndarray  # (N,) float64, NaN where unknown
    longitude: np.ndarray
    quality: str  # "estimate" | "coarse" | "none"
    note: str
    gsd_m: float | None = None  # ground sampling distance at the image centre, metres per pixel


# -- reading ------------------------------------------------------------------------------------


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if math.isfinite(f) else None


def _str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", errors="replace")
    s = str(v).strip("\x00 ").strip()
    return s or None


def dms_to_degrees(dms: Any, ref: Any) -> float | None:
    """EXIF (degrees, minutes, seconds) + hemisphere ref -> signed decimal degrees."""
    try:
        if isinstance(dms, int | float):
            deg = float(dms)
        else:
            parts = [float(x) for x in dms]
            while len(parts) < 3:
                parts.append(0.0)
            deg = parts[0] + parts[1] / 60 + parts[2] / 3600
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(deg):
        return None
    r = _str(ref) or ""
    if r.upper() in ("S", "W"):
        deg = -deg
    return deg


def parse_dji_xmp(xmp: str) -> dict[str, float]:
    """DJI ``drone-dji:`` fields (``DJI:`` on older Zenmuse cameras such as the XT S), written
    either as attributes or as elements."""
    out: dict[str, float] = {}
    if not xmp or ("drone-dji" not in xmp and "DJI:" not in xmp):
        return out
    for name in DJI_FIELDS:
        m = re.search(rf'(?:drone-dji|DJI):{name}\s*=\s*"([^"]*)"', xmp) or re.search(
            rf"<(drone-dji|DJI):{name}>\s*([^<]*?)\s*</\1:{name}>", xmp
        )
        if m:
            v = _float(m.group(m.lastindex or 1).strip().lstrip("+"))
            if v is not None:
                out[name] = v
    return out


def read_pose(meta: ImageMetadata, stored_hw: tuple[int, int]) -> CameraPose:
    """Camera position, attitude and optics from EXIF + XMP. ``stored_hw`` is the file's pixel size."""
    gps, exif, sub = meta.gps, meta.exif, meta.exif_ifd
    pose = CameraPose(make=_str(exif.get(TAG_MAKE)), model=_str(exif.get(TAG_MODEL)))
    pose.taken_at = _str(sub.get(TAG_DATETIME_ORIGINAL) or exif.get(TAG_DATETIME))
    if GPS_LAT in gps and GPS_LON in gps:
        pose.latitude = dms_to_degrees(gps[GPS_LAT], gps.get(GPS_LAT_REF, "N"))
        pose.longitude = dms_to_degrees(gps[GPS_LON], gps.get(GPS_LON_REF, "E"))
        if pose.latitude is not None and not -90 <= pose.latitude <= 90:
            pose.latitude = None
        if pose.longitude is not None and not -180 <= pose.longitude <= 180:
            pose.longitude = None
        if (pose.latitude, pose.longitude) == (0.0, 0.0):  # "no fix" written as zeros
            pose.latitude = pose.longitude = None
    alt = _float(gps.get(GPS_ALT))
    if alt is not None:
        ref = gps.get(GPS_ALT_REF, 0)
        below = (ref[0] if isinstance(ref, bytes | bytearray) and ref else ref) == 1
        pose.gps_altitude = -alt if below else alt
    dji = parse_dji_xmp(meta.xmp)
    pose.relative_altitude = dji.get("RelativeAltitude")
    pose.gimbal_yaw = dji.get("GimbalYawDegree")
    pose.gimbal_pitch = dji.get("GimbalPitchDegree")
    pose.gimbal_roll = dji.get("GimbalRollDegree")
    pose.flight_yaw = dji.get("FlightYawDegree")
    pose.flight_pitch = dji.get("FlightPitchDegree")
    pose.flight_roll = dji.get("FlightRollDegree")
    if "RtkFlag" in dji:
        pose.rtk_flag = int(dji["RtkFlag"])
        stds = [dji[k] for k in ("RtkStdLon", "RtkStdLat") if dji.get(k) is not None and dji[k] >= 0]
        pose.rtk_std_m = max(stds) if stds else None
    _optics(pose, sub, dji, stored_hw)
    return pose


def _optics(pose: CameraPose, sub: dict[int, Any], dji: dict[str, float], stored_hw: tuple[int, int]) -> None:
    h, w = stored_hw
    f_mm = _float(sub.get(TAG_FOCAL_LENGTH))
    pose.focal_length_mm = f_mm if f_mm and f_mm > 0 else None
    f35 = _float(sub.get(TAG_FOCAL_35MM))
    pose.focal_length_35mm = f35 if f35 and f35 > 0 else None
    exif_w = int(_float(sub.get(TAG_EXIF_WIDTH)) or w)
    exif_h = int(_float(sub.get(TAG_EXIF_HEIGHT)) or h)
    xres, yres = _float(sub.get(TAG_FP_XRES)), _float(sub.get(TAG_FP_YRES))
    unit = _UNIT_MM.get(int(_float(sub.get(TAG_FP_UNIT)) or 2))
    if xres and xres > 0 and unit:
        # Standard meaning: pixels per unit. Some cameras (DJI's thermal XT2/H20T, e.g.) write
        # the sensor size in that unit instead. Keep whichever gives a plausible pixel pitch.
        for sw, sh in (
            (exif_w / xres * unit, exif_h / yres * unit if yres else None),
            (xres * unit, (yres or 0) * unit),
        ):
            pitch_um = sw / exif_w * 1000
            if 0.8 <= pitch_um <= 25:
                pose.sensor_width_mm, pose.sensor_height_mm = sw, (sh or None)
                break
    cal = dji.get("CalibratedFocalLength")
    if cal and cal > 0:
        # DJI's calibrated focal length is in pixels of the full-resolution image
        pose.focal_length_px = cal * w / exif_w
    elif pose.focal_length_mm and pose.sensor_width_mm:
        pose.focal_length_px = pose.focal_length_mm * w / pose.sensor_width_mm
    elif pose.focal_length_35mm:
        # the 35 mm equivalent refers to the diagonal: width in "35 mm" units is diag * w / hypot(w, h)
        width_35 = _DIAG_35MM * w / math.hypot(w, h)
        pose.focal_length_px = pose.focal_length_35mm * w / width_35
    if pose.focal_length_px:
        pose.hfov_deg = math.degrees(2 * math.atan(w / 2 / pose.focal_length_px))


# -- locating -----------------------------------------------------------------------------------


def metres_per_degree(lat_deg: float) -> tuple[float, float]:
    """(metres per degree of latitude, per degree of longitude) on the WGS84 ellipsoid."""
    p = math.radians(lat_deg)
    m_lat = 111132.92 - 559.82 * math.cos(2 * p) + 1.175 * math.cos(4 * p) - 0.0023 * math.cos(6 * p)
    m_lon = 111412.84 * math.cos(p) - 93.5 * math.cos(3 * p) + 0.118 * math.cos(5 * p)
    return m_lat, m_lon


def upright_to_stored(points: np.ndarray, orientation: int, stored_hw: tuple[int, int]) -> np.ndarray:
    """Map (N, 2) x, y from the upright (EXIF-rotated) image back to the stored pixel grid."""
    h, w = stored_hw
    x, y = points[:, 0], points[:, 1]
    table = {
        1: (x, y),
        2: (w - x, y),
        3: (w - x, h - y),
        4: (x, h - y),
        5: (y, x),
        6: (y, h - x),
        7: (w - y, h - x),
        8: (w - y, x),
    }
    xs, ys = table.get(orientation, (x, y))
    return np.stack([xs, ys], axis=1)


def camera_rays(
    points: np.ndarray, stored_hw: tuple[int, int], focal_px: float, yaw: float, pitch: float, roll: float = 0.0
) -> np.ndarray:
    """Viewing rays (N, 3) in east-north-up for stored-image pixel positions (x right, y down)."""
    h, w = stored_hw
    psi, theta, phi = math.radians(yaw), math.radians(pitch), math.radians(roll)
    fwd = np.array([math.sin(psi) * math.cos(theta), math.cos(psi) * math.cos(theta), math.sin(theta)])
    right0 = np.array([math.cos(psi), -math.sin(psi), 0.0])
    up0 = np.cross(right0, fwd)
    # roll: positive = the image's right side goes down
    right = right0 * math.cos(phi) - up0 * math.sin(phi)
    up = up0 * math.cos(phi) + right0 * math.sin(phi)
    xn = (points[:, 0] - w / 2) / focal_px
    yn = (points[:, 1] - h / 2) / focal_px
    return xn[:, None] * right[None] - yn[:, None] * up[None] + fwd[None]


def locate_points(
    pose: CameraPose,
    points: np.ndarray,
    stored_hw: tuple[int, int],
    orientation: int = 1,
    max_off_nadir_deg: float = 20.0,
    max_range_m: float = 2000.0,
) -> GeoEstimate:
    """Latitude/longitude of upright-image points (N, 2) for one frame."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    n = len(pts)
    nan = np.full(n, np.nan)
    if not pose.has_gps:
        return GeoEstimate(nan, nan.copy(), "none", "no GPS position in the image metadata")
    lat0, lon0 = float(pose.latitude), float(pose.longitude)  # type: ignore[arg-type]
    coarse_lat, coarse_lon = np.full(n, lat0), np.full(n, lon0)
    missing = []
    if pose.relative_altitude is None or pose.relative_altitude <= 0:
        missing.append("height above ground (DJI RelativeAltitude)")
    if pose.gimbal_pitch is None:
        missing.append("gimbal pitch")
    if pose.yaw is None:
        missing.append("heading (gimbal or flight yaw)")
    if not pose.focal_length_px:
        missing.append("focal length and sensor size / field of view")
    if missing:
        return GeoEstimate(coarse_lat, coarse_lon, "coarse", "camera position only; unknown: " + ", ".join(missing))
    off_nadir = abs(pose.gimbal_pitch + 90.0)  # type: ignore[operator]
    if off_nadir > max_off_nadir_deg:
        return GeoEstimate(
            coarse_lat,
            coarse_lon,
            "coarse",
            f"camera position only: oblique shot ({off_nadir:.0f} deg from nadir > {max_off_nadir_deg:.0f})",
        )
    height = float(pose.relative_altitude)  # type: ignore[arg-type]
    stored = upright_to_stored(pts, orientation, stored_hw)
    rays = camera_rays(
        stored,
        stored_hw,
        float(pose.focal_length_px),
        float(pose.yaw),
        float(pose.gimbal_pitch),
        pose.gimbal_roll or 0.0,
    )  # type: ignore[arg-type]
    down = -rays[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down > 1e-6, height / down, np.nan)
    east, north = t * rays[:, 0], t * rays[:, 1]
    far = ~(np.hypot(east, north) <= max_range_m)
    m_lat, m_lon = metres_per_degree(lat0)
    lat = lat0 + north / m_lat
    lon = lon0 + east / m_lon
    lat[far], lon[far] = lat0, lon0
    note = (
        f"flat ground {height:.1f} m below the camera (take-off elevation), "
        f"{off_nadir:.1f} deg from nadir, pinhole model"
    )
    if far.any():
        note += f"; {int(far.sum())} point(s) near the horizon given the camera position"
    gsd = height / float(pose.focal_length_px)  # type: ignore[arg-type]
    return GeoEstimate(lat, lon, "estimate", note, gsd_m=gsd)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (mean Earth radius); for reporting and checks."""
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))
