"""Per-pixel temperatures from radiometric drone images (torch-free: numpy, OpenCV, Pillow, pydantic).

What this module holds:

- :func:`read_radiometry` — bytes in, a :class:`Radiometry` (a float32 °C map) or a
  :class:`RadiometryNote` saying why there is none. It never raises on bad input.
- :class:`ThermalParams` (the measurement parameters used), :class:`ThermalOverrides` (the ones given
  per call / per flight), :class:`ThermalConfig` and :func:`load_thermal_config` (``configs/thermal.yaml``,
  the single source of every default; a missing file is an error).
- :class:`FlirCalibration` and :func:`raw_to_celsius` — the raw → temperature model on its own.
- :func:`to_display` — the temperature map resampled to the JPEG preview's size and turned upright
  like :func:`detector.decode.decode_image` turns the pixels, so a box on the decoded image indexes it.

Formats
-------
**FLIR** (DJI Zenmuse XT/XT2/XT R, FLIR cameras): APP1 segments ``"FLIR\\0"`` + version 1 + index +
last index, whose payloads concatenate into one FFF record. Its directory (32-byte entries) points
at a RawData record (type 0x01: width, height, then the frame as a TIFF, a PNG or bare 16-bit
words) and a CameraInfo record (type 0x20: Planck R1/R2/B/F/O, emissivity, distance, humidity,
reflected/atmospheric/IR-window temperatures, the atmospheric transmission constants). The
offsets are those ExifTool's FLIR module documents. Byte order: the FFF header's is fixed by its
version word (100-199), each record's by its first word (2); FLIR's PNG frames hold little-endian
words in a big-endian PNG. Rather than trust either, the byte order of the decoded frame is checked:
read the wrong way round, neighbouring pixels jump by thousands of counts, so the smoother order wins
(the camera's recorded median raw value is no guide: the FLIR handheld sample's lies between both).
Raw → °C is the Thermimage ``raw2temp`` model (Planck curve, atmospheric transmission over two
half-distances, IR window, reflected and atmospheric radiance subtracted). It is evaluated in
float64 once per raw value present in the frame (a lookup table of at most 65536 entries) and the
frame is indexed through it: exact to float64 before the final float32 rounding (< 1e-4 °C); under
1 ms per 640x512 frame (``bench/radiometry.py``: 0.6 ms on one core, flyr 58 ms). Values the model
cannot invert are NaN.

**DJI R-JPEG** (H20T/H20N, M2EA, M30T, M3T/M3TD, H30T, M4T, and the Zenmuse XT S, whose file is DJI's
format, not FLIR's): APP3 raw frame + APP4/APP5 calibration, officially read only by DJI's Thermal
SDK (``libdirp``, proprietary licence, native binaries not on PyPI). **Not supported: such files get
the note "radiometric format not supported (DJI R-JPEG, needs DJI Thermal SDK): scored as a plain
image".** What PyPI offers, checked on 2026-12-02 (``pip download --no-deps``, inspected, run on the
mirror's samples):

- ``dji-thermal-cli`` 1.4.0 (AGPL-3.0-only, compatible with this project): a pure-Python port of
  SDK v1.8, claimed bit-identical to ``dirp_measure_ex``. Its temperatures were plausible on the
  samples (median 40 °C H20T, 27 °C M2EA, 14 °C M30T, 32 °C M3T, 20 °C H30T) at 38-860 ms per frame.
  Not adopted: it declares ``Requires-Python >=3.12`` (this project supports 3.11, its ``.venv`` is
  3.11, pip refuses it); it is young (first release 2026, every release within months, one
  maintainer); its ``dji_tsdk_v18.npz`` carries calibration tables and palettes rebuilt from DJI's
  proprietary SDK, whose redistribution DJI's EULA, not the AGPL, governs; and its correctness
  can only be checked against the SDK itself, which cannot be installed here. Worth revisiting
  when the project moves to Python >= 3.12 and someone has cleared the tables' provenance.
- ``dji-thermal-sdk`` 0.0.2 (2023): a ctypes wrapper around DJI's native libraries, which it does
  not ship: unusable without the SDK download.
- ``thermal_parser`` (the mirror's sample source): not on PyPI; its repository bundles DJI's
  proprietary binaries.

**TIFF**: a 16-bit single-channel TIFF holds counts; no tag says how to turn them into
temperatures, so by default it is *not* read as a calibrated frame (note ``uncalibrated_tiff``).
FLIR's fixed-gain radiometric TIFFs (e.g. Vue Pro R, Duo Pro R) use counts x 0.04 K (high-resolution
mode) or x 0.4 K (low); set ``tiff_kelvin_per_count`` (config or per call) when the source is known.
8-bit and colour TIFFs, PNGs and plain JPEGs are not radiometric (note ``not_radiometric``).

Orientation: the raw frame is the sensor's grid, which is the JPEG preview's *stored* grid, up to
scale (some FLIR cameras store a raw frame smaller than the preview, e.g. 240x320 behind a 480x640
JPEG). ``Radiometry.celsius`` stays in that grid; :func:`to_display` scales it to the preview's
stored size and applies the JPEG's EXIF orientation. FLIR picture-in-picture files whose preview is
a visual photo with the thermal frame inset (the PiP record) are not mapped onto that inset.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import configs

THERMAL_CONFIG_PATH = configs.path("thermal.yaml")

DJI_NOTE = "radiometric format not supported (DJI R-JPEG, needs DJI Thermal SDK): scored as a plain image"

NoteReason = Literal["not_image", "not_radiometric", "unsupported_format", "corrupt", "uncalibrated_tiff"]
ParamSource = Literal["call", "camera", "config"]
PARAM_NAMES = ("emissivity", "reflected_temp_c", "atmospheric_temp_c", "distance_m", "relative_humidity")

_KELVIN = 273.15


# --- parameters and configuration ------------------------------------------------------------------


class ThermalParams(BaseModel):
    """The measurement parameters a temperature map was computed with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    emissivity: float = Field(gt=0, le=1)
    reflected_temp_c: float = Field(gt=-_KELVIN)
    atmospheric_temp_c: float = Field(gt=-_KELVIN)
    distance_m: float = Field(ge=0)
    relative_humidity: float = Field(ge=0, le=100)  # percent


