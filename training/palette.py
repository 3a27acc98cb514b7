"""Thermal palettes: from a rendered thermal JPEG back to a scalar, and re-rendered the way the
detector renders radiometric frames.

The public thermal training images (``pv_zelestra_ir``) are 8-bit renderings in the camera's
"iron" palette over each frame's automatic range; the detector renders a radiometric frame's
temperatures with ``configs/thermal.yaml``'s colour map (inferno) over that frame's own
percentile range. A model trained only on the first sees a different picture at inference. The
build therefore adds re-rendered copies of thermal training images: each pixel's colour is mapped
back to its position along the palette (a scalar that is a monotone function of temperature) and
rendered again through :func:`detector.thermal.render` over a randomly drawn percentile range, so
that the palette and its range matter less to the model.

The palette itself (``training/palettes/<name>.csv``, 256 RGB rows, coldest first) is fitted from
radiometric frames whose preview uses it: sorting a preview's pixels by their measured temperature
walks the palette from its cold end to its hot end whatever the camera's range was
(:func:`fit_palette`; ``tests/test_palette.py`` refits it from the 13 XT2 frames of the mirror).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

PALETTES_DIR = Path(__file__).resolve().parent / "palettes"
_CUBE_BITS = 5  # 32 levels per channel: 32,768 cells, each mapped to its nearest palette entry


def palette_path(name: str) -> Path:
    path = PALETTES_DIR / f"{name}.csv"
    if not path.is_file():
        known = sorted(p.stem for p in PALETTES_DIR.glob("*.csv"))
        raise FileNotFoundError(f"unknown thermal palette {name!r}; known: {known}")
    return path


def load_palette(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB, coldest first."""
    lut = np.loadtxt(palette_path(name), delimiter=",", comments="#", dtype=np.float32)
    if lut.ndim != 2 or lut.shape[1] != 3:
        raise ValueError(f"palette {name}: expected rows of R,G,B, got shape {lut.shape}")
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


def save_palette(lut: np.ndarray, path: Path, comment: str) -> None:
    header = "\n".join(f"# {line}" for line in comment.splitlines())
    rows = "\n".join(",".join(str(int(v)) for v in row) for row in lut)
    Path(path).write_text(f"{header}\n{rows}\n")


def fit_palette(
    previews: Sequence[np.ndarray],
    temperatures: Sequence[np.ndarray],
    entries: int = 256,
    bins: int = 1024,
    min_rank_correlation: float = 0.95,
) -> np.ndarray:
    """The palette a camera used for its previews: (entries, 3) uint8 RGB, coldest first.

    ``previews`` are (H, W, 3) uint8 RGB renderings of ``temperatures`` ((H, W) float, same grid).
    Per frame, pixels sorted by temperature are averaged in ``bins`` equal-count bins: a polyline
    through the palette from cold to hot. The polylines are resampled by arc length to ``entries``
    points and averaged over the frames, so each entry is a palette colour, not a temperature.

    Some previews are not a global function of temperature (local contrast enhancement: on the
    XT2 frames with hot gravel, modules of one temperature show the whole palette). Averaging their
    bins would pull the curve inside the palette, so a second pass refits on the frames whose
    inverted preview ranks like their temperatures (Spearman >= ``min_rank_correlation``).
    """
    curves = [_curve(rgb, t, entries, bins) for rgb, t in zip(previews, temperatures, strict=True)]
    lut = np.clip(np.rint(np.mean(curves, axis=0)), 0, 255).astype(np.uint8)
    inv = PaletteInverter(lut)
    good = [
        c
        for c, rgb, t in zip(curves, previews, temperatures, strict=True)
        if rank_correlation(inv.scalar(rgb), t) >= min_rank_correlation
    ]
    if good:
        lut = np.clip(np.rint(np.mean(good, axis=0)), 0, 255).astype(np.uint8)
    return lut


def _curve(rgb: np.ndarray, t: np.ndarray, entries: int, bins: int) -> np.ndarray:
    ok = np.isfinite(t)
    colours = rgb[ok].astype(np.float64)
    order = np.argsort(t[ok], kind="stable")
    chunks = np.array_split(colours[order], bins)
    return _resample(np.stack([c.mean(axis=0) for c in chunks if len(c)]), entries)


def rank_correlation(a: np.ndarray, b: np.ndarray, step: int = 3) -> float:
    """Spearman's rank correlation of two same-shaped maps (every ``step``-th pixel, finite in both)."""
    x, y = np.asarray(a)[::step, ::step].ravel(), np.asarray(b)[::step, ::step].ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    rx = np.argsort(np.argsort(x[ok], kind="stable")).astype(np.float64)
    ry = np.argsort(np.argsort(y[ok], kind="stable")).astype(np.float64)
    if len(rx) < 2:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def _resample(line: np.ndarray, n: int) -> np.ndarray:
    seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(at, s, line[:, k]) for k in range(3)], axis=1)


class PaletteInverter:
    """Colour -> position along a palette in [0, 1] (nearest entry, via a 32x32x32 lookup cube)."""

    def __init__(self, lut: np.ndarray) -> None:
        self.lut = np.asarray(lut, dtype=np.uint8)
        levels = 1 << _CUBE_BITS
        centres = (np.arange(levels, dtype=np.float32) + 0.5) * (256 / levels)
        cube = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1).reshape(-1, 3)
        lut_f = self.lut.astype(np.float32)
        d = (cube**2).sum(1)[:, None] - 2 * cube @ lut_f.T + (lut_f**2).sum(1)[None, :]
        nearest = np.argmin(d, axis=1)
        self._index = (nearest / (len(self.lut) - 1)).astype(np.float32).reshape(levels, levels, levels)
        self._error = np.sqrt(np.maximum(d[np.arange(len(cube)), nearest], 0)).reshape(levels, levels, levels)

    def scalar(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) float32 in [0, 1] (0 = the palette's cold end)."""
        q = np.asarray(rgb, dtype=np.uint8) >> (8 - _CUBE_BITS)
        return self._index[q[..., 0], q[..., 1], q[..., 2]]

    def distance(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) float32: how far each colour lies from the palette (RGB units); large where the image
        was not rendered with it (overlays, other palettes)."""
        q = np.asarray(rgb, dtype=np.uint8) >> (8 - _CUBE_BITS)
        return self._error[q[..., 0], q[..., 1], q[..., 2]].astype(np.float32)


def rerender(
    rgb: np.ndarray,
    inverter: PaletteInverter,
    percentiles: tuple[float, float],
    colormap: str | None = None,
) -> np.ndarray:
    """A palette-rendered thermal image rendered again the way the detector renders temperatures
    (:func:`detector.thermal.render`), over the given percentile range of its own scalar values."""
    from detector.thermal import render

    return render(inverter.scalar(rgb), mode="percentile", percentiles=percentiles, colormap=colormap)


def draw_percentiles(
    rng: np.random.Generator, low: tuple[float, float], high: tuple[float, float]
) -> tuple[float, float]:
    """A (low, high) percentile pair drawn uniformly from the two ranges."""
    return float(rng.uniform(*low)), float(rng.uniform(*high))
