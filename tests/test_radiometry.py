"""detector.radiometry: FLIR R-JPEG temperatures against ExifTool's raw frame + constants, every sample of
the mirror's thermal_formats/, and a defined outcome for every kind of bad input."""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
import struct
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from detector.radiometry import (
    DJI_NOTE,
    Radiometry,
    RadiometryNote,
    ThermalOverrides,
    celsius_from_raw_float,
    load_thermal_config,
    orient,
    raw_to_celsius,
    read_radiometry,
    to_display,
)

XT2_DIR = Path("pv_zelestra_ir/data/Test")
FORMATS_DIR = Path("thermal_formats")
FLIR_SAMPLES = ("DJI_XTR.jpg", "FLIR.jpg")
DJI_SAMPLES = (
    "DJI_XTS.jpg",
    "H20T_DJI_0001_R.JPG",
    "H20T_DJI_0002_R.JPG",
    "H30T_DJI_0001_R.JPG",
    "M2EA_DJI_0001_R.JPG",
    "M2EA_DJI_0002_R.JPG",
    "M30T_DJI_0001_R.JPG",
    "M30T_DJI_0002_R.JPG",
    "M3T_DJI_0001_R.JPG",
    "M3T_DJI_0002_R.JPG",
)


def xt2_frames(mirror: Path) -> list[Path]:
    # uppercase .JPG only: the untouched drone originals
    frames = sorted(p for p in (mirror / XT2_DIR).glob("*.JPG"))
    if not frames:
        pytest.skip(f"no XT2 frames under {mirror / XT2_DIR}")
    return frames


def flir_xt2(mirror: Path) -> Path:
    return xt2_frames(mirror)[0]


# --- independent check: ExifTool's raw frame and constants, the formula written out here --------------


