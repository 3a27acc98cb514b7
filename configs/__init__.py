"""The shipped settings files: ``detector.yaml``, ``priority.yaml``, ``taxonomy.yaml``,
``train.yaml`` (and ``thermal.yaml``). Each file is the single source of its defaults;
the code validates them and never repeats a default.

Installed as package data, so ``pip install .`` (not editable) finds them from any
directory: :func:`path` names a shipped file, :func:`load` reads one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A settings file is missing or not valid YAML (the message names the file)."""


def path(name: str) -> Path:
    """The shipped file ``name`` (e.g. ``"detector.yaml"``)."""
    return DIR / name


def load(source: str | Path) -> dict[str, Any]:
    """A YAML mapping: a shipped file by name (``"detector.yaml"``) or any path."""
    p = Path(source)
    if not p.is_absolute() and not p.exists() and (DIR / p).is_file():
        p = DIR / p
    try:
        with open(p, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"settings file not found: {p}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings, got {type(data).__name__}")
    return data