class ThermalOverrides(BaseModel):
    """Parameters given per call (per request, per flight); ``None`` = not given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    emissivity: float | None = Field(None, gt=0, le=1)
    reflected_temp_c: float | None = Field(None, gt=-_KELVIN)
    atmospheric_temp_c: float | None = Field(None, gt=-_KELVIN)
    distance_m: float | None = Field(None, ge=0)
    relative_humidity: float | None = Field(None, ge=0, le=100)


class ThermalConfig(BaseModel):
    """``configs/thermal.yaml``; no field has a default here: the file is their only source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefer_camera_params: bool
    emissivity: float = Field(gt=0, le=1)
    reflected_temp_c: float = Field(gt=-_KELVIN)
    atmospheric_temp_c: float = Field(gt=-_KELVIN)
    distance_m: float = Field(ge=0)
    relative_humidity: float = Field(ge=0, le=100)
    tiff_kelvin_per_count: float | None = Field(gt=0)
    hotspot_margin_k: float = Field(gt=0)
    hotspot_seed_k: float = Field(gt=0)
    hotspot_min_pixels: int = Field(ge=1)
    hotspot_min_solidity: float = Field(ge=0, le=1)
    hotspot_min_rect_fill: float = Field(ge=0, le=1)
    background_block_px: int = Field(ge=2)
    background_window_px: int = Field(ge=3)
    reference_ring_px: int = Field(ge=1)
    reference_min_pixels: int = Field(ge=1)
    texture_window_px: int = Field(ge=3)
    texture_max_k: float = Field(gt=0)
    module_band_k: tuple[float, float]
    render_range: Literal["percentile", "fixed"]
    render_percentiles: tuple[float, float]
    render_span_k: float = Field(gt=0)
    render_below_k: float
    render_colormap: str

    @property
    def params(self) -> ThermalParams:
        """The default measurement parameters."""
        return ThermalParams(**{k: getattr(self, k) for k in PARAM_NAMES})


_CONFIG_CACHE: dict[Path, tuple[float, ThermalConfig]] = {}


