"""Image decoding: bytes or a path in, an RGB uint8 array plus metadata out.

- JPEG, PNG and TIFF (and whatever else Pillow reads), 8- and 16-bit, grayscale or colour.
- Grayscale images (e.g. radiometric thermal frames) become 3-channel; 16-bit (and 32-bit
  or float) single-channel images are stretched to 8 bits between two percentiles, so
  the few hundred counts a thermal scene spans fill the 0-255 range.
- The EXIF orientation is applied (pixels come out upright, as a viewer shows them).
- A pixel-count ceiling is checked from the header, before any pixel is decoded.
- Anything that is not a whole, readable image raises :class:`ImageDecodeError` with a
  ``reason`` (``empty``, ``not_image``, ``truncated``, ``corrupt``, ``too_large``,
  ``unreadable``), never another exception type.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_STRETCH = (1.0, 99.0)  # for arrays handed in directly; decoding takes configs/detector.yaml's
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
XMP_TAG = 0x02BC


#: ImageDecodeError.reason -> (stable error code, HTTP-style status) as results and the API report them
DECODE_ERRORS: dict[str, tuple[str, int]] = {
    "empty": ("empty_file", 422),
    "not_image": ("unsupported_type", 415),
    "truncated": ("truncated_image", 422),
    "corrupt": ("corrupt_image", 422),
    "too_large": ("too_many_pixels", 413),
    "unreadable": ("unreadable_image", 422),
}


class ImageDecodeError(ValueError):
    """The input is not a whole, decodable image within the limits."""

    def __init__(self, message: str, *, reason: str = "corrupt", source: str | None = None) -> None:
        self.reason = reason
        self.source = source
        self.detail = message  # without the source label
        super().__init__(f"{source}: {message}" if source else message)

    @property
    def code(self) -> str:
        return DECODE_ERRORS.get(self.reason, ("bad_image", 422))[0]

    @property
    def status(self) -> int:
        return DECODE_ERRORS.get(self.reason, ("bad_image", 422))[1]


@dataclass
class ImageMetadata:
    """Raw metadata as read from the file; interpreted by :mod:`detector.geo`."""

    exif: dict[int, Any] = field(default_factory=dict)  # IFD0 tags
    exif_ifd: dict[int, Any] = field(default_factory=dict)  # Exif sub-IFD (FocalLength, ...)
    gps: dict[int, Any] = field(default_factory=dict)  # GPS IFD
    xmp: str = ""  # XMP packet(s), concatenated
    orientation: int = 1


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8 RGB, upright
    source: str
    sha256: str
    format: str
    mode: str  # the file's Pillow mode, e.g. "RGB", "L", "I;16"
    bit_depth: int
    grayscale: bool
    metadata: ImageMetadata
    stored_hw: tuple[int, int]  # (H, W) as stored, before the EXIF orientation was applied
    data: bytes = field(default=b"", repr=False)  # the file's bytes (radiometric segments are read from them)
    celsius: np.ndarray | None = field(default=None, repr=False)  # upright temperature map of a radiometric frame
    thermal: Any = None  # its detector.radiometry reading (Radiometry or RadiometryNote)
    conditions: Any = None  # the detector.config.Conditions it was read under
    warnings: list[str] = field(default_factory=list)  # e.g. corrupt JPEG data decoded as far as it goes

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def decode_image(
    source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
    stretch_percentiles: tuple[float, float] = DEFAULT_STRETCH,
    corrupt_jpeg: str = "warn",
) -> DecodedImage:
    """Decode one image. ``name`` labels byte input in results and errors. ``max_pixels``:
    the pixel ceiling (default: ``max_pixels`` of configs/detector.yaml). ``corrupt_jpeg``:
    ``"warn"`` decodes a JPEG with corrupt compressed data as far as it goes and says so in
    ``DecodedImage.warnings``; ``"reject"`` raises ImageDecodeError (reason ``corrupt``)."""
    if max_pixels is None:
        from detector.config import shipped_defaults

        max_pixels = shipped_defaults().max_pixels
    data, label = _read(source, name)
    if not data:
        raise ImageDecodeError("empty input (0 bytes)", reason="empty", source=label)
    sha = hashlib.sha256(data).hexdigest()
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        # Pillow's own bomb guard fired first: name the configured ceiling, not Pillow's
        raise ImageDecodeError(
            f"image dimensions are above the {max_pixels / 1e6:.0f} MP limit", reason="too_large", source=label
        ) from None
    except UnidentifiedImageError:
        kind = _sniff(data)
        if kind:
            raise ImageDecodeError(f"corrupt {kind} (unreadable header)", reason="corrupt", source=label) from None
        raise ImageDecodeError("not a recognised image format", reason="not_image", source=label) from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types on corrupt headers
        if _sniff(data) is None:
            # (also when a third-party Pillow plugin fails while probing, e.g. a missing HEIF module)
            raise ImageDecodeError("not a recognised image format", reason="not_image", source=label) from None
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise ImageDecodeError(
            f"unreadable image header ({type(e).__name__}: {e})", reason=reason, source=label
        ) from None
    try:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageDecodeError(f"invalid image size {w}x{h}", reason="corrupt", source=label)
        if w * h > max_pixels:
            raise ImageDecodeError(
                f"image has {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP limit",
                reason="too_large",
                source=label,
            )
        fmt = im.format or "unknown"
        mode = im.mode
        meta = _metadata(im)
        stored_hw = (h, w)
        if fmt == "JPEG" and not _jpeg_complete(data):
            raise ImageDecodeError("truncated JPEG (no end-of-image marker)", reason="truncated", source=label)
        warnings: list[str] = []
        try:
            fast = _decode_cv2(data, fmt, mode, stored_hw)
        except CorruptJPEG as e:
            if corrupt_jpeg == "reject":
                raise ImageDecodeError(f"corrupt JPEG data ({e})", reason="corrupt", source=label) from None
            warnings.append(
                f"corrupt JPEG data ({e}): part of the image is decoder fill, so findings there are missing"
            )
            fast = e.pixels
        if fast is not None:
            pixels = _orient(fast, meta.orientation)
            bit_depth, gray = 8, mode in ("L", "LA")
        else:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            try:
                im.load()
            except OSError as e:
                if "truncated" in str(e).lower():
                    raise ImageDecodeError(f"truncated image data ({e})", reason="truncated", source=label) from None
                raise ImageDecodeError(f"corrupt image data ({e})", reason="corrupt", source=label) from None
            except (SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as e:
                raise ImageDecodeError(
                    f"corrupt image data ({type(e).__name__}: {e})", reason="corrupt", source=label
                ) from None
            if meta.orientation not in (0, 1):
                im = ImageOps.exif_transpose(im)
            pixels, bit_depth, gray = _to_rgb8(im, stretch_percentiles)
        # the stored pixel grid (before orientation), from the result: Pillow reports some
        # formats' size already rotated (TIFF with orientation 5-8)
        uh, uw = pixels.shape[:2]
        stored_hw = (uw, uh) if meta.orientation in (5, 6, 7, 8) else (uh, uw)
    except ImageDecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - last line of defence: never let a bad file crash a batch
        raise ImageDecodeError(
            f"cannot decode image ({type(e).__name__}: {e})", reason="corrupt", source=label
        ) from None
    return DecodedImage(pixels, label, sha, fmt, mode, bit_depth, gray, meta, stored_hw, bytes(data), warnings=warnings)


def read_metadata(source: str | os.PathLike | bytes) -> ImageMetadata:
    """Only the metadata (no pixel decoding)."""
    data, label = _read(source, None)
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _metadata(im)
    except Exception as e:  # noqa: BLE001
        raise ImageDecodeError(f"cannot read metadata ({e})", reason="not_image", source=label) from None


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def stretch_to_uint8(a: np.ndarray, percentiles: tuple[float, float] = DEFAULT_STRETCH) -> np.ndarray:
    """Linearly map the [p_lo, p_hi] percentile range of a single-channel array to 0-255."""
    lo_p, hi_p = percentiles
    if not 0 <= lo_p < hi_p <= 100:
        raise ValueError(f"stretch percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    if a.dtype == np.uint16:
        # exact percentiles from a histogram: O(N), no sort
        hist = np.bincount(a.ravel(), minlength=65536)
        cdf = np.cumsum(hist)
        total = cdf[-1]
        lo = float(np.searchsorted(cdf, total * lo_p / 100, side="left"))
        hi = float(np.searchsorted(cdf, total * hi_p / 100, side="left"))
    else:
        sample = a[:: max(1, a.shape[0] // 1000), :: max(1, a.shape[1] // 1000)].astype(np.float64)
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return np.zeros(a.shape, np.uint8)
        lo, hi = (float(v) for v in np.percentile(sample, [lo_p, hi_p]))
    if hi <= lo:
        # flat image: map to mid-grey rather than inventing contrast
        return np.full(a.shape, 128 if np.any(a) else 0, np.uint8)
    scale = 255.0 / (hi - lo)
    out = (a.astype(np.float32) - np.float32(lo)) * np.float32(scale)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(out, 0, 255).round().astype(np.uint8)


# -- internals ---------------------------------------------------------------------------------


def _read(source: Any, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), name or "<bytes>"
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        label = name or str(path)
        try:
            return path.read_bytes(), label
        except FileNotFoundError:
            raise ImageDecodeError("file not found", reason="unreadable", source=label) from None
        except IsADirectoryError:
            raise ImageDecodeError("is a directory", reason="unreadable", source=label) from None
        except OSError as e:
            raise ImageDecodeError(f"cannot read file ({e.strerror or e})", reason="unreadable", source=label) from None
    if hasattr(source, "read"):
        label = name or str(getattr(source, "name", "<stream>"))
        try:
            data = source.read()
        except OSError as e:
            raise ImageDecodeError(f"cannot read stream ({e})", reason="unreadable", source=label) from None
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ImageDecodeError("stream is not opened in binary mode", reason="unreadable", source=label)
        return bytes(data), label
    raise ImageDecodeError(f"unsupported input type {type(source).__name__}", reason="unreadable", source=name)


_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"GIF8", "GIF"),
)


def _sniff(data: bytes) -> str | None:
    """The format a file claims by its magic bytes (to tell a corrupt image from a non-image)."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _jpeg_complete(data: bytes) -> bool:
    # Pillow decodes a JPEG cut inside the last scan without complaint (it pads the
    # stream); a whole file ends with the EOI marker, possibly followed by a little
    # padding or an appended trailer, so look for it near the end.
    return b"\xff\xd9" in data[-4096:] if len(data) > 4096 else b"\xff\xd9" in data


