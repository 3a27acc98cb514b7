"""``pvwind train``: data -> training -> ONNX export + parity -> (INT8) -> evaluation
-> model folder -> promotion to ``models/current`` when it scores higher."""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from detector.taxonomy import load_taxonomy
from training.config import REPO, PromotionRule, TrainConfig, load_train_config
from training.train import MODELS_DIR, Init, resolve_init, train

RUNS_DIR = REPO / "build" / "train"


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU"


def _run_history(run_dir: Path) -> tuple[int, float | None]:
    """(epochs run, training hours) from an Ultralytics run's ``results.csv``."""
    f = run_dir / "results.csv"
    if not f.exists():
        return 0, None
    with open(f) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return 0, None
    seconds = rows[-1].get("time")
    return len(rows), float(seconds) / 3600 if seconds else None


def _init_record(run_dir: Path) -> dict | None:
    """What ``training.train.train`` recorded about the run's start (``init.json``), if anything."""
    f = run_dir / "init.json"
    return json.loads(f.read_text()) if f.exists() else None


def _describe_run(run_dir: Path, weights: Path) -> str:
    """How the weights of an existing run were started: our ``init.json``, else Ultralytics' ``args.yaml``."""
    import yaml

    rec = _init_record(run_dir)
    if rec is not None:
        return f"{rec['description']}, run {run_dir.name}"
    args_file = run_dir / "args.yaml"
    if not args_file.exists():
        return f"given weights {weights}"
    model = str(yaml.safe_load(args_file.read_text()).get("model", ""))
    if model.endswith(".yaml"):
        return f"from scratch ({Path(model).name}), run {run_dir.name}"
    return f"fine-tuned from {parent_model(run_dir)}, run {run_dir.name}"


def parent_model(run_dir: Path) -> str | None:
    """The model folder name a run was fine-tuned from (``init.json``, else ``args.yaml``), None from scratch."""
    import yaml

    from training.train import _model_name

    rec = _init_record(run_dir)
    if rec is not None:
        return _model_name(Path(rec["weights"])) if rec.get("weights") else None
    args_file = run_dir / "args.yaml"
    if not args_file.exists():
        return None
    model = str(yaml.safe_load(args_file.read_text()).get("model", ""))
    return None if not model or model.endswith(".yaml") else _model_name(Path(model))


def current_model(models_dir: Path) -> Path | None:
    cur = models_dir / "current"
    return cur.resolve() if cur.exists() else None


def promote(models_dir: Path, folder: Path) -> None:
    """Point ``models/current`` at ``folder`` (a relative symlink, replaced atomically)."""
    link = models_dir / "current"
    tmp = models_dir / ".current.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(folder.name)
    tmp.replace(link)