def load_thermal_config(path: str | Path | None = None, **overrides: Any) -> ThermalConfig:
    """The YAML file (default ``configs/thermal.yaml``) with ``overrides`` applied (``None`` ignored).

    Raises ``FileNotFoundError`` when the file is missing and ``ValueError`` when it is invalid.
    """
    p = Path(path) if path else THERMAL_CONFIG_PATH
    if not p.is_file():
        raise FileNotFoundError(f"thermal config not found: {p}")
    mtime = p.stat().st_mtime
    cached = _CONFIG_CACHE.get(p)
    if cached and cached[0] == mtime and not any(v is not None for v in overrides.values()):
        return cached[1]
    with open(p) as f:
        data = yaml.safe_load(f) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = ThermalConfig.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{p}: {e}") from None
    if not overrides:
        _CONFIG_CACHE[p] = (mtime, cfg)
    return cfg


def resolve_params(
    camera: dict[str, float],
    overrides: ThermalOverrides | None,
    config: ThermalConfig,
) -> tuple[ThermalParams, dict[str, ParamSource]]:
    """Per parameter: the call's value, else the camera's (valid ones, when the config prefers them),
    else the config's. Returns the parameters and where each came from."""
    given = overrides.model_dump() if overrides else {}
    values: dict[str, float] = {}
    sources: dict[str, ParamSource] = {}
    for name in PARAM_NAMES:
        cam = camera.get(name)
        if given.get(name) is not None:
            values[name], sources[name] = float(given[name]), "call"
        elif config.prefer_camera_params and cam is not None and _valid_param(name, cam):
            values[name], sources[name] = float(cam), "camera"
        else:
            values[name], sources[name] = float(getattr(config, name)), "config"
    return ThermalParams(**values), sources


def _valid_param(name: str, v: float) -> bool:
    if not math.isfinite(v):
        return False
    lo, hi = {"emissivity": (1e-6, 1.0), "distance_m": (0.0, 1e5), "relative_humidity": (0.0, 100.0)}.get(
        name, (-_KELVIN + 1e-6, 2000.0)
    )
    return lo <= v <= hi


# --- results -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlirCalibration:
    """A FLIR camera's calibration as recorded in its CameraInfo record."""

    r1: float
    r2: float
    b: float
    f: float
    o: float
    alpha1: float
    alpha2: float
    beta1: float
    beta2: float
    x: float
    ir_window_temp_c: float
    ir_window_transmission: float


@dataclass(frozen=True)
class Radiometry:
    """A temperature map read from a file.

    ``celsius`` is (H, W) float32 in the raw frame's grid (the JPEG's stored grid, up to scale),
    NaN where the model has no value. ``raw_size`` and ``display_size`` are (H, W); ``display_size``
    is the JPEG preview's stored size (None for a TIFF), ``orientation`` its EXIF orientation.
    """

    celsius: np.ndarray
    format: Literal["flir", "tiff_fixed_gain"]
    camera: str | None
    params: ThermalParams | None  # None for a fixed-gain TIFF (no radiometric model applied)
    param_sources: dict[str, ParamSource]
    raw_size: tuple[int, int]
    display_size: tuple[int, int] | None
    orientation: int = 1
    calibration: FlirCalibration | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RadiometryNote:
    """No temperatures: why, in one line a report can show."""

    reason: NoteReason
    note: str
    format: str | None = None  # "dji_rjpeg", "flir", "jpeg", "tiff", "png", ...
    camera: str | None = None


# --- entry point ----------------------------------------------------------------------------------------


def read_radiometry(
    data: bytes | bytearray | memoryview,
    overrides: ThermalOverrides | None = None,
    *,
    config: ThermalConfig | None = None,
    tiff_kelvin_per_count: float | None = None,
) -> Radiometry | RadiometryNote:
    """Temperatures from a radiometric image's bytes, or a note saying why there are none.

    ``overrides`` replace the camera's recorded parameters (only those given); the values used are
    in ``Radiometry.params`` and their origin in ``param_sources``. Never raises on bad input.
    """
    cfg = config or load_thermal_config()
    try:
        buf = bytes(data)
    except TypeError:
        return RadiometryNote("not_image", "input is not bytes")
    if len(buf) < 16:
        return RadiometryNote("not_image", "empty or too short to be an image")
    if buf[:2] == b"\xff\xd8":
        return _read_jpeg(buf, overrides, cfg)
    if buf[:4] in (b"II*\x00", b"MM\x00*"):
        gain = tiff_kelvin_per_count if tiff_kelvin_per_count is not None else cfg.tiff_kelvin_per_count
        return _read_tiff(buf, gain)
    try:
        with Image.open(io.BytesIO(buf)) as im:
            fmt = (im.format or "image").lower()
    except Exception:  # noqa: BLE001 - Pillow and its third-party plugins raise many types while probing
        return RadiometryNote("not_image", "not a readable image")
    return RadiometryNote("not_radiometric", f"{fmt.upper()} carries no radiometric data", format=fmt)


