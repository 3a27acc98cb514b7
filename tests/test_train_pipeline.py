"""`pvwind train` end to end on a tiny real subset, `pvwind evaluate`, init and promotion."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ultralytics")
pytest.importorskip("faster_coco_eval")

from pvwind.cli import main as pvwind  # noqa: E402
from training.config import load_train_config  # noqa: E402
from training.pipeline import decide_promotion  # noqa: E402
from training.train import Init, initial_model, resolve_init  # noqa: E402


@pytest.fixture(scope="module")
def trained(mini_dataset, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    code = pvwind(
        [
            "train",
            "--data",
            str(mini_dataset),
            "--epochs",
            "1",
            "--imgsz",
            "64",
            "--batch",
            "8",
            "--init",
            "scratch",
            "--version",
            "tiny-v1",
            "--models-dir",
            str(models),
            "--no-crosscheck",
            "--runs-dir",
            str(models.parent / "runs"),
            "--set",
            "cache=false",
            "--set",
            "workers=0",
        ]
    )
    assert code == 0
    return models


def test_train_produces_a_complete_model_folder(trained):
    folder = trained / "tiny-v1"
    for f in ("model.onnx", "weights.pt", "metrics.json", "MODEL_CARD.md"):
        assert (folder / f).is_file(), f
    assert (trained / "current").resolve() == folder.resolve()
    m = json.loads((folder / "metrics.json").read_text())
    assert m["parity"]["max_abs_diff"] < 1e-3 and m["parity"]["detections_match"]
    assert m["training"]["epochs_run"] == 1 and m["training"]["imgsz"] == 64
    assert 0.0 <= m["evaluation"]["map50"] <= 1.0 and m["evaluation"]["images"] > 0
    assert set(m["evaluation"]["per_source"]) <= {"wind_iliad", "wind_fans", "pv_isuru_rgb", "pv_zelestra_ir"}
    card = (folder / "MODEL_CARD.md").read_text()
    assert "CC BY 4.0" in card and "pv_hotspot" in card and "mAP50" in card
    assert m["training"]["gflops"] > 0 and f"{m['training']['gflops']:.1f} GFLOPs per 64 px input" in card
    # the project's recipe additions are recorded with the model, and the card says them
    cfg = load_train_config()
    aug = m["training"]["augmentation"]
    assert aug == {
        "rare_class_repeat": cfg.rare_class_repeat,
        "copy_paste_classes": cfg.copy_paste_classes,
        "transpose": cfg.transpose,
    }
    assert m["training"]["ema"] == {"decay": cfg.ema.decay, "tau": cfg.ema.tau}
    recipe = next(ln for ln in card.splitlines() if ln.startswith("- Recipe additions"))
    assert f"rare-class repeat t {cfg.rare_class_repeat}" in recipe and f"EMA decay {cfg.ema.decay:g}" in recipe
    # how sure the test figures are: intervals drawn by source group, and each class's group count
    ev, ci = m["evaluation"], m["evaluation"]["ci95"]
    assert ci["draws"] == load_train_config().ci_draws and ci["clusters"] == ev["groups"] <= ev["images"]
    assert ci["map50"][0] <= ci["map50"][1] and set(ci["per_class"]) <= set(ev["per_class"])
    assert all(1 <= r["groups"] <= r["instances"] for r in ev["per_class"].values())
    assert "How sure: 95% bootstrap intervals" in card and "| mAP50 interval |" in card
    # the card's experiments table is the runs table of docs/experiments.md, not every table glued on
    exp = card.split("## Experiments", 1)[1].split("## Data sources", 1)[0]
    assert "| run | recipe change |" in exp and "| weights | val mAP50 |" not in exp
    # the CPU path the run took, in words, and a bf16 row only where bf16 units measured it
    from training.config import fast_path_words
    from training.fastcpu import fast_path_mode

    assert m["training"]["fast_cpu"] == fast_path_mode("auto")
    assert m["training"]["device"] == "cpu"
    assert f"CPU fast path: {fast_path_words(m['training']['fast_cpu'], 'cpu')}." in card
    bp = m["backend_parity"]
    from detector.model import cpu_has_bf16

    assert bp["cpu_bf16"] is cpu_has_bf16()
    bf16_row = next(ln for ln in card.splitlines() if ln.startswith("| openvino-bf16 |"))
    if "error" not in bp["openvino-bf16"]:  # OpenVINO installed
        assert ("no bf16 units" in bf16_row) is (not bp["cpu_bf16"])
    # the ONNX metadata carries the taxonomy's class names in order
    from detector.model import load_backend

    names = load_backend(folder / "model.onnx").info.names
    from detector.taxonomy import load_taxonomy

    assert list(names) == load_taxonomy().names


def test_evaluate_cli_prints_table_and_writes_json(trained, mini_dataset, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = pvwind(
        [
            "evaluate",
            "--model",
            str(trained / "tiny-v1"),
            "--data",
            str(mini_dataset),
            "--split",
            "val",
            "--json",
            str(out),
            "--ci",
            "25",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "mAP50" in printed and "mAP50 95% interval" in printed and "25 bootstrap draws" in printed
    r = json.loads(out.read_text())
    assert r["split"] == "val" and r["images"] == len(list((mini_dataset.parent / "images/val").iterdir()))
    lo, hi = r["ci95"]["map50"]
    assert r["ci95"]["draws"] == 25 and 0.0 <= lo <= hi <= 1.0
    code = pvwind(["evaluate", "--model", str(trained / "tiny-v1"), "--data", str(mini_dataset), "--ci", "-3"])
    assert code == 2 and "--ci takes a number of draws" in capsys.readouterr().err


def test_evaluate_matches_classes_by_name_on_a_subset(trained, mini_dataset, tmp_path):
    """A foreign dataset with two taxonomy classes, in another order, ids remapped."""
    from training.evaluate import evaluate

    root = tmp_path / "subset"
    (root / "images/test").mkdir(parents=True)
    (root / "labels/test").mkdir(parents=True)
    src = mini_dataset.parent
    names = yaml.safe_load(mini_dataset.read_text())["names"]
    want = {names_id for names_id, n in names.items() if n in ("pv_hotspot", "blade_damage")}
    remap = {k: i for i, k in enumerate(sorted(want, reverse=True))}
    n_boxes = 0
    for lab in (src / "labels").rglob("*.txt"):
        lines = [ln.split() for ln in lab.read_text().splitlines() if ln]
        kept = [" ".join([str(remap[int(p[0])]), *p[1:]]) for p in lines if int(p[0]) in want]
        if kept:
            img = next((src / "images" / lab.parent.name).glob(lab.stem + ".*"))
            shutil.copyfile(img, root / "images/test" / img.name)
            (root / "labels/test" / lab.name).write_text("\n".join(kept) + "\n")
            n_boxes += len(kept)
    (root / "data.yaml").write_text(
        yaml.safe_dump({"path": str(root), "test": "images/test", "names": {v: names[k] for k, v in remap.items()}})
    )
    r = evaluate(trained / "tiny-v1" / "model.onnx", root / "data.yaml", "test")
    assert r["instances"] == n_boxes
    assert set(r["per_class"]) <= {"pv_hotspot", "blade_damage"}


def test_evaluate_rejects_unknown_class_names(trained, tmp_path, capsys):
    (tmp_path / "images/test").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"path": str(tmp_path), "test": "images/test", "names": ["rust"]})
    )
    code = pvwind(["evaluate", "--model", str(trained / "tiny-v1"), "--data", str(tmp_path / "data.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "rust" in err[0]


def test_promotion_only_when_better_on_validation(trained, mini_dataset, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(trained / "tiny-v1", models / "a")
    shutil.copytree(trained / "tiny-v1", models / "b")
    (models / "current").symlink_to("a")
    info = json.loads((models / "a/metrics.json").read_text())
    fp, val = info["training"]["dataset_fingerprint"], info["validation"]
    assert val["split"] == "val"
    data = Path(mini_dataset)
    # the current model's test figures play no part: a far better test score of "a" changes nothing
    info["evaluation"] = dict(info["evaluation"], map50_95=1.0, map50=1.0)
    (models / "a/metrics.json").write_text(json.dumps(info))
    assert not decide_promotion(models, models / "b", val, fp, data, log=lambda *_: None)  # equal: keep
    assert os.readlink(models / "current") == "a"
    better = dict(val, map50_95=val["map50_95"] + 0.1)
    assert decide_promotion(models, models / "b", better, fp, data, log=lambda *_: None)
    assert os.readlink(models / "current") == "b"
    # a current model without recorded validation figures is evaluated on val, not on test
    del info["validation"]
    (models / "a/metrics.json").write_text(json.dumps(info))
    os.remove(models / "current")
    (models / "current").symlink_to("a")
    assert not decide_promotion(models, models / "b", val, fp, data, log=lambda *_: None)


def test_a_costlier_model_must_be_shown_better_on_validation(trained, mini_dataset, tmp_path):
    from training.config import PromotionRule
    from training.export import export_onnx, model_gflops
    from training.pipeline import costlier_by, share_ahead

    models = tmp_path / "models"
    shutil.copytree(trained / "tiny-v1", models / "a")
    (models / "current").symlink_to("a")
    # the same weights at twice the input size: four times the compute per image
    (models / "c").mkdir()
    export_onnx(models / "a/weights.pt", models / "c/model.onnx", 128)
    g_a, g_c = model_gflops(models / "a/model.onnx"), model_gflops(models / "c/model.onnx")
    assert g_a > 0 and 3.5 < g_c / g_a < 4.5
    assert costlier_by(models / "c/model.onnx", models / "a/model.onnx", 0.1).endswith(f"({g_c / g_a:.2f}x)")
    assert costlier_by(models / "a/model.onnx", models / "a/model.onnx", 0.0) is None
    assert costlier_by(models / "c/model.onnx", models / "a/model.onnx", 4.0) is None  # within the tolerance
    info = json.loads((models / "a/metrics.json").read_text())
    fp, claimed = info["training"]["dataset_fingerprint"], dict(info["validation"])
    claimed["map50_95"] += 0.001  # a higher val score by a hair
    data = Path(mini_dataset)
    lines: list[str] = []
    # tolerated cost: the bare comparison decides, as for any model of the same cost
    assert decide_promotion(
        models,
        models / "c",
        claimed,
        fp,
        data,
        lines.append,
        PromotionRule(cost_tolerance=10, costlier_min_gain=0.01, costlier_confidence=0.95, draws=5),
    )
    assert os.readlink(models / "current") == "c" and not any("paired draws" in x for x in lines)
    os.remove(models / "current")
    (models / "current").symlink_to("a")
    # 4x the cost: a gain under costlier_min_gain is refused before any bootstrap
    lines.clear()
    rule = PromotionRule(cost_tolerance=0.1, costlier_min_gain=0.01, costlier_confidence=0.95, draws=20)
    assert not decide_promotion(models, models / "c", claimed, fp, data, lines.append, rule)
    assert os.readlink(models / "current") == "a"
    assert any("+0.0010" in x and "GFLOPs" in x and "+0.010" in x for x in lines), lines
    assert not any("paired draws" in x for x in lines)
    # ... and a large enough gain must also be ahead in 95 % of the paired draws of val's source groups
    lines.clear()
    rule = PromotionRule(cost_tolerance=0.1, costlier_min_gain=0.0, costlier_confidence=0.95, draws=20)
    share = share_ahead(models / "a/model.onnx", models / "c/model.onnx", data, 20)
    assert 0.0 <= share <= 1.0
    promoted = decide_promotion(models, models / "c", claimed, fp, data, lines.append, rule)
    assert promoted == (share >= 0.95)
    assert os.readlink(models / "current") == ("c" if promoted else "a")
    assert any(f"{share:.0%} of 20 paired draws" in x and "GFLOPs" in x for x in lines), lines
    # a model is never ahead of itself in a draw
    assert share_ahead(models / "a/model.onnx", models / "a/model.onnx", data, 20) == 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_init_fetches_pretrained_or_falls_back_offline(trained, tmp_path):
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    (www / "yolo11n.pt").write_bytes((trained / "tiny-v1/weights.pt").read_bytes())
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(www), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = load_train_config(overrides={"pretrained_url": f"http://127.0.0.1:{srv.server_address[1]}/yolo11n.pt"})
        init = resolve_init(cfg, log=lambda *_: None, models_dir=tmp_path / "none", cache=tmp_path / "cache")
        assert init.weights and Path(init.weights).read_bytes() == (www / "yolo11n.pt").read_bytes()
        assert "COCO-pretrained" in init.description
    finally:
        srv.shutdown()
    offline = load_train_config(overrides={"pretrained_url": f"http://127.0.0.1:{_free_port()}/yolo11n.pt"})
    lines: list[str] = []
    init = resolve_init(offline, log=lines.append, models_dir=trained, cache=tmp_path / "cache2")
    assert init.weights and init.weights.endswith("weights.pt") and "fine-tuned from" in init.description
    assert lines[0].startswith("offline:") and len(lines[0].splitlines()) == 1
    lines.clear()
    init = resolve_init(offline, log=lines.append, models_dir=tmp_path / "none", cache=tmp_path / "cache2")
    assert init.weights is None and "scratch" in lines[-1]
    with pytest.raises(FileNotFoundError):
        resolve_init(load_train_config(overrides={"init": str(tmp_path / "nothing")}), log=lambda *_: None)


def test_continuing_from_a_model_folder_keeps_every_weight(trained, mini_dataset, tmp_path):
    """``--init models/current`` must start from the shipped weights as they are,
    class head included (the yaml's 80-class head would drop the last class convs),
    and the trainer's rebuild of the model must keep them too."""
    import torch
    from ultralytics.models.yolo.detect import DetectionTrainer

    weights = trained / "tiny-v1" / "weights.pt"
    ck = torch.load(weights, map_location="cpu", weights_only=False)
    src = (ck.get("ema") or ck["model"]).float().state_dict()
    model = initial_model(load_train_config(), mini_dataset, Init(str(weights), "test"))
    got = model.model.state_dict()
    assert got.keys() == src.keys()
    differing = [k for k in src if not torch.equal(src[k].float(), got[k].float())]
    assert differing == []
    nc = len(yaml.safe_load(Path(mini_dataset).read_text())["names"])
    rebuilt = DetectionTrainer(
        overrides={"data": str(mini_dataset), "model": "yolo11n.yaml", "project": str(tmp_path)}
    ).get_model(cfg=model.model.yaml, weights=model.model, verbose=False)
    assert rebuilt.yaml["nc"] == nc
    differing = [k for k in src if not torch.equal(src[k].float(), rebuilt.state_dict()[k].float())]
    assert differing == []


def _perturbed(src: Path, out: Path, seed: int) -> Path:
    """A second real checkpoint of the same architecture: ``src`` with every parameter nudged."""
    import torch

    ck = torch.load(src, map_location="cpu", weights_only=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ck["model"].parameters():
            p.add_((torch.randn(p.shape, generator=g) * 0.05).to(p.dtype))
    torch.save(ck, out)
    return out


def test_average_checkpoints_is_the_parameter_mean_of_one_architecture(trained, tmp_path):
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from training.soup import average_checkpoints

    a = trained / "tiny-v1" / "weights.pt"
    b = _perturbed(a, tmp_path / "b.pt", seed=1)
    out = average_checkpoints([a, b], tmp_path / "soup.pt")

    def state(p: Path) -> dict:
        ck = torch.load(p, map_location="cpu", weights_only=False)
        return (ck["ema"] if ck.get("ema") is not None else ck["model"]).float().state_dict()

    sa, sb, ss = state(a), state(b), state(out)
    assert ss.keys() == sa.keys()
    moved = 0
    for k, v in sa.items():
        if v.is_floating_point():
            assert torch.allclose(ss[k], (v + sb[k]) / 2, atol=2e-3, rtol=2e-3), k
            moved += not torch.allclose(ss[k], v, atol=1e-2)
    assert moved > 10  # the mean is not one of its inputs
    # weighted (an exponential average of epochs): 3:1 is 0.75 a + 0.25 b
    sw = state(average_checkpoints([a, b], tmp_path / "w.pt", weights=[3, 1]))
    for k, v in sa.items():
        if v.is_floating_point():
            assert torch.allclose(sw[k], 0.75 * v + 0.25 * sb[k], atol=2e-3, rtol=2e-3), k
    with pytest.raises(ValueError, match="as many non-negative weights"):
        average_checkpoints([a, b], tmp_path / "x.pt", weights=[1])
    # a checkpoint of another width is refused by name, so is a file that is no checkpoint
    other = tmp_path / "yolo11s.pt"
    torch.save({"model": DetectionModel("yolo11s.yaml", nc=10, verbose=False)}, other)
    with pytest.raises(ValueError, match="yolo11s.pt: not the same architecture"):
        average_checkpoints([a, other], tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable PyTorch checkpoint"):
        average_checkpoints([a, tmp_path / "junk.pt"], tmp_path / "x.pt")


def test_greedy_soup_adds_an_ingredient_only_when_val_rises():
    from training.soup import greedy_soup

    a, b, c, d = (Path(x) for x in "abcd")
    val = {"a": (0.20, 0.40), "b": (0.22, 0.41), "c": (0.10, 0.30), "d": (0.22, 0.39),
           "bd": (0.21, 0.40), "ab": (0.25, 0.45), "abc": (0.26, 0.44)}  # fmt: skip

    def score(paths):
        return val["".join(sorted(str(p) for p in paths))]

    # ranked alone: b > d (same mAP50-95, lower mAP50) > a > c; d pulls b down, a and then c raise it
    chosen, best, trials = greedy_soup([a, b, c, d], score, log=lambda *_: None)
    assert [str(p) for p in chosen] == ["b", "a", "c"] and best == (0.26, 0.44)
    assert [t["kept"] for t in trials] == [None] * 4 + [False, True, True]
    with pytest.raises(ValueError):
        greedy_soup([], score)


def test_train_soup_packages_the_greedy_soup_chosen_on_val(trained, mini_dataset, tmp_path, capsys):
    models = tmp_path / "models"
    b = _perturbed(trained / "tiny-v1" / "weights.pt", tmp_path / "b.pt", seed=2)
    common = ["--data", str(mini_dataset), "--imgsz", "64", "--models-dir", str(models), "--no-crosscheck"]
    code = pvwind(["train", "--soup", str(trained / "tiny-v1"), str(b), "--weights", str(b), *common])
    assert code == 2 and "exclude each other" in capsys.readouterr().err
    code = pvwind(["train", "--soup", str(trained / "tiny-v1"), str(b), "--version", "soup-v1",
                   "--runs-dir", str(tmp_path / "runs"), *common])  # fmt: skip
    assert code == 0
    m = json.loads((models / "soup-v1" / "metrics.json").read_text())
    trials = m["training"]["soup"]
    assert [t["ingredients"] for t in trials[:2]] == [["tiny-v1"], ["b.pt"]]
    assert len(trials) == 3 and trials[2]["kept"] in (True, False)
    assert "greedy weight soup of" in m["training"]["init"]
    # it descends from the ingredients in it (tiny-v1 was trained from scratch: no older ancestors)
    alone = max(trials[:2], key=lambda t: (t["val_map50_95"], t["val_map50"]))["ingredients"]
    assert set(m["lineage"]) == set(trials[2]["ingredients"] if trials[2]["kept"] else alone)
    # the packaged model is the soup the trials chose, and its val score is the one recorded for it
    best = max(trials, key=lambda t: (t["val_map50_95"], t["val_map50"]) if t["kept"] is not False else (-1, -1))
    assert m["validation"]["map50_95"] == pytest.approx(best["val_map50_95"], abs=1e-4)
    card = (models / "soup-v1" / "MODEL_CARD.md").read_text()
    assert "Weight soup, every trial on the validation split" in card
    # a soup trains nothing: no recipe of its own is claimed (its ingredients' runs hold theirs)
    assert m["training"]["augmentation"] is None and m["training"]["ema"] is None
    assert "- Recipe additions" not in card


def test_a_distilled_runs_checkpoints_export_and_average(trained, mini_dataset, tmp_path):
    """A run with a teacher (Ultralytics' ``distill_model``) packages as any other, and its per-epoch
    checkpoints - the student inside a wrapper, which Ultralytics unwraps only in best.pt / last.pt -
    export and average with plain checkpoints of the lineage."""
    import torch
    from ultralytics.nn.distill_model import DistillationModel

    from training.export import export_onnx, plain_checkpoint
    from training.soup import average_checkpoints

    teacher = trained / "tiny-v1"
    models, runs = tmp_path / "models", tmp_path / "runs"
    code = pvwind(["train", "--data", str(mini_dataset), "--epochs", "1", "--imgsz", "64", "--batch", "8",
                   "--init", str(teacher), "--version", "tiny-kd", "--models-dir", str(models), "--no-crosscheck",
                   "--runs-dir", str(runs), "--set", "cache=false", "--set", "workers=0", "--set", "save_period=1",
                   "--set", f"distill_model={teacher / 'weights.pt'}"])  # fmt: skip
    assert code == 0
    assert (models / "tiny-kd" / "model.onnx").is_file()
    card = (models / "tiny-kd" / "MODEL_CARD.md").read_text()
    assert f"Teacher (knowledge distillation, weight `dis` default): `{teacher / 'weights.pt'}`" in card
    assert "Teacher" not in (teacher / "MODEL_CARD.md").read_text()
    epoch = runs / "tiny-kd" / "weights" / "epoch0.pt"
    wrapped = torch.load(epoch, map_location="cpu", weights_only=False)["ema"]
    assert isinstance(wrapped, DistillationModel)  # what the rest must cope with
    onnx = export_onnx(epoch, tmp_path / "epoch0.onnx", 64)
    assert onnx.is_file() and isinstance(torch.load(epoch, weights_only=False)["ema"], DistillationModel)  # a copy
    soup = torch.load(average_checkpoints([epoch, teacher / "weights.pt"], tmp_path / "s.pt"), weights_only=False)
    student = wrapped.student_model.float().state_dict()
    assert soup["model"].state_dict().keys() == student.keys()
    copy = tmp_path / "copy.pt"
    copy.write_bytes(epoch.read_bytes())
    assert plain_checkpoint(copy) and not plain_checkpoint(copy)  # unwrapped once, then left alone
    assert not isinstance(torch.load(copy, weights_only=False)["model"], DistillationModel)


def test_evaluate_chooses_a_model_folders_thresholds_again(trained, mini_dataset, tmp_path, capsys):
    folder = tmp_path / "m"
    shutil.copytree(trained / "tiny-v1", folder)
    (folder / "thresholds.json").unlink()
    info = json.loads((folder / "metrics.json").read_text())
    info["thresholds"], info["evaluation"] = {"stale": True}, dict(info["evaluation"], map50=1.0)
    (folder / "metrics.json").write_text(json.dumps(info))
    code = pvwind(["evaluate", "--model", str(folder), "--data", str(mini_dataset), "--choose-thresholds"])
    assert code == 0
    doc = json.loads((folder / "thresholds.json").read_text())
    assert doc["chosen_on"] == "val" and set(doc["classes"]) == {c["name"] for c in info["classes"]}
    m = json.loads((folder / "metrics.json").read_text())
    assert m["thresholds"] == doc["classes"]
    # the test figures are measured again, at the new thresholds
    assert m["evaluation"]["map50"] < 1.0 and set(m["evaluation"]["at_thresholds"]) == set(doc["classes"])
    assert "| threshold | precision | recall |" in (folder / "MODEL_CARD.md").read_text()
    capsys.readouterr()
    code = pvwind(["evaluate", "--model", str(folder / "model.onnx"), "--data", str(mini_dataset),
                   "--choose-thresholds"])  # fmt: skip
    assert code == 2 and "needs a model folder" in capsys.readouterr().err


def test_the_weight_average_follows_the_config():
    import math

    import torch
    from ultralytics.engine import trainer as ul_trainer

    from training.train import weight_average

    cfg = load_train_config(sets=["ema.decay=0.995", "ema.tau=50", "promotion.draws=7"])
    assert (cfg.ema.decay, cfg.ema.tau, cfg.promotion.draws) == (0.995, 50, 7)
    assert (
        "ema.decay" not in cfg.ultralytics
        and cfg.promotion.cost_tolerance == load_train_config().promotion.cost_tolerance
    )
    with pytest.raises(ValueError, match="decay"):
        load_train_config(sets=["ema.decay=1.5"])
    net = torch.nn.Linear(2, 2)
    with weight_average(cfg.ema.decay, cfg.ema.tau):
        ema = ul_trainer.ModelEMA(net)  # what the trainer builds
        assert ema.decay(100) == pytest.approx(0.995 * (1 - math.exp(-2)))
    stock = ul_trainer.ModelEMA(net)  # restored after the run
    assert stock.decay(100) == pytest.approx(0.9999 * (1 - math.exp(-100 / 2000)))
