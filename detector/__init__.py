"""pvwind-inspect inference library: torch-free defect detection for drone imagery.

Public API (imports are light: numpy, opencv, pillow, onnxruntime on first use):

    from detector import Detector, Detections, ImageResult, Finding, ImageDecodeError, decode_image
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Detector",
    "DetectorConfig",
    "Detections",
    "ImageResult",
    "Finding",
    "ImageDecodeError",
    "ModelLoadError",
    "DecodedImage",
    "decode_image",
    "load_detector_config",
    "load_priority_config",
    "rollup",
]

_WHERE = {
    "Detector": "detector.detector",
    "DetectorConfig": "detector.config",
    "load_detector_config": "detector.config",
    "Detections": "detector.detections",
    "ImageResult": "detector.results",
    "Finding": "detector.results",
    "rollup": "detector.results",
    "ImageDecodeError": "detector.decode",
    "DecodedImage": "detector.decode",
    "decode_image": "detector.decode",
    "ModelLoadError": "detector.model",
    "load_priority_config": "detector.priority",
}

if TYPE_CHECKING:
    from detector.config import DetectorConfig, load_detector_config
    from detector.decode import DecodedImage, ImageDecodeError, decode_image
    from detector.detections import Detections
    from detector.detector import Detector
    from detector.model import ModelLoadError
    from detector.priority import load_priority_config
    from detector.results import Finding, ImageResult, rollup


def __getattr__(name: str) -> Any:
    # lazy: `pvwind --help` and `import detector.taxonomy` stay fast
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