# --- JPEG container -----------------------------------------------------------------------------------


@dataclass
class _Jpeg:
    flir: dict[int, bytes] = field(default_factory=dict)  # FLIR segment index -> payload
    flir_last: int = -1
    flir_bad: str | None = None
    app3: int = 0
    app4_iirp: bool = False
    exif: bytes | None = None
    size: tuple[int, int] | None = None  # (H, W) from SOF


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _scan_jpeg(buf: bytes) -> _Jpeg:
    """Walk the marker segments up to the first SOS (resyncing over stray bytes)."""
    out = _Jpeg()
    i, n = 2, len(buf)
    while i + 4 <= n:
        if buf[i] != 0xFF:
            j = buf.find(b"\xff", i)
            if j < 0:
                break
            i = j
            continue
        marker = buf[i + 1]
        if marker == 0xFF or marker == 0x00 or 0xD0 <= marker <= 0xD7:
            i += 1 if marker == 0xFF else 2
            continue
        if marker in (0xD9, 0xDA):
            break
        (length,) = struct.unpack_from(">H", buf, i + 2)
        seg = buf[i + 4 : i + 2 + length]
        if marker == 0xE1:
            if seg[:5] == b"FLIR\x00" and len(seg) >= 8:
                out.flir[seg[6]] = seg[8:]
                out.flir_last = max(out.flir_last, seg[7])
            elif seg[:6] == b"Exif\x00\x00" and out.exif is None:
                out.exif = seg
        elif marker == 0xE3:
            out.app3 += 1
        elif marker == 0xE4 and seg[4:8] == b"iirp":
            out.app4_iirp = True
        elif marker in _SOF and len(seg) >= 5 and out.size is None:
            h, w = struct.unpack_from(">HH", seg, 1)
            out.size = (h, w)
        if length < 2:
            break
        i += 2 + length
    if i + 2 + 2 > n and out.flir and len(out.flir) <= out.flir_last:
        out.flir_bad = "file ends inside the FLIR segments"
    return out


def _exif_tags(exif: bytes | None) -> tuple[str | None, str | None, int]:
    if not exif:
        return None, None, 1
    try:
        ex = Image.Exif()
        ex.load(exif)
        make = _clean_str(ex.get(0x010F))
        model = _clean_str(ex.get(0x0110))
        orient = int(ex.get(0x0112, 1) or 1)
        return make, model, orient if 1 <= orient <= 8 else 1
    except Exception:  # noqa: BLE001 - a broken EXIF block only loses the camera name
        return None, None, 1


def _clean_str(v: Any) -> str | None:
    if isinstance(v, bytes):
        v = v.split(b"\x00", 1)[0].decode("latin-1", "replace")
    if not isinstance(v, str):
        return None
    v = v.split("\x00", 1)[0].strip()
    return v if v and v != "*" else None


def _camera_name(make: str | None, model: str | None) -> str | None:
    if make and model:
        return model if model.lower().startswith(make.lower()) else f"{make} {model}"
    return model or make


def _read_jpeg(buf: bytes, overrides: ThermalOverrides | None, cfg: ThermalConfig) -> Radiometry | RadiometryNote:
    try:
        jp = _scan_jpeg(buf)
    except struct.error:
        return RadiometryNote("not_image", "JPEG markers are truncated", format="jpeg")
    make, model, orientation = _exif_tags(jp.exif)
    camera = _camera_name(make, model)
    if jp.flir:
        try:
            return _read_flir(jp, overrides, cfg, camera, orientation)
        except _Corrupt as e:
            return RadiometryNote(
                "corrupt", f"FLIR radiometric data unreadable ({e}): scored as a plain image", "flir", camera
            )
    if jp.app3 or jp.app4_iirp:
        if jp.app4_iirp or (make or "").upper().startswith("DJI"):
            return RadiometryNote("unsupported_format", DJI_NOTE, "dji_rjpeg", camera)
    return RadiometryNote("not_radiometric", "JPEG without radiometric data: scored as a plain image", "jpeg", camera)


