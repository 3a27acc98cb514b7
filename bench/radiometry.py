"""Radiometric decoding speed on the 13 DJI Zenmuse XT2 frames (640x512), one thread, best of N.

    .venv/bin/python bench/radiometry.py [--repeats 5] [--mirror ../shared/datasets]

Times, per frame, from the file's bytes in memory to a float32 °C map: ``detector.radiometry.read_radiometry``
and, when installed, ``flyr.unpack`` + ``.celsius`` (pure-Python FLIR reader, EUPL-1.2; not a dependency of
the project: ``pip install flyr`` to compare). Also the largest difference between the two (°C).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.radiometry import Radiometry, load_thermal_config, read_radiometry  # noqa: E402


def best_ms(fn, datas: list[bytes], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for d in datas:
            fn(d)
        best = min(best, (time.perf_counter() - t) / len(datas) * 1000)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", default=os.environ.get("DATA_MIRROR") or str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print("$", " ".join([Path(sys.executable).name, *sys.argv]))
    cv2.setNumThreads(1)
    frames = sorted((Path(args.mirror) / "pv_zelestra_ir" / "data" / "Test").glob("*.JPG"))
    if not frames:
        sys.exit("no XT2 frames found")
    datas = [p.read_bytes() for p in frames]
    cfg = load_thermal_config()
    mine = [read_radiometry(d, config=cfg) for d in datas]
    assert all(isinstance(r, Radiometry) for r in mine)
    print(f"{len(datas)} frames {mine[0].raw_size[1]}x{mine[0].raw_size[0]}, 1 thread, best of {args.repeats}:")
    print(
        f"  detector.radiometry  {best_ms(lambda d: read_radiometry(d, config=cfg), datas, args.repeats):7.2f} ms/frame"
    )
    try:
        import flyr
    except ImportError:
        print("  flyr                 not installed")
        return

    def with_flyr(d: bytes) -> np.ndarray:
        return flyr.unpack(io.BytesIO(d)).celsius

    print(
        f"  flyr {getattr(flyr, '__version__', '')}".ljust(23)
        + f"{best_ms(with_flyr, datas, args.repeats):7.2f} ms/frame"
    )
    diff = max(float(np.nanmax(np.abs(with_flyr(d) - r.celsius))) for d, r in zip(datas, mine, strict=True))
    print(f"  max |detector.radiometry - flyr| = {diff:.4f} °C")


if __name__ == "__main__":
    main()