_CV2_MODES = frozenset({"RGB", "L", "RGBA", "LA"})


class CorruptJPEG(ValueError):
    """libjpeg reported corrupt compressed data (it decodes such a file anyway, filling what it
    cannot decode); ``pixels`` is that best-effort decode."""

    def __init__(self, message: str, pixels: np.ndarray) -> None:
        super().__init__(message)
        self.pixels = pixels


def _decode_jpeg(data: bytes) -> np.ndarray:
    """A baseline/progressive JPEG to RGB with libjpeg-turbo (simplejpeg: the same islow DCT
    and fancy upsampling as OpenCV's decoder, so the same pixels, and faster). Raises
    :class:`CorruptJPEG` when libjpeg warns about corrupt data: OpenCV and Pillow only print
    "Corrupt JPEG data" to stderr and return a partly grey image."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as e:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False)
        raise CorruptJPEG(str(e).strip() or "corrupt JPEG data", pixels) from None


def _decode_cv2(data: bytes, fmt: str, mode: str, hw: tuple[int, int]) -> np.ndarray | None:
    """8-bit JPEG/PNG through libjpeg-turbo / OpenCV: 2-3x faster than Pillow plus its array
    copy, and the same decode Ultralytics uses. ``None``: leave the file to Pillow (which
    also produces the precise error for a damaged file). Raises :class:`CorruptJPEG`."""
    if fmt not in ("JPEG", "PNG") or mode not in _CV2_MODES:
        return None
    flags = cv2.IMREAD_IGNORE_ORIENTATION | getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR)
    if fmt == "JPEG":
        data = _strip_app_segments(data)
        if mode in ("RGB", "L"):
            try:
                a = _decode_jpeg(data)
            except CorruptJPEG:
                raise
            except Exception:  # noqa: BLE001 - an unusual JPEG: OpenCV or Pillow decide
                a = None
            if a is not None and a.shape[:2] == hw:
                return a
    try:
        a = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    if a is None or a.shape[:2] != hw or a.dtype != np.uint8:
        return None
    if not hasattr(cv2, "IMREAD_COLOR_RGB"):
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return a


_DROP_APP = frozenset(range(0xE1, 0xEE)) | {0xEF}  # APP1-APP13, APP15; keep APP0 (JFIF) and APP14 (Adobe)


def _strip_app_segments(data: bytes) -> bytes:
    """The JPEG without its metadata segments (EXIF, XMP, ICC, FLIR radiometric data...).

    Metadata was already read by Pillow; the decoder only needs the image. A DJI thermal
    frame carries ~600 kB of FLIR segments that libjpeg otherwise copies, which doubles its
    decode time. Returns the input unchanged if the marker structure looks unusual."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return data
    parts = [data[:2]]
    i = 2
    dropped = False
    while i + 4 <= n:
        if data[i] != 0xFF:
            return data
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is image data
            parts.append(data[i:])
            return b"".join(parts) if dropped else data
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            parts.append(data[i : i + 2])
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            return data
        if marker in _DROP_APP:
            dropped = True
        else:
            parts.append(data[i : i + 2 + length])
        i += 2 + length
    return data


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation the way Pillow's ``exif_transpose`` does."""
    if orientation in (0, 1):
        return a
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.transpose(1, 0, 2),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda x: np.rot90(x, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(a)) if op else a