# --- FLIR FFF ----------------------------------------------------------------------------------------------


class _Corrupt(Exception):
    pass


def _read_flir(
    jp: _Jpeg, overrides: ThermalOverrides | None, cfg: ThermalConfig, camera: str | None, orientation: int
) -> Radiometry:
    if jp.flir_bad:
        raise _Corrupt(jp.flir_bad)
    missing = [k for k in range(jp.flir_last + 1) if k not in jp.flir]
    if missing:
        raise _Corrupt(f"FLIR segment(s) {missing} of {jp.flir_last + 1} missing")
    fff = b"".join(jp.flir[k] for k in range(jp.flir_last + 1))
    records = _fff_records(fff)
    if 0x01 not in records:
        raise _Corrupt("no raw thermal frame record")
    if 0x20 not in records:
        raise _Corrupt("no camera calibration record")
    cal, camera_params, flir_model = _camera_info(records[0x20])
    raw = _raw_frame(records[0x01])
    params, sources = resolve_params(camera_params, overrides, cfg)
    celsius = raw_to_celsius(raw, cal, params)
    notes = []
    bad = int(np.count_nonzero(np.isnan(celsius)))
    if bad:
        notes.append(f"{bad} pixels outside the calibration (NaN)")
    return Radiometry(
        celsius=celsius,
        format="flir",
        camera=camera or flir_model,
        params=params,
        param_sources=sources,
        raw_size=(int(raw.shape[0]), int(raw.shape[1])),
        display_size=jp.size,
        orientation=orientation,
        calibration=cal,
        notes=tuple(notes),
    )


def _fff_records(fff: bytes) -> dict[int, bytes]:
    """The FFF directory: record type -> record bytes (first of each type)."""
    if len(fff) < 0x40 or fff[:4] not in (b"FFF\x00", b"AFF\x00"):
        raise _Corrupt("no FFF header")
    end = ">"
    (ver,) = struct.unpack_from(">I", fff, 0x14)
    if not 100 <= ver < 200:
        end = "<"
        (ver,) = struct.unpack_from("<I", fff, 0x14)
        if not 100 <= ver < 200:
            raise _Corrupt(f"FFF version {ver} unknown")
    index_off, count = struct.unpack_from(end + "II", fff, 0x18)
    if count > 4096 or index_off + 32 * count > len(fff):
        raise _Corrupt("FFF directory truncated")
    records: dict[int, bytes] = {}
    for k in range(count):
        rtype, _sub, _rver, _rid, off, length = struct.unpack_from(end + "HHIIII", fff, index_off + 32 * k)
        if rtype == 0 or rtype in records:
            continue
        if off + length > len(fff):
            raise _Corrupt(f"FFF record 0x{rtype:02x} truncated ({off + length} > {len(fff)} bytes)")
        records[rtype] = fff[off : off + length]
    return records


def _record_order(rec: bytes) -> str:
    if len(rec) < 2:
        raise _Corrupt("empty record")
    if struct.unpack_from("<H", rec)[0] == 2:
        return "<"
    if struct.unpack_from(">H", rec)[0] == 2:
        return ">"
    raise _Corrupt("record byte-order mark missing")


# CameraInfo offsets (bytes), as ExifTool's FLIR::CameraInfo documents them
_CI_FLOATS = {
    "emissivity": 0x20,
    "distance_m": 0x24,
    "reflected_k": 0x28,
    "atmospheric_k": 0x2C,
    "ir_window_k": 0x30,
    "ir_window_transmission": 0x34,
    "humidity": 0x3C,
    "r1": 0x58,
    "b": 0x5C,
    "f": 0x60,
    "alpha1": 0x70,
    "alpha2": 0x74,
    "beta1": 0x78,
    "beta2": 0x7C,
    "x": 0x80,
    "r2": 0x30C,
}
_CI_PLANCK_O = 0x308
_CI_MODEL = 0xD4
_CI_MIN_LENGTH = 0x310  # through Planck R2


