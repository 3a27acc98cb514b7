"""One router module per resource."""

from __future__ import annotations

from typing import Any

from serving.schemas import ErrorResponse

UPLOAD_TYPES = "image/jpeg, image/png, image/tiff, image/webp"
CONDITIONS_SCHEMA: dict[str, Any] = {
    "irradiance_w_m2": {"type": "number", "exclusiveMinimum": 0, "maximum": 2000,
                        "description": "irradiance on the module plane, W/m² (ΔT normalised to 1000 W/m²; "
                        "below 600 the thermal class is provisional). POST /v1/inspections only."},
    "emissivity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "reflected_temp_c": {"type": "number", "minimum": -40, "maximum": 500},
    "distance_m": {"type": "number", "minimum": 0, "maximum": 10000},
    "relative_humidity": {"type": "number", "minimum": 0, "maximum": 100},
}  # fmt: skip


#: a text field may hold no control or bidirectional-control characters (serving.upload.UNSAFE_TEXT)
TEXT_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]*$"


def upload_body(description: str, *, conditions: bool = True) -> dict[str, Any]:
    """The OpenAPI request body of the multipart upload endpoints (parsed by ``serving.upload``):
    exactly the fields the parser accepts (``additionalProperties: false``; an unknown field is
    422), ``files`` as file parts, the others as text. ``maxItems`` and the files' content types
    are filled in from the settings by ``serving.app``."""
    text = {"type": "string", "maxLength": 200, "pattern": TEXT_PATTERN}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "additionalProperties": False,
                        "properties": {
                            "files": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "string", "format": "binary"},
                                "description": "the images, one file part each (JPEG, PNG, TIFF, WebP; recognised by "
                                "content, not by name or Content-Type); a file name of up to 1024 characters is "
                                "shown cut to 200, without control or bidirectional-control characters",
                            },
                            "asset_type": {"type": "string", "enum": ["auto", "pv", "wind"], "default": "auto"},
                            "site": {**text, "description": "the plant or wind farm (text, at most 200 characters)"},
                            "flight": {**text, "description": "the flight (text, at most 200 characters)"},
                            **(CONDITIONS_SCHEMA if conditions else {}),
                        },
                    },
                    "encoding": {"files": {"contentType": UPLOAD_TYPES}},
                }
            },
        }
    }


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "malformed request",
        401: "missing or invalid API key",
        403: "not allowed from this address",
        404: "not found",
        409: "conflict with the resource's state",
        413: "too large: bytes, files or pixels over a limit",
        415: "not an accepted image type / not multipart",
        422: "invalid input",
        503: "busy (Retry-After) or the model is not loaded",
    }
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}
