"""The unified defect class list (``configs/taxonomy.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import configs

TAXONOMY_PATH = configs.path("taxonomy.yaml")


@dataclass(frozen=True)
class DefectClass:
    id: int
    name: str
    asset: str  # "pv" or "wind"
    description: str


@dataclass(frozen=True)
class Taxonomy:
    classes: tuple[DefectClass, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def by_name(self, name: str) -> DefectClass:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(f"unknown defect class {name!r}; known: {', '.join(self.names)}")

    def __len__(self) -> int:
        return len(self.classes)


def parse_taxonomy(data: dict) -> Taxonomy:
    """Validate the parsed YAML of a taxonomy file."""
    entries = data.get("classes")
    if not isinstance(entries, list) or not entries:
        raise ValueError("taxonomy: 'classes' must be a non-empty list")
    classes = []
    seen: set[str] = set()
    for i, e in enumerate(entries):
        name = e.get("name")
        if not name or name in seen:
            raise ValueError(f"taxonomy: class {i} has a missing or duplicate name {name!r}")
        if e.get("asset") not in ("pv", "wind"):
            raise ValueError(f"taxonomy: class {name!r} needs asset 'pv' or 'wind'")
        seen.add(name)
        classes.append(DefectClass(i, name, e["asset"], str(e.get("description", "")).strip()))
    return Taxonomy(tuple(classes))


@lru_cache(maxsize=8)
def load_taxonomy(path: str | Path = TAXONOMY_PATH) -> Taxonomy:
    return parse_taxonomy(configs.load(path))
