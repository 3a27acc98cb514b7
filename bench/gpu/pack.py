"""Pack the built training set small enough to travel to a lent GPU machine (64 MiB with the repo).

    .venv/bin/python bench/gpu/pack.py --data build/dataset --out .gpu --quality 60

Writes ``OUT/data.tar`` (train + val images re-encoded as WebP with the long side at most ``--size``,
the training input size, so Ultralytics' own resize loses nothing more; labels unchanged, YOLO boxes
are normalised) and prints its size. The test split never travels: it is for reporting, here.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import yaml


def _encode(args: tuple[str, int, int]) -> tuple[str, bytes]:
    path, size, quality = args
    im = cv2.imread(path, cv2.IMREAD_COLOR)
    if im is None:
        raise ValueError(f"{path}: not an image")
    h, w = im.shape[:2]
    r = size / max(h, w)
    if r < 1:
        im = cv2.resize(im, (round(w * r), round(h * r)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".webp", im, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise ValueError(f"{path}: WebP encoding failed")
    return path, buf.tobytes()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def pack(data: Path, out: Path, size: int, quality: int, splits: tuple[str, ...] = ("train", "val")) -> Path:
    cfg = yaml.safe_load((data / "data.yaml").read_text())
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "data.tar"
    jobs = [(str(p), size, quality) for s in splits for p in sorted((data / "images" / s).iterdir())]
    with tarfile.open(dest, "w") as tar, ThreadPoolExecutor() as pool:
        for path, buf in pool.map(_encode, jobs):
            p = Path(path)
            split = p.parent.name
            _add(tar, f"dataset/images/{split}/{p.stem}.webp", buf)
            label = data / "labels" / split / f"{p.stem}.txt"
            if label.exists():
                _add(tar, f"dataset/labels/{split}/{p.stem}.txt", label.read_bytes())
        meta = {"path": ".", "train": "images/train", "val": "images/val", "names": cfg["names"]}
        _add(tar, "dataset/data.yaml", yaml.safe_dump(meta, sort_keys=False).encode())
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("build/dataset"))
    ap.add_argument("--out", type=Path, default=Path(".gpu"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--quality", type=int, default=60)
    a = ap.parse_args()
    dest = pack(a.data, a.out, a.size, a.quality)
    print(f"{dest}: {dest.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
