"""``pip install .`` (not editable) into a fresh virtualenv: the shipped settings come along as
package data, and ``pvwind inspect`` and ``pvwind serve`` work from another directory."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from detector_fixtures import REPO, XT2_FRAMES, model_dir

SOURCES = ("detector", "training", "serving", "storage", "rescore", "report", "review", "history", "pvwind", "configs")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the project installed from a copy of its sources (a wheel build, not a
    link to the checkout). Its dependencies are borrowed from the running environment through a
    .pth line (no download); the checkout itself is never on its path."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.check_output(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    Path(purelib, "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(src)],
        check=True,
        timeout=300,
        cwd=tmp,
    )
    shutil.rmtree(src)  # nothing may read the copied sources after the install
    return venv


def test_package_data_and_inspect_from_another_directory(installed, tmp_path):
    py = installed / "bin" / "python"
    where = subprocess.check_output(
        [py, "-c", "import configs, detector; print(configs.path('detector.yaml')); print(detector.__file__)"],
        text=True,
        cwd=tmp_path,
    ).split()
    assert all(str(installed) in w for w in where), where
    assert Path(where[0]).is_file()
    if not XT2_FRAMES:
        pytest.skip("no mirror images")
    out = tmp_path / "out"
    p = subprocess.run(
        [installed / "bin" / "pvwind", "inspect", str(XT2_FRAMES[0]), "--out", str(out), "--model", str(model_dir())],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["images"][0]["status"] == "ok" and doc["images"][0]["model"].startswith(model_dir().resolve().name)


def test_serve_from_another_directory(installed, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [installed / "bin" / "pvwind", "serve", "--port", str(port), "--model", str(model_dir())]
    cmd += ["--database-url", f"sqlite:///{tmp_path / 'x.db'}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    body = json.loads(r.read())
                    if body.get("ready"):
                        break
            except OSError:
                pass
            time.sleep(0.5)
        assert body and body["ready"], body
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "Traceback" not in out, out[-2000:]
