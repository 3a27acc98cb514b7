"""``pvwind data build``: the four public sources (and any reviewed batches) -> one YOLO-format training set.

Output (``build/dataset`` by default, ignored by git)::

    data.yaml                  # Ultralytics accepts it as is
    images/{train,val,test}/<source>__<name>.jpg
    labels/{train,val,test}/<source>__<name>.txt
    index.json                 # per image: source, group, split, original path
    report.json                # counts per source/split/class, drops and repairs, review outcomes

A reviewed batch (``format: reviewed``, from ``pvwind review import``) is read from its folder in
the build cache and goes last: an image of it that is the same photo as (or a near-duplicate of)
an image already read joins that image's group and split, so a customer photo that is also in a
public source never lands on the other side of the split.
    .fingerprint               # inputs' hash; an unchanged re-run does no work
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from detector.taxonomy import TAXONOMY_PATH, Taxonomy, load_taxonomy
from training.download import fetch_source
from training.grouping import assign_groups, dhash_variants
from training.palette import PaletteInverter, draw_percentiles, load_palette, palette_path, rerender
from training.readers import Sample, read_source
from training.relabel import labels_from_copies, merge_adjacent
from training.sources import DATASETS_DIR, SourceManifest, load_manifests
from training.splits import SPLITS, assign_splits, check_no_leak

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "build" / "dataset"
DEFAULT_CACHE = REPO / "build" / "cache"
MIN_BOX_PX = 2.0
_CODE = ("build.py", "grouping.py", "splits.py", "readers.py", "sources.py", "download.py", "relabel.py", "palette.py")


def default_mirror() -> Path | None:
    """``DATA_MIRROR`` if set (empty = download), else ``../shared/datasets`` when it exists."""
    env = os.environ.get("DATA_MIRROR")
    if env is not None:
        return Path(env) if env else None
    guess = REPO.parent / "shared" / "datasets"
    return guess if guess.is_dir() else None


@dataclass
class Item:
    source: str
    path: Path
    boxes: list[tuple[float, float, float, float]]
    classes: list[int]
    width: int
    height: int
    group: str = ""
    split: str = ""
    out_name: str = ""
    misplaced: bool = False  # COCO entry stored in another split's folder (labels checked against a copy)


@dataclass
class BuildReport:
    out: Path
    rebuilt: bool
    counts: dict = field(default_factory=dict)

    def table(self) -> str:
        return format_report(self.counts)


def _label_hygiene(s: Sample, manifest: SourceManifest, tax: Taxonomy, drops: Counter) -> Item | None:
    try:
        with Image.open(s.image) as im:
            im.verify()
        with Image.open(s.image) as im:
            w, h = im.size
    except (OSError, SyntaxError, ValueError):
        drops["unreadable_image"] += 1
        return None
    if s.problems:
        drops["malformed_label_line"] += len(s.problems)
    if s.width and s.height and (s.width, s.height) != (w, h):
        drops["label_size_mismatch"] += 1
    boxes, classes = [], []
    for (x1, y1, x2, y2), label in zip(s.boxes, s.labels, strict=True):
        if label not in manifest.class_map:
            drops["unknown_label"] += 1
            continue
        target = manifest.class_map[label]
        if target is None:
            drops[f"background_label:{label}"] += 1
            continue
        cx1, cy1 = min(max(x1, 0.0), w), min(max(y1, 0.0), h)
        cx2, cy2 = min(max(x2, 0.0), w), min(max(y2, 0.0), h)
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            drops["box_clipped"] += 1
        if cx2 - cx1 < MIN_BOX_PX or cy2 - cy1 < MIN_BOX_PX:
            drops["box_degenerate_dropped"] += 1
            continue
        boxes.append((cx1, cy1, cx2, cy2))
        classes.append(tax.by_name(target).id)
    for name, gap in manifest.merge_adjacent.items():
        k = tax.by_name(name).id
        cells = [b for b, c in zip(boxes, classes, strict=True) if c == k]
        if len(cells) < 2:
            continue
        merged = merge_adjacent(cells, gap)
        if len(merged) < len(cells):
            drops[f"merged_adjacent:{name}"] += len(cells) - len(merged)
        keep = [(b, c) for b, c in zip(boxes, classes, strict=True) if c != k] + [(b, k) for b in merged]
        boxes, classes = [b for b, _ in keep], [c for _, c in keep]
    return Item(manifest.name, s.image, boxes, classes, w, h, misplaced=s.misplaced)


def fingerprint(manifests: list[SourceManifest], roots: dict[str, Path], seed: int, tax_path: Path) -> str:
    h = hashlib.sha256()
    h.update(str(seed).encode())
    h.update(Path(tax_path).read_bytes())
    for f in _CODE:
        h.update((Path(__file__).parent / f).read_bytes())
    for m in manifests:
        h.update(m.model_dump_json().encode())
        if m.thermal is not None:
            h.update(palette_path(m.thermal.palette).read_bytes())
        for dirpath, dirnames, filenames in os.walk(roots[m.name]):
            dirnames.sort()
            for fn in sorted(filenames):
                st = os.stat(os.path.join(dirpath, fn))
                rel = os.path.relpath(os.path.join(dirpath, fn), roots[m.name])
                h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def reviewed_root(m: SourceManifest, cache: Path) -> Path:
    """Where a reviewed batch's files are: its manifest's ``cache_dir`` or ``<cache>/reviewed/<name>``."""
    assert m.review is not None
    if m.review.cache_dir:
        p = Path(m.review.cache_dir)
        return p if p.is_absolute() else REPO / p
    return cache / "reviewed" / m.name


def resolve_roots(manifests: list[SourceManifest], mirror: Path | None, cache: Path) -> dict[str, Path]:
    roots = {}
    for m in manifests:
        if m.format == "reviewed":
            root = reviewed_root(m, cache)
            if not (root / "labels.json").is_file():
                raise FileNotFoundError(
                    f"reviewed source {m.name}: {root}/labels.json is missing (the build cache is not committed); "
                    f"run 'pvwind review import' for it again, or remove datasets/{m.name}.yaml"
                )
        elif mirror is not None:
            root = mirror / m.name
            if not root.is_dir():
                raise FileNotFoundError(f"source {m.name}: {root} does not exist in the mirror {mirror}")
        else:
            root = fetch_source(m.name, m.upstream.archive_url, cache, m.upstream.sha256)
        roots[m.name] = root
    return roots


def build_dataset(
    out: Path = DEFAULT_OUT,
    mirror: Path | None = None,
    seed: int = 0,
    datasets_dir: Path | None = None,
    taxonomy_path: Path = TAXONOMY_PATH,
    cache: Path | None = None,
    force: bool = False,
    sources: list[str] | None = None,
    log: Callable[[str], object] = print,
) -> BuildReport:
    tax = load_taxonomy(taxonomy_path)
    manifests = load_manifests(datasets_dir or DATASETS_DIR)
    cache = cache or DEFAULT_CACHE
    if sources:
        unknown = set(sources) - {m.name for m in manifests}
        if unknown:
            raise ValueError(f"unknown source(s) {sorted(unknown)}; known: {[m.name for m in manifests]}")
        manifests = [m for m in manifests if m.name in sources]
    for m in manifests:
        m.check_against(tax)
    roots = resolve_roots(manifests, mirror, cache)
    fp = fingerprint(manifests, roots, seed, taxonomy_path)
    out = Path(out)
    if not force and (out / ".fingerprint").exists() and (out / ".fingerprint").read_text() == fp:
        counts = json.loads((out / "report.json").read_text())
        log(f"dataset in {out} is up to date (nothing changed); pass --force to rebuild")
        return BuildReport(out, False, counts)

    items: list[Item] = []
    item_hashes: list[np.ndarray] = []  # parallel to items: their difference hashes (8 variants each)
    drops: dict[str, Counter] = {}
    reviews: dict[str, dict] = {}
    # reviewed batches last: their images are checked against every image read before them
    for m in sorted(manifests, key=lambda m: m.format == "reviewed"):
        log(f"reading {m.name} from {roots[m.name]}")
        d: Counter = Counter()
        src_items: list[Item] = []
        for s in read_source(roots[m.name], m.format, m.source_classes, m.csv_path):
            it = _label_hygiene(s, m, tax, d)
            if it is not None:
                src_items.append(it)
        hashes = []
        keep = []
        for it in src_items:
            try:
                hashes.append(dhash_variants(it.path))
                keep.append(it)
            except (OSError, ValueError, SyntaxError):
                d["unreadable_image"] += 1
        src_items = keep
        group_lists = []
        if m.grouping.groups_file:
            gf = roots[m.name] / m.grouping.groups_file
            if gf.exists():
                group_lists = json.loads(gf.read_text())
            else:
                d["groups_file_missing"] += 1
        groups = assign_groups(
            [it.path for it in src_items],
            m.grouping.name_regex,
            group_lists,
            np.stack(hashes) if hashes else None,
            m.grouping.dhash_max_distance,
        )
        gids = [f"{m.name}/{g}" for g in groups]
        forced: dict[str, tuple[str, str]] = {}
        if m.format == "reviewed":
            forced = join_known_photos(gids, hashes, items, item_hashes, m.grouping.dhash_max_distance)
            d["joined_group_of_an_earlier_source"] += sum(1 for g in gids if g in forced)
            review_file = roots[m.name] / "review.json"
            reviews[m.name] = json.loads(review_file.read_text()) if review_file.exists() else {}
        free = [i for i, g in enumerate(gids) if g not in forced]
        free_splits = assign_splits(
            [gids[i] for i in free],
            [{tax.names[c] for c in src_items[i].classes} for i in free],
            seed=seed,
        )
        splits = [forced[g][1] if g in forced else "" for g in gids]
        for i, sp in zip(free, free_splits, strict=True):
            splits[i] = sp
        for it, g, sp in zip(src_items, gids, splits, strict=True):
            it.group, it.split = (forced[g][0] if g in forced else g), sp
        if m.misplaced_labels == "from_copy":
            # after the splits, which stay as the upstream labels drew them (no image changes side)
            keep_idx = labels_from_copies(src_items, hashes, m.grouping.dhash_max_distance, d)
            src_items = [src_items[i] for i in keep_idx]
            hashes = [hashes[i] for i in keep_idx]
        drops[m.name] = d
        items.extend(src_items)
        item_hashes.extend(hashes)

    check_no_leak([it.group for it in items], [it.split for it in items])
    _write(out, items, tax, drops, fp, manifests, reviews, seed)
    counts = json.loads((out / "report.json").read_text())
    return BuildReport(out, True, counts)


def join_known_photos(
    gids: list[str],
    hashes: list[np.ndarray],
    earlier: list[Item],
    earlier_hashes: list[np.ndarray],
    max_distance: int,
) -> dict[str, tuple[str, str]]:
    """Groups (of a reviewed batch) with a member that is the same photo as, or a near-duplicate
    of, an image read before: group id -> (that image's group, its split)."""
    if not earlier or not hashes:
        return {}
    from training.grouping import _POPCOUNT

    base = np.stack([h[0] for h in earlier_hashes])  # (m, nbytes)
    out: dict[str, tuple[str, str]] = {}
    for g, h in zip(gids, hashes, strict=True):
        if g in out:
            continue
        x = np.bitwise_xor(h[:, None, :], base[None, :, :])  # (8, m, nbytes)
        dist = _POPCOUNT[x].sum(axis=2, dtype=np.int32).min(axis=0)  # (m,)
        j = int(np.argmin(dist))
        if dist[j] <= max_distance:
            out[g] = (earlier[j].group, earlier[j].split)
    return out


def _write(
    out: Path,
    items: list[Item],
    tax: Taxonomy,
    drops: dict[str, Counter],
    fp: str,
    manifests: list[SourceManifest],
    reviews: dict[str, dict] | None = None,
    seed: int = 0,
) -> None:
    tmp = out.with_name(out.name + ".tmp")
    thermal = {m.name: m.thermal for m in manifests if m.thermal is not None and m.thermal.rerender is not None}
    inverters = {name: PaletteInverter(load_palette(t.palette)) for name, t in thermal.items()}
    rng = np.random.default_rng(seed)
    shutil.rmtree(tmp, ignore_errors=True)
    for sp in SPLITS:
        (tmp / "images" / sp).mkdir(parents=True)
        (tmp / "labels" / sp).mkdir(parents=True)
    used: set[str] = set()
    index = []
    for it in items:
        base = f"{it.source}__{it.path.stem}".replace(" ", "_")
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        it.out_name = name + it.path.suffix.lower()
        shutil.copyfile(it.path, tmp / "images" / it.split / it.out_name)
        label = _label_text(it)
        (tmp / "labels" / it.split / (name + ".txt")).write_text(label)
        index.append(
            {
                "image": f"images/{it.split}/{it.out_name}",
                "source": it.source,
                "group": it.group,
                "split": it.split,
                "original": str(it.path),
                "boxes": len(it.boxes),
            }
        )
        th = thermal.get(it.source)
        if th is not None and it.split == "train" and rng.random() < th.rerender.fraction:
            # one copy as the detector would render the radiometric frame (same group, same split)
            lo, hi = draw_percentiles(rng, th.rerender.percentile_low, th.rerender.percentile_high)
            with Image.open(it.path) as im:
                rgb = np.asarray(im.convert("RGB"))
            copy = f"{name}__rerendered"
            Image.fromarray(rerender(rgb, inverters[it.source], (lo, hi))).save(
                tmp / "images" / it.split / f"{copy}.jpg", quality=95
            )
            (tmp / "labels" / it.split / f"{copy}.txt").write_text(label)
            index.append(
                {
                    "image": f"images/{it.split}/{copy}.jpg",
                    "source": it.source,
                    "group": it.group,
                    "split": it.split,
                    "original": str(it.path),
                    "boxes": len(it.boxes),
                    "rerendered": {"palette": th.palette, "percentiles": [round(lo, 2), round(hi, 2)]},
                }
            )
            drops.setdefault(it.source, Counter())["rerendered_train_copies_added"] += 1
    data_yaml = {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "names": dict(enumerate(tax.names)),
    }
    (tmp / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False))
    (tmp / "index.json").write_text(json.dumps(index, indent=0))
    counts = _count(items, tax, drops, manifests, reviews or {})
    (tmp / "report.json").write_text(json.dumps(counts, indent=2))
    (tmp / ".fingerprint").write_text(fp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)