def thermimage_raw2temp(raw: np.ndarray, t: dict) -> np.ndarray:
    """Thermimage's raw2temp as published (R package Thermimage), in float64, written out independently."""
    e, od, rtemp, atemp = (
        t["Emissivity"],
        t["ObjectDistance"],
        t["ReflectedApparentTemperature"],
        t["AtmosphericTemperature"],
    )
    irwtemp, irt = t["IRWindowTemperature"], t["IRWindowTransmission"]
    rh = t["RelativeHumidity"] * 100.0  # exiftool -n: a fraction
    pr1, pb, pf, po, pr2 = t["PlanckR1"], t["PlanckB"], t["PlanckF"], t["PlanckO"], t["PlanckR2"]
    ata1, ata2, atb1, atb2, atx = (
        t["AtmosphericTransAlpha1"],
        t["AtmosphericTransAlpha2"],
        t["AtmosphericTransBeta1"],
        t["AtmosphericTransBeta2"],
        t["AtmosphericTransX"],
    )
    emiss_wind = 1 - irt
    refl_wind = 0
    h2o = (rh / 100) * math.exp(1.5587 + 0.06939 * atemp - 0.00027816 * atemp**2 + 0.00000068455 * atemp**3)
    tau1 = atx * math.exp(-math.sqrt(od / 2) * (ata1 + atb1 * math.sqrt(h2o))) + (1 - atx) * math.exp(
        -math.sqrt(od / 2) * (ata2 + atb2 * math.sqrt(h2o))
    )
    tau2 = tau1
    raw_refl1 = pr1 / (pr2 * (math.exp(pb / (rtemp + 273.15)) - pf)) - po
    raw_refl1_attn = (1 - e) / e * raw_refl1
    raw_atm1 = pr1 / (pr2 * (math.exp(pb / (atemp + 273.15)) - pf)) - po
    raw_atm1_attn = (1 - tau1) / e / tau1 * raw_atm1
    raw_wind = pr1 / (pr2 * (math.exp(pb / (irwtemp + 273.15)) - pf)) - po
    raw_wind_attn = emiss_wind / e / tau1 / irt * raw_wind
    raw_refl2 = pr1 / (pr2 * (math.exp(pb / (rtemp + 273.15)) - pf)) - po
    raw_refl2_attn = refl_wind / e / tau1 / irt / tau2 * raw_refl2
    raw_atm2 = pr1 / (pr2 * (math.exp(pb / (atemp + 273.15)) - pf)) - po
    raw_atm2_attn = (1 - tau2) / e / tau1 / irt / tau2 * raw_atm2
    raw_obj = (
        raw.astype(np.float64) / e / tau1 / irt / tau2
        - raw_atm1_attn
        - raw_atm2_attn
        - raw_wind_attn
        - raw_refl1_attn
        - raw_refl2_attn
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return pb / np.log(pr1 / (pr2 * (raw_obj + po)) + pf) - 273.15


EXIF_TAGS = [
    "PlanckR1",
    "PlanckR2",
    "PlanckB",
    "PlanckF",
    "PlanckO",
    "Emissivity",
    "ObjectDistance",
    "RelativeHumidity",
    "ReflectedApparentTemperature",
    "AtmosphericTemperature",
    "IRWindowTemperature",
    "IRWindowTransmission",
    "AtmosphericTransAlpha1",
    "AtmosphericTransAlpha2",
    "AtmosphericTransBeta1",
    "AtmosphericTransBeta2",
    "AtmosphericTransX",
    "RawThermalImageType",
    "RawThermalImage",
]


def exiftool_read(paths: list[Path]) -> list[dict]:
    exe = shutil.which("exiftool")
    if not exe:
        pytest.skip("exiftool not installed (Debian: apt-get install libimage-exiftool-perl)")
    out = subprocess.run(
        [exe, "-j", "-n", "-b", *[f"-{t}" for t in EXIF_TAGS], *map(str, paths)],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    text = {"SourceFile", "RawThermalImageType", "RawThermalImage"}
    # with -b, ExifTool prints some numbers as strings
    return [{k: (v if k in text else float(v)) for k, v in d.items()} for d in json.loads(out)]


def exiftool_raw(tags: dict) -> np.ndarray:
    blob = base64.b64decode(tags["RawThermalImage"].removeprefix("base64:"))
    raw = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16
    if tags["RawThermalImageType"] == "PNG":  # FLIR's PNGs hold little-endian words (ExifTool's docs)
        raw = raw.byteswap()
    return raw


def test_xt2_matches_exiftool(mirror):
    frames = xt2_frames(mirror)
    assert len(frames) == 13
    infos = exiftool_read(frames)
    assert len(infos) == len(frames)
    worst = 0.0
    for path, tags in zip(frames, infos, strict=True):
        ref = thermimage_raw2temp(exiftool_raw(tags), tags)
        r = read_radiometry(path.read_bytes())
        assert isinstance(r, Radiometry), (path.name, r)
        assert r.celsius.dtype == np.float32 and r.celsius.shape == ref.shape == (512, 640)
        assert np.isfinite(ref).all() and np.isfinite(r.celsius).all()
        worst = max(worst, float(np.abs(r.celsius - ref).max()))
        # the parser's constants are ExifTool's
        cal = r.calibration
        assert cal is not None
        for mine, theirs in [
            (cal.r1, tags["PlanckR1"]),
            (cal.r2, tags["PlanckR2"]),
            (cal.b, tags["PlanckB"]),
            (cal.f, tags["PlanckF"]),
            (cal.o, tags["PlanckO"]),
            (cal.x, tags["AtmosphericTransX"]),
            (r.params.emissivity, tags["Emissivity"]),
            (r.params.distance_m, tags["ObjectDistance"]),
            (r.params.relative_humidity, tags["RelativeHumidity"] * 100),
            (r.params.reflected_temp_c, tags["ReflectedApparentTemperature"]),
        ]:
            assert mine == pytest.approx(theirs, rel=1e-4, abs=1e-3), path.name
        assert r.param_sources == dict.fromkeys(r.param_sources, "camera")
    assert worst < 0.5, f"max |Δ| vs exiftool + Thermimage formula: {worst:.4f} °C"


@pytest.mark.parametrize("name", FLIR_SAMPLES)
def test_flir_samples_match_exiftool(mirror, name):
    path = mirror / FORMATS_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    (tags,) = exiftool_read([path])
    ref = thermimage_raw2temp(exiftool_raw(tags), tags)
    r = read_radiometry(path.read_bytes())
    assert isinstance(r, Radiometry)
    ok = np.isfinite(ref)
    assert ok.mean() > 0.99
    assert np.array_equal(ok, np.isfinite(r.celsius))
    assert float(np.abs(r.celsius[ok] - ref[ok]).max()) < 0.5


# --- every sample of thermal_formats/ ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLIR_SAMPLES)
def test_flir_sample_plausible(mirror, name):
    path = mirror / FORMATS_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    r = read_radiometry(path.read_bytes())
    assert isinstance(r, Radiometry), r
    assert r.format == "flir"
    t = r.celsius[np.isfinite(r.celsius)]
    assert t.size > 0.99 * r.celsius.size
    lo, med, hi = np.percentile(t, [0.1, 50, 99.9])
    assert -40 < lo < med < hi < 150, (lo, med, hi)
    assert 2 < hi - lo < 100  # a scene, not a constant or noise
    assert r.display_size is not None
    shown = to_display(r)
    assert shown.shape == r.display_size and shown.dtype == np.float32


@pytest.mark.parametrize("name", DJI_SAMPLES)
def test_dji_rjpeg_gets_note(mirror, name):
    path = mirror / FORMATS_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    r = read_radiometry(path.read_bytes())
    assert isinstance(r, RadiometryNote), r
    assert (r.reason, r.format, r.note) == ("unsupported_format", "dji_rjpeg", DJI_NOTE)
    assert r.camera and r.camera.startswith("DJI")


def test_raw_smaller_than_preview(mirror):
    """The FLIR handheld stores a 240x320 raw frame behind a 480x640 JPEG: to_display scales it."""
    path = mirror / FORMATS_DIR / "FLIR.jpg"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    r = read_radiometry(path.read_bytes())
    assert isinstance(r, Radiometry)
    assert r.raw_size == (320, 240) and r.display_size == (640, 480)
    shown = to_display(r, interpolation="nearest")
    assert shown.shape == (640, 480)
    assert np.array_equal(shown[::2, ::2], r.celsius)


# --- the model and its float32 lookup ----------------------------------------------------------------------------


def test_lookup_matches_float64_formula(mirror):
    r = read_radiometry(flir_xt2(mirror).read_bytes())
    assert isinstance(r, Radiometry) and r.calibration is not None
    raw = np.arange(1000, 20000, 7, dtype=np.uint16).reshape(1, -1)
    for params in (r.params, r.params.model_copy(update={"emissivity": 0.85, "distance_m": 40.0})):
        fast = raw_to_celsius(raw, r.calibration, params)
        exact = celsius_from_raw_float(raw.astype(np.float64), r.calibration, params)
        ok = np.isfinite(exact)
        assert ok.sum() > 100
        assert fast.dtype == np.float32
        assert float(np.abs(fast[ok] - exact[ok]).max()) < 0.01


def test_overrides_win_and_are_reported(mirror):
    data = flir_xt2(mirror).read_bytes()
    base = read_radiometry(data)
    r = read_radiometry(data, ThermalOverrides(emissivity=0.85, distance_m=39.0))
    assert isinstance(base, Radiometry) and isinstance(r, Radiometry)
    assert (r.params.emissivity, r.params.distance_m) == (0.85, 39.0)
    assert r.param_sources["emissivity"] == "call" and r.param_sources["relative_humidity"] == "camera"
    assert r.params.relative_humidity == base.params.relative_humidity
    # a lower emissivity stretches contrast above the reflected temperature
    hot = base.celsius > np.percentile(base.celsius, 99)
    assert hot.any()
    assert float(r.celsius[hot].mean()) > float(base.celsius[hot].mean()) + 1.0


def test_config_defaults_when_camera_not_preferred(mirror):
    cfg = load_thermal_config(prefer_camera_params=False)
    r = read_radiometry(flir_xt2(mirror).read_bytes(), config=cfg)
    assert isinstance(r, Radiometry)
    assert r.params == cfg.params
    assert set(r.param_sources.values()) == {"config"}


def test_missing_config_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_thermal_config(tmp_path / "nope.yaml")


def test_config_has_no_code_defaults(tmp_path):
    (tmp_path / "t.yaml").write_text("emissivity: 0.9\n")
    with pytest.raises(ValueError, match="prefer_camera_params"):
        load_thermal_config(tmp_path / "t.yaml")


# --- bad input: a defined outcome, never an exception -------------------------------------------------------


def _jpeg(size=(64, 48), exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, (10, 20, 30))
    im.save(buf, "JPEG", **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _flir_segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every FLIR APP1 segment's payload after the 8-byte FLIR header."""
    out, i = [], 2
    while data[i] == 0xFF and data[i + 1] not in (0xDA, 0xD9):
        (n,) = struct.unpack_from(">H", data, i + 2)
        if data[i + 1] == 0xE1 and data[i + 4 : i + 9] == b"FLIR\x00":
            out.append((i + 12, i + 2 + n))
        i += 2 + n
    return out


def test_plain_jpeg_not_radiometric():
    r = read_radiometry(_jpeg())
    assert isinstance(r, RadiometryNote) and r.reason == "not_radiometric" and r.format == "jpeg"


@pytest.mark.parametrize("data", [b"", b"hello world, not an image at all", b"\xff\xd8\xff"])
def test_not_an_image(data):
    r = read_radiometry(data)
    assert isinstance(r, RadiometryNote) and r.reason == "not_image"


def test_png_not_radiometric():
    ok, png = cv2.imencode(".png", np.full((8, 8), 1234, np.uint16))
    assert ok
    r = read_radiometry(png.tobytes())
    assert isinstance(r, RadiometryNote) and r.reason == "not_radiometric" and r.format == "png"


def _tiff(a: np.ndarray) -> bytes:
    ok, enc = cv2.imencode(".tiff", a)
    assert ok
    return enc.tobytes()


def test_tiff_16bit_uncalibrated_by_default():
    r = read_radiometry(_tiff(np.full((16, 16), 7500, np.uint16)))
    assert isinstance(r, RadiometryNote) and r.reason == "uncalibrated_tiff"


def test_tiff_16bit_fixed_gain_when_configured():
    counts = np.full((16, 16), 7500, np.uint16)
    counts[3, 4] = 8000
    r = read_radiometry(_tiff(counts), tiff_kelvin_per_count=0.04)
    assert isinstance(r, Radiometry) and r.format == "tiff_fixed_gain"
    assert r.celsius[0, 0] == pytest.approx(7500 * 0.04 - 273.15, abs=1e-3)
    assert r.celsius[3, 4] == pytest.approx(8000 * 0.04 - 273.15, abs=1e-3)


def test_tiff_8bit_not_radiometric():
    r = read_radiometry(_tiff(np.full((16, 16), 100, np.uint8)))
    assert isinstance(r, RadiometryNote) and r.reason == "not_radiometric" and r.format == "tiff"


def test_truncated_flir_file(mirror):
    data = flir_xt2(mirror).read_bytes()
    segs = _flir_segments(data)
    assert len(segs) > 2
    cut = data[: segs[len(segs) // 2][0] + 100]  # the file ends inside a FLIR segment
    r = read_radiometry(cut)
    assert isinstance(r, RadiometryNote) and r.reason == "corrupt"
    assert "FLIR" in r.note


def test_missing_flir_segment(mirror):
    data = flir_xt2(mirror).read_bytes()
    segs = _flir_segments(data)
    start, end = segs[2]
    # rename the 3rd FLIR segment's tag so it no longer counts: one piece of the record is gone
    hdr = start - 8
    broken = data[:hdr] + b"XLIR" + data[hdr + 4 :]
    r = read_radiometry(broken)
    assert isinstance(r, RadiometryNote) and r.reason == "corrupt" and "missing" in r.note


@pytest.mark.parametrize("where", ["header", "directory", "raw"])
def test_garbage_fff(mirror, where):
    data = bytearray(flir_xt2(mirror).read_bytes())
    segs = _flir_segments(bytes(data))
    start, end = segs[0]
    rng = np.random.default_rng(0)
    if where == "header":
        data[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    elif where == "directory":
        data[start + 0x40 : start + 0x40 + 512] = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
    else:  # the TIFF inside the raw record
        s2, e2 = segs[1]
        data[s2 : s2 + 4000] = b"\x00" * 4000
        data[start + 0x200 : end] = rng.integers(0, 256, end - start - 0x200, dtype=np.uint8).tobytes()
    r = read_radiometry(bytes(data))  # never raises
    assert isinstance(r, RadiometryNote), r
    assert r.reason == "corrupt" and r.format == "flir" and r.camera == "DJI XT2"


def test_orient_matches_pillow():
    a = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4)
    for o in range(1, 9):
        im = Image.fromarray(a)
        ex = im.getexif()
        ex[0x0112] = o
        buf = io.BytesIO()
        im.save(buf, "PNG", exif=ex)
        from PIL import ImageOps

        want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
        assert np.array_equal(orient(a, o), want), o
