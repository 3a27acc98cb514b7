"""Per-file and form-field checks shared by the inspection and job endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from detector.config import Conditions
from serving.errors import ApiError, Rejection
from serving.upload import CONDITION_FIELDS, UNSAFE_TEXT, Upload, UploadedFile

ASSET_TYPES = ("auto", "pv", "wind")

# magic bytes -> content type; the file name and the client's Content-Type are ignored
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"II+\x00", 0, "image/tiff"),  # BigTIFF
    (b"MM\x00+", 0, "image/tiff"),
    (b"WEBP", 8, "image/webp"),
    (b"BM", 0, "image/bmp"),
)


def sniff_type(data: bytes) -> str | None:
    """The image type the bytes are, by their signature; None if not a known image type."""
    for magic, offset, ctype in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if ctype == "image/webp" and data[:4] != b"RIFF":
                continue
            return ctype
    return None


def check_type(f: UploadedFile, allowed: list[str]) -> str:
    """The file's content type if it is allowed; else raises Rejection (415)."""
    assert f.data is not None
    ctype = sniff_type(f.data)
    if ctype is None:
        raise Rejection(415, "unsupported_type", f"not an image of an accepted type ({', '.join(allowed)})")
    if ctype not in allowed:
        raise Rejection(415, "unsupported_type", f"{ctype} is not accepted; accepted: {', '.join(allowed)}")
    return ctype


__all__ = ["ASSET_TYPES", "CONDITION_FIELDS", "FormFields", "check_type", "form_fields", "sniff_type"]


@dataclass(frozen=True)
class FormFields:
    asset_type: str = "auto"
    site: str | None = None
    flight: str | None = None
    conditions: Conditions = Conditions()


def form_fields(upload: Upload) -> FormFields:
    f = upload.fields
    asset = (f.get("asset_type") or "auto").strip().lower()
    if asset not in ASSET_TYPES:
        raise ApiError(422, "bad_asset_type", f"asset_type must be one of {', '.join(ASSET_TYPES)}, got {asset[:20]!r}")
    out = {}
    for name in ("site", "flight"):
        v = (f.get(name) or "").strip()
        if len(v) > 200:
            raise ApiError(422, "field_too_long", f"{name} is longer than 200 characters")
        if UNSAFE_TEXT.search(v):
            raise ApiError(422, "bad_field", f"{name} contains control or bidirectional-control characters")
        out[name] = v or None
    values: dict[str, float] = {}
    for name in CONDITION_FIELDS:
        raw = (f.get(name) or "").strip()
        if not raw:
            continue
        try:
            values[name] = float(raw)
        except ValueError:
            raise ApiError(422, "bad_field", f"{name} must be a number, got {raw[:20]!r}") from None
    try:
        conditions = Conditions(**values)
    except ValidationError as e:
        err = e.errors()[0]
        raise ApiError(422, "bad_field", f"{err['loc'][0]}: {err['msg']}") from None
    return FormFields(asset, out["site"], out["flight"], conditions)