def run_pipeline(
    cfg: TrainConfig,
    version: str | None = None,
    data_yaml: Path | None = None,
    models_dir: Path = MODELS_DIR,
    weights: Path | None = None,
    soup: Sequence[Path] | None = None,
    resume: Path | None = None,
    crosscheck: bool = True,
    runs_dir: Path = RUNS_DIR,
    log: Callable[[str], None] = print,
) -> Path:
    t_start = time.time()
    version = version or f"yolo11n-{datetime.now(UTC):%Y%m%d-%H%M}"
    models_dir = Path(models_dir)
    # 1. data
    if data_yaml is None:
        from training.build import DEFAULT_OUT, build_dataset, default_mirror

        report = build_dataset(DEFAULT_OUT, mirror=default_mirror(), seed=cfg.seed, log=log)
        data_yaml = report.out / "data.yaml"
    data_yaml = Path(data_yaml).resolve()
    fp_file = data_yaml.parent / ".fingerprint"
    fingerprint = fp_file.read_text().strip() if fp_file.exists() else "unknown"
    # 2. training
    run_dir = (Path(runs_dir) / version).resolve()
    lineage: list[str] = []
    if soup:  # no training: the greedy weight soup of existing checkpoints, packaged like trained weights
        from training.soup import make_soup

        weights = make_soup(soup, data_yaml, run_dir, cfg.imgsz, log)
    if weights is not None:
        best = Path(weights)
        run_dir = best.parent.parent.resolve() if best.parent.name == "weights" else run_dir
        init = Init(str(weights), _describe_run(run_dir, best))
    else:
        init = resolve_init(cfg, log, models_dir) if resume is None else Init(str(resume), f"resumed {resume}")
        best = train(cfg, data_yaml, run_dir, init=init, resume=resume, log=log)
    prev = current_model(models_dir)
    parent = parent_model(run_dir) if weights is not None else None
    if parent and (models_dir / parent / "metrics.json").exists():  # packaging an earlier run of a model here
        parent_info = json.loads((models_dir / parent / "metrics.json").read_text())
        lineage = [*parent_info.get("lineage", []), parent]
    elif prev is not None and init.weights and str(prev) in os.path.realpath(init.weights):
        prev_info = json.loads((prev / "metrics.json").read_text()) if (prev / "metrics.json").exists() else {}
        lineage = [*prev_info.get("lineage", []), prev.name]
    soup_record = (_init_record(run_dir) or {}) if soup else {}
    lineage = soup_record.get("lineage", lineage)  # a soup descends from all of its ingredients
    epochs_run, run_hours = _run_history(run_dir)
    train_hours = run_hours if run_hours is not None else (time.time() - t_start) / 3600
    # 3. export + parity
    from training.evaluate import evaluate, split_images, ultralytics_val
    from training.export import check_parity, export_onnx, quantize_int8, time_session

    staging = models_dir / f".{version}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    onnx_path = export_onnx(best, staging / "model.onnx", cfg.imgsz)
    shutil.copyfile(best, staging / "weights.pt")
    from ultralytics.utils.torch_utils import strip_optimizer

    strip_optimizer(str(staging / "weights.pt"))  # fine-tunable weights only: no optimizer state, fp16
    import yaml

    data = yaml.safe_load(data_yaml.read_text())
    root = Path(data.get("path") or data_yaml.parent)
    val_images = split_images(root, data, "val")[:16]
    parity = check_parity(staging / "weights.pt", onnx_path, val_images, cfg.imgsz)
    log(
        f"ONNX parity on {parity['images']} val images: max abs diff {parity['max_abs_diff']:.2e}, "
        f"detections match: {parity['detections_match']}"
    )
    # 4. per-class thresholds chosen on validation (shipped with the model), then the test split
    from training.evaluate import collect
    from training.metrics import coco_map
    from training.thresholds import choose, write_thresholds

    vgts, vpreds, vnames, _ = collect(onnx_path, data_yaml, "val")
    chosen = choose(vgts, vpreds, vnames)
    val_ev = coco_map(vgts, vpreds, vnames)  # what promotion decides on (the test split only reports)
    val_ev = {"split": "val", "map50": val_ev["map50"], "map50_95": val_ev["map50_95"]}
    log(f"val split (ONNX via detector): mAP50 {val_ev['map50']:.3f}, mAP50-95 {val_ev['map50_95']:.3f}")
    write_thresholds(staging, chosen)
    log("per-class thresholds (chosen on val): " + ", ".join(f"{k} {v['threshold']:.2f}" for k, v in chosen.items()))
    # evaluation through detector/
    ev = evaluate(onnx_path, data_yaml, "test", ci_draws=cfg.ci_draws)
    log(f"test split (ONNX via detector): mAP50 {ev['map50']:.3f}, mAP50-95 {ev['map50_95']:.3f}")
    if ev.get("ci95"):
        lo, hi = ev["ci95"]["map50"]
        log(f"  mAP50 95% interval {lo:.3f} - {hi:.3f} ({ev['ci95']['clusters']} source groups, bootstrap)")
    uv = None
    if crosscheck:
        uv = ultralytics_val(best, data_yaml, "test", cfg.imgsz)
        log(f"Ultralytics validator on the same split: mAP50 {uv['map50']:.3f}, mAP50-95 {uv['map50_95']:.3f}")
    int8 = None
    if cfg.int8:
        calib = split_images(root, data, "train")[:: max(1, len(split_images(root, data, "train")) // 64)][:64]
        q = quantize_int8(onnx_path, staging / "model_int8.onnx", calib, cfg.imgsz)
        ev8 = evaluate(q, data_yaml, "test")
        int8 = {
            "map50": ev8["map50"],
            "map50_95": ev8["map50_95"],
            "ms_int8": time_session(q, cfg.imgsz),
            "ms_fp32": time_session(onnx_path, cfg.imgsz),
        }
        log(f"INT8: mAP50 {int8['map50']:.3f} ({int8['ms_int8']:.1f} ms vs fp32 {int8['ms_fp32']:.1f} ms)")
    backend_parity = None
    try:  # each runtime backend: auto may pick, against ONNX Runtime fp32 (for the model card)
        from training.export import backend_parity as parity_of_backends

        backend_parity = parity_of_backends(onnx_path, val_images, cfg.imgsz)
    except Exception as e:  # noqa: BLE001 - e.g. openvino not installed: the card says nothing
        log(f"backend parity not measured: {e}")
    # 5. model folder
    from training.export import model_gflops
    from training.fastcpu import fast_path_mode

    index = data_yaml.parent / "index.json"
    counts = {"train": 0, "val": 0, "test": 0}
    if index.exists():
        for r in json.loads(index.read_text()):
            counts[r["split"]] += 1
    tax = load_taxonomy()
    info = {
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": [{"id": c.id, "name": c.name, "asset": c.asset, "description": c.description} for c in tax.classes],
        "training": {
            "model": cfg.model,
            "imgsz": cfg.imgsz,
            "gflops": model_gflops(onnx_path),
            "batch": cfg.batch,
            "init": init.description,
            "epochs_run": epochs_run,
            "hours": train_hours,
            "hardware": hardware(),
            "device": str(cfg.device or "cpu"),
            "fast_cpu": fast_path_mode(cfg.fast_cpu, str(cfg.device or "cpu")),
            "seed": cfg.seed,
            "dataset_fingerprint": fingerprint,
            "images": counts,
            "run": run_dir.name,
            "soup": soup_record.get("soup"),
            "ultralytics": cfg.ultralytics,
            # the project's own additions to Ultralytics' recipe (configs/train.yaml); a soup trains
            # nothing, its ingredients' recipes are in their own runs
            "augmentation": None
            if soup
            else {
                "rare_class_repeat": cfg.rare_class_repeat,
                "copy_paste_classes": cfg.copy_paste_classes,
                "transpose": cfg.transpose,
            },
            "ema": None if soup else cfg.ema.model_dump(),
        },
        "evaluation": ev,
        "validation": val_ev,
        "ultralytics_val": uv,
        "parity": parity,
        "int8": int8,
        "thresholds": chosen,
        "backend_parity": backend_parity,
        "lineage": lineage,
    }
    from training.card import write_card

    write_card(staging, info)
    final = models_dir / version
    shutil.rmtree(final, ignore_errors=True)
    staging.replace(final)
    log(f"model folder: {final}")
    # 6. promotion
    decide_promotion(models_dir, final, val_ev, fingerprint, data_yaml, log, cfg.promotion)
    return final


def decide_promotion(
    models_dir: Path,
    folder: Path,
    val_ev: dict,
    fingerprint: str,
    data_yaml: Path,
    log: Callable[[str], None] = print,
    rule: PromotionRule | None = None,
) -> bool:
    """Replace ``models/current`` only when the new model scores higher (mAP50-95, then mAP50) on
    the **validation** split of the same build: the test split reports, it never chooses. The current
    model is re-evaluated when its recorded figures come from another build of the data (or predate
    recorded validation figures). A model that costs more compute per image than ``rule`` tolerates
    must also add ``rule.costlier_min_gain`` val mAP50-95 and be ahead on it in
    ``rule.costlier_confidence`` of the paired bootstrap draws by source group: a tie bought with
    compute stays out."""
    cur = current_model(models_dir)
    if cur is None:
        promote(models_dir, folder)
        log(f"models/current -> {folder.name} (no previous model)")
        return True
    if cur == folder.resolve():
        return True
    from training.evaluate import evaluate

    cur_info = json.loads((cur / "metrics.json").read_text()) if (cur / "metrics.json").exists() else {}
    if cur_info.get("training", {}).get("dataset_fingerprint") == fingerprint and cur_info.get("validation"):
        cur_ev = cur_info["validation"]
    else:
        cur_ev = evaluate(cur / "model.onnx", data_yaml, "val")
    new_key = (round(val_ev["map50_95"], 4), round(val_ev["map50"], 4))
    cur_key = (round(cur_ev["map50_95"], 4), round(cur_ev["map50"], 4))
    if new_key <= cur_key:
        log(f"models/current stays {cur.name}: val mAP50-95 {cur_key[0]:.3f} >= {new_key[0]:.3f} of {folder.name}")
        return False
    rule = rule or load_train_config().promotion
    costlier = costlier_by(folder / "model.onnx", cur / "model.onnx", rule.cost_tolerance)
    if costlier is not None:
        gain = round(new_key[0] - cur_key[0], 4)
        if gain < rule.costlier_min_gain:
            log(
                f"models/current stays {cur.name}: {folder.name} adds val mAP50-95 {gain:+.4f} but costs {costlier} "
                f"(a costlier model needs +{rule.costlier_min_gain:.3f})"
            )
            return False
        share = share_ahead(cur / "model.onnx", folder / "model.onnx", data_yaml, rule.draws)
        if share < rule.costlier_confidence:
            log(
                f"models/current stays {cur.name}: {folder.name} scores val mAP50-95 {new_key[0]:.4f} > "
                f"{cur_key[0]:.4f} but costs {costlier} and is ahead in {share:.0%} of {rule.draws} paired draws "
                f"by source group (a costlier model needs {rule.costlier_confidence:.0%})"
            )
            return False
        log(f"{folder.name} costs {costlier} and is ahead in {share:.0%} of {rule.draws} paired draws on val")
    promote(models_dir, folder)
    log(f"models/current -> {folder.name}: val mAP50-95 {new_key[0]:.3f} > {cur_key[0]:.3f} ({cur.name})")
    return True


def costlier_by(new: Path, cur: Path, tolerance: float) -> str | None:
    """Words for how much more compute per image ``new`` costs than ``cur`` (ONNX models, each at its
    own input size) when that is more than ``tolerance`` (a fraction); None otherwise or when unknown."""
    from training.export import model_gflops

    g_new, g_cur = model_gflops(new), model_gflops(cur)
    if g_new is None or g_cur is None or g_new <= g_cur * (1 + tolerance):
        return None
    return f"{g_new:.1f} GFLOPs per image against {g_cur:.1f} ({g_new / g_cur:.2f}x)"


def share_ahead(cur: Path, new: Path, data_yaml: Path, draws: int, seed: int = 0) -> float:
    """The share of paired bootstrap draws of the validation split's source groups in which the ONNX
    model ``new`` scores a higher mAP50-95 than ``cur`` (0 when their classes differ)."""
    from training.evaluate import collect, image_clusters
    from training.metrics import paired_bootstrap

    gts, pred_cur, names, _ = collect(cur, data_yaml, "val")
    _, pred_new, new_names, _ = collect(new, data_yaml, "val")
    if names != new_names:
        return 0.0
    pair = paired_bootstrap(gts, pred_cur, pred_new, names, draws, seed, image_clusters(Path(data_yaml), "val"))
    return pair["map50_95"]["share_b_ahead"]
