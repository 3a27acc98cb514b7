"""Load test of the inspection service, next to the in-process detector on the same images.

    .venv/bin/python bench/serve_load.py                      # starts `pvwind serve` itself
    .venv/bin/python bench/serve_load.py --url http://host:8000 --api-key KEY

Concurrent clients upload batches to ``POST /v1/inspections``; reported: images/s,
request latency p50/p95, the server's peak memory (VmHWM, when it runs here), and the
in-process ``Detector.inspect`` throughput on the same images measured in the same run
(alternating with the service runs, medians, so a busy machine affects both alike).
Writes ``build/bench/serve_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("DATA_MIRROR") or REPO.parent / "shared" / "datasets")
sys.path.insert(0, str(REPO))


def default_model() -> Path:
    for p in (REPO / "models" / "current", REPO / "build" / "devmodel"):
        if (p / "model.onnx").is_file():
            return p
    raise SystemExit("no model: pass --model (models/current and build/devmodel/model.onnx are missing)")


def mirror_images(n: int) -> list[Path]:
    """A fixed mix of real inspection images: thermal PV (DJI XT2 frames and tiles), RGB PV, wind blades."""
    pools = [
        sorted((MIRROR / "pv_zelestra_ir" / "data" / "Test").glob("*.JPG")),
        sorted((MIRROR / "pv_zelestra_ir" / "data" / "Train").glob("*.jpg")),
        sorted((MIRROR / "pv_isuru_rgb" / "train").glob("*.jpg")),
        sorted((MIRROR / "wind_iliad" / "train" / "images").glob("*.jpg")),
        sorted((MIRROR / "wind_fans" / "train" / "images").glob("*.jpg")),
    ]
    out: list[Path] = []
    i = 0
    while len(out) < n and any(len(p) > i for p in pools):
        out.extend(p[i] for p in pools if len(p) > i)
        i += 1
    if len(out) < n:
        raise SystemExit(f"dataset mirror {MIRROR} has fewer than {n} images")
    return out[:n]


def in_process(model: Path, images: list[tuple[str, bytes]], threads: int, batch: int) -> float:
    """Images/s of Detector.inspect (decode, detect, locate, prioritise) on these bytes."""
    from detector import Detector

    det = Detector(model, threads=threads or None, batch_size=batch)
    det.inspect(images[:batch])  # warm-up
    t0 = time.perf_counter()
    results = det.inspect(images, chunk_size=batch)
    dt = time.perf_counter() - t0
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return len(images) / dt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, threads: int, workdir: Path, key: str, queue: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "PVWIND_API_KEYS": key,
        "PVWIND_INFERENCE_THREADS": str(threads),
        "PVWIND_QUEUE_MAX_IMAGES": str(queue),
    }
    cmd = [
        str(Path(sys.executable).parent / "pvwind"),
        "serve",
        "--port",
        str(port),
        "--model",
        str(model),
        "--database-url",
        f"sqlite:///{workdir / 'bench.db'}",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server not ready after 180 s")


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load(url: str, key: str, images: list[tuple[str, bytes]], clients: int, batch: int, rounds: int) -> dict:
    """``clients`` threads share the batches of ``rounds`` passes over the images."""
    batches = [images[i : i + batch] for i in range(0, len(images), batch)] * rounds
    lock = threading.Lock()
    latencies: list[float] = []
    busy = errors = 0
    n_images = 0

    def client() -> None:
        nonlocal busy, errors, n_images
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600) as c:
            while True:
                with lock:
                    if not batches:
                        return
                    b = batches.pop()
                files = [("files", (name, data, "application/octet-stream")) for name, data in b]
                while True:
                    t0 = time.perf_counter()
                    r = c.post("/v1/inspections", files=files)
                    dt = time.perf_counter() - t0
                    if r.status_code == 503:  # back-pressure: wait as told, then retry
                        with lock:
                            busy += 1
                        time.sleep(float(r.headers.get("retry-after", "1")) / 10)
                        continue
                    break
                with lock:
                    if r.status_code != 200:
                        errors += 1
                    else:
                        latencies.append(dt)
                        n_images += len(b)

    # warm-up request, not measured
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600) as c:
        c.post("/v1/inspections", files=[("files", (n, d, "application/octet-stream")) for n, d in images[:batch]])
    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [latencies[0]] * 19
    return {
        "images": n_images,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "images_per_s": round(n_images / wall, 3),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(q[18], 3),
        "busy_503": busy,
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="model folder or .onnx (default models/current, else build/devmodel)")
    ap.add_argument("--url", help="a running server (default: start `pvwind serve` on a free port)")
    ap.add_argument("--api-key", default="pvw_bench-key-0123456789abcdef", help="API key for --url")
    ap.add_argument("--images", type=int, default=48, help="distinct mirror images")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients")
    ap.add_argument("--batch", type=int, default=8, help="images per request (and the in-process batch size)")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the images")
    ap.add_argument("--repeat", type=int, default=3, help="alternating in-process/service measurements")
    ap.add_argument("--threads", type=int, default=0, help="inference threads, server and in-process (0: all)")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "serve_load.json")
    args = ap.parse_args(argv)

    model = args.model or default_model()
    paths = mirror_images(args.images)
    images = [(p.name, p.read_bytes()) for p in paths]
    print(f"{len(images)} images ({sum(len(d) for _, d in images) / 1e6:.1f} MB), model {model}", flush=True)

    # alternate in-process and service runs, so a machine whose load changes (a training in
    # the background, say) affects both alike; report the medians
    local: list[float] = []
    served: list[dict] = []
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            url = args.url
        else:
            proc, url = start_server(model, args.threads, Path(tmp), args.api_key, queue=args.clients * args.batch)
        try:
            for i in range(args.repeat):
                local.append(in_process(model, images, args.threads, args.batch))
                print(f"[{i + 1}/{args.repeat}] in-process: {local[-1]:.2f} images/s", flush=True)
                served.append(load(url, args.api_key, images, args.clients, args.batch, args.rounds))
                print(f"[{i + 1}/{args.repeat}] service:    {served[-1]['images_per_s']:.2f} images/s", flush=True)
            local.append(in_process(model, images, args.threads, args.batch))
            print(f"[end] in-process: {local[-1]:.2f} images/s", flush=True)
            peak = peak_rss_mb(proc.pid) if proc else None
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    ref = statistics.median(local)
    best = sorted(served, key=lambda r: r["images_per_s"])[len(served) // 2]  # the median run
    report = {
        "command": " ".join(["bench/serve_load.py", *(argv if argv is not None else sys.argv[1:])]),
        "model": str(model),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {k: getattr(args, k) for k in ("images", "clients", "batch", "rounds", "repeat", "threads")},
        "in_process_images_per_s": round(ref, 3),
        "in_process_runs": [round(v, 3) for v in local],
        "service": best,
        "service_runs_images_per_s": [r["images_per_s"] for r in served],
        "server_peak_rss_mb": round(peak, 1) if peak else None,
        "service_vs_in_process": round(best["images_per_s"] / ref, 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(
        f"service {best['images_per_s']:.2f} images/s = {report['service_vs_in_process']:.0%} of in-process "
        f"{ref:.2f} images/s; p50 {best['latency_p50_s']} s, p95 {best['latency_p95_s']} s, "
        f"server peak RSS {report['server_peak_rss_mb']} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
