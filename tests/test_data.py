"""`pvwind data build`: readers, grouping, leak-free splits, hygiene, download, caching."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pvwind.cli import main as pvwind
from training import build as build_mod
from training.build import build_dataset
from training.download import DownloadError, download
from training.grouping import assign_groups, canonical_name, dhash_variants, near_duplicate_pairs
from training.readers import read_coco, read_pixel_csv, read_yolo
from training.sources import load_manifests
from training.splits import SplitLeakError, assign_splits, check_no_leak

REPO = Path(__file__).resolve().parent.parent


# -- readers on real samples ----------------------------------------------------------------


def test_read_yolo_real_sample(mini_mirror):
    samples = list(read_yolo(mini_mirror / "wind_fans", ["Dirt", "Oil LEAKAGE", "Pin Hole"]))
    assert samples, "no samples read"
    s = next(s for s in samples if s.boxes)
    label = s.image.parent.parent / "labels" / (s.image.stem + ".txt")
    first = label.read_text().split()
    w, h = Image.open(s.image).size
    cx, cy, bw, bh = (float(v) for v in first[1:5])
    assert s.labels[0] == ["Dirt", "Oil LEAKAGE", "Pin Hole"][int(first[0])]
    assert s.boxes[0] == pytest.approx(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))


def test_read_coco_finds_files_in_other_split_folders(mini_mirror):
    samples = list(read_coco(mini_mirror / "pv_isuru_rgb"))
    names = [s.image.name for s in samples]
    assert len(names) == len(set(names)), "an image was read twice"
    assert all(s.image.exists() for s in samples)
    # the valid/test json files point at images that sit in train/: they must be found there
    valid_json = json.loads((mini_mirror / "pv_isuru_rgb/valid/_annotations.coco.json").read_text())
    cross = [
        s
        for s in samples
        if s.image.name in {i["file_name"] for i in valid_json["images"]} and s.image.parent.name != "valid"
    ]
    assert cross, "expected some valid-json images located in another folder"
    listed_in = {
        i["file_name"]: js.parent.name
        for js in (mini_mirror / "pv_isuru_rgb").glob("*/_annotations.coco.json")
        for i in json.loads(js.read_text())["images"]
    }
    assert all(s.misplaced == (listed_in[s.image.name] != s.image.parent.name) for s in samples)
    assert all(s.misplaced for s in cross)
    labels = {lab for s in samples for lab in s.labels}
    assert labels <= {"bird drop", "clean", "dusty", "electrical", "physical"}
    # COCO bbox is x, y, w, h: converted to x1, y1, x2, y2
    js = json.loads((mini_mirror / "pv_isuru_rgb/train/_annotations.coco.json").read_text())
    a = js["annotations"][0]
    im = next(i for i in js["images"] if i["id"] == a["image_id"])
    s = next(s for s in samples if s.image.name == im["file_name"])
    x, y, w, h = a["bbox"]
    assert (x, y, x + w, y + h) in s.boxes


@dataclass
class _Entry:
    boxes: list
    classes: list
    width: int
    height: int
    group: str
    misplaced: bool


def test_labels_from_copies_rules():
    from collections import Counter

    from training.relabel import labels_from_copies

    h = np.zeros((8, 32), np.uint8)
    flipped = h.copy()
    flipped[0, :4] = 0xFF  # 32 bits apart as stored: another orientation, not a copy to take boxes from
    items = [
        _Entry([(10, 10, 50, 50)], [4], 100, 100, "g1", False),  # the in-place copy
        _Entry([(10, 10, 50, 50), (60, 0, 99, 40)], [4, 6], 200, 200, "g1", True),  # + a foreign box
        _Entry([(10, 10, 50, 50)], [4], 100, 100, "g1", True),  # agrees with the copy
        _Entry([(0, 0, 9, 9)], [5], 100, 100, "g2", True),  # no copy at all
        _Entry([(0, 0, 9, 9)], [5], 100, 100, "g3", False),
        _Entry([(1, 1, 8, 8)], [7], 100, 100, "g3", True),  # its only copy is flipped
    ]
    hashes = [h, h, h, h, h, flipped]
    counts: Counter = Counter()
    keep = labels_from_copies(items, hashes, 10, counts)
    assert keep == [0, 1, 2, 4]
    assert items[1].boxes == [(20, 20, 100, 100)] and items[1].classes == [4]  # scaled to its own size
    assert items[2].boxes == [(10, 10, 50, 50)]
    assert counts == Counter(
        misplaced_labels_from_copy=1,
        misplaced_foreign_boxes_dropped=1,
        misplaced_labels_confirmed=1,
        misplaced_dropped_no_copy=2,
    )


def test_misplaced_pv_isuru_entries_lose_foreign_boxes(mirror, tmp_path):
    """On the real source: two test-json entries of train-folder photos, whose in-place copies hold one
    box each (a clean panel: background; a crack), carry 4 and 5 more boxes of other photos upstream."""
    out = tmp_path / "ds"
    report = build_dataset(out, mirror=mirror, cache=tmp_path, sources=["pv_isuru_rgb"], log=lambda *_: None)
    drops = report.counts["sources"]["pv_isuru_rgb"]["dropped_or_repaired"]
    assert drops["misplaced_labels_from_copy"] >= 40 and drops["misplaced_foreign_boxes_dropped"] >= 80
    assert drops["misplaced_dropped_no_copy"] >= 1 and drops["misplaced_labels_confirmed"] >= 1
    index = {Path(e["original"]).name: e for e in json.loads((out / "index.json").read_text())}

    def labels(name):
        e = index[name]
        return (out / e["image"].replace("images/", "labels/")).with_suffix(".txt").read_text().split("\n")

    clean = "Clean-110-_jpg.rf.dc82c06ef6da8de4f72016e9bf4853b5.jpg"
    crack = "Physical-13-_jpg.rf.d646351b718b652e37275159a7fd3513.jpg"
    assert [ln for ln in labels(clean) if ln.strip()] == []
    assert [ln.split()[0] for ln in labels(crack) if ln.strip()] == ["7"]  # pv_physical_damage only


def test_read_pixel_csv_with_background_rows(mini_mirror):
    samples = {s.image.name: s for s in read_pixel_csv(mini_mirror / "pv_zelestra_ir", "data/Train/_annotations.csv")}
    bg = [s for s in samples.values() if "no_defect" in s.labels]
    assert bg and all(
        b == (-1, -1, -1, -1) for s in bg for b, lab in zip(s.boxes, s.labels, strict=True) if lab == "no_defect"
    )
    hot = next(s for s in samples.values() if "hotspot" in s.labels)
    assert all(
        x2 > x1 and y2 > y1 for (x1, y1, x2, y2), lab in zip(hot.boxes, hot.labels, strict=True) if lab == "hotspot"
    )
    assert hot.width == 416 and hot.height == 416


# -- grouping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "regex", "expected"),
    [
        ("Dust-16-_jpg.rf.7388185216b2ceff857693f34fcee2c7.jpg", None, "Dust-16-"),
        ("aug_17130_3_JPG.rf.bb7fe4e7db4a510816073ff34566b3fb.jpg", None, "3"),
        (
            "replicated_ASP30BladeC1704300020_2_jpg.rf.65d8025f4207dd19e32a3773770f247e.jpg",
            None,
            "ASP30BladeC1704300020",
        ),
        ("ASP30BladeC1704300020_jpg.rf.0123456789abcdef0123456789abcdef.jpg", None, "ASP30BladeC1704300020"),
        ("DJI_0004_02_05_png.rf.09e82f2736a8e4921a5bfccad504ffa2.jpg", r"^(DJI_\d+)", "DJI_0004"),
        ("DJI_0004_013_JPG.rf.7119282c58f2cf58680b0acbb2448764.jpg", r"^(DJI_\d+)", "DJI_0004"),
        ("0006bc92-d47a-4986-91ba-4451445a54f4.jpg", None, "0006bc92-d47a-4986-91ba-4451445a54f4"),
    ],
)
def test_canonical_name(name, regex, expected):
    assert canonical_name(name, regex) == expected


def test_dhash_finds_flipped_copy_and_not_other_photos(tmp_path, mirror):
    files = sorted((mirror / "wind_iliad/train/images").iterdir())[:40:7]
    src = files[0]
    flipped = tmp_path / "flipped_random_name.jpg"
    rotated = tmp_path / "another_name.jpg"
    im = Image.open(src)
    im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped, quality=90)
    im.transpose(Image.Transpose.ROTATE_90).save(rotated, quality=90)
    paths = [src, *files[1:], flipped, rotated]
    hashes = np.stack([dhash_variants(p) for p in paths])
    pairs = set(near_duplicate_pairs(hashes, 10))
    n = len(paths)
    assert (0, n - 2) in pairs and (0, n - 1) in pairs
    groups = assign_groups(paths, None, [], hashes, 10)
    assert groups[0] == groups[-1] == groups[-2]
    assert len(set(groups[1:-2])) == len(files) - 1  # different photos stay apart


def test_groups_file_joins_unrelated_names(tmp_path):
    paths = [Path(f"{c}.jpg") for c in "abcd"]
    groups = assign_groups(paths, None, [["a.jpg", "c.jpg"], ["missing.jpg", "d.jpg"]])
    assert groups[0] == groups[2] and groups[0] != groups[1] and groups[3] != groups[1]


# -- splits ---------------------------------------------------------------------------------


def _toy(n_groups=60, seed=1):
    rng = np.random.default_rng(seed)
    groups, classes = [], []
    for g in range(n_groups):
        for _ in range(int(rng.integers(1, 5))):
            groups.append(f"g{g}")
            classes.append({"rare"} if g in (3, 17, 41) else {"common"} if g % 2 else set())
    return groups, classes


def test_splits_deterministic_grouped_and_cover_every_class():
    groups, classes = _toy()
    a = assign_splits(groups, classes, seed=7)
    assert a == assign_splits(groups, classes, seed=7)
    assert a != assign_splits(groups, classes, seed=8)
    side = defaultdict(set)
    for g, s in zip(groups, a, strict=True):
        side[g].add(s)
    assert all(len(s) == 1 for s in side.values())
    for sp in ("val", "test"):
        present = set().union(*(c for c, s in zip(classes, a, strict=True) if s == sp))
        assert {"rare", "common"} <= present
    frac = {sp: a.count(sp) / len(a) for sp in ("train", "val", "test")}
    assert 0.7 <= frac["train"] <= 0.9 and 0.05 <= frac["val"] <= 0.15 and 0.05 <= frac["test"] <= 0.15


def test_check_no_leak_rejects_a_group_on_two_sides():
    with pytest.raises(SplitLeakError, match="g1 in train/val"):
        check_no_leak(["g1", "g1", "g2"], ["train", "val", "test"])


# -- the build on a small real mirror ---------------------------------------------------------


@pytest.fixture(scope="module")
def built(mini_mirror, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "dataset"
    report = build_dataset(out, mirror=mini_mirror, cache=out.parent / "cache", log=lambda *_: None)
    return out, report


def test_build_writes_ultralytics_dataset_without_leaks(built):
    out, report = built
    data = yaml.safe_load((out / "data.yaml").read_text())
    from detector.taxonomy import load_taxonomy

    assert list(data["names"].values()) == load_taxonomy().names
    index = json.loads((out / "index.json").read_text())
    sides = defaultdict(set)
    for row in index:
        sides[row["group"]].add(row["split"])
        assert (out / row["image"]).exists()
        label = out / row["image"].replace("images/", "labels/", 1)
        assert label.with_suffix(".txt").exists()
    assert all(len(s) == 1 for s in sides.values())
    assert {r["source"] for r in index} == {m.name for m in load_manifests()}
    # every label line is a valid normalised YOLO box of a taxonomy class
    for lab in (out / "labels").rglob("*.txt"):
        for line in lab.read_text().split("\n"):
            if line:
                c, *box = line.split()
                assert 0 <= int(c) < 10 and all(0 <= float(v) <= 1 for v in box)
    # background images (clean / no_defect) are kept without boxes
    assert sum(s["splits"][sp]["background"] for s in report.counts["sources"].values() for sp in s["splits"]) > 0
    assert report.counts["sources"]["pv_isuru_rgb"]["dropped_or_repaired"].get("background_label:clean", 0) > 0
    # per class and split, the distinct groups (photos with their copies) that hold the class, from the index
    from detector.taxonomy import load_taxonomy as _tax

    names = _tax().names
    held = defaultdict(set)
    for row in index:
        label = (out / row["image"].replace("images/", "labels/", 1)).with_suffix(".txt")
        for line in label.read_text().splitlines():
            held[(row["source"], row["split"], names[int(line.split()[0])])].add(row["group"])
    counted = {
        (src, sp, name): n
        for src, s in report.counts["sources"].items()
        for sp, c in s["splits"].items()
        for name, n in c.get("groups_per_class", {}).items()
    }
    assert counted == {k: len(v) for k, v in held.items()}
    assert any(n < report.counts["sources"][k[0]]["splits"][k[1]]["images_per_class"][k[2]] for k, n in counted.items())
    from training.build import format_report

    assert "boxes (images, groups) per class and split" in format_report(report.counts)


def test_ultralytics_accepts_the_data_yaml(built):
    pytest.importorskip("ultralytics")
    from ultralytics.data.utils import check_det_dataset

    out, _ = built
    info = check_det_dataset(str(out / "data.yaml"))
    assert info["nc"] == 10 and Path(info["train"]).is_dir()


def test_rebuild_is_skipped_when_nothing_changed_and_redone_when_mapping_changes(built, mini_mirror, tmp_path):
    out, _ = built
    stamp = (out / "report.json").stat().st_mtime_ns
    again = build_dataset(out, mirror=mini_mirror, cache=tmp_path, log=lambda *_: None)
    assert not again.rebuilt and (out / "report.json").stat().st_mtime_ns == stamp
    # a changed class mapping rebuilds
    ds = tmp_path / "datasets"
    shutil.copytree(REPO / "datasets", ds)
    man = ds / "wind_fans.yaml"
    man.write_text(man.read_text().replace("Dirt: blade_dirt", "Dirt: null"))
    changed = build_dataset(out, mirror=mini_mirror, cache=tmp_path, datasets_dir=ds, log=lambda *_: None)
    assert changed.rebuilt
    assert "blade_dirt" not in json.dumps(changed.counts["sources"]["wind_fans"]["splits"])


def test_build_refuses_a_leaking_split(mini_mirror, tmp_path, monkeypatch):
    def leaky(groups, classes, seed=0, fractions=None):
        return ["train"] * (len(groups) - 1) + ["test"]  # the last image's group is also in train

    monkeypatch.setattr(build_mod, "assign_splits", leaky)
    out = tmp_path / "dataset"
    with pytest.raises(SplitLeakError):
        build_dataset(out, mirror=mini_mirror, cache=tmp_path, sources=["wind_iliad"], log=lambda *_: None)
    assert not out.exists()


def test_bad_labels_and_images_are_counted_not_fatal(mini_mirror, tmp_path):
    src = tmp_path / "mirror" / "wind_iliad"
    shutil.copytree(mini_mirror / "wind_iliad", src)
    imgs = sorted((src / "train" / "images").iterdir())
    labels = src / "train" / "labels"
    (labels / (imgs[0].stem + ".txt")).write_text(
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "0 0.95 0.5 0.3 0.2\n"  # sticks out on the right: clipped
        "0 0.5 0.5 0.001 0.2\n"  # under 2 px wide: dropped
        "7 0.5 0.5 0.1 0.1\n"  # class id out of range: malformed
        "0 0.5 oops 0.1\n"  # malformed
    )
    imgs[1].write_bytes(imgs[1].read_bytes()[:300])  # truncated image: skipped
    out = tmp_path / "dataset"
    report = build_dataset(out, mirror=tmp_path / "mirror", cache=tmp_path, sources=["wind_iliad"], log=lambda *_: None)
    d = report.counts["sources"]["wind_iliad"]["dropped_or_repaired"]
    assert d["box_clipped"] == 1 and d["box_degenerate_dropped"] == 1
    assert d["malformed_label_line"] == 2 and d["unreadable_image"] == 1
    index = json.loads((out / "index.json").read_text())
    row = next(r for r in index if r["original"] == str(imgs[0]))
    lines = (out / row["image"].replace("images/", "labels/", 1)).with_suffix(".txt").read_text().split("\n")
    boxes = [list(map(float, ln.split()[1:])) for ln in lines if ln]
    assert len(boxes) == 2
    assert max(cx + w / 2 for cx, _, w, _ in boxes) == pytest.approx(1.0, abs=1e-5)
    assert not any(r["original"] == str(imgs[1]) for r in index)


# -- download path ----------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_build_downloads_a_source_archive_from_a_server(mini_mirror, http_dir, tmp_path):
    root, url = http_dir
    # a GitHub-style archive: one top-level folder holding the source
    with zipfile.ZipFile(root / "iliad.zip", "w") as z:
        for f in (mini_mirror / "wind_iliad").rglob("*"):
            if f.is_file():
                z.write(
                    f, Path("iliad-wind-turbine-damage-dataset-c283bfc") / f.relative_to(mini_mirror / "wind_iliad")
                )
    ds = tmp_path / "datasets"
    ds.mkdir()
    man = yaml.safe_load((REPO / "datasets/wind_iliad.yaml").read_text())
    man["upstream"]["archive_url"] = f"{url}/iliad.zip"
    (ds / "wind_iliad.yaml").write_text(yaml.safe_dump(man))
    out = tmp_path / "dataset"
    report = build_dataset(out, mirror=None, datasets_dir=ds, cache=tmp_path / "cache", log=lambda *_: None)
    n_images = len(list((mini_mirror / "wind_iliad").rglob("*.jpg")))
    assert sum(s["images"] for s in report.counts["sources"]["wind_iliad"]["splits"].values()) == n_images
    # the archive is cached: a second build does not fetch it again
    (root / "iliad.zip").unlink()
    assert not build_dataset(out, mirror=None, datasets_dir=ds, cache=tmp_path / "cache", log=lambda *_: None).rebuilt


def test_download_checksum_and_http_errors(http_dir, tmp_path):
    root, url = http_dir
    (root / "a.bin").write_bytes(b"hello")
    assert download(f"{url}/a.bin", tmp_path / "a.bin").read_bytes() == b"hello"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(f"{url}/a.bin", tmp_path / "b.bin", sha256="00" * 32)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{url}/missing.zip", tmp_path / "c.bin")
    assert not (tmp_path / "b.bin").exists() and not (tmp_path / "c.bin.part").exists()


def test_offline_download_fails_with_one_clear_line(tmp_path, capsys, monkeypatch):
    ds = tmp_path / "datasets"
    ds.mkdir()
    man = yaml.safe_load((REPO / "datasets/wind_fans.yaml").read_text())
    man["upstream"]["archive_url"] = f"http://127.0.0.1:{_free_port()}/fans.zip"  # nothing listens
    (ds / "wind_fans.yaml").write_text(yaml.safe_dump(man))
    monkeypatch.setattr(build_mod, "DATASETS_DIR", ds)
    monkeypatch.setattr(build_mod, "DEFAULT_CACHE", tmp_path / "cache")
    code = pvwind(["data", "build", "--mirror", "", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "cannot download" in err[0] and "DATA_MIRROR" in err[0]
