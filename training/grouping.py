"""Source groups: every augmented copy, flip, rotation, tile or near-duplicate of
one original photo gets the same group id, so that a split can keep it on one side.

Three kinds of evidence are joined with a union-find:
1. file-name rules (Roboflow ``.rf.<hash>`` copies, ``aug_<n>_`` prefixes,
   ``replicated_<name>_<n>`` copies, and a per-source regex such as ``DJI_<nnnn>``);
2. a groups file shipped with the source (lists of file names);
3. a perceptual 16x16 difference hash, compared against all eight flips/rotations
   of every other image, within a Hamming distance set per source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

_RF = re.compile(r"\.rf\.[0-9a-f]{16,}$")
_EXT = re.compile(r"_(jpe?g|png|bmp|tiff?)$", re.IGNORECASE)
_AUG = re.compile(r"^aug_\d+_")
_REPL = re.compile(r"^replicated_(.+)_\d+$")


def canonical_name(filename: str, name_regex: str | None = None) -> str:
    """The original photo's name behind an exported/augmented file name."""
    stem = Path(filename).stem
    stem = _RF.sub("", stem)
    stem = _EXT.sub("", stem)
    stem = _AUG.sub("", stem)
    m = _REPL.match(stem)
    if m:
        stem = _EXT.sub("", m.group(1))
    if name_regex:
        m = re.search(name_regex, stem)
        if m:
            stem = m.group(1)
    return stem


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def dhash_variants(path: Path, size: int = 16) -> np.ndarray:
    """Difference hashes (``size*size`` bits, packed) of the image and its seven
    other flips/rotations: shape (8, size*size/8) uint8."""
    with Image.open(path) as im:
        im.draft("L", (size * 4, size * 4))  # fast JPEG DCT scaling
        g = ImageOps.exif_transpose(im).convert("L").resize((size + 1, size + 1), Image.Resampling.BILINEAR)
    a = np.asarray(g, dtype=np.int16)
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        for v in (r, r[:, ::-1]):
            out.append(np.packbits((v[:size, 1:] > v[:size, :-1]).ravel()))
    return np.stack(out)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hash_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Bits that differ between two images' difference hashes as stored (variant 0 of
    :func:`dhash_variants`: no flip or rotation)."""
    return int(_POPCOUNT[np.bitwise_xor(a[0], b[0])].sum())


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, whose hashes are within ``max_distance`` bits under any
    flip/rotation. ``hashes``: (n, 8, nbytes) from :func:`dhash_variants`."""
    n = len(hashes)
    if n < 2:
        return []
    base = hashes[:, 0, :]  # (n, nbytes)
    pairs: list[tuple[int, int]] = []
    for i in range(n - 1):
        x = np.bitwise_xor(hashes[i + 1 :], base[i][None, None, :])  # (m, 8, nbytes)
        d = _POPCOUNT[x].sum(axis=2, dtype=np.int32).min(axis=1)
        for j in np.nonzero(d <= max_distance)[0]:
            pairs.append((i, i + 1 + int(j)))
    return pairs


def assign_groups(
    files: Sequence[Path],
    name_regex: str | None = None,
    group_lists: Iterable[Iterable[str]] = (),
    hashes: np.ndarray | None = None,
    max_distance: int = 0,
) -> list[str]:
    """A group id for every file (the canonical name of the group's first member)."""
    uf = UnionFind(len(files))
    first_by_name: dict[str, int] = {}
    canon = [canonical_name(f.name, name_regex) for f in files]
    for i, c in enumerate(canon):
        if c in first_by_name:
            uf.union(first_by_name[c], i)
        else:
            first_by_name[c] = i
    index = {f.name: i for i, f in enumerate(files)}
    for members in group_lists:
        idx = [index[m] for m in members if m in index]
        for j in idx[1:]:
            uf.union(idx[0], j)
    if hashes is not None and max_distance > 0:
        for i, j in near_duplicate_pairs(hashes, max_distance):
            uf.union(i, j)
    return [canon[uf.find(i)] for i in range(len(files))]
