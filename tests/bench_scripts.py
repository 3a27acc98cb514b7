"""Loading a script of ``bench/`` (not a package) as a module, for the tests of its functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench_script(relpath: str) -> ModuleType:
    """``bench/<relpath>`` imported as a fresh module (its ``if __name__ == "__main__"`` part not run)."""
    path = BENCH / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
