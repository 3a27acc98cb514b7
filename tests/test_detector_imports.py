"""detector/, storage/ and serving/ must not load torch or ultralytics (the service image is
torch-free), and detector/ must know nothing of the packages above it."""

from __future__ import annotations

import subprocess
import sys

from detector_fixtures import REPO, model_dir

CODE = r"""
import importlib, pkgutil, sys
import numpy as np
import detector, serving, storage
for pkg in (detector, storage, serving):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not m.name.endswith("migrations.env"):  # Alembic's script: runs only inside alembic
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


UPPER = ("training", "serving", "storage", "rescore", "report", "review", "history", "pvwind")


def _imports_of(path):
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_each_package_imports_only_the_layers_below_it():
    """detector at the bottom; storage on it; serving and rescore on storage; training on detector;
    only pvwind (the command) sees them all. detector does not even name the others in a string."""
    allowed = {
        "detector": {"detector", "configs"},
        "storage": {"storage", "detector", "configs"},
        "report": {"report", "detector", "configs"},
        "review": {"review", "storage", "detector", "training", "configs"},
        "history": {"history", "storage", "detector", "configs"},
        "serving": {"serving", "storage", "report", "review", "history", "detector", "configs"},
        "rescore": {"rescore", "storage", "report", "detector", "configs"},
        "training": {"training", "detector", "configs"},
    }
    ours = set(allowed) | {"pvwind", "configs"}
    checked = 0
    for pkg, ok in allowed.items():
        for f in sorted((REPO / pkg).rglob("*.py")):
            for mod in _imports_of(f):
                top = mod.split(".")[0]
                assert top not in ours or top in ok, f"{f.relative_to(REPO)} imports {mod}"
            checked += 1
    assert checked > 30
    for f in sorted((REPO / "detector").rglob("*.py")):
        text = f.read_text()
        for name in UPPER:
            assert f"{name}." not in text and f'"{name}"' not in text, f"{f.relative_to(REPO)} names {name}"
