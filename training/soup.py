"""Weight averaging ("model soups", Wortsman et al., ICML 2022).

Checkpoints fine-tuned from a common ancestor (every run of our lineage continues from the last
shipped model) lie in one basin of the loss: their parameter-wise average is often better than
each of them, at no training cost. The **greedy soup** ranks the ingredients by their own
validation score, starts from the best and adds the next one only when the average of the soup
with it scores higher on the validation split - the promotion key, (mAP50-95, mAP50) - so a
checkpoint from another basin (or another architecture) never gets in. The test split plays no
part. ``pvwind train --soup A B ...`` packages the result like any trained model.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path

Score = tuple[float, float]  # (val mAP50-95, val mAP50): what promotion compares


def ingredient_weights(path: Path) -> Path:
    """A model folder's ``weights.pt``, or a ``.pt`` checkpoint as it is."""
    path = Path(path)
    if path.is_dir():
        w = path / "weights.pt"
        if not w.is_file():
            raise FileNotFoundError(f"{path}: a model folder without weights.pt")
        return w
    if path.suffix != ".pt" or not path.is_file():
        raise FileNotFoundError(f"{path}: neither a model folder nor a .pt checkpoint")
    return path


def _load(path: Path) -> dict:
    import torch  # training needs torch; the detector never imports this module

    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e.__class__.__name__})") from None
    if not isinstance(ck, dict) or not hasattr(_net(ck), "state_dict"):
        raise ValueError(f"{path}: not an Ultralytics checkpoint (no model in it)")
    return ck


def _net(ck: dict):  # noqa: ANN202 - the checkpoint's network: its EMA where it has one, as Ultralytics exports
    net = ck["ema"] if ck.get("ema") is not None else ck.get("model")
    # a distillation run's epoch checkpoints hold the student inside a wrapper (with the projector
    # that only training uses); Ultralytics unwraps best.pt / last.pt at the end, and so do we
    return getattr(net, "student_model", net)