def _camera_info(rec: bytes) -> tuple[FlirCalibration, dict[str, float], str | None]:
    if len(rec) < _CI_MIN_LENGTH:
        raise _Corrupt(f"camera calibration record truncated ({len(rec)} bytes)")
    e = _record_order(rec)
    v = {k: struct.unpack_from(e + "f", rec, off)[0] for k, off in _CI_FLOATS.items()}
    (o,) = struct.unpack_from(e + "i", rec, _CI_PLANCK_O)
    model = _clean_str(rec[_CI_MODEL : _CI_MODEL + 32])
    consts = [v["r1"], v["r2"], v["b"], v["f"], v["alpha1"], v["alpha2"], v["beta1"], v["beta2"], v["x"]]
    if not all(math.isfinite(c) for c in consts) or v["r1"] <= 0 or v["r2"] <= 0 or v["b"] <= 0:
        raise _Corrupt("Planck constants invalid")
    irt = v["ir_window_transmission"]
    cal = FlirCalibration(
        r1=v["r1"],
        r2=v["r2"],
        b=v["b"],
        f=v["f"],
        o=float(o),
        alpha1=v["alpha1"],
        alpha2=v["alpha2"],
        beta1=v["beta1"],
        beta2=v["beta2"],
        x=v["x"],
        ir_window_temp_c=v["ir_window_k"] - _KELVIN if 0 < v["ir_window_k"] < 2000 else 20.0,
        ir_window_transmission=irt if math.isfinite(irt) and 0 < irt <= 1 else 1.0,
    )
    rh = v["humidity"]
    camera = {
        "emissivity": v["emissivity"],
        "distance_m": v["distance_m"],
        "reflected_temp_c": v["reflected_k"] - _KELVIN,
        "atmospheric_temp_c": v["atmospheric_k"] - _KELVIN,
        # stored as a fraction by most cameras, as a percentage by some (ExifTool's rule)
        "relative_humidity": rh if rh > 2 else rh * 100.0,
    }
    return cal, {k: round(v, 4) for k, v in camera.items()}, model


def _raw_frame(rec: bytes) -> np.ndarray:
    e = _record_order(rec)
    if len(rec) < 0x20:
        raise _Corrupt("raw frame record truncated")
    w, h = struct.unpack_from(e + "HH", rec, 2)
    if not (0 < w <= 8192 and 0 < h <= 8192):
        raise _Corrupt(f"raw frame size {w}x{h} invalid")
    blob = rec[0x20:]
    if blob[:4] in (b"II*\x00", b"MM\x00*") or blob[:8] == b"\x89PNG\r\n\x1a\n":
        png = blob[:4] == b"\x89PNG"
        raw = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
            raise _Corrupt(("PNG" if png else "TIFF") + " raw frame undecodable")
    else:
        if len(blob) < 2 * w * h:
            raise _Corrupt(f"raw frame truncated ({len(blob)} of {2 * w * h} bytes)")
        raw = np.frombuffer(blob, e + "u2", count=w * h).reshape(h, w).astype(np.uint16)
    if raw.shape != (h, w):
        raise _Corrupt(f"raw frame is {raw.shape[1]}x{raw.shape[0]}, header says {w}x{h}")
    raw = np.ascontiguousarray(raw)
    if _should_swap(raw):
        raw = raw.byteswap()
    return raw


