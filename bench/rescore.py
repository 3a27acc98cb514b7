"""Re-scoring throughput: one process, several worker processes and Ray local, in one run,
on the same images, each with its ONNX Runtime thread count tuned.

    .venv/bin/python bench/rescore.py [--images 300] [--model models/current] [--no-ray] [--repeat 1]

Every variant scores the same set of mirror images (a mix of 640 px wind/PV RGB and
416 px thermal frames) into a fresh SQLite store through the real pipeline
(``rescore``: read, hash, decode, detect, prioritise, batch writes into ``storage``). Reported:

- images/s over the whole run (process start and model loading included) and
  "steady" images/s while the workers were scoring (what an archive of millions sees);
- where the time goes, summed over workers: read+hash, decode, preprocess (letterbox,
  tensor, NMS), inference (the ONNX Runtime session alone), post (geolocation,
  priority, payload) and write (the store's transactions, in the parent).

Targets (issue 6): the best multi-worker setting is >= 15% faster than the best single
process, and Ray local is within 20% of the best multi-worker setting. The table is
printed and written to build/bench/rescore.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REPO = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "datasets")
PATTERNS = (
    "wind_iliad/train/images/*.jpg",
    "pv_zelestra_ir/data/Train/*.jpg",
    "pv_isuru_rgb/train/*.jpg",
    "wind_fans/train/images/*.jpg",
)


def pick_images(n: int) -> list[Path]:
    """``n`` mirror images, the same ones every time, spread over the four sources."""
    per = -(-n // len(PATTERNS))
    picks: list[Path] = []
    for pattern in PATTERNS:
        files = sorted(MIRROR.glob(pattern))
        picks.extend(files[:: max(1, len(files) // per)][:per])
    return picks[:n]


def default_model() -> Path:
    for p in (REPO / "models" / "current", REPO / "build" / "devmodel"):
        if (p / "model.onnx").is_file():
            return p
    sys.exit("no model: models/current and build/devmodel are missing (pass --model)")


def variants(cores: int, with_ray: bool, grid: bool) -> list[tuple[str, int, int]]:
    """(mode, workers, ORT threads per worker). A single process gets every core (or, with
    --grid, every thread count); several workers split the cores between them."""
    out: list[tuple[str, int, int]] = []
    single = range(1, cores + 1) if grid else sorted({cores, max(1, cores // 2)}, reverse=True)
    out += [("local", 1, t) for t in single]
    workers = range(2, cores + 1) if grid else [cores] if cores > 1 else []
    for w in workers:
        out.append(("local", w, max(1, cores // w)))
    if grid and cores > 1:
        out.append(("local", cores + 1, 1))  # one more process than cores: decode fills the gaps
    if with_ray:
        out.append(("ray", max(1, cores), 1))
    return out


def run_variant(
    mode: str, workers: int, threads: int, items: list, model: Path, config: str | None, chunk: int, batch: int | None
) -> dict:
    from detector import Detector
    from rescore.local_runner import run_local
    from rescore.worker import ScorerSpec
    from rescore.writer import RunStats
    from storage.archive import ArchiveIndex
    from storage.database import database_url
    from storage.store import Store

    with tempfile.TemporaryDirectory(prefix="bench-rescore-") as tmp:
        det = Detector(model, config=config, threads=1, warmup=0)
        key = det.model_key  # the run's result key, as pvwind rescore computes it
        index = ArchiveIndex(Store.from_url(database_url(str(Path(tmp) / "results.db"))))
        spec = ScorerSpec(str(det.info.path), key, threads, config, batch, index.url)
        stats = RunStats(mode, workers, threads, key)
        if mode == "ray":
            from rescore.ray_runner import run_ray

            stats, _ = run_ray(items, spec, index, actors=workers, chunk_size=chunk, stats=stats)
        else:
            stats, _ = run_local(items, spec, index, workers=workers, chunk_size=chunk, stats=stats)
        n = index.store.count_results(key)
        index.close()
    d = stats.to_dict()
    d["results"] = n
    return d


def split(seconds: dict[str, float]) -> dict[str, float]:
    groups = {
        "read+hash": seconds.get("read", 0) + seconds.get("hash", 0) + seconds.get("lookup", 0),
        "decode": seconds.get("decode", 0),
        "preprocess": seconds.get("preprocess", 0),
        "inference": seconds.get("inference", 0),
        "post": seconds.get("post", 0),
        "write": seconds.get("write", 0),
    }
    total = sum(groups.values()) or 1.0
    return {k: round(100 * v / total, 1) for k, v in groups.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300, help="how many mirror images (default 300)")
    ap.add_argument("--limit", type=int, help="alias of --images, for a quick check")
    ap.add_argument("--model", type=Path, help="model folder (default models/current, else build/devmodel)")
    ap.add_argument("--config", help="detector settings YAML (default configs/detector.yaml)")
    ap.add_argument("--chunk", type=int, default=32, help="images per worker task")
    ap.add_argument("--batch-size", type=int, help="images per ONNX Runtime run (default: detector config)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant; the best is kept")
    ap.add_argument("--grid", action="store_true", help="try every thread split, not only the usual ones")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray local variant")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "rescore.json")
    args = ap.parse_args()

    from rescore.scan import scan_archives
    from rescore.worker import default_cores

    n = args.limit or args.images
    files = pick_images(n)
    if not files:
        sys.exit(f"no images under {MIRROR}")
    items = scan_archives(files).items
    for f in files:  # warm the page cache: every variant reads from memory
        f.read_bytes()
    model = args.model or default_model()
    cores = default_cores()
    with_ray = not args.no_ray
    if with_ray:
        try:
            import ray
        except ImportError:
            print("ray is not installed (pip install -e '.[distributed]'): skipping the Ray variant", file=sys.stderr)
            with_ray = False
    ray_init_s = None
    if with_ray:
        t0 = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ray_init_s = round(time.perf_counter() - t0, 2)
    rows = []
    try:
        for mode, workers, threads in variants(cores, with_ray, args.grid):
            best = None
            for _ in range(max(1, args.repeat)):
                r = run_variant(mode, workers, threads, items, model, args.config, args.chunk, args.batch_size)
                if best is None or r["steady_images_per_s"] > best["steady_images_per_s"]:
                    best = r
            best["split_pct"] = split(best["seconds"])
            rows.append(best)
            print(
                f"{mode:5s} {workers} x {threads} threads: {best['steady_images_per_s']:7.2f} img/s steady, "
                f"{best['images_per_s']:7.2f} img/s overall ({best['elapsed_s']:.1f} s, {best['results']} results)",
                file=sys.stderr,
            )
    finally:
        if with_ray:
            ray.shutdown()

    single = max(
        (r for r in rows if r["mode"] == "local" and r["workers"] == 1), key=lambda r: r["steady_images_per_s"]
    )
    multi = [r for r in rows if r["mode"] == "local" and r["workers"] > 1]
    best_multi = max(multi, key=lambda r: r["steady_images_per_s"]) if multi else None
    ray_row = next((r for r in rows if r["mode"] == "ray"), None)
    gain = best_multi["steady_images_per_s"] / single["steady_images_per_s"] - 1 if best_multi else None
    ray_gap = ray_row["steady_images_per_s"] / best_multi["steady_images_per_s"] - 1 if ray_row and best_multi else None
    import onnxruntime

    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cores": cores,
            "cpu": platform.processor() or platform.machine(),
            "onnxruntime": onnxruntime.__version__,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "model": str(model),
        "images": len(items),
        "ray_init_s": ray_init_s,
        "variants": rows,
        "best_single": f"1 x {single['threads']}",
        "best_workers": f"{best_multi['workers']} x {best_multi['threads']}" if best_multi else None,
        "workers_gain_pct": round(100 * gain, 1) if gain is not None else None,
        "ray_vs_workers_pct": round(100 * ray_gap, 1) if ray_gap is not None else None,
        "targets": {
            "workers_gain_ge_15pct": gain is not None and gain >= 0.15,
            "ray_within_20pct": ray_gap is not None and ray_gap >= -0.20,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")

    head = f"{'mode':6} {'workers x threads':>17} {'steady img/s':>13} {'overall img/s':>14} " + " ".join(
        f"{k:>10}" for k in ("read+hash", "decode", "preprocess", "inference", "post", "write")
    )
    print(f"\n{len(items)} images, {cores} cores, model {model} (load avg {doc['machine']['load_avg_1m']})")
    print(head)
    for r in rows:
        sp = r["split_pct"]
        print(
            f"{r['mode']:6} {str(r['workers']) + ' x ' + str(r['threads']):>17} {r['steady_images_per_s']:13.2f} "
            f"{r['images_per_s']:14.2f} "
            + " ".join(f"{sp[k]:9.1f}%" for k in ("read+hash", "decode", "preprocess", "inference", "post", "write"))
        )
    if gain is not None:
        print(
            f"best workers ({doc['best_workers']}) vs best single process ({doc['best_single']}): {100 * gain:+.1f}% "
            f"(target >= +15%)"
        )
    if ray_gap is not None:
        print(f"Ray local vs best workers: {100 * ray_gap:+.1f}% (target within -20%)")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
