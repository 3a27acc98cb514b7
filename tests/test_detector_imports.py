"""detector/ (and serving/) must not load torch or ultralytics: the service image is torch-free."""

from __future__ import annotations

import subprocess
import sys

from detector_fixtures import REPO, model_dir

CODE = r"""
import importlib, pkgutil, sys
import numpy as np
import detector, serving
for pkg in (detector, serving):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if m.name not in ("detector.cli",):
            importlib.import_module(m.name)
from detector import Detector
det = Detector(sys.argv[1], warmup=1)
det.predict(np.zeros((64, 80, 3), np.uint8))
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "ultralytics"))
print("LOADED:" + ",".join(bad))
"""


def test_no_torch_or_ultralytics_after_import_and_predict():
    out = subprocess.run(
        [sys.executable, "-c", CODE, str(model_dir())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded == "LOADED:", loaded
