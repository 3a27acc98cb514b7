"""The radiometric hotspot finder (and optionally the model) on the 13 DJI Zenmuse XT2 frames, against the
hand-checked truth in tests/data/thermal_xt2_truth.yaml.

    .venv/bin/python bench/thermal_frames.py [--mirror ../shared/datasets] [--model models/current]

Per frame: the hotspots the finder reports and the truth's, the finder's ΔT and the truth's (measured
independently from ExifTool's raw frame with a hand-picked reference), and ``measure()``'s ΔT on the truth
box. Totals: truth hotspots found, frames with a real hotspot, false hotspots on clean frames.
With ``--model``, the model's own recall on the same frames, fed (a) the camera's JPEG preview and (b)
``detector.thermal.render()`` of the temperatures; a truth hotspot counts as found when a ``pv_hotspot`` or
``pv_diode_fault`` box overlaps it (IoU >= 0.3 or either box's centre inside the other).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detector.radiometry import Radiometry, read_radiometry  # noqa: E402
from detector.thermal import find_hotspots, measure, module_mask, render  # noqa: E402

TRUTH = ROOT / "tests" / "data" / "thermal_xt2_truth.yaml"
HOT_CLASSES = ("pv_hotspot", "pv_diode_fault")


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def centre_in(a, b) -> bool:
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return b[0] <= cx <= b[2] and b[1] <= cy <= b[3]


def overlaps(a, b) -> bool:
    return iou(a, b) >= 0.3 or centre_in(a, b) or centre_in(b, a)


def covers(a, b) -> bool:
    """Overlap of at least 30 % of the smaller box (the pipeline's match, as tests/test_thermal_pipeline.py)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy >= 0.3 * smaller > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_mirror = os.environ.get("DATA_MIRROR") or str(ROOT.parent / "shared" / "datasets")
    ap.add_argument("--mirror", default=default_mirror)
    ap.add_argument("--model", default=None, help="a model folder (e.g. models/current): also measure its recall")
    ap.add_argument("--conf", type=float, default=None, help="model confidence threshold (default: detector.yaml)")
    args = ap.parse_args()
    print("$", " ".join([Path(sys.executable).name, *sys.argv]))

    truth: dict[str, list[dict]] = yaml.safe_load(TRUTH.read_text())
    frames = sorted((Path(args.mirror) / "pv_zelestra_ir" / "data" / "Test").glob("*.JPG"))
    if not frames:
        sys.exit(f"no XT2 frames under {args.mirror}/pv_zelestra_ir/data/Test")

    maps = {}
    head = ("frame", "truth", "found", "false", "ΔT truth", "ΔT finder", "ΔT measure")
    print("\n{:<10} {:>5} {:>5} {:>5}  {:>9} {:>9} {:>10}  pattern".format(*head))
    n_truth = n_found = n_false = frames_hot = frames_clean_false = 0
    t_find = 0.0
    for p in frames:
        r = read_radiometry(p.read_bytes())
        if not isinstance(r, Radiometry):
            print(f"{p.name[:8]:<10} {r.note}")
            continue
        maps[p.name] = r.celsius
        t0 = time.perf_counter()
        found = find_hotspots(r.celsius)
        t_find += time.perf_counter() - t0
        spots = truth.get(p.name, [])
        mask = module_mask(r.celsius)
        hit = [t for t in spots if any(overlaps(f.box_xyxy, t["box"]) for f in found)]
        false = [f for f in found if not any(overlaps(f.box_xyxy, t["box"]) for t in spots)]
        n_truth += len(spots)
        n_found += len(hit)
        n_false += len(false)
        frames_hot += bool(spots)
        frames_clean_false += bool(false) and not spots
        dt_truth = ", ".join(f"{t['delta_t_k']:.1f}" for t in spots) or "-"
        dt_found = ", ".join(f"{f.delta_t_k:.1f}" for f in found) or "-"
        dt_meas = ", ".join(f"{measure(r.celsius, tuple(t['box']), mask=mask).delta_t_k:.1f}" for t in spots) or "-"
        patterns = ", ".join(f"{f.pattern}{' (clipped)' if f.clipped else ''}" for f in found)
        print(
            f"{p.name[:8]:<10} {len(spots):>5} {len(hit):>5} {len(false):>5}  {dt_truth:>9} {dt_found:>9} "
            f"{dt_meas:>10}  {patterns}"
        )
    print(
        f"\nfinder: {n_found}/{n_truth} truth hotspots found on {frames_hot} frames with one; "
        f"{n_false} false hotspots ({frames_clean_false} of {len(maps) - frames_hot} clean frames with one); "
        f"{t_find / max(len(maps), 1) * 1000:.0f} ms/frame"
    )

    if args.model:
        from detector import Detector
        from detector.decode import decode_image

        det = Detector(args.model)
        hot_ids = {i for i, n in enumerate(det.names) if n in HOT_CLASSES}
        names = list(maps)
        previews = [decode_image(Path(args.mirror) / "pv_zelestra_ir" / "data" / "Test" / n).pixels for n in names]
        renders = [render(maps[n]) for n in names]
        print(f"\nmodel {args.model} (classes counted: {', '.join(HOT_CLASSES)}; conf {args.conf or 'default'}):")
        for label, images in (("camera preview", previews), ("render()", renders)):
            dets = det.predict(images, conf=args.conf)
            found = false_frames = 0
            for n, d in zip(names, dets, strict=True):
                boxes = [tuple(b) for b, c in zip(d.xyxy.tolist(), d.class_id.tolist(), strict=True) if c in hot_ids]
                spots = truth.get(n, [])
                found += sum(any(overlaps(b, t["box"]) for b in boxes) for t in spots)
                false_frames += bool(boxes) and not spots
            print(
                f"  {label:<15} recall {found}/{n_truth} truth hotspots; "
                f"clean frames with a hotspot box: {false_frames}/{len(names) - frames_hot}"
            )

        # the whole pipeline as the service and `pvwind inspect` run it (default settings)
        paths = [Path(args.mirror) / "pv_zelestra_ir" / "data" / "Test" / n for n in names]
        t0 = time.perf_counter()
        results = det.inspect(paths, conf=args.conf)
        per = (time.perf_counter() - t0) / max(len(paths), 1) * 1000
        print(f"\npipeline (Detector.inspect, {per:.0f} ms/frame end to end):")
        print(f"{'frame':<10} {'ΔT truth':>9}  reported thermal findings (class, found by, ΔT K, priority)")
        found = false = false_frames_pipe = 0
        for n, r in zip(names, results, strict=True):
            hot = [f for f in r.findings if f.class_name in HOT_CLASSES]
            spots = truth.get(n, [])
            found += sum(any(covers(f.box.xyxy, t["box"]) for f in hot) for t in spots)
            false += sum(not any(covers(f.box.xyxy, t["box"]) for t in spots) for f in hot)
            false_frames_pipe += bool(hot) and not spots
            shown = "; ".join(
                f"{f.class_name} {f.found_by} {f.thermal.delta_t_k if f.thermal else '-'} {f.priority}" for f in hot
            )
            print(f"{n[:8]:<10} {', '.join(str(t['delta_t_k']) for t in spots) or '-':>9}  {shown or '-'}")
        print(
            f"pipeline: {found}/{n_truth} truth hotspots reported; {false} thermal findings off the truth boxes; "
            f"clean frames with a thermal finding: {false_frames_pipe}/{len(names) - frames_hot}"
        )


if __name__ == "__main__":
    main()
