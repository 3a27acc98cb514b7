"""Letterbox preprocessing (the same geometry as Ultralytics' ``LetterBox``) and its inverse.

An image is scaled by ``gain = min(H_in / h, W_in / w)`` (bilinear, OpenCV), centred and
padded with grey (114). For models with dynamic height/width, ``rect_shape`` gives the
smallest stride-aligned input that holds the scaled image (Ultralytics' ``auto=True``),
which is what its predictor uses for such models and saves compute on non-square frames.
A ``border`` keeps that many grey pixels around the scaled image on every side (the gain is
taken on the input less the border): the detector's whole-frame pass uses one
(``configs/detector.yaml``, ``border``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image of ``orig_hw`` was placed into an input of ``input_hw``."""

    orig_hw: tuple[int, int]
    input_hw: tuple[int, int]
    gain: float
    left: int
    top: int
    new_wh: tuple[int, int]

    def to_original(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Map (N, 4) xyxy boxes from input pixels back to original-image pixels."""
        out = np.asarray(xyxy, np.float32).copy()
        out[:, [0, 2]] -= self.left
        out[:, [1, 3]] -= self.top
        out /= self.gain
        if clip:
            h, w = self.orig_hw
            out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
            out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
        return out


def letterbox_info(
    orig_hw: tuple[int, int], input_hw: tuple[int, int], scale_up: bool = True, border: int = 0
) -> LetterboxInfo:
    h, w = orig_hw
    ih, iw = input_hw
    if not 0 <= 2 * border < min(ih, iw):
        raise ValueError(f"a border of {border} px does not fit an input of {ih}x{iw}")
    r = min((ih - 2 * border) / h, (iw - 2 * border) / w)
    if not scale_up:
        r = min(r, 1.0)
    nw, nh = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (iw - nw) / 2, (ih - nh) / 2
    return LetterboxInfo((h, w), (ih, iw), r, round(dw - 0.1), round(dh - 0.1), (nw, nh))


def rect_shape(orig_hw: tuple[int, int], imgsz: tuple[int, int], stride: int = 32) -> tuple[int, int]:
    """Smallest stride-aligned (H, W) within ``imgsz`` that holds the scaled image."""
    h, w = orig_hw
    ih, iw = imgsz
    r = min(ih / h, iw / w)
    nw, nh = max(round(w * r), 1), max(round(h * r), 1)
    return nh + (ih - nh) % stride, nw + (iw - nw) % stride


def letterbox(
    image: np.ndarray, input_hw: tuple[int, int], out: np.ndarray | None = None, border: int = 0
) -> tuple[np.ndarray, LetterboxInfo]:
    """Letterbox an HxWx3 uint8 image into ``input_hw``; writes into ``out`` when given."""
    info = letterbox_info(image.shape[:2], input_hw, border=border)
    ih, iw = input_hw
    nw, nh = info.new_wh
    if out is None:
        out = np.empty((ih, iw, 3), np.uint8)
    resized = (
        image
        if (image.shape[1], image.shape[0]) == (nw, nh)
        else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    )
    t, left = info.top, info.left
    # fill only the borders: the image region is overwritten anyway
    out[:t] = PAD_VALUE
    out[t + nh :] = PAD_VALUE
    out[t : t + nh, :left] = PAD_VALUE
    out[t : t + nh, left + nw :] = PAD_VALUE
    out[t : t + nh, left : left + nw] = resized
    return out, info


def batch_input_shape(
    shapes: Sequence[tuple[int, int]], imgsz: tuple[int, int], stride: int, dynamic_hw: bool
) -> tuple[int, int]:
    """The input (H, W) for a batch: the model's fixed size, or the smallest rect holding all images."""
    if not dynamic_hw:
        return imgsz
    rects = [rect_shape(s, imgsz, stride) for s in shapes]
    return max(r[0] for r in rects), max(r[1] for r in rects)


_SCALE = np.float32(1 / 255)


def to_tensor(batch_hwc: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 in [0, 1], contiguous."""
    b, h, w, _ = batch_hwc.shape
    x = np.empty((b, 3, h, w), np.float32)
    for i in range(b):
        for c in range(3):  # contiguous writes per plane: ~3x faster than one strided transpose
            np.multiply(batch_hwc[i, :, :, c], _SCALE, out=x[i, c], casting="unsafe")
    return x


def letterbox_into(image: np.ndarray, out: np.ndarray, scale_up: bool = True, border: int = 0) -> LetterboxInfo:
    """Letterbox an (H, W, 3) uint8 RGB image straight into a (3, H_in, W_in) float32 slot.

    Equivalent to ``to_tensor(letterbox(image, (H_in, W_in))[0][None])[0]`` without the
    intermediate uint8 canvas. ``scale_up=False``: never enlarge (a tile at native resolution
    in a stride-aligned input). ``border``: grey pixels kept around the image on every side.
    """
    ih, iw = out.shape[1:]
    info = letterbox_info(image.shape[:2], (ih, iw), scale_up, border)
    nw, nh = info.new_wh
    resized = (
        image
        if (image.shape[1], image.shape[0]) == (nw, nh)
        else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    )
    t, left = info.top, info.left
    pad = np.float32(PAD_VALUE) * _SCALE
    out[:, :t] = pad
    out[:, t + nh :] = pad
    out[:, t : t + nh, :left] = pad
    out[:, t : t + nh, left + nw :] = pad
    for c in range(3):
        np.multiply(resized[:, :, c], _SCALE, out=out[c, t : t + nh, left : left + nw], casting="unsafe")
    return info