def _label_text(it: Item) -> str:
    lines = []
    for (x1, y1, x2, y2), c in zip(it.boxes, it.classes, strict=True):
        cx, cy = (x1 + x2) / 2 / it.width, (y1 + y2) / 2 / it.height
        bw, bh = (x2 - x1) / it.width, (y2 - y1) / it.height
        lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _count(
    items: list[Item],
    tax: Taxonomy,
    drops: dict[str, Counter],
    manifests: list[SourceManifest],
    reviews: dict | None = None,
) -> dict:
    per: dict = defaultdict(
        lambda: defaultdict(
            lambda: {
                "images": 0,
                "background": 0,
                "boxes": 0,
                "boxes_per_class": Counter(),
                "images_per_class": Counter(),
            }
        )
    )
    class_groups: dict = defaultdict(set)  # (source, split, class) -> the groups (photos + copies) holding it
    for it in items:
        c = per[it.source][it.split]
        c["images"] += 1
        c["boxes"] += len(it.boxes)
        if not it.boxes:
            c["background"] += 1
        for k in it.classes:
            c["boxes_per_class"][tax.names[k]] += 1
        for k in set(it.classes):
            c["images_per_class"][tax.names[k]] += 1
            class_groups[(it.source, it.split, tax.names[k])].add(it.group)
    for (source, split, name), gs in class_groups.items():
        per[source][split].setdefault("groups_per_class", Counter())[name] = len(gs)
    groups = defaultdict(set)
    for it in items:
        groups[it.source].add(it.group)
    missing = []
    for name in tax.names:
        for sp in ("val", "test"):
            if not any(per[s][sp]["boxes_per_class"].get(name) for s in per):
                if any(per[s]["train"]["boxes_per_class"].get(name) for s in per):
                    missing.append(f"{name} has no {sp} image")
    return {
        "sources": {
            m.name: {
                "licence": m.licence,
                "groups": len(groups[m.name]),
                "splits": {
                    sp: {k: (dict(v) if isinstance(v, Counter) else v) for k, v in per[m.name][sp].items()}
                    for sp in SPLITS
                },
                "dropped_or_repaired": dict(drops.get(m.name, {})),
                **({"review": (reviews or {}).get(m.name, {})} if m.format == "reviewed" else {}),
            }
            for m in manifests
        },
        "warnings": missing,
    }


