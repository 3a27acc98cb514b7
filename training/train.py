"""Training with Ultralytics: where the weights start from, and the training run itself."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from training.config import REPO, TrainConfig
from training.download import DownloadError, download

if TYPE_CHECKING:
    from ultralytics import YOLO

MODELS_DIR = REPO / "models"
WEIGHTS_CACHE = REPO / "build" / "cache" / "weights"


@dataclass
class Init:
    weights: str | None  # a .pt to start from, or None for scratch
    description: str  # for the model card's lineage


def model_weights(path: Path) -> Path | None:
    """The fine-tunable weights of a model folder (``weights.pt``) or a ``.pt`` path."""
    path = Path(path)
    if path.is_dir():
        w = path / "weights.pt"
        return w if w.exists() else None
    return path if path.suffix == ".pt" and path.exists() else None


def resolve_init(
    cfg: TrainConfig, log: Callable[[str], None] = print, models_dir: Path = MODELS_DIR, cache: Path = WEIGHTS_CACHE
) -> Init:
    """Decide the starting weights.

    ``auto``: COCO-pretrained weights when they can be fetched; offline, say so in
    one line and start from the shipped model (``models/current``) when it exists,
    else from scratch. ``pretrained`` insists on the download; ``scratch`` skips
    everything; anything else is a model folder or ``.pt`` path.
    """
    mode = cfg.init
    if mode == "scratch":
        return Init(None, f"from scratch ({cfg.model})")
    if mode in ("auto", "pretrained"):
        if cfg.pretrained_url:
            dest = cache / Path(cfg.pretrained_url).name
            try:
                if not dest.exists():
                    download(cfg.pretrained_url, dest, timeout=15)
                return Init(str(dest), f"COCO-pretrained {dest.name} ({cfg.pretrained_url})")
            except DownloadError as e:
                if mode == "pretrained":
                    raise
                log(f"offline: no COCO-pretrained weights ({e}); falling back")
        current = model_weights(models_dir / "current")
        if current is not None:
            log(f"starting from the shipped model's weights {current}")
            return Init(str(current), f"fine-tuned from {_model_name(current)}")
        log("no shipped model to start from: training from scratch")
        return Init(None, f"from scratch ({cfg.model})")
    w = model_weights(Path(mode))
    if w is None:
        raise FileNotFoundError(f"--init {mode}: no weights.pt in that folder and not a .pt file")
    return Init(str(w), f"fine-tuned from {_model_name(w)}")


def _model_name(weights: Path) -> str:
    """A model's name for the lineage: its version folder (models/<version>/weights.pt), or the
    checkpoint's run and file name - never a machine path."""
    real = Path(os.path.realpath(weights))
    if real.name == "weights.pt":
        return real.parent.name
    return f"{real.parent.parent.name}/{real.name}" if real.parent.name == "weights" else real.name


def initial_model(cfg: TrainConfig, data_yaml: Path, init: Init) -> YOLO:
    """The Ultralytics model a run starts from: ``cfg.model`` built for the data's
    class count, with ``init.weights`` loaded into it when given.

    Building with the data's class count first matters: loaded into the yaml's
    80-class head, a 10-class checkpoint would lose its last class convolutions
    (Ultralytics re-initialises them when the trainer rebuilds the model).
    """
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from training.evaluate import read_data_yaml

    model = YOLO(cfg.model)
    if init.weights:
        nc = len(read_data_yaml(Path(data_yaml))[1])
        model.model = DetectionModel(model.model.yaml, nc=nc, verbose=False)
        model = model.load(init.weights)
    return model


def copy_paste_augmentation(
    cfg: TrainConfig, data_yaml: Path, log: Callable[[str], None]
) -> contextlib.AbstractContextManager:
    """Box copy-paste for ``cfg.copy_paste_classes`` while Ultralytics trains, when its ``copy_paste``
    hyper-parameter is above 0 (training/copy_paste.py); else nothing."""
    p = float(cfg.ultralytics.get("copy_paste") or 0.0)
    if p <= 0:
        return contextlib.nullcontext()
    from training.copy_paste import box_copy_paste, class_ids
    from training.evaluate import read_data_yaml

    names = read_data_yaml(Path(data_yaml))[1]
    ids, missing = class_ids(names, cfg.copy_paste_classes)
    if missing:  # a dataset with other classes: say which names it lacks, paste the rest
        log(f"box copy-paste: {', '.join(missing)} not among this dataset's classes, skipped")
    if ids == []:
        log("box copy-paste: off (none of copy_paste_classes is in this dataset)")
        return contextlib.nullcontext()
    log(f"box copy-paste: p {p} for {'every class' if ids is None else ', '.join(names[i] for i in ids)}")
    return box_copy_paste(ids)


