"""Source manifests (``datasets/<source>.yaml``): where a public dataset comes from
and how its labels map onto the taxonomy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from detector.taxonomy import Taxonomy

DATASETS_DIR = Path(__file__).resolve().parent.parent / "datasets"


class Upstream(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repository: str
    commit: str
    archive_url: str
    sha256: str | None = None


class Grouping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name_regex: str | None = None
    groups_file: str | None = None
    dhash_max_distance: int = 12


class Rerender(BaseModel):
    """Extra training copies of a thermal source's images, rendered the way the detector renders
    radiometric frames (``training/palette.py``)."""

    model_config = ConfigDict(extra="forbid")
    fraction: float = Field(ge=0.0, le=1.0)  # of the train images that get one re-rendered copy
    percentile_low: tuple[float, float]  # the low end of the range: a percentile drawn from this interval
    percentile_high: tuple[float, float]  # the high end


class Thermal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    palette: str  # training/palettes/<palette>.csv: the palette the source's JPEGs were rendered with
    rerender: Rerender | None = None


class Review(BaseModel):
    """A reviewed batch (``format: reviewed``, written by ``pvwind review import``): corrected
    predictions of our own model on a customer's images, files in ``build/cache/reviewed/<name>/``."""

    model_config = ConfigDict(extra="forbid")
    tool: Literal["labelstudio", "cvat"]
    model: str  # the model key whose predictions were reviewed
    export_file: str  # the tool's corrected export it was imported from
    export_sha256: str
    imported: str  # ISO time
    cache_dir: str = ""  # default: <cache>/reviewed/<name>


class SourceManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    asset: Literal["pv", "wind"]
    upstream: Upstream
    licence: str
    attribution: str
    format: Literal["yolo", "coco", "csv", "reviewed"]
    csv_path: str | None = None
    review: Review | None = None
    source_classes: list[str]
    class_map: dict[str, str | None]
    grouping: Grouping = Grouping()
    # per taxonomy class: boxes within this many x the smaller box's shorter side of each other are
    # merged into one (training/relabel.py; e.g. per-cell diode-fault labels -> one box per substring)
    merge_adjacent: dict[str, float] = {}
    # COCO entries whose file sits in another split's folder: "keep" their labels, or "from_copy": take the
    # boxes of a copy of the same photo (same group, same orientation by difference hash) listed in place,
    # and drop the entry when no such copy exists (training/relabel.py::labels_from_copies)
    misplaced_labels: Literal["keep", "from_copy"] = "keep"
    thermal: Thermal | None = None

    @model_validator(mode="after")
    def _check(self) -> SourceManifest:
        missing = [c for c in self.source_classes if c not in self.class_map]
        if missing:
            raise ValueError(f"{self.name}: class_map lacks {missing}")
        if self.format == "csv" and not self.csv_path:
            raise ValueError(f"{self.name}: format csv needs csv_path")
        if (self.format == "reviewed") != (self.review is not None):
            raise ValueError(f"{self.name}: a review section goes with format reviewed, and only with it")
        return self

    def check_against(self, taxonomy: Taxonomy) -> None:
        for src, dst in self.class_map.items():
            if dst is not None and dst not in taxonomy.names:
                raise ValueError(f"{self.name}: {src!r} maps to {dst!r}, which is not in the taxonomy")
        for name in self.merge_adjacent:
            if name not in taxonomy.names:
                raise ValueError(f"{self.name}: merge_adjacent names {name!r}, which is not in the taxonomy")


def load_manifest(path: str | Path) -> SourceManifest:
    with open(path) as f:
        return SourceManifest.model_validate(yaml.safe_load(f))


def load_manifests(directory: str | Path = DATASETS_DIR) -> list[SourceManifest]:
    """Every ``<directory>/*.yaml`` (sub-folders such as ``datasets/templates/`` are not sources)."""
    return [load_manifest(p) for p in sorted(Path(directory).glob("*.yaml"))]
