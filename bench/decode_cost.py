"""Where detector's pre-processing time goes, one thread, on bench/inference.py's images.

    .venv/bin/python bench/decode_cost.py [--images 48] [--repeats 3]

Times, per image: ``decode_image`` (read + sniff + metadata + JPEG/PNG/TIFF decode),
OpenCV's bare ``imdecode`` of the same bytes, and ``letterbox_into`` to the model size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference import pick_images  # noqa: E402

from detector.decode import decode_image  # noqa: E402
from detector.letterbox import letterbox_into, rect_shape  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--imgsz", type=int, default=416)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    datas = [p.read_bytes() for p in pick_images(args.images)]
    n = len(datas)
    best: dict[str, float] = {}

    def timed(name: str, fn) -> None:
        t = time.perf_counter()
        fn()
        best[name] = min(best.get(name, 1e9), (time.perf_counter() - t) / n * 1000)

    decoded: list = []
    for _ in range(args.repeats):
        decoded.clear()
        timed("decode_image", lambda: decoded.extend(decode_image(d) for d in datas))
        timed("cv2.imdecode", lambda: [cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR) for d in datas])

        def lb() -> None:
            for im in decoded:
                hw = rect_shape(im.pixels.shape[:2], (args.imgsz, args.imgsz), 32)
                letterbox_into(im.pixels, np.empty((3, *hw), np.float32))

        timed("letterbox", lb)
    print(f"{n} images, 1 thread, best of {args.repeats}:")
    for k, v in best.items():
        print(f"  {k:<14} {v:6.2f} ms/image")


if __name__ == "__main__":
    main()