def format_report(counts: dict) -> str:
    """A plain-text table of the report (images/boxes per source and split, per class, drops)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buf = StringIO()
    con = Console(file=buf, width=120, force_terminal=False)
    t = Table(title="images (background) / boxes per source and split")
    t.add_column("source")
    t.add_column("groups", justify="right")
    for sp in SPLITS:
        t.add_column(sp, justify="right")
    totals = {sp: [0, 0, 0] for sp in SPLITS}
    for name, s in counts["sources"].items():
        row = [name, str(s["groups"])]
        for sp in SPLITS:
            c = s["splits"][sp]
            row.append(f"{c['images']} ({c['background']}) / {c['boxes']}")
            totals[sp][0] += c["images"]
            totals[sp][1] += c["background"]
            totals[sp][2] += c["boxes"]
        t.add_row(*row)
    t.add_row("total", "", *[f"{a} ({b}) / {c}" for a, b, c in totals.values()])
    con.print(t)
    tc = Table(title="boxes (images, groups) per class and split", caption="a group: a photo with its copies")
    tc.add_column("class")
    for sp in SPLITS:
        tc.add_column(sp, justify="right")
    classes: dict[str, dict[str, list[int]]] = defaultdict(lambda: {sp: [0, 0, 0] for sp in SPLITS})
    for s in counts["sources"].values():
        for sp in SPLITS:
            for k, v in s["splits"][sp]["boxes_per_class"].items():
                classes[k][sp][0] += v
            for k, v in s["splits"][sp]["images_per_class"].items():
                classes[k][sp][1] += v
            for k, v in s["splits"][sp].get("groups_per_class", {}).items():  # absent in older reports
                classes[k][sp][2] += v
    for k in sorted(classes):
        tc.add_row(k, *[f"{b} ({i}, {g})" if g else f"{b} ({i})" for b, i, g in classes[k].values()])
    con.print(tc)
    td = Table(title="dropped or repaired")
    td.add_column("source")
    td.add_column("what")
    td.add_column("count", justify="right")
    for name, s in counts["sources"].items():
        for k, v in sorted(s["dropped_or_repaired"].items()):
            td.add_row(name, k, str(v))
    con.print(td)
    reviewed = {n: s["review"] for n, s in counts["sources"].items() if s.get("review")}
    if reviewed:
        tr = Table(title="review outcomes: the model's predictions as the reviewers left them")
        for col in ("source", "model", "images", "predictions", "confirmed", "moved", "relabelled", "deleted"):
            tr.add_column(col, justify="left" if col in ("source", "model") else "right")
        for col in ("added", "precision", "recall"):
            tr.add_column(col, justify="right")
        for name, r in reviewed.items():
            o = r.get("outcomes", {})

            def pct(v):  # noqa: ANN001, ANN202
                return "-" if v is None else f"{v:.2f}"

            tr.add_row(
                name,
                str(r.get("model", ""))[:40],
                str(r.get("images", {}).get("reviewed", "")),
                *(str(o.get(k, 0)) for k in ("predictions", "confirmed", "moved", "relabelled", "deleted", "added")),
                pct(o.get("precision")),
                pct(o.get("recall")),
            )
        con.print(tr)
    for w in counts.get("warnings", []):
        con.print(f"warning: {w}")
    return buf.getvalue()
