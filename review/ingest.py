"""``pvwind review import``: a corrected Label Studio / CVAT export -> a dataset source.

Writes ``build/cache/reviewed/<name>/`` (``images/`` copies, or hard links, of the reviewed
images named ``<sha256[:12]>_<file name>``, so one photo is one file; ``labels.json``, the boxes
as reviewers left them; ``review.json``, the outcome counts) and ``datasets/<name>.yaml`` (a
``format: reviewed`` manifest). ``pvwind data build`` then reads the batch like a public source:
the same hygiene (clipping, tiny boxes, unreadable images, unknown labels, all counted), the
same grouping (one reviewed image is its own group unless it is the same photo as, or a
near-duplicate of, another image: then it joins that image's group and split) and the leak check.

Only reviewed images become training data: a Label Studio task nobody annotated is counted as
``not_reviewed`` and left out, as is an image whose file is missing or whose bytes changed
since the export (content hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from detector.results import ImageResult
from detector.taxonomy import load_taxonomy
from review import cvat, labelstudio
from review.export import MANIFEST
from review.outcome import Change, Corrected, compare, tally
from training.sources import DATASETS_DIR, SourceManifest, load_manifest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / "build" / "cache"
NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


class ImportError_(ValueError):  # noqa: N801 - not the builtin ImportError
    """A corrected export that cannot be imported (unknown tool, no matching images ...)."""


@dataclass
class ImportReport:
    name: str
    manifest: Path
    folder: Path
    review: dict[str, Any]
    changes: list[Change] = field(default_factory=list)


def detect_tool(path: Path) -> str:
    if path.suffix.lower() == ".xml":
        return "cvat"
    if path.suffix.lower() == ".json":
        return "labelstudio"
    raise ImportError_(f"{path}: cannot tell the tool from the file type; pass --tool labelstudio|cvat")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _place(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _asset(changes: Sequence[Change]) -> str:
    tax = load_taxonomy()
    assets = Counter(tax.by_name(n).asset for ch in changes for n in (ch.predicted, ch.final) if n and n in tax.names)
    return assets.most_common(1)[0][0] if assets else "pv"


def manifest_text(m: SourceManifest, review: dict[str, Any]) -> str:
    o = review.get("outcomes", {})
    head = (
        f"# Reviewed batch {m.name}: predictions of {m.review.model if m.review else '?'} corrected in "
        f"{m.review.tool if m.review else '?'}; written by 'pvwind review import'.\n"
        f"# Files: build/cache/reviewed/{m.name}/ (not committed: re-run the import on another machine).\n"
        f"# {review.get('images', {}).get('reviewed', 0)} reviewed images; predictions {o.get('predictions', 0)}: "
        f"confirmed {o.get('confirmed', 0)}, moved {o.get('moved', 0)}, relabelled {o.get('relabelled', 0)}, "
        f"deleted {o.get('deleted', 0)}; added {o.get('added', 0)}.\n"
    )
    return head + yaml.safe_dump(m.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True)


def import_review(
    export_file: Path,
    predictions: Path,
    name: str,
    *,
    tool: str | None = None,
    datasets_dir: Path = DATASETS_DIR,
    cache: Path = DEFAULT_CACHE,
    image_dirs: Sequence[Path] = (),
    licence: str = "customer data: use for this customer's models only unless agreed otherwise",
    dhash_max_distance: int = 10,
) -> ImportReport:
    """``predictions``: the export folder or its ``review_manifest.json``."""
    if not NAME.match(name):
        raise ImportError_(f"name {name!r}: use lower-case letters, digits and _ (it names the source)")
    export_file = Path(export_file)
    tool = tool or detect_tool(export_file)
    if tool not in ("labelstudio", "cvat"):
        raise ImportError_(f"unknown tool {tool!r}: labelstudio or cvat")
    man_path = Path(predictions)
    if man_path.is_dir():
        man_path = man_path / MANIFEST
    ref = json.loads(man_path.read_text())
    if ref.get("kind") != "pvwind-review-export":
        raise ImportError_(f"{man_path}: not a pvwind review export manifest")
    target = Path(datasets_dir) / f"{name}.yaml"
    if target.exists() and load_manifest(target).format != "reviewed":
        raise ImportError_(f"{target} is a public source's manifest; choose another name")

    entries = ref["images"]
    by_sha = {e["sha256"]: e for e in entries if e.get("sha256")}
    by_name = {e["name"]: e for e in entries}
    base_count = Counter(Path(e["name"]).name for e in entries)
    by_base = {Path(e["name"]).name: e for e in entries if base_count[Path(e["name"]).name] == 1}

    corrected: list[Corrected] = (
        labelstudio.read_export(export_file) if tool == "labelstudio" else cvat.read_export(export_file)
    )
    folder = Path(cache) / "reviewed" / name
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    counts: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    changes: list[Change] = []
    labels: list[dict[str, Any]] = []
    seen: set[str] = set()
    for c in corrected:
        e = (by_sha.get(c.sha256) if c.sha256 else None) or by_name.get(c.name) or by_base.get(Path(c.name).name)
        if e is None:
            counts["unknown_image"] += 1
            continue
        if not c.reviewed:
            counts["not_reviewed"] += 1
            continue
        key = e.get("sha256") or e["name"]
        if key in seen:  # the same photo twice in the tool
            counts["duplicate_image"] += 1
            continue
        seen.add(key)
        result = ImageResult.model_validate(e["result"])
        src = _locate(e, image_dirs)
        if src is None:
            counts["image_missing"] += 1
            continue
        if e.get("sha256") and sha256_file(src) != e["sha256"]:
            counts["image_changed"] += 1
            continue
        for p in c.problems:
            problems[p.split(" ")[0] if p.startswith("region") else p] += 1
        img_changes = compare(result.findings, c.boxes)
        changes += img_changes
        counts["reviewed"] += 1
        stem = f"{(e.get('sha256') or hashlib.sha256(key.encode()).hexdigest())[:12]}_{src.name}"
        _place(src, tmp / "images" / stem)
        labels.append(
            {
                "file": f"images/{stem}",
                "width": c.width or result.width,
                "height": c.height or result.height,
                "boxes": [[round(v, 2) for v in b.box] for b in c.boxes],
                "labels": [b.label for b in c.boxes],
                "sha256": e.get("sha256"),
                "name": e["name"],
                "original": str(src),
                "outcomes": dict(Counter(ch.outcome for ch in img_changes)),
            }
        )
    if not labels:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ImportError_(
            f"{export_file}: no reviewed image could be matched to the export in {man_path} ({dict(counts)})"
        )
    export_sha = sha256_file(export_file)
    review = {
        "name": name,
        "tool": tool,
        "model": ref.get("model"),
        "export_file": str(export_file),
        "export_sha256": export_sha,
        "imported": datetime.now(UTC).isoformat(timespec="seconds"),
        "images": {
            "exported": len(entries),
            **{k: counts.get(k, 0) for k in ("reviewed", "not_reviewed")},
            **{k: v for k, v in counts.items() if k not in ("reviewed", "not_reviewed")},
        },
        "problems": dict(problems),
        "outcomes": tally(changes),
    }
    (tmp / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    (tmp / "review.json").write_text(json.dumps(review, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)

    tax = load_taxonomy()
    cache_dir = ""
    try:
        rel = folder.resolve().relative_to(REPO)
        if rel != Path("build/cache/reviewed") / name:
            cache_dir = rel.as_posix()
    except ValueError:
        cache_dir = str(folder.resolve())
    m = SourceManifest.model_validate(
        {
            "name": name,
            "asset": _asset(changes),
            "upstream": {
                "repository": f"review:{tool} {ref.get('name') or name}",
                "commit": export_sha[:12],
                "archive_url": f"file://{export_file.resolve()}",
                "sha256": export_sha,
            },
            "licence": licence,
            "attribution": f"Reviewed predictions of {ref.get('model')} ({tool}), imported {review['imported']}.",
            "format": "reviewed",
            "review": {
                "tool": tool,
                "model": str(ref.get("model") or "unknown"),
                "export_file": str(export_file),
                "export_sha256": export_sha,
                "imported": review["imported"],
                "cache_dir": cache_dir,
            },
            "source_classes": tax.names,
            "class_map": {n: n for n in tax.names},
            "grouping": {"name_regex": None, "dhash_max_distance": dhash_max_distance},
        }
    )
    m.check_against(tax)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(manifest_text(m, review))
    return ImportReport(name, target, folder, review, changes)


def _locate(e: dict[str, Any], image_dirs: Sequence[Path]) -> Path | None:
    if e.get("path") and Path(e["path"]).is_file():
        return Path(e["path"])
    for d in image_dirs:
        for cand in (Path(d) / e["name"], Path(d) / Path(e["name"]).name):
            if cand.is_file():
                return cand
    return None
