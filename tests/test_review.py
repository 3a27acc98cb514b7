"""The review loop on real mirror images and real predictions: ``pvwind inspect`` -> ``pvwind review
export`` (Label Studio, CVAT, YOLO, COCO) -> corrections in the tools -> ``pvwind review import`` ->
``pvwind data build``.

The tools themselves (a Label Studio server, Datumaro for CVAT's format) live in their own
virtual environment, ``build/review-venv`` (``$PVWIND_REVIEW_VENV``): label-studio pins numpy,
OpenCV, Pillow and pyarrow below the versions the project runs on, so they are not installed into
``.venv``. Without it those tests skip and say so.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import MIRROR, REPO
from serving_fixtures import API_KEY, files_param, free_port, serving_model

from detector.results import ImageResult
from review.items import load_results, review_key

REVIEW_VENV = Path(os.environ.get("PVWIND_REVIEW_VENV") or REPO / "build" / "review-venv")
REVIEW_PY = REVIEW_VENV / "bin" / "python"
MODEL = serving_model()


def _tool(module: str) -> None:
    if not REVIEW_PY.exists():
        pytest.skip(f"no review tools venv at {REVIEW_VENV} (make review-tools, or set PVWIND_REVIEW_VENV)")
    ok = subprocess.run([str(REVIEW_PY), "-c", f"import {module}"], capture_output=True, timeout=120)
    if ok.returncode != 0:
        pytest.skip(f"{module} is not installed in {REVIEW_VENV}")


def _pvwind(*args: str) -> subprocess.CompletedProcess:
    """The command as an operator runs it (with ``review`` registered, as pvwind/cli.py will)."""
    code = (
        "import sys; from pvwind import cli; "
        "cli.COMMANDS.setdefault('review', ('pvwind.commands.review', 'serve', 'human review')); "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=REPO)


# ---------------------------------------------------------------------------- a flight
@pytest.fixture(scope="module")
def flight(mini_mirror, tmp_path_factory):
    """8 real images in a flight folder: 5 thermal PV frames that are also in the public
    pv_zelestra_ir source (the mini mirror's copies) and 3 wind blades, scored by ``pvwind inspect``."""
    root = tmp_path_factory.mktemp("review")
    src = mini_mirror / "pv_zelestra_ir" / "data" / "Train"
    with open(src / "_annotations.csv", newline="") as f:
        hot = []
        for r in csv.DictReader(f):
            if r["class"] == "hotspot" and r["filename"] not in hot:
                hot.append(r["filename"])
    (root / "flight" / "ir").mkdir(parents=True)
    (root / "flight" / "blades").mkdir(parents=True)
    for name in hot[:5]:
        shutil.copyfile(src / name, root / "flight" / "ir" / name)
    for p in sorted((MIRROR / "wind_fans" / "valid" / "images").glob("*.jpg"))[:3]:
        shutil.copyfile(p, root / "flight" / "blades" / p.name)
    out = root / "inspect"
    r = _pvwind("inspect", str(root / "flight"), "--out", str(out), "--model", str(MODEL), "--no-annotate", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    results, meta = load_results(out)
    assert len(results) == 8 and sum(len(x.findings) for x in results) >= 4, "real findings to review"
    return root, out, results, meta


@pytest.fixture(scope="module")
def exported(flight):
    root, out, results, _ = flight
    exp = root / "export"
    r = _pvwind("review", "export", "--results", str(out), "--out", str(exp), "--name", "site_a_flight_1")
    assert r.returncode == 0, r.stderr[-2000:]
    return exp


def test_export_writes_all_four_formats_in_review_order_with_references(flight, exported):
    root, _, results, meta = flight
    man = json.loads((exported / "review_manifest.json").read_text())
    assert man["model"] == meta["model"]["key"]
    assert man["image_root"] == str(root.resolve())  # names start with the flight folder
    names = [e["name"] for e in man["images"]]
    assert sorted(names) == sorted(f"flight/{p.parent.name}/{p.name}" for p in (root / "flight").rglob("*.jpg"))
    order = [ImageResult.model_validate(e["result"]) for e in man["images"]]
    assert [review_key(r) for r in order] == sorted(review_key(r) for r in order)
    assert order[0].findings and not order[-1].findings or all(r.findings for r in order)
    by_name = {e["name"]: ImageResult.model_validate(e["result"]) for e in man["images"]}

    # Label Studio: tasks in that order, images referenced through local-files, predictions in %
    tasks = json.loads((exported / "labelstudio_tasks.json").read_text())
    assert [t["data"]["pvwind_name"] for t in tasks] == names
    for t in tasks:
        rel = t["data"]["image"].removeprefix("/data/local-files/?d=")
        assert (root / rel).is_file()
        res = by_name[t["data"]["pvwind_name"]]
        if not res.findings:
            assert "predictions" not in t
            continue
        pred = t["predictions"][0]
        assert pred["model_version"] == man["model"]
        assert pred["score"] == min(f.confidence for f in res.findings)
        assert len(pred["result"]) == len(res.findings)
        for x in pred["result"]:
            f = res.findings[int(x["id"][2:])]
            v = x["value"]
            assert v["rectanglelabels"] == [f.class_name] and x["score"] == f.confidence
            assert v["x"] * res.width / 100 == pytest.approx(f.box.x1, abs=0.01)
            assert (v["y"] + v["height"]) * res.height / 100 == pytest.approx(f.box.y2, abs=0.01)
    config = (exported / "labelstudio_config.xml").read_text()
    assert config.count("<Label ") == 10 and 'value="pv_hotspot"' in config

    # CVAT for images 1.1
    xml = ET.parse(exported / "cvat_annotations.xml").getroot()
    assert xml.findtext("version") == "1.1"
    assert [im.get("name") for im in xml.iter("image")] == names
    assert len(list(xml.iter("box"))) == sum(len(r.findings) for r in results)
    assert {lab.findtext("name") for lab in xml.iter("label")} >= {"pv_hotspot", "blade_dirt"}

    # COCO and YOLO
    coco = json.loads((exported / "coco.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == names
    assert len(coco["annotations"]) == sum(len(r.findings) for r in results)
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    a = coco["annotations"][0]
    f0 = by_name[names[0]].findings
    worst = min(f.priority for f in f0)  # inside an image: most urgent first, then least confident
    assert cats[a["category_id"]] in {f.class_name for f in f0}
    assert a["score"] == min(f.confidence for f in f0 if f.priority == worst)
    listed = (exported / "yolo" / "images.txt").read_text().split()
    assert all(Path(p).is_file() for p in listed) and len(listed) == 8
    lines = sum(len(p.read_text().split("\n")) - 1 for p in (exported / "yolo" / "labels").rglob("*.txt"))
    assert lines == sum(len(r.findings) for r in results)
    # referenced, not copied
    assert not [p for p in exported.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]


def _edit_cvat(src: Path, dst: Path) -> dict[str, str]:
    """What a reviewer does in CVAT: relabel one box, move one, delete one, draw one."""
    tree = ET.parse(src)
    images = [im for im in tree.getroot().iter("image")]
    with_boxes = [im for im in images if len(im.findall("box")) >= 1]
    assert len(with_boxes) >= 3
    done = {}
    b = with_boxes[0].findall("box")[0]
    done["relabelled"] = f"{with_boxes[0].get('name')}: {b.get('label')}"
    b.set("label", "pv_soiling" if b.get("label") != "pv_soiling" else "pv_bird_drop")
    b = with_boxes[1].findall("box")[0]
    w = float(b.get("xbr")) - float(b.get("xtl"))
    b.set("xbr", f"{float(b.get('xbr')) + 0.2 * w:.2f}")  # widened by a fifth: moved (IoU 0.83)
    done["moved"] = with_boxes[1].get("name")
    with_boxes[2].remove(with_boxes[2].findall("box")[0])
    done["deleted"] = with_boxes[2].get("name")
    new = ET.SubElement(
        images[-1], "box", label="blade_damage", source="manual", occluded="0", xtl="10", ytl="12", xbr="60", ybr="70"
    )
    new.set("z_order", "0")
    done["added"] = images[-1].get("name")
    tree.write(dst, encoding="utf-8", xml_declaration=True)
    return done


def test_cvat_corrections_become_a_source_that_joins_the_public_groups(flight, exported, mini_mirror, tmp_path):
    from training.build import build_dataset, format_report
    from training.sources import load_manifest

    root, _, results, _ = flight
    corrected = tmp_path / "annotations.xml"
    done = _edit_cvat(exported / "cvat_annotations.xml", corrected)
    ds, cache = tmp_path / "datasets", tmp_path / "cache"
    ds.mkdir()
    shutil.copyfile(REPO / "datasets" / "pv_zelestra_ir.yaml", ds / "pv_zelestra_ir.yaml")
    r = _pvwind(
        "review", "import", str(corrected), "--predictions", str(exported), "--name", "reviewed_site_a",
        "--datasets-dir", str(ds), "--cache", str(cache),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "relabelled 1, deleted 1; added 1" in r.stdout
    n_pred = sum(len(x.findings) for x in results)
    review = json.loads((cache / "reviewed" / "reviewed_site_a" / "review.json").read_text())
    o = review["outcomes"]
    assert (o["relabelled"], o["deleted"], o["added"], o["moved"]) == (1, 1, 1, 1)
    assert o["confirmed"] == n_pred - 3 and o["predictions"] == n_pred and o["reviewed_boxes"] == n_pred - 1 + 1
    assert o["precision"] == pytest.approx(round((n_pred - 2) / n_pred, 4))  # the moved box still overlaps
    labels = json.loads((cache / "reviewed" / "reviewed_site_a" / "labels.json").read_text())
    assert len(labels) == 8
    relabelled_name = done["relabelled"].split(":")[0]
    entry = next(e for e in labels if e["name"] == relabelled_name)
    assert entry["outcomes"].get("relabelled") == 1
    assert "blade_damage" in next(e for e in labels if e["name"] == done["added"])["labels"]
    m = load_manifest(ds / "reviewed_site_a.yaml")
    assert m.format == "reviewed" and m.review and m.review.tool == "cvat"

    out = tmp_path / "dataset"
    rep = build_dataset(
        out, mirror=mini_mirror, datasets_dir=ds, cache=cache, sources=["pv_zelestra_ir", "reviewed_site_a"],
        log=lambda *_: None,
    )  # fmt: skip
    index = json.loads((out / "index.json").read_text())
    public = {Path(x["original"]).name: x for x in index if x["source"] == "pv_zelestra_ir"}
    reviewed = [x for x in index if x["source"] == "reviewed_site_a"]
    assert len(reviewed) == 8
    ir = [x for x in reviewed if Path(x["original"]).name.split("_", 1)[1] in public]  # <sha12>_<name>
    assert len(ir) == 5
    for x in ir:  # the same photo as a public image: its group and its split
        twin = public[Path(x["original"]).name.split("_", 1)[1]]
        assert (x["group"], x["split"]) == (twin["group"], twin["split"])
    sides: dict[str, set] = {}
    for x in index:
        sides.setdefault(x["group"], set()).add(x["split"])
    assert all(len(s) == 1 for s in sides.values())
    src = rep.counts["sources"]["reviewed_site_a"]
    assert src["review"]["outcomes"]["relabelled"] == 1
    assert src["dropped_or_repaired"]["joined_group_of_an_earlier_source"] == 5
    table = format_report(rep.counts)
    assert "review outcomes" in table and "reviewed_site_a" in table


def test_a_leaking_reviewed_split_is_refused(flight, exported, tmp_path, monkeypatch):
    import training.build as build_mod
    from review.ingest import import_review
    from training.splits import SplitLeakError

    ds, cache = tmp_path / "datasets", tmp_path / "cache"
    corrected = tmp_path / "annotations.xml"
    _edit_cvat(exported / "cvat_annotations.xml", corrected)
    import_review(corrected, exported, "reviewed_leak", datasets_dir=ds, cache=cache)

    def leaky(groups, classes, seed=0, fractions=None):
        return ["train"] * (len(groups) - 1) + ["test"]

    # two images of one group: a near-duplicate threshold that joins everything
    text = (ds / "reviewed_leak.yaml").read_text().replace("dhash_max_distance: 10", "dhash_max_distance: 256")
    (ds / "reviewed_leak.yaml").write_text(text)
    monkeypatch.setattr(build_mod, "assign_splits", leaky)
    with pytest.raises(SplitLeakError):
        build_mod.build_dataset(tmp_path / "dataset", mirror=None, datasets_dir=ds, cache=cache, log=lambda *_: None)
    assert not (tmp_path / "dataset").exists()


def test_outcomes_match_redrawn_boxes_by_overlap_and_class():
    from detector.results import Box, Finding
    from review.outcome import CorrectedBox, compare, tally

    def f(i, cls, box, conf=0.5):
        return Finding(index=i, class_id=0, class_name=cls, confidence=conf, box=Box.of(box), area_frac=0.01,
                       priority="P3", action="", time_frame="", level=3, reasons=[])  # fmt: skip

    preds = [
        f(0, "pv_hotspot", (10, 10, 50, 50)),
        f(1, "pv_hotspot", (100, 100, 140, 140)),
        f(2, "pv_soiling", (0, 0, 5, 5)),
    ]
    got = [
        CorrectedBox((11, 10, 50, 50), "pv_hotspot"),  # redrawn without id: confirmed (IoU 0.975)
        CorrectedBox((100, 100, 150, 150), "pv_hotspot", "pv1"),  # kept, resized: moved
        CorrectedBox((300, 300, 320, 320), "pv_bird_drop"),  # new
    ]
    outcomes = [c.outcome for c in compare(preds, got)]
    assert outcomes == ["confirmed", "moved", "deleted", "added"]
    t = tally(compare(preds, got))
    assert (t["true_positives"], t["precision"], t["recall"]) == (2, round(2 / 3, 4), round(2 / 3, 4))
    assert t["per_class"]["pv_soiling"]["deleted"] == 1 and t["per_class"]["pv_bird_drop"]["added"] == 1


def test_cvat_export_validates_and_round_trips_through_datumaro(flight, exported, tmp_path):
    """Datumaro (OpenVINO's dataset framework, CVAT's format library) reads our XML as CVAT
    for images, we relabel one box in Datumaro, it writes CVAT XML, and our import reads it."""
    _tool("datumaro")
    from review.ingest import import_review

    root, _, results, _ = flight
    script = r"""
import json, sys, datumaro as dm
from datumaro.components.annotation import AnnotationType
src, out = sys.argv[1], sys.argv[2]
ds = dm.Dataset.import_from(src, "cvat")
cats = ds.categories()[AnnotationType.label]
items = sorted(ds, key=lambda it: it.attributes.get("frame", 0))
info = {"items": [], "labels": [c.name for c in cats]}
for it in items:
    info["items"].append({"id": it.id, "size": list(it.media.size or ()),
        "boxes": [[cats[a.label].name, a.get_bbox(), a.attributes.get("finding")] for a in it.annotations]})
first = next(it for it in items if it.annotations)
a = first.annotations[0]
new = next(i for i, c in enumerate(cats) if c.name != cats[a.label].name and c.name.startswith(cats[a.label].name[:3]))
first.annotations[0] = a.wrap(label=new)
ds.put(first)
info["relabelled"] = [first.id, cats[a.label].name, cats[new].name]
ds.export(out, "cvat")
print(json.dumps(info))
"""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(exported / "cvat_annotations.xml", src / "annotations.xml")
    (src / "images").symlink_to(root)  # Datumaro looks for <name> under images/: a link, no copy
    r = subprocess.run(
        [str(REVIEW_PY), "-c", script, str(src), str(tmp_path / "out")], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    man = json.loads((exported / "review_manifest.json").read_text())
    assert len(info["items"]) == 8
    assert sum(len(it["boxes"]) for it in info["items"]) == sum(len(x.findings) for x in results)
    for it, e in zip(info["items"], man["images"], strict=True):
        res = ImageResult.model_validate(e["result"])
        assert it["size"] == [res.height, res.width]
        assert sorted(b[2] for b in it["boxes"]) == sorted(f"pv{f.index}" for f in res.findings)
    xmls = list((tmp_path / "out").rglob("*.xml"))
    assert len(xmls) == 1
    rep = import_review(xmls[0], exported, "reviewed_dm", datasets_dir=tmp_path / "ds", cache=tmp_path / "cache")
    o = rep.review["outcomes"]
    assert (o["relabelled"], o["deleted"], o["added"], o["moved"]) == (1, 0, 0, 0)
    assert o["confirmed"] == o["predictions"] - 1
    changed = next(c for c in rep.changes if c.outcome == "relabelled")
    assert [changed.predicted, changed.final] == info["relabelled"][1:]


# ---------------------------------------------------------------------------- Label Studio, for real
LS_DRIVER = r"""
import json, sys, requests
from label_studio_sdk import LabelStudio
url, token, tasks_path, config_path, storage_dir, export_path = sys.argv[1:7]
ls = LabelStudio(base_url=url, api_key=token)
project = ls.projects.create(title="pvwind review", label_config=open(config_path).read())
ls.import_storage.local.create(project=project.id, path=storage_dir, title="flight", use_blob_urls=False)
tasks = json.load(open(tasks_path))
ls.projects.import_tasks(id=project.id, request=tasks)
got = sorted(ls.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
out = {"tasks": len(got), "predictions": sum(len(t.predictions or []) for t in got)}
# the reviewer: the first task (most urgent), one region relabelled, the rest accepted as predicted
first = next(t for t in got if t.predictions)
pred = first.predictions[0]
result = [dict(r) for r in (pred["result"] if isinstance(pred, dict) else pred.result)]
old = result[0]["value"]["rectanglelabels"][0]
new = "pv_soiling" if old != "pv_soiling" else "pv_bird_drop"
result[0] = {**result[0], "value": {**result[0]["value"], "rectanglelabels": [new]}}
ls.annotations.create(id=first.id, result=result, project=project.id, was_cancelled=False)
# a second task accepted unchanged
second = next(t for t in got if t.predictions and t.id != first.id)
p2 = second.predictions[0]
ls.annotations.create(id=second.id, result=[dict(r) for r in (p2["result"] if isinstance(p2, dict) else p2.result)],
                      project=project.id)
out.update(relabelled=[first.data["pvwind_name"], result[0]["id"], old, new], accepted=second.data["pvwind_name"])
img = requests.get(url + first.data["image"], headers={"Authorization": f"Token {token}"}, timeout=30)
out["image_status"], out["image_bytes"] = img.status_code, len(img.content)
open(export_path, "wb").write(b"".join(ls.projects.exports.download_sync(project.id, export_type="JSON",
                                                                           download_all_tasks=True)))
print(json.dumps(out))
"""


@pytest.fixture()
def label_studio(tmp_path, exported):
    """A real Label Studio on a free localhost port: temporary data dir, a user with a known
    token (LABEL_STUDIO_USERNAME / PASSWORD / USER_TOKEN and legacy tokens on), serving the
    flight's images from where they are (local files under the export's image root)."""
    _tool("label_studio_sdk")
    exe = REVIEW_VENV / "bin" / "label-studio"
    if not exe.exists():
        pytest.skip(f"label-studio is not installed in {REVIEW_VENV}")
    root = json.loads((exported / "review_manifest.json").read_text())["image_root"]
    port, token = free_port(), "pvwind0review0token0123456789"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "ls"),
        "LABEL_STUDIO_USERNAME": "reviewer@example.com",
        "LABEL_STUDIO_PASSWORD": "reviewer-pass-123",
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": root,
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    log = open(tmp_path / "ls.log", "wb")
    proc = subprocess.Popen(
        [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(tmp_path / "ls"), "--enable-legacy-api-token"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    import httpx

    try:
        deadline = time.monotonic() + 240  # first start: Django migrations on 2 cores
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited: {(tmp_path / 'ls.log').read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"label-studio not up after 240 s: {(tmp_path / 'ls.log').read_text()[-3000:]}")
            time.sleep(1)
        yield url, token, Path(root)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@pytest.mark.slow
def test_label_studio_round_trip_against_a_real_server(flight, exported, label_studio, tmp_path):
    from review.ingest import import_review

    url, token, root = label_studio
    _, _, results, _ = flight
    export = tmp_path / "ls_export.json"
    r = subprocess.run(
        [str(REVIEW_PY), "-c", LS_DRIVER, url, token, str(exported / "labelstudio_tasks.json"),
         str(exported / "labelstudio_config.xml"), str(root / "flight"), str(export)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["tasks"] == 8 and info["predictions"] == sum(1 for x in results if x.findings)
    name, region, old, new = info["relabelled"]
    # the image came from its own folder through Label Studio's local-files serving: not copied
    assert info["image_status"] == 200 and info["image_bytes"] == (root / name).stat().st_size
    assert not list((tmp_path / "ls").rglob("*.jpg")) and not list((tmp_path / "ls").rglob("*.JPG"))

    rep = import_review(export, exported, "reviewed_ls", datasets_dir=tmp_path / "ds", cache=tmp_path / "cache")
    assert rep.review["tool"] == "labelstudio"
    assert rep.review["images"]["reviewed"] == 2 and rep.review["images"]["not_reviewed"] == 6
    o = rep.review["outcomes"]
    assert (o["relabelled"], o["deleted"], o["added"], o["moved"]) == (1, 0, 0, 0)
    assert o["confirmed"] == o["predictions"] - 1 >= 0
    labels = json.loads((tmp_path / "cache" / "reviewed" / "reviewed_ls" / "labels.json").read_text())
    entry = next(e for e in labels if e["name"] == name)
    man = json.loads((exported / "review_manifest.json").read_text())
    res = ImageResult.model_validate(next(e["result"] for e in man["images"] if e["name"] == name))
    i = int(region[2:])
    assert res.findings[i].class_name == old
    assert new in entry["labels"] and entry["labels"].count(new) == [f.class_name for f in res.findings].count(new) + 1
    assert {e["name"] for e in labels} == {name, info["accepted"]}


# ---------------------------------------------------------------------------- the API route
def test_job_review_route_serves_every_format(tmp_path):
    import io
    import zipfile

    from fastapi.testclient import TestClient
    from serving_fixtures import mirror_images

    from serving.app import create_app
    from serving.detectors import DetectorPool
    from serving.routers import review as review_router
    from serving.settings import Settings

    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", api_keys=API_KEY),
        detectors=DetectorPool(MODEL, threads=1),
    )
    if not any(getattr(r, "path", "") == "/v1/jobs/{job_id}/review" for r in app.router.routes):
        app.include_router(review_router.router)  # the line serving/app.py gets
    images = mirror_images(4)
    with TestClient(app, headers={"X-API-Key": API_KEY}) as c:
        for _ in range(400):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        job = c.post("/v1/jobs", files=files_param(images), data={"flight": "f-9"}).json()
        for _ in range(1200):
            if c.get(f"/v1/jobs/{job['id']}").json()["status"] == "done":
                break
            time.sleep(0.1)
        res = c.get(f"/v1/jobs/{job['id']}/results").json()["images"]
        n_find = sum(len(x["findings"]) for x in res)
        ls = c.get(f"/v1/jobs/{job['id']}/review", params={"format": "labelstudio"})
        assert ls.status_code == 200 and ls.headers["x-review-complete"] == "true"
        tasks = ls.json()
        assert sorted(t["data"]["pvwind_name"] for t in tasks) == sorted(p.name for p in images)
        assert sum(len(t.get("predictions", [{}])[0].get("result", [])) for t in tasks) == n_find
        assert all(t["data"]["image"] == "/data/local-files/?d=" + t["data"]["pvwind_name"] for t in tasks)
        pre = c.get(f"/v1/jobs/{job['id']}/review", params={"format": "labelstudio", "image_url_prefix": "s3://b/f"})
        assert all(t["data"]["image"].startswith("s3://b/f/") for t in pre.json())
        cv = c.get(f"/v1/jobs/{job['id']}/review", params={"format": "cvat"})
        assert cv.headers["content-type"].startswith("application/xml")
        assert len(list(ET.fromstring(cv.content).iter("box"))) == n_find
        coco = c.get(f"/v1/jobs/{job['id']}/review", params={"format": "coco"}).json()
        assert len(coco["annotations"]) == n_find
        bundle = zipfile.ZipFile(io.BytesIO(c.get(f"/v1/jobs/{job['id']}/review", params={"format": "bundle"}).content))
        assert {"review_manifest.json", "labelstudio_config.xml", "cvat_annotations.xml", "coco.json"} <= set(
            bundle.namelist()
        )
        manifest = json.loads(bundle.read("review_manifest.json"))
        assert all(e["path"] is None for e in manifest["images"])  # nothing of the server's file system
        yolo = zipfile.ZipFile(io.BytesIO(c.get(f"/v1/jobs/{job['id']}/review", params={"format": "yolo"}).content))
        assert "classes.txt" in yolo.namelist()
        assert c.get(f"/v1/jobs/{job['id']}/review", params={"format": "xlsx"}).status_code == 422
        assert c.get("/v1/jobs/0123456789abcdef0123456789abcdef/review").status_code == 404
        assert c.get(f"/v1/jobs/{job['id']}/review", headers={"X-API-Key": "wrong"}).status_code == 401


def test_the_manifest_template_is_valid_and_not_a_source():
    from detector.taxonomy import load_taxonomy
    from training.sources import load_manifest, load_manifests

    m = load_manifest(REPO / "datasets" / "templates" / "reviewed.yaml")
    assert m.format == "reviewed" and m.review is not None
    m.check_against(load_taxonomy())
    assert m.source_classes == load_taxonomy().names
    assert "reviewed_example_site_2026_05" not in {s.name for s in load_manifests()}


def test_export_from_a_rescore_store_reads_one_flight(flight, tmp_path):
    """The re-scorer's store (as ``pvwind rescore`` writes it), read only, one flight folder."""
    from review.items import load_store
    from storage.archive import ArchiveIndex, FileRecord
    from storage.store import Store

    _, _, results, meta = flight
    key = meta["model"]["key"]
    url = f"sqlite:///{tmp_path / 'results.db'}"
    index = ArchiveIndex(Store.from_url(url))
    files = [
        FileRecord(r.source, "site_a/ir" if "/ir/" in r.source else "site_a/blades", "fp", r.sha256) for r in results
    ]
    index.write(files, [r.model_copy(update={"source": r.source}) for r in results], key)
    index.close()
    got = load_store(str(tmp_path / "results.db"), flight="site_a/ir")
    assert sorted(r.source for r in got) == sorted(r.source for r in results if "/ir/" in r.source)
    assert len(got) == 5 and all(r.flight == "site_a/ir" and r.site == "site_a" for r in got)
    want = {r.sha256: r for r in results}
    assert all([f.box for f in r.findings] == [f.box for f in want[r.sha256].findings] for r in got)
    assert load_store(url, model_key="other@model") == []
