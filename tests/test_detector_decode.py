"""detector.decode: formats, bit depths, thermal stretch, EXIF orientation, limits, typed errors."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from detector_fixtures import XT2_FRAMES, need_xt2
from PIL import Image

from detector.decode import ImageDecodeError, decode_image, stretch_to_uint8


def _png_bytes(arr: np.ndarray, **kw) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "PNG", **kw)
    return b.getvalue()


def test_real_dji_thermal_jpeg():
    need_xt2()
    path = XT2_FRAMES[0]
    d = decode_image(path)
    assert d.pixels.shape == (512, 640, 3) and d.pixels.dtype == np.uint8
    assert d.format == "JPEG" and d.bit_depth == 8
    assert d.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert d.metadata.gps and "RelativeAltitude" in d.metadata.xmp  # XMP sits in the Exif IFD on the XT2
    assert d.source == str(path)


def test_rgb_png_and_tiff_roundtrip_exact(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(decode_image(_png_bytes(arr)).pixels, arr)
    Image.fromarray(arr).save(tmp_path / "a.tif")
    d = decode_image(tmp_path / "a.tif")
    assert d.format == "TIFF" and np.array_equal(d.pixels, arr)


def test_grayscale_8bit_becomes_three_equal_channels():
    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    d = decode_image(_png_bytes(g))
    assert d.grayscale and d.bit_depth == 8 and d.pixels.shape == (16, 16, 3)
    assert all(np.array_equal(d.pixels[:, :, c], g) for c in range(3))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_thermal_is_stretched_by_percentiles(fmt):
    # a thermal-like frame: the scene spans 30000..30999 counts, plus 1% hot/cold outliers
    rng = np.random.default_rng(0)
    scene = rng.integers(30000, 31000, (100, 100)).astype(np.uint16)
    flat = scene.ravel()
    flat[:50] = 65535
    flat[50:100] = 0
    b = io.BytesIO()
    Image.fromarray(scene).save(b, fmt)
    d = decode_image(b.getvalue(), stretch_percentiles=(1.0, 99.0))
    assert d.bit_depth == 16 and d.grayscale and d.mode.startswith("I;16")
    out = d.pixels[:, :, 0].astype(int)
    # independent expectation: linear map of the 1st..99th percentile onto 0..255
    lo, hi = np.percentile(scene, [1, 99])
    expect = np.clip((scene.astype(float) - lo) / (hi - lo) * 255, 0, 255).round()
    assert np.abs(out - expect).max() <= 2
    assert out.max() == 255 and out.min() == 0 and 100 < np.median(out) < 155  # the scene fills the range


def test_stretch_of_flat_and_float_images():
    assert np.all(stretch_to_uint8(np.full((4, 4), 1234, np.uint16)) == 128)
    f = np.linspace(20.0, 40.0, 100, dtype=np.float32).reshape(10, 10)  # degrees C
    s = stretch_to_uint8(f, (0, 100))
    assert s[0, 0] == 0 and s[-1, -1] == 255 and np.all(np.diff(s.ravel().astype(int)) >= 0)
    with pytest.raises(ValueError):
        stretch_to_uint8(f, (50, 10))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation, fmt):
    from PIL import ImageOps

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:6, :6] = [255, 0, 0]  # red marker top-left as stored
    stored[-6:, -6:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = orientation
    b = io.BytesIO()
    Image.fromarray(stored).save(b, fmt, exif=exif.tobytes(), **({"quality": 100} if fmt == "JPEG" else {}))
    d = decode_image(b.getvalue())
    # independent: Pillow's own transposition of the same file
    expect = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(b.getvalue()))).convert("RGB"))
    assert d.pixels.shape == expect.shape
    assert np.abs(d.pixels.astype(int) - expect.astype(int)).max() <= (0 if fmt != "JPEG" else 2)
    if orientation in (6, 8):  # 6: rotate 90 degrees clockwise to display; 8: counter-clockwise
        corner = d.pixels[:5, -5:] if orientation == 6 else d.pixels[-5:, :5]
        assert np.abs(corner.astype(int) - [255, 0, 0]).max() <= 3
    assert d.stored_hw == (20, 40) and d.metadata.orientation == orientation


def test_fast_and_pillow_paths_agree_on_real_jpegs():
    need_xt2()
    for path in XT2_FRAMES[:3]:
        pil = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(decode_image(path).pixels, pil)


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_pixel_ceiling_rejects_bombs_before_decoding():
    # 100000 x 100000 claimed in 60 bytes: refused from the header
    with pytest.raises(ImageDecodeError) as e:
        decode_image(_png_header_only(100_000, 100_000))
    assert e.value.reason == "too_large"
    # the message names the configured ceiling (100 MP), not the imaging library's own (179 MP)
    assert "100 MP" in str(e.value) and "179" not in str(e.value)
    with pytest.raises(ImageDecodeError) as e:
        decode_image(_png_header_only(3000, 2000), max_pixels=5_000_000)
    assert e.value.reason == "too_large" and "limit" in str(e.value)


def test_typed_errors_for_bad_input(tmp_path):
    need_xt2()
    jpg = Path(XT2_FRAMES[0]).read_bytes()
    png = _png_bytes(np.zeros((64, 64, 3), np.uint8) + 7)
    cases = {
        "empty": (b"", "empty"),
        "text": (b"this is not an image at all", "not_image"),
        "truncated_jpeg": (jpg[: len(jpg) - 5000], "truncated"),
        "truncated_png": (png[: len(png) // 2], "truncated"),
        "corrupt_png": (png[:16] + b"\x00" * 40 + png[56:], "corrupt"),
    }
    for name, (data, reason) in cases.items():
        with pytest.raises(ImageDecodeError) as e:
            decode_image(data, name=name)
        assert e.value.reason == reason, (name, e.value.reason, str(e.value))
        assert name in str(e.value)
    with pytest.raises(ImageDecodeError) as e:
        decode_image(tmp_path / "missing.jpg")
    assert e.value.reason == "unreadable"
    with pytest.raises(ImageDecodeError):
        decode_image(tmp_path)  # a folder
    assert issubclass(ImageDecodeError, ValueError)


def test_corrupt_jpeg_data_is_never_scored_as_clean():
    """A flipped block in the middle of a real JPEG: libjpeg decodes it (grey or garbled from the
    damage on) and only prints "Corrupt JPEG data"; the result must say so, or reject it."""
    from detector_fixtures import MIRROR, XT2_FRAMES, model_dir

    from detector import Detector

    srcs = [*XT2_FRAMES[:1], *sorted(MIRROR.glob("wind_fans/valid/images/*.jpg"))[:1]]
    if len(srcs) < 2:
        pytest.skip("no mirror JPEGs")

    det = Detector(model_dir(), threads=1)
    strict = Detector(model_dir(), threads=1, corrupt_jpeg="reject")
    for src in srcs[:2]:
        data = bytearray(src.read_bytes())
        clean = det.inspect([bytes(data)])[0]
        assert clean.ok and clean.warnings == []
        sos = bytes(data).rfind(b"\xff\xda")  # the image's compressed data (a DJI frame carries 600 kB of
        mid = (sos + len(data)) // 2  # radiometric data before it)
        for k in range(mid, mid + 256):
            data[k] ^= 0x5A
        r = det.inspect([(src.name, bytes(data))])[0]
        assert r.ok and r.warnings and "corrupt JPEG data" in r.warnings[0], (src, r.warnings)
        bad = strict.inspect([(src.name, bytes(data))])[0]
        assert bad.status == "error" and bad.error.code == "corrupt_image" and "corrupt JPEG" in bad.error.message
    assert det.model_key != strict.model_key  # a different policy is a different result
