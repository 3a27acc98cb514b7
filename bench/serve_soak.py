"""Memory soak of the inspection service: does the server's memory come back after bursts of
very large images?

    .venv/bin/python bench/serve_soak.py                     # 10 bursts, each 2 x 81 MP PNG + 4 normal uploads

Starts ``pvwind serve`` on a free port of 127.0.0.1 (no keys, a throw-away database), makes
large PNGs at run time (mirror images upscaled, nearest neighbour: small on the wire, huge when
decoded), and sends ``--bursts`` bursts, each of ``--large`` concurrent requests with one large
PNG and ``--normal`` concurrent requests of ``--images`` real mirror images. After each burst
(all answered, the queue empty, one second idle) it records the server's resident memory
(``VmRSS`` from ``/proc/<pid>/status``) and the peak during the burst, prints a table and
writes ``build/bench/serve_soak.json``. The resident memory after the bursts should stay flat.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import default_model, free_port, mirror_images  # noqa: E402  (the same helpers as the load bench)


def large_png(source: Path, megapixels: float) -> bytes:
    """``source`` upscaled (nearest neighbour) to a square of ``megapixels``, as PNG."""
    side = int((megapixels * 1e6) ** 0.5)
    with Image.open(source) as im:
        big = im.convert("RGB").resize((side, side), Image.NEAREST)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, model: Path, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.cmd = [
            str(Path(sys.executable).parent / "pvwind"),
            "serve",
            "--port",
            str(self.port),
            "--model",
            str(model),
            "--database-url",
            f"sqlite:///{workdir / 'soak.db'}",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=workdir,
                env={**os.environ, "PVWIND_API_KEYS": "", **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("server not ready after 180 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def queue_depth(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("pvwind_queue_depth_images "):
            return float(line.split()[1])
    return 0.0


def burst(client: httpx.Client, larges: list[bytes], normal: list[list[Path]]) -> dict[str, int]:
    """All requests at once; counts of answers by status."""
    statuses: list[int] = []
    lock = threading.Lock()

    def send(files: list[tuple[str, tuple[str, bytes, str]]]) -> None:
        try:
            status = client.post("/v1/inspections", files=files).status_code
        except httpx.HTTPError:
            status = -1
        with lock:
            statuses.append(status)

    requests = [[("files", (f"large-{i}.png", data, "image/png"))] for i, data in enumerate(larges)]
    requests += [[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths] for paths in normal]
    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"ok": statuses.count(200), "busy": statuses.count(503), "other": sum(s not in (200, 503) for s in statuses)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="model folder (default models/current)")
    ap.add_argument("--bursts", type=int, default=10)
    ap.add_argument("--large", type=int, default=2, help="concurrent requests with one large PNG each, per burst")
    ap.add_argument("--megapixels", type=float, default=81.0, help="size of each large PNG (default 81 MP)")
    ap.add_argument("--normal", type=int, default=4, help="concurrent requests of normal images, per burst")
    ap.add_argument("--images", type=int, default=4, help="normal images per request")
    ap.add_argument("--env", action="append", default=[], help="server setting NAME=VALUE (repeatable)")
    ap.add_argument("--json", type=Path, default=REPO / "build" / "bench" / "serve_soak.json")
    args = ap.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/serve_soak.py", *sys.argv[1:]])

    sources = mirror_images(max(args.large, 1) + args.normal * args.images)
    t0 = time.perf_counter()
    larges = [large_png(p, args.megapixels) for p in sources[: args.large]]
    print(
        f"{args.large} large PNGs of {args.megapixels:g} MP ({', '.join(f'{len(d) / 1e6:.1f}' for d in larges)} MB) "
        f"made in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    normal = [sources[args.large + i * args.images : args.large + (i + 1) * args.images] for i in range(args.normal)]
    env = dict(e.split("=", 1) for e in args.env)

    with tempfile.TemporaryDirectory(prefix="serve-soak-") as tmp:
        server = Server(args.model or default_model(), Path(tmp), env)
        pid = server.proc.pid
        rows = []
        try:
            with httpx.Client(base_url=server.url, timeout=1800) as client:
                client.post("/v1/inspections", files=[("files", (p.name, p.read_bytes())) for p in normal[0]])
                time.sleep(1)
                start_rss = rss_mb(pid)
                print(f"server pid {pid}, RSS after one warm-up request: {start_rss:.0f} MB", flush=True)
                print(
                    f"{'burst':>5} {'ok':>3} {'503':>3} {'other':>5} {'seconds':>7} {'peak MB':>8} {'RSS after MB':>12}"
                )
                for b in range(1, args.bursts + 1):
                    peak = [0.0]
                    done = threading.Event()

                    def sample(peak: list[float] = peak, done: threading.Event = done) -> None:
                        while not done.is_set():
                            peak[0] = max(peak[0], rss_mb(pid))
                            done.wait(0.1)

                    sampler = threading.Thread(target=sample)
                    sampler.start()
                    t = time.perf_counter()
                    counts = burst(client, larges, normal)
                    seconds = time.perf_counter() - t
                    while queue_depth(client) > 0:
                        time.sleep(0.2)
                    time.sleep(1.0)
                    done.set()
                    sampler.join()
                    after = rss_mb(pid)
                    row = {
                        "burst": b,
                        **counts,
                        "seconds": round(seconds, 1),
                        "peak_mb": round(peak[0]),
                        "rss_mb": round(after),
                    }
                    rows.append(row)
                    print(
                        f"{b:>5} {counts['ok']:>3} {counts['busy']:>3} {counts['other']:>5} {seconds:>7.1f} "
                        f"{peak[0]:>8.0f} {after:>12.0f}",
                        flush=True,
                    )
        finally:
            server.stop()
            log = server.log.read_text(errors="replace")
    after = [r["rss_mb"] for r in rows]
    report = {
        "command": command,
        "machine": f"{platform.node()} {os.cpu_count()} CPUs",
        "settings": vars(args) | {"model": str(args.model or default_model()), "json": str(args.json)},
        "start_rss_mb": round(start_rss),
        "bursts": rows,
        "rss_spread_mb": (max(after[1:]) - min(after[1:])) if len(after) > 1 else 0,
        "server_errors_in_log": log.count("Traceback"),
    }
    print(
        f"RSS after warm-up {start_rss:.0f} MB; after burst 1 {after[0]} MB; after bursts 2-{len(after)}: "
        f"{min(after[1:], default=after[0])}-{max(after[1:], default=after[0])} MB "
        f"(spread {report['rss_spread_mb']} MB); tracebacks in the server log: {report['server_errors_in_log']}"
    )
    print(f"command: {command}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