def _metadata(im: Image.Image) -> ImageMetadata:
    meta = ImageMetadata()
    try:
        exif = im.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not make the image unreadable
        exif = None
    xmp_parts: list[str] = []
    if exif:
        meta.exif = {k: v for k, v in exif.items() if k not in (EXIF_IFD, GPS_IFD)}
        for attr, tag in (("exif_ifd", EXIF_IFD), ("gps", GPS_IFD)):
            try:
                setattr(meta, attr, dict(exif.get_ifd(tag)))
            except Exception:  # noqa: BLE001
                pass
        try:
            meta.orientation = int(exif.get(0x0112, 1) or 1)
        except (TypeError, ValueError):
            meta.orientation = 1
        for src in (meta.exif, meta.exif_ifd):
            if XMP_TAG in src:
                xmp_parts.append(_text(src[XMP_TAG]))
    info_xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if info_xmp:
        xmp_parts.append(_text(info_xmp))
    meta.xmp = "\n".join(p for p in xmp_parts if p)
    return meta


def _text(v: Any) -> str:
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, tuple):  # some TIFF writers store XMP as a tuple of byte values
        try:
            return bytes(v).decode("utf-8", errors="replace")
        except (TypeError, ValueError):
            return ""
    return str(v)


def _to_rgb8(im: Image.Image, percentiles: tuple[float, float]) -> tuple[np.ndarray, int, bool]:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(im)
        if a.dtype != np.uint16:
            a = a.astype(np.uint16)
        return _gray3(stretch_to_uint8(a, percentiles)), 16, True
    if mode in ("I", "F"):
        a = np.asarray(im)
        if mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535:
            return _gray3(stretch_to_uint8(a.astype(np.uint16), percentiles)), 16, True
        return _gray3(stretch_to_uint8(a, percentiles)), 32, True
    if mode in ("L", "1", "LA", "La"):
        return _gray3(np.asarray(im.convert("L"))), 8, True
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im), 8, False


def _gray3(g: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))


def as_rgb8(a: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Any image array -> (H, W, 3) uint8 (RGB assumed for 3 channels; alpha dropped)."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        g = a if a.dtype == np.uint8 else stretch_to_uint8(a, percentiles)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {a.shape}")
    if a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = (np.clip(np.nan_to_num(a), 0, 1) * 255).round()
        elif a.dtype == np.uint16:
            a = a / 257.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError("empty image array")
    return a
