"""Full-resolution drone frames (12 MP and 20 MP) end to end, against SAHI + Ultralytics in the same run.

    .venv/bin/python bench/fullres.py [--frames 3] [--repeats 2] [--sizes 12,20] [--no-sahi] [--rss 100]

Frames: made at first use under ``build/bench/fullres/`` from real mirror images (thermal PV
frames, RGB panel photos, blade close-ups), each a mosaic of photos upscaled about 2x, saved
as camera-like JPEGs (quality 92, 4:2:0): 4000x3000 (12 MP) and 5280x3956 (20 MP, a typical
wide camera). Measured per size, on the same frames, each the best of ``--repeats`` runs:

- ``Detector.inspect`` (read, decode, tiling, model, merge, geolocation, priority) with the
  default settings (``backend: auto``) and per backend, s/frame;
- the opt-in grid plans (``tile_overlap: auto``, 64 px; model-size and 1024 px tiles) on the default
  backend, and their boxes against the default's (matched at IoU >= 0.5 and 0.9);
- SAHI 0.12 ``get_sliced_prediction`` (slices of the model's input size, 0.2 overlap, + the full-frame pass) with
  Ultralytics on ``weights.pt``: the anchor (skipped with a line saying so when sahi is missing);

``--rss N``: resident memory of ``pvwind inspect`` on a folder of N full-resolution frames
(links to the 20 MP frames), its wall time and s/frame. Results: ``build/bench/fullres.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "datasets")
OUT = REPO / "build" / "bench"
SIZES = {"12": (3000, 4000), "20": (3956, 5280)}


def mirror_photos() -> list[Path]:
    groups = [
        sorted((MIRROR / "pv_isuru_rgb/train").glob("*.jpg")),
        sorted((MIRROR / "wind_fans/train/images").glob("*.jpg")),
        sorted((MIRROR / "pv_zelestra_ir/data/Train").glob("*.jpg")),
        sorted((MIRROR / "wind_iliad/train/images").glob("*.jpg")),
    ]
    groups = [g for g in groups if g]
    if not groups:
        sys.exit(f"no mirror images under {MIRROR}")
    out = []
    for i in range(200):
        g = groups[i % len(groups)]
        out.append(g[(i * 37) % len(g)])
    return out


def make_frame(hw: tuple[int, int], photos: list[Path], seed: int, cell: int = 1000) -> np.ndarray:
    """A mosaic of real photos, each upscaled to about ``cell`` px (~2x), filling the frame."""
    import cv2

    h, w = hw
    rng = np.random.default_rng(seed)
    frame = np.empty((h, w, 3), np.uint8)
    ny, nx = -(-h // cell), -(-w // cell)
    ch, cw = -(-h // ny), -(-w // nx)
    for y in range(ny):
        for x in range(nx):
            p = photos[int(rng.integers(len(photos)))]
            im = cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, ::-1]
            im = cv2.resize(im, (cw, ch), interpolation=cv2.INTER_CUBIC)
            y0, x0 = y * ch, x * cw
            frame[y0 : y0 + ch, x0 : x0 + cw] = im[: h - y0, : w - x0]
    noise = rng.normal(0, 2.0, frame.shape).astype(np.float32)  # sensor noise, as a camera shows
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def frames(size: str, n: int) -> list[Path]:
    import simplejpeg

    folder = OUT / "fullres"
    folder.mkdir(parents=True, exist_ok=True)
    photos = None
    out = []
    for i in range(n):
        p = folder / f"frame_{size}mp_{i}.jpg"
        if not p.is_file():
            photos = photos or mirror_photos()
            rgb = make_frame(SIZES[size], photos, seed=1000 * int(size) + i)
            p.write_bytes(simplejpeg.encode_jpeg(rgb, quality=92, colorspace="RGB", colorsubsampling="420"))
        out.append(p)
    return out


def best_of(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def run_detector(paths: list[Path], repeats: int, **settings) -> dict:
    from detector import Detector

    det = Detector(**settings)
    det.inspect(paths[:1])  # warm-up: compiles the tile shapes
    timings: dict[str, float] = {}
    t = best_of(lambda: det.inspect(paths), repeats)
    res = det.inspect(paths, timings=timings)
    tiles = [r.tiles for r in res] if hasattr(res[0], "tiles") else None
    dets = det.predict(paths)
    return {
        "s_per_frame": t / len(paths),
        "backend": det.backend.name,
        "choice": getattr(det.backend, "choice", None) and det.backend.choice.reason,
        "providers": getattr(det.backend, "providers", None),
        "tiles": tiles,
        "stage_ms_per_frame": {k: v / len(paths) for k, v in timings.items()},
        "_dets": dets,
    }


def run_sahi(paths: list[Path], repeats: int, weights: Path, imgsz: int) -> dict | None:
    try:
        from sahi import AutoDetectionModel
        from sahi.predict import get_sliced_prediction
    except ImportError:
        print("SAHI anchor skipped: sahi is not installed (.venv/bin/pip install sahi)")
        return None
    import sahi

    model = AutoDetectionModel.from_pretrained(
        model_type="ultralytics", model_path=str(weights), confidence_threshold=0.25, device="cpu", image_size=imgsz
    )

    def run() -> None:
        for p in paths:
            get_sliced_prediction(
                str(p),
                model,
                slice_height=imgsz,
                slice_width=imgsz,
                overlap_height_ratio=0.2,
                overlap_width_ratio=0.2,
                perform_standard_pred=True,
                verbose=0,
            )

    get_sliced_prediction(str(paths[0]), model, slice_height=imgsz, slice_width=imgsz, verbose=0)  # warm-up
    return {"s_per_frame": best_of(run, repeats) / len(paths), "version": sahi.__version__}


def match_rate(a, b, iou: float = 0.9) -> tuple[float, int, int]:
    """Share of the boxes of ``a`` and ``b`` (lists of Detections) with a same-class partner at IoU >= iou."""
    from detector.nms import box_iou

    hit = total = 0
    for da, db in zip(a, b, strict=True):
        for x, y in ((da, db), (db, da)):
            total += len(x)
            if len(x) and len(y):
                m = box_iou(x.xyxy, y.xyxy) * (x.class_id[:, None] == y.class_id[None, :])
                hit += int((m.max(1) >= iou).sum())
    return (hit / total if total else 1.0), hit, total


def rss_inspect(n: int, src: list[Path]) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="pvwind-rss-"))
    try:
        for i in range(n):
            os.link(src[i % len(src)], folder / f"f{i:04d}.jpg")
        out = folder / "out"
        t0 = time.perf_counter()
        subprocess.run(
            [str(REPO / ".venv/bin/pvwind"), "inspect", str(folder), "--out", str(out), "--quiet", "--no-annotate"],
            check=True,
        )
        wall = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {"frames": n, "max_rss_mb": rss_mb, "wall_s": wall, "s_per_frame": wall / n}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "current"))
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sizes", default="12,20")
    ap.add_argument("--no-sahi", action="store_true")
    ap.add_argument("--backends", default="auto,onnxruntime")
    ap.add_argument("--rss", type=int, default=0, help="also measure pvwind inspect on this many 20 MP frames")
    args = ap.parse_args()
    model = Path(args.model)
    load = os.getloadavg()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.2f}")
    report: dict = {"load_before": load, "sizes": {}}
    settings = {
        "auto": {},
        "onnxruntime": {"backend": "onnxruntime"},
        "openvino-bf16": {"backend": "openvino", "precision": "bf16"},
        "openvino-f32": {"backend": "openvino", "precision": "f32"},
    }
    from detector import Detector

    tile = Detector(model).info.imgsz[0]  # the model's input size: default tiles and SAHI slices
    rows = []
    for size in args.sizes.split(","):
        paths = frames(size, args.frames)
        r: dict = {}
        for name in args.backends.split(","):
            r[name] = run_detector(paths, args.repeats, model=model, **settings[name])
        for name, kw in (
            (f"auto, grid {tile} +64px", {"tile_overlap": "auto", "max_defect_px": 64}),
            ("auto, grid 1024 +64px", {"tile_overlap": "auto", "max_defect_px": 64, "tile_size": 1024}),
        ):
            r[name] = run_detector(paths, args.repeats, model=model, **kw)
            r[name]["match_vs_default"] = {
                f"iou{t}": match_rate(r["auto"]["_dets"], r[name]["_dets"], t)[0] for t in (0.5, 0.9)
            }
            print(f"{size} MP {name} vs default: boxes matched {r[name]['match_vs_default']}")
        sahi = None if args.no_sahi else run_sahi(paths, args.repeats, model / "weights.pt", tile)
        if sahi:
            r["sahi+ultralytics"] = sahi
        for v in r.values():
            if isinstance(v, dict):
                v.pop("_dets", None)
        report["sizes"][f"{size}MP"] = r
        for name, v in r.items():
            if isinstance(v, dict) and "s_per_frame" in v:
                x = f"{sahi['s_per_frame'] / v['s_per_frame']:.1f}x" if sahi else "-"
                rows.append((f"{size} MP", name, v["s_per_frame"], x, v.get("tiles")))
    if args.rss:
        report["inspect_rss"] = rss_inspect(args.rss, frames("20", args.frames))
    report["load_after"] = os.getloadavg()
    print(f"\n{'frame':<6} {'settings':<24} {'s/frame':>8} {'vs SAHI':>8}  tiles")
    for size, name, s, x, tiles in rows:
        print(f"{size:<6} {name:<24} {s:8.3f} {x:>8}  {tiles[0] if tiles else ''}")
    if args.rss:
        m = report["inspect_rss"]
        print(
            f"pvwind inspect, {m['frames']} x 20 MP: max RSS {m['max_rss_mb']:.0f} MB, {m['s_per_frame']:.2f} s/frame"
        )
    print(f"load average after: {report['load_after'][0]:.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fullres.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