def _should_swap(raw: np.ndarray) -> bool:
    """Byte-swap or not: read in the wrong byte order, a frame's fast-varying low bytes land in the high
    byte and neighbouring pixels jump by thousands of counts; the order with the smoother rows wins."""
    rows = raw[:: max(1, raw.shape[0] // 32)]
    return _roughness(rows.byteswap()) < _roughness(rows)


def _roughness(rows: np.ndarray) -> float:
    return float(np.abs(np.diff(rows.astype(np.int32), axis=1)).mean())


# --- raw -> temperature ----------------------------------------------------------------------------------


def raw_to_celsius(raw: np.ndarray, cal: FlirCalibration, params: ThermalParams) -> np.ndarray:
    """Thermimage ``raw2temp`` on a uint16 frame: (H, W) float32 °C, NaN where it has no value.

    Evaluated in float64 per distinct raw value (a lookup table over the frame's raw range).
    """
    raw = np.asarray(raw)
    if raw.size == 0:
        return np.zeros(raw.shape, np.float32)
    if raw.dtype != np.uint16:
        return celsius_from_raw_float(raw.astype(np.float64), cal, params).astype(np.float32)
    lo, hi = int(raw.min()), int(raw.max())
    lut = celsius_from_raw_float(np.arange(lo, hi + 1, dtype=np.float64), cal, params).astype(np.float32)
    idx = raw - np.uint16(lo) if lo else raw
    return lut.take(idx)


def celsius_from_raw_float(raw: np.ndarray, cal: FlirCalibration, params: ThermalParams) -> np.ndarray:
    """The same model on any array, in its own float precision (the reference for the lookup path)."""
    e = params.emissivity
    t_atm = params.atmospheric_temp_c
    irt = cal.ir_window_transmission
    h2o = (params.relative_humidity / 100.0) * math.exp(
        1.5587 + 0.06939 * t_atm - 0.00027816 * t_atm**2 + 0.00000068455 * t_atm**3
    )
    d = math.sqrt(params.distance_m / 2.0)
    sq = math.sqrt(h2o)
    tau = cal.x * math.exp(-d * (cal.alpha1 + cal.beta1 * sq)) + (1 - cal.x) * math.exp(
        -d * (cal.alpha2 + cal.beta2 * sq)
    )

    def planck_raw(t_c: float) -> float:
        return cal.r1 / (cal.r2 * (math.exp(cal.b / (t_c + _KELVIN)) - cal.f)) - cal.o

    refl1 = (1 - e) / e * planck_raw(params.reflected_temp_c)
    atm1 = (1 - tau) / e / tau * planck_raw(t_atm)
    wind = (1 - irt) / e / tau / irt * planck_raw(cal.ir_window_temp_c)
    atm2 = (1 - tau) / e / tau / irt / tau * planck_raw(t_atm)  # the window reflects nothing (refl2 = 0)
    scale = 1.0 / (e * tau * irt * tau)
    offset = atm1 + atm2 + wind + refl1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        obj = raw * scale - offset
        t = cal.b / np.log(cal.r1 / (cal.r2 * (obj + cal.o)) + cal.f) - _KELVIN
    return np.where(np.isfinite(t) & (obj + cal.o > 0), t, np.nan)


# --- TIFF ----------------------------------------------------------------------------------------------------


def _read_tiff(buf: bytes, gain: float | None) -> Radiometry | RadiometryNote:
    try:
        with Image.open(io.BytesIO(buf)) as im:
            mode = im.mode
            if mode not in ("I;16", "I;16B", "I;16L", "I;16N"):
                return RadiometryNote("not_radiometric", f"{mode} TIFF carries no temperatures", format="tiff")
            if gain is None:
                return RadiometryNote(
                    "uncalibrated_tiff",
                    "16-bit TIFF without a known calibration (set tiff_kelvin_per_count for FLIR fixed-gain "
                    "TIFFs): scored as a plain image",
                    format="tiff",
                )
            counts = np.asarray(im).astype(np.float64)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return RadiometryNote("not_image", f"TIFF unreadable ({e.__class__.__name__})", format="tiff")
    celsius = (counts * gain - _KELVIN).astype(np.float32)
    return Radiometry(
        celsius=celsius,
        format="tiff_fixed_gain",
        camera=None,
        params=None,
        param_sources={},
        raw_size=(int(celsius.shape[0]), int(celsius.shape[1])),
        display_size=None,
        notes=(f"fixed gain {gain} K/count (as configured)",),
    )


# --- display alignment ---------------------------------------------------------------------------------------


def to_display(
    r: Radiometry, *, upright: bool = True, interpolation: Literal["linear", "nearest"] = "linear"
) -> np.ndarray:
    """The temperature map on the JPEG preview's grid: scaled to its stored size, then (``upright``) turned by
    its EXIF orientation as :func:`detector.decode.decode_image` turns the pixels. Float32 (H, W)."""
    t = r.celsius
    if r.display_size and r.display_size != t.shape:
        h, w = r.display_size
        flag = cv2.INTER_LINEAR if interpolation == "linear" else cv2.INTER_NEAREST
        t = cv2.resize(t, (w, h), interpolation=flag)
    return orient(t, r.orientation) if upright else t


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) the way Pillow's ``exif_transpose`` does."""
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: np.swapaxes(x, 0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: np.swapaxes(x, 0, 1)[::-1, ::-1],
        8: lambda x: np.rot90(x, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(a)) if op else a
