"""Inference speed of detector/ against Ultralytics' predictor, on the same real images in one run.

    .venv/bin/python bench/inference.py [--model models/current] [--images 48] [--repeats 3] [--quantize]

Measures, per backend (ONNX Runtime fp32, OpenVINO f32, OpenVINO bf16, and the INT8
model if there is one):
  (a) end to end: images/s of ``Detector.inspect`` (read + decode -> letterbox -> model ->
      NMS -> geolocation -> priority), the way the service and ``pvwind inspect`` run;
  (b) Ultralytics' own predictor on the same weights (``weights.pt``) and images;
  (c) bare session runs on the already preprocessed tensors of the same images (model only),
      batched as (a) batches them, and at batch 1 on a square tensor of the model's input size;
  (d) the INT8 model (``model_int8.onnx`` beside ``model.onnx``, or made with ``--quantize``:
      ONNX Runtime static QDQ quantisation calibrated on the same real images).
and the compute floor: the model's FLOPs over this CPU's measured peak (fp32 from a
large numpy sgemm, bf16 from an OpenVINO bf16 MatMul).

Results are printed as a table and written to ``build/bench/inference.json``.
Nothing is downloaded; YOLO_OFFLINE is set.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from detector.decode import decode_image  # noqa: E402
from detector.letterbox import letterbox, to_tensor  # noqa: E402
from detector.model import default_threads, resolve_model_path  # noqa: E402
from training.export import model_flops  # noqa: E402

MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "datasets")
OUT = REPO / "build" / "bench"


def pick_images(n: int) -> list[Path]:
    """A fixed mix of real mirror images: DJI thermal frames, thermal crops, RGB PV, blade close-ups."""
    groups = [
        sorted((MIRROR / "pv_zelestra_ir/data/Test").glob("*.JPG")),
        sorted((MIRROR / "pv_zelestra_ir/data/Train").glob("*.jpg")),
        sorted((MIRROR / "pv_isuru_rgb/train").glob("*.jpg")),
        sorted((MIRROR / "wind_fans/train/images").glob("*.jpg")),
        sorted((MIRROR / "wind_iliad/train/images").glob("*.jpg")),
    ]
    groups = [g for g in groups if g]
    if not groups:
        sys.exit(f"no images under {MIRROR}")
    out: list[Path] = []
    i = 0
    while len(out) < n and any(i < len(g) for g in groups):
        for g in groups:
            if i < len(g) and len(out) < n:
                out.append(g[i * 7 % len(g)] if len(g) > n else g[i])
        i += 1
    return out


def timed(fn, repeats: int) -> list[float]:
    """Wall times of ``repeats`` runs after one warm-up run. Reports use the minimum: on a
    shared machine it is the estimate least disturbed by other processes."""
    fn()  # warm-up (allocations, page cache, kernels)
    ts = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def fmt_ms(x: float) -> str:
    return f"{x * 1e3:7.1f}"


# -- compute floor ------------------------------------------------------------------------------------


def peak_flops(threads: int) -> dict[str, float]:
    """Measured peak GFLOP/s: fp32 (numpy sgemm) and bf16 (OpenVINO MatMul), all threads."""
    res = {}
    n = 2048
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    best = min(timed(lambda: a @ a, 5))
    res["fp32_numpy_sgemm"] = 2 * n**3 / best / 1e9
    try:
        import openvino as ov
        import openvino.opset13 as ops

        p = ops.parameter([n, n], ov.Type.f32)
        model = ov.Model([ops.matmul(p, ops.constant(a), False, False)], [p])
        core = ov.Core()
        for prec in ("f32", "bf16"):
            c = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": prec, "INFERENCE_NUM_THREADS": threads})
            r = c.create_infer_request()
            best = min(timed(lambda r=r: r.infer({0: a}), 5))
            res[f"{prec}_openvino_matmul"] = 2 * n**3 / best / 1e9
    except ImportError:
        pass
    return res


# -- INT8 -----------------------------------------------------------------------------------------------


def quantize_int8(model_path: Path, images: list[Path], out: Path, imgsz: tuple[int, int]) -> Path:
    """Static QDQ INT8 with ONNX Runtime (the training pipeline's own quantiser), calibrated on the
    benchmark images."""
    from training.export import quantize_int8 as quantize

    out.parent.mkdir(parents=True, exist_ok=True)
    return quantize(model_path, out, images[:32], max(imgsz))


# -- runs -------------------------------------------------------------------------------------------------


def bench_detector(
    model: Path, backend: str, precision: str, images: list[Path], repeats: int, batch: int, border: int | None = None
) -> dict:
    from detector import Detector
    from detector.batching import frame_border, input_hw

    det = Detector(model, backend=backend, precision=precision, batch_size=batch, tiling="off", border=border)
    pad = frame_border(det.backend, det.config)
    n = len(images)
    e2e = timed(lambda: det.inspect(images), repeats)
    # the same images, preprocessed as Detector does (rect input shape per image plus the grey border,
    # grouped by shape)
    pix = [decode_image(p).pixels for p in images]
    by_shape: dict[tuple[int, int], list[np.ndarray]] = {}
    for a in pix:
        by_shape.setdefault(input_hw(det.backend, a.shape[:2], pad), []).append(a)
    tensors = []
    for hw, arrs in by_shape.items():
        for s in range(0, len(arrs), batch):
            chunk = arrs[s : s + batch]
            buf = np.empty((len(chunk), *hw, 3), np.uint8)
            for j, a in enumerate(chunk):
                letterbox(a, hw, out=buf[j], border=pad)
            tensors.append(to_tensor(buf))

    def bare():
        det.backend.run_many(tensors)  # as Detector runs them (OpenVINO: several batches in flight)

    bare_t = timed(bare, repeats)
    x1 = np.full((1, 3, *det.info.imgsz), 0.45, np.float32)
    single = det.backend
    if backend == "openvino":  # batch-1 latency: all cores on one request
        from detector.model import load_backend

        single = load_backend(model, backend, precision=precision, openvino_hint="latency")
    one = timed(lambda: single.run(x1), max(10, repeats * 5))
    shapes = {f"{h}x{w}": len(v) for (h, w), v in by_shape.items()}
    return {
        "backend": backend if backend == "onnxruntime" else f"openvino-{precision}",
        "threads": getattr(det.backend, "threads", None),
        "e2e_images_per_s": n / min(e2e),
        "e2e_ms_per_image": min(e2e) / n * 1e3,
        "bare_ms_per_image": min(bare_t) / n * 1e3,
        "bare_batch1_ms": min(one) * 1e3,
        "imgsz": list(det.info.imgsz),
        "border": pad,
        "input_shapes": shapes,
    }


def bench_ultralytics(weights: Path, images: list[Path], repeats: int, imgsz: list[int], threads: int) -> dict | None:
    try:
        import torch
        from ultralytics import YOLO
    except ImportError:
        return None
    torch.set_num_threads(threads)
    model = YOLO(str(weights))
    paths = [str(p) for p in images]

    def run():
        for _ in model.predict(paths, imgsz=imgsz, conf=0.25, device="cpu", verbose=False, stream=True):
            pass

    ts = timed(run, repeats)
    n = len(images)
    return {"e2e_images_per_s": n / min(ts), "e2e_ms_per_image": min(ts) / n * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder or .onnx (default: models/current)")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--backends", default="onnxruntime,openvino-f32,openvino-bf16")
    ap.add_argument("--int8", type=Path, help="an INT8 .onnx (default: model_int8.onnx beside the model)")
    ap.add_argument("--quantize", action="store_true", help="make the INT8 model first (needs the onnx package)")
    ap.add_argument("--skip-ultralytics", action="store_true")
    ap.add_argument(
        "--border", type=int, default=None, help="whole-frame grey border (default: configs/detector.yaml's)"
    )
    args = ap.parse_args()

    onnx_path = resolve_model_path(args.model)
    images = pick_images(args.images)
    threads = default_threads()
    print(
        f"model {onnx_path}  |  {len(images)} real images  |  {threads} threads  |  "
        f"{platform.processor() or platform.machine()}"
    )
    results: dict = {"model": str(onnx_path), "images": len(images), "threads": threads, "runs": []}

    from detector.model import load_backend

    info = load_backend(onnx_path, warmup=0).info
    for spec in [s.strip() for s in args.backends.split(",") if s.strip()]:
        backend, _, precision = spec.partition("-")
        try:
            r = bench_detector(onnx_path, backend, precision or "f32", images, args.repeats, args.batch, args.border)
        except Exception as e:  # noqa: BLE001 - e.g. openvino not installed: report and go on
            print(f"  {spec}: skipped ({e})")
            continue
        results["runs"].append(r)
        print(f"  {r['backend']:<16} done: {r['e2e_images_per_s']:.1f} img/s end to end")

    int8 = args.int8 or onnx_path.with_name("model_int8.onnx")
    made = OUT / f"{info.version}-{info.sha256[:8]}_int8.onnx"
    if not int8.is_file() and made.is_file():
        int8 = made  # quantised by an earlier --quantize run
    if args.quantize and not int8.is_file():
        int8 = quantize_int8(onnx_path, images, OUT / f"{info.version}-{info.sha256[:8]}_int8.onnx", info.imgsz)
    if int8.is_file():
        for backend, precision, label in (
            ("onnxruntime", "f32", "onnxruntime-int8"),
            ("openvino", "bf16", "openvino-int8"),
        ):
            try:
                r = bench_detector(int8, backend, precision, images, args.repeats, args.batch, args.border)
            except Exception as e:  # noqa: BLE001
                print(f"  {label}: skipped ({e})")
                continue
            r["backend"] = label
            results["runs"].append(r)
            print(f"  {r['backend']:<16} done: {r['e2e_images_per_s']:.1f} img/s end to end")

    weights = onnx_path.with_name("weights.pt")
    ul = None
    if not args.skip_ultralytics and weights.is_file():
        ul = bench_ultralytics(weights, images, args.repeats, list(info.imgsz), threads)
    results["ultralytics"] = ul

    flops = model_flops(onnx_path, tuple(info.imgsz))
    peaks = peak_flops(threads)
    results["flops_per_image"] = flops
    results["peak_gflops"] = peaks

    # -- report --------------------------------------------------------------------------------------
    runs = results["runs"]
    print()
    print(f"{'backend':<18}{'e2e img/s':>10}{'e2e ms/img':>12}{'bare ms/img':>13}{'pre/post':>10}{'bare b1':>13}")
    for r in runs:
        r["prepost_overhead"] = r["e2e_ms_per_image"] / r["bare_ms_per_image"] - 1
        print(
            f"{r['backend']:<18}{r['e2e_images_per_s']:>10.1f}{r['e2e_ms_per_image']:>12.1f}{r['bare_ms_per_image']:>13.1f}"
            f"{r['prepost_overhead'] * 100:>9.0f}%{r['bare_batch1_ms']:>13.1f}"
        )
    if ul:
        print(f"{'ultralytics (pt)':<18}{ul['e2e_images_per_s']:>10.1f}{ul['e2e_ms_per_image']:>12.1f}")
    best = max(runs, key=lambda r: r["e2e_images_per_s"]) if runs else None
    ov_bf16 = next((r for r in runs if r["backend"] == "openvino-bf16"), None)
    targets = {}
    if best and ul:
        targets["a_vs_ultralytics"] = best["e2e_images_per_s"] / ul["e2e_images_per_s"]
        ort = next((r for r in runs if r["backend"] == "onnxruntime"), None)
        if ort:
            targets["a_ort_vs_ultralytics"] = ort["e2e_images_per_s"] / ul["e2e_images_per_s"]
    if best:
        targets["prepost_overhead_fastest"] = best["prepost_overhead"]
    if best and ov_bf16:
        targets["fastest_e2e_over_ov_bf16_bare_b1"] = best["e2e_ms_per_image"] / ov_bf16["bare_batch1_ms"]
        targets["fastest_e2e_over_ov_bf16_bare_same_inputs"] = best["e2e_ms_per_image"] / ov_bf16["bare_ms_per_image"]
    results["fastest"] = best["backend"] if best else None
    results["targets"] = targets
    print()
    if best:
        print(f"fastest end to end: {best['backend']} ({best['e2e_images_per_s']:.1f} img/s)")
    if "a_vs_ultralytics" in targets:
        print(f"(a) / (b): {targets['a_vs_ultralytics']:.2f}x Ultralytics' predictor (target >= 2.5x)")
    if best:
        print(
            f"pre/post-processing over bare model, fastest backend: "
            f"{best['prepost_overhead'] * 100:.0f}% (target <= 25%)"
        )
    if "fastest_e2e_over_ov_bf16_bare_b1" in targets:
        print(
            f"fastest end to end / OpenVINO-bf16 bare model (batch 1, {info.imgsz[0]}x{info.imgsz[1]}): "
            f"{targets['fastest_e2e_over_ov_bf16_bare_b1']:.2f}x (target <= 1.3x)"
        )
    if flops:
        print(f"model: {flops / 1e9:.2f} GFLOPs per {info.imgsz[0]}x{info.imgsz[1]} image")
        for k, v in peaks.items():
            print(f"  peak {k}: {v:.0f} GFLOP/s -> compute floor {flops / (v * 1e9) * 1e3:.1f} ms/image")
        results["compute_floor_ms"] = {k: flops / (v * 1e9) * 1e3 for k, v in peaks.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "inference.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {OUT / 'inference.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
