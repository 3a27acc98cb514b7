"""The service's one adapter to ``detector/``: a :class:`DetectorPool` (the loaded model,
one :class:`detector.Detector` per inference worker thread), decoding of uploaded bytes
into the detector's images (its typed errors become 4xx rejections), and scoring into
:class:`detector.results.ImageResult`.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from detector import Detector
from detector.config import Conditions
from detector.decode import DecodedImage, ImageDecodeError
from detector.model import ModelLoadError, resolve_model_path
from detector.results import ImageResult
from detector.taxonomy import load_taxonomy
from serving.errors import Rejection

log = logging.getLogger("pvwind.detectors")


class ModelNotLoaded(RuntimeError):
    """The model cannot be loaded (message names the file and the problem)."""


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    asset: str | None
    description: str


class DetectorPool:
    """The model in service: one ``Detector`` per inference worker (they are not shared between threads)."""

    def __init__(
        self,
        model: str | Path,
        *,
        workers: int = 1,
        threads: int = 0,
        max_pixels: int | None = None,
        config: str | Path | None = None,
    ) -> None:
        try:
            path = resolve_model_path(model)
            self.detectors = [
                Detector(path, config=config, threads=threads or None, max_pixels=max_pixels)
                for _ in range(max(1, workers))
            ]
        except (ModelLoadError, ValueError, OSError) as e:
            raise ModelNotLoaded(str(e)) from e
        det = self.detectors[0]
        self.info = det.info
        self.names: tuple[str, ...] = det.names
        self.backend = det.backend.name
        self.max_pixels = det.config.max_pixels
        self.model_dir = path.parent if path.name == "model.onnx" else None
        self.model_key = det.model_key
        self.classes = self._classes()
        self.metrics = self._read_json("metrics.json")
        self.card = self._read_text("MODEL_CARD.md")

    # ---------------------------------------------------------------- model facts
    def _classes(self) -> list[ClassInfo]:
        try:
            tax = {c.name: c for c in load_taxonomy().classes}
        except Exception:  # noqa: BLE001 - the taxonomy only adds descriptions
            tax = {}
        return [
            ClassInfo(i, n, tax[n].asset if n in tax else None, tax[n].description if n in tax else "")
            for i, n in enumerate(self.names)
        ]

    def _read_json(self, name: str) -> dict[str, Any] | None:
        if self.model_dir is None or not (self.model_dir / name).is_file():
            return None
        try:
            return json.loads((self.model_dir / name).read_text())
        except (OSError, ValueError):
            log.warning("cannot read %s", self.model_dir / name)
            return None

    def _read_text(self, name: str) -> str | None:
        if self.model_dir is None or not (self.model_dir / name).is_file():
            return None
        return (self.model_dir / name).read_text(errors="replace")

    # ---------------------------------------------------------------- decoding
    def decode(self, data: bytes, name: str, conditions: Conditions | None = None) -> DecodedImage:
        """Decode uploaded bytes with the detector's decoder (radiometric frames under
        ``conditions``); raises Rejection (4xx) on bad input."""
        try:
            return self.detectors[0].decode(data, name=name, conditions=conditions)
        except ImageDecodeError as e:
            raise Rejection(e.status, e.code, e.detail) from None

    def probe(self, data: bytes) -> tuple[int, int]:
        """(width, height) from the header only, checked against the pixel ceiling; raises
        Rejection. For job uploads: the full decode happens when the job scores the image."""
        try:
            with PILImage.open(io.BytesIO(data)) as im:
                w, h = im.size
        except PILImage.DecompressionBombError:
            raise Rejection(
                413, "too_many_pixels", f"image dimensions are above the {self.max_pixels / 1e6:.0f} MP limit"
            ) from None
        except Exception:  # noqa: BLE001 - Pillow raises many types on bad headers
            raise Rejection(422, "corrupt_image", "unreadable image header") from None
        if w * h > self.max_pixels:
            raise Rejection(
                413,
                "too_many_pixels",
                f"image has {w}x{h} = {w * h / 1e6:.0f} MP, above the {self.max_pixels / 1e6:.0f} MP limit",
            )
        return w, h


def score(detector: Detector, images: Sequence[DecodedImage]) -> list[ImageResult]:
    """Detect, locate and prioritise with one worker's detector (run on its inference thread)."""
    return detector.inspect(list(images), prefetch=False)
