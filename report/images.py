"""Small JPEGs for the report: a crop around each finding (thumbnail) and a reduced copy of an
annotated image (preview), embedded as ``data:`` URIs so the report needs no other file."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from detector.decode import ImageDecodeError, decode_image


def rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def load_pixels(data: bytes | None, max_pixels: int | None = None) -> np.ndarray | None:
    """Upright RGB pixels of an image file's bytes (EXIF orientation applied, as the boxes are),
    or None when the bytes are missing or cannot be decoded."""
    if not data:
        return None
    try:
        return decode_image(data, max_pixels=max_pixels).pixels
    except ImageDecodeError:
        return None


def jpeg(pixels: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def data_uri(data: bytes, media_type: str = "image/jpeg") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def fit(pixels: np.ndarray, size: int) -> np.ndarray:
    """Scaled down (never up) so that the longer side is at most ``size``."""
    h, w = pixels.shape[:2]
    s = size / max(h, w)
    if s >= 1:
        return pixels
    return cv2.resize(pixels, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def thumbnail(
    pixels: np.ndarray,
    xyxy: tuple[float, float, float, float],
    color: tuple[int, int, int],
    size: int = 112,
    quality: int = 72,
) -> bytes:
    """A square-ish crop around the box (with context around it), the box outlined in ``color``,
    at most ``size`` pixels on its longer side."""
    h, w = pixels.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    side = max(x2 - x1, y2 - y1) * 1.6 + 24
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    cx1, cy1 = int(max(0, min(w - 1, cx - side / 2))), int(max(0, min(h - 1, cy - side / 2)))
    cx2, cy2 = int(max(cx1 + 1, min(w, cx + side / 2))), int(max(cy1 + 1, min(h, cy + side / 2)))
    crop = np.ascontiguousarray(pixels[cy1:cy2, cx1:cx2])
    ch, cw = crop.shape[:2]
    s = min(1.0, size / max(ch, cw)) if max(ch, cw) > size else min(4.0, size / max(ch, cw))
    crop = cv2.resize(
        crop,
        (max(1, round(cw * s)), max(1, round(ch * s))),
        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
    )
    bx1, by1 = round((x1 - cx1) * s), round((y1 - cy1) * s)
    bx2, by2 = round((x2 - cx1) * s), round((y2 - cy1) * s)
    cv2.rectangle(crop, (bx1, by1), (bx2, by2), color, 2, cv2.LINE_AA)
    return jpeg(crop, quality)
