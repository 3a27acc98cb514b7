"""Helpers for the serving tests: a real ``pvwind serve`` process on a free port, the
model under test (one place to switch it), and real images from the dataset mirror."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
from detector_fixtures import MIRROR, XT2_FRAMES, model_dir

REPO = Path(__file__).resolve().parent.parent
API_KEY = "pvw_test-key-0123456789abcdef"


def serving_model() -> Path:
    """The model every serving test uses: ``$PVWIND_TEST_MODEL`` or the detector tests' model."""
    env = os.environ.get("PVWIND_TEST_MODEL")
    return Path(env) if env else model_dir()


def mirror_images(n: int) -> list[Path]:
    """A fixed mix of real images: DJI XT2 thermal frames (with GPS), RGB PV, wind blades."""
    picks: list[Path] = list(XT2_FRAMES[:2])
    for pattern in (
        "pv_isuru_rgb/train/*.jpg",
        "wind_iliad/test/images/*.jpg",
        "pv_zelestra_ir/data/Train/*.jpg",
        "wind_fans/train/images/*.jpg",
    ):
        picks.extend(sorted(MIRROR.glob(pattern))[: max(1, n // 4)])
    return picks[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``pvwind serve`` in a subprocess, the way an operator runs it."""

    def __init__(
        self,
        workdir: Path,
        *,
        db: Path | None = None,
        keys: Iterable[str] = (API_KEY,),
        env: dict[str, str] | None = None,
        model: Path | None = None,
        args: Iterable[str] = (),
    ) -> None:
        self.workdir = workdir
        self.db = db or workdir / "pvwind.db"
        self.port = free_port()
        self.log_path = workdir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "PVWIND_API_KEYS": ",".join(keys),
            "PVWIND_INFERENCE_THREADS": "1",
            **(env or {}),
        }
        self.cmd = [
            str(Path(sys.executable).parent / "pvwind"),
            "serve",
            "--port",
            str(self.port),
            "--model",
            str(model or serving_model()),
            "--database-url",
            f"sqlite:///{self.db}",
            *args,
        ]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = API_KEY, timeout: float = 120) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def start(self, ready_timeout: float = 120) -> Server:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {ready_timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> None:
        """Stop the way a power cut or OOM kill does: no shutdown code runs."""
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def files_param(paths: Iterable[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample == name and got == want:
            return float(value)
    return 0.0


def db_rows(db: Path, sql: str, *params: object) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()