def transpose_augmentation(cfg: TrainConfig, log: Callable[[str], None]) -> contextlib.AbstractContextManager:
    """The transpose augmentation (training/transpose.py) while Ultralytics trains, when ``cfg.transpose``
    is above 0; else nothing."""
    if cfg.transpose <= 0:
        return contextlib.nullcontext()
    from training.transpose import random_transpose

    log(f"transpose: p {cfg.transpose} (with flipud / fliplr: the 8 symmetries of the square)")
    return random_transpose(cfg.transpose)


@contextlib.contextmanager
def weight_average(decay: float, tau: float) -> Iterator[None]:
    """While the block runs, Ultralytics' trainer keeps its exponential moving average of the weights
    (what every checkpoint and the exported model hold) with ``decay * (1 - exp(-updates / tau))``,
    updates counted in optimizer steps; Ultralytics' own is 0.9999 and 2000."""
    from ultralytics.engine import trainer as ul_trainer

    original = ul_trainer.ModelEMA
    ul_trainer.ModelEMA = functools.partial(original, decay=decay, tau=tau)
    try:
        yield
    finally:
        ul_trainer.ModelEMA = original


def train(
    cfg: TrainConfig,
    data_yaml: Path,
    run_dir: Path,
    init: Init | None = None,
    resume: Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train (or resume) one run; returns the path of the best checkpoint.

    Checkpoints go to ``run_dir/weights/{last,best}.pt`` after every epoch, and
    per-epoch metrics to ``run_dir/results.csv``; ``resume`` continues an
    interrupted run from its ``last.pt``.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    from training.config import fast_path_words
    from training.fastcpu import cpu_trainer, fast_path_mode

    device = str(cfg.device) if cfg.device not in (None, "") else "cpu"
    mode = fast_path_mode(cfg.fast_cpu, device)  # a CUDA device: off (AMP does the job there)
    trainer = cpu_trainer(mode, device)  # on the CPU: every core (Ultralytics leaves one idle)
    log(f"CPU fast path: {fast_path_words(mode, device)}")
    copy_paste = copy_paste_augmentation(cfg, data_yaml, log)
    transpose = transpose_augmentation(cfg, log)
    log(f"weight average (EMA): decay {cfg.ema.decay} * (1 - exp(-steps / {cfg.ema.tau:g}))")
    if resume is not None:
        model = YOLO(str(resume))
        with copy_paste, transpose, weight_average(cfg.ema.decay, cfg.ema.tau):
            model.train(resume=True, trainer=trainer)
        return Path(model.trainer.best if Path(model.trainer.best).exists() else model.trainer.last)
    init = init or Init(None, "from scratch")
    run_dir.mkdir(parents=True, exist_ok=True)
    # our record of where the run started (Ultralytics' args.yaml names the architecture yaml)
    (run_dir / "init.json").write_text(json.dumps({"weights": init.weights, "description": init.description}))
    train_yaml = data_yaml
    if cfg.rare_class_repeat:
        from training.sampling import write_repeated_data_yaml

        train_yaml, summary = write_repeated_data_yaml(data_yaml, run_dir, cfg.rare_class_repeat, cfg.seed)
        (run_dir / "sampling.json").write_text(json.dumps(summary, indent=1))
        log(f"rare-class repeat (t={cfg.rare_class_repeat}): {summary['images']} -> {summary['entries']} train entries")
    model = initial_model(cfg, data_yaml, init)
    args = dict(
        data=str(train_yaml),
        epochs=cfg.epochs,
        imgsz=cfg.imgsz,
        batch=cfg.batch,
        seed=cfg.seed,
        workers=cfg.workers,
        cache=cfg.cache,
        fraction=cfg.fraction,
        device=device,
        amp=device != "cpu",  # mixed precision on GPUs; the CPU uses the bf16 fast path instead
        project=str(run_dir.parent),
        name=run_dir.name,
        exist_ok=True,
        verbose=False,
    )
    if cfg.hours:
        args["time"] = cfg.hours
    args.update(cfg.ultralytics)
    with copy_paste, transpose, weight_average(cfg.ema.decay, cfg.ema.tau):
        model.train(trainer=trainer, **args)
    best = Path(model.trainer.best)
    return best if best.exists() else Path(model.trainer.last)