def average_checkpoints(paths: Sequence[Path], out: Path, weights: Sequence[float] | None = None) -> Path:
    """Write to ``out`` the checkpoint whose every floating-point tensor (weights and batch-norm
    statistics) is the mean of those in ``paths`` (the EMA weights where a checkpoint has them,
    as Ultralytics exports), weighted by ``weights`` when given (normalised to sum 1).
    Checkpoints of different architectures are refused by name."""
    import torch

    if not paths:
        raise ValueError("nothing to average")
    if weights is not None and (len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0):
        raise ValueError(f"{len(paths)} checkpoints need as many non-negative weights with a positive sum")
    w = [1.0 / len(paths)] * len(paths) if weights is None else [x / sum(weights) for x in weights]
    cks = [_load(Path(p)) for p in paths]
    states = [_net(ck).float().state_dict() for ck in cks]
    ref = states[0]
    for p, st in zip(paths[1:], states[1:], strict=True):
        if st.keys() != ref.keys():
            raise ValueError(f"{p}: not the same architecture as {paths[0]} (different layers)")
        for k, v in st.items():
            if v.shape != ref[k].shape:
                raise ValueError(f"{p}: not the same architecture as {paths[0]} ({k}: {tuple(v.shape)})")
    avg = {
        k: sum(wi * st[k] for wi, st in zip(w, states, strict=True)) if v.is_floating_point() else v.clone()
        for k, v in ref.items()
    }
    base = cks[0]
    model = copy.deepcopy(_net(base)).float()
    model.load_state_dict(avg)
    soup = {k: v for k, v in base.items() if k not in ("optimizer", "ema", "updates", "scaler")}
    soup.update(model=model.half(), ema=None, optimizer=None, epoch=-1, best_fitness=None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(soup, out)
    return out


def greedy_soup(
    ingredients: Sequence[Path], score: Callable[[Sequence[Path]], Score], log: Callable[[str], None] = print
) -> tuple[list[Path], Score, list[dict]]:
    """The greedy soup: (chosen ingredients, their soup's score, every trial for the record)."""
    if not ingredients:
        raise ValueError("a soup needs at least one ingredient")
    trials: list[dict] = []
    alone: list[tuple[Score, int, Path]] = []
    for i, p in enumerate(ingredients):
        s = score([p])
        alone.append((s, i, p))
        trials.append({"ingredients": [str(p)], "val_map50_95": s[0], "val_map50": s[1], "kept": None})
        log(f"soup: {p} alone: val mAP50-95 {s[0]:.4f}, mAP50 {s[1]:.4f}")
    alone.sort(key=lambda t: (t[0], -t[1]), reverse=True)
    best, chosen = alone[0][0], [alone[0][2]]
    for _, _, p in alone[1:]:
        s = score([*chosen, p])
        kept = s > best
        trials.append(
            {"ingredients": [str(c) for c in (*chosen, p)], "val_map50_95": s[0], "val_map50": s[1], "kept": kept}
        )
        log(f"soup: + {p}: val mAP50-95 {s[0]:.4f}, mAP50 {s[1]:.4f} -> {'kept' if kept else 'left out'}")
        if kept:
            chosen, best = [*chosen, p], s
    return chosen, best, trials


def val_scorer(data_yaml: Path, imgsz: int, workdir: Path) -> Callable[[Sequence[Path]], Score]:
    """Score a set of checkpoints as the shipped model would be scored: average them, export to
    ONNX, run the detector over the validation split, COCO mAP."""
    from training.evaluate import evaluate
    from training.export import export_onnx

    workdir = Path(workdir)
    cache: dict[tuple[str, ...], Score] = {}

    def score(paths: Sequence[Path]) -> Score:
        key = tuple(sorted(str(p) for p in paths))
        if key not in cache:
            pt = average_checkpoints(list(paths), workdir / "trial.pt")
            onnx_path = export_onnx(pt, workdir / "trial.onnx", imgsz)
            m = evaluate(onnx_path, data_yaml, "val")
            cache[key] = (round(m["map50_95"], 4), round(m["map50"], 4))
        return cache[key]

    return score


def soup_lineage(ingredients: Sequence[Path]) -> list[str]:
    """A soup's ancestry: the recorded lineage of each ingredient that is a packaged model, then the
    ingredients themselves (model or checkpoint names), each once, oldest first."""
    from training.train import _model_name

    out: list[str] = []
    for w in ingredients:
        folder = Path(w).resolve().parent if Path(w).name == "weights.pt" else None
        if folder is not None and (folder / "metrics.json").is_file():
            out += json.loads((folder / "metrics.json").read_text()).get("lineage", [])
    out += [_model_name(Path(w)) for w in ingredients]
    return list(dict.fromkeys(out))


def make_soup(
    ingredients: Sequence[Path], data_yaml: Path, run_dir: Path, imgsz: int, log: Callable[[str], None] = print
) -> Path:
    """The greedy soup of ``ingredients`` (model folders or .pt files) as ``run_dir/weights/best.pt``,
    with an ``init.json`` that records its recipe for the model card and the lineage."""
    from training.train import _model_name

    weights = [ingredient_weights(Path(p)) for p in ingredients]
    if len({str(Path(w).resolve()) for w in weights}) != len(weights):
        raise ValueError("the same checkpoint is given twice as a soup ingredient")
    run_dir = Path(run_dir)
    chosen, best, trials = greedy_soup(weights, val_scorer(data_yaml, imgsz, run_dir / "soup"), log)
    out = average_checkpoints(chosen, run_dir / "weights" / "best.pt")
    names = [_model_name(w) for w in chosen]
    left = [_model_name(w) for w in weights if w not in chosen]
    description = f"greedy weight soup of {' + '.join(names)} (val mAP50-95 {best[0]:.3f}, mAP50 {best[1]:.3f})" + (
        f"; left out: {', '.join(left)}" if left else ""
    )
    for t in trials:
        t["ingredients"] = [_model_name(Path(p)) for p in t["ingredients"]]
    (run_dir / "init.json").write_text(
        json.dumps(
            {"weights": str(chosen[0]), "description": description, "soup": trials, "lineage": soup_lineage(chosen)},
            indent=1,
        )
    )
    log(description)
    return out
