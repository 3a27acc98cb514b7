"""``MODEL_CARD.md`` and ``metrics.json`` of a model folder."""

from __future__ import annotations

import json
from pathlib import Path

from training.config import fast_path_words
from training.sources import load_manifests

EXPERIMENTS = Path(__file__).resolve().parent.parent / "docs" / "experiments.md"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _span(v: list[float] | None) -> str:
    return "-" if not v else f"{v[0]:.3f} - {v[1]:.3f}"


def runs_table(markdown: str) -> list[str]:
    """The first table of ``markdown`` (the runs table of docs/experiments.md), not the later ones."""
    out: list[str] = []
    for ln in markdown.splitlines():
        if ln.startswith("|"):
            out.append(ln)
        elif out:
            break
    return out


def _recipe_lines(t: dict) -> list[str]:
    """The project's additions to Ultralytics' recipe, as metrics.json records them (older models: none)."""
    aug, ema = t.get("augmentation"), t.get("ema")
    if aug is None:
        return []
    ul = t.get("ultralytics") or {}
    paste = float(ul.get("copy_paste") or 0.0)
    classes = aug.get("copy_paste_classes")
    pasted = ", ".join(classes) if classes else "every class"
    words = [
        f"rare-class repeat t {aug['rare_class_repeat']}" if aug.get("rare_class_repeat") else "no rare-class repeat",
        f"box copy-paste p {paste:g} for {pasted}" if paste > 0 else "no copy-paste",
        f"transpose p {aug['transpose']:g}" if aug.get("transpose") else "no transpose",
    ]
    if ema:
        words.append(f"EMA decay {ema['decay']:g} / tau {ema['tau']:g} steps")
    return [f"- Recipe additions (configs/train.yaml): {'; '.join(words)}."]


def _teacher_line(ultralytics: dict) -> list[str]:
    """A distilled run's teacher (the shipped model is the student alone); none otherwise."""
    teacher = ultralytics.get("distill_model")
    if not teacher:
        return []
    return [f"- Teacher (knowledge distillation, weight `dis` {ultralytics.get('dis', 'default')}): `{teacher}`."]


def write_card(folder: Path, info: dict) -> Path:
    """Write the card from the info that also goes to ``metrics.json``."""
    ev = info["evaluation"]
    lines = [
        f"# Model card: {info['version']}",
        "",
        "A YOLO11n defect detector for drone inspections of PV plants and wind-turbine blades, "
        "exported to ONNX for the torch-free `detector` library.",
        "",
        "## Classes",
        "",
        "| id | name | asset | description |",
        "|---|---|---|---|",
    ]
    for c in info["classes"]:
        lines.append(f"| {c['id']} | `{c['name']}` | {c['asset']} | {c['description']} |")
    t = info["training"]
    lines += [
        "",
        "## Training",
        "",
        f"- Architecture: `{t['model']}`, input {t['imgsz']} px, batch {t['batch']}"
        + (f"; {t['gflops']:.1f} GFLOPs per {t['imgsz']} px input." if t.get("gflops") else "."),
        f"- Start: {t['init']}.",
        f"- Epochs run: {t['epochs_run']}; wall-clock {t['hours']:.2f} h on {t['hardware']}.",
        f"- CPU fast path: {fast_path_words(t['fast_cpu'], t.get('device'))}.",
        f"- Data: `{t['dataset_fingerprint'][:12]}` built by `pvwind data build` (seed {t['seed']}): "
        f"{t['images']['train']} train / {t['images']['val']} val / {t['images']['test']} test images, "
        "split by source group (no augmented copy or near-duplicate of one photo on two sides).",
        f"- Lineage: {' -> '.join(info.get('lineage', [])) or 'none'}.",
        *_recipe_lines(t),
        *_teacher_line(t.get("ultralytics") or {}),
        "",
    ]
    if t.get("soup"):  # the greedy weight soup's trials, all scored on val (training/soup.py)
        lines += ["Weight soup, every trial on the validation split:", ""]
        lines += ["| ingredients | val mAP50 | val mAP50-95 | kept |", "|---|---:|---:|---|"]
        for trial in t["soup"]:
            kept = {None: "(alone)", True: "yes", False: "no"}[trial["kept"]]
            names = " + ".join(trial["ingredients"])
            lines.append(f"| {names} | {trial['val_map50']:.3f} | {trial['val_map50_95']:.3f} | {kept} |")
        lines.append("")
    ci = ev.get("ci95") or {}
    lines += [
        "## Evaluation (test split, exported ONNX model through `detector/`)",
        "",
        f"mAP50 **{_pct(ev['map50'])}**, mAP50-95 {_pct(ev['map50_95'])} over {ev['images']} images / "
        f"{ev['instances']} boxes (COCO metric by faster-coco-eval, confidence 0.001, 300 detections per image).",
        "",
    ]
    if ci:
        lines += [
            f"How sure: {ci['level']:.0%} bootstrap intervals, mAP50 {_span(ci['map50'])}, mAP50-95 "
            f"{_span(ci['map50_95'])} ({ci['draws']} draws of the split's {ci['clusters']} source groups: a photo "
            "with its augmented copies, or a flight's overlapping frames, is drawn as one). `groups` below counts "
            "the distinct groups holding a class: a class seen in a few photos has a wide interval.",
            "",
        ]
    if info.get("ultralytics_val"):
        u = info["ultralytics_val"]
        lines.append(
            f"Cross-check with Ultralytics' own validator on the PyTorch weights, same split: "
            f"mAP50 {_pct(u['map50'])}, mAP50-95 {_pct(u['map50_95'])}."
        )
        lines.append("")
    at = ev.get("at_thresholds") or {}
    groups = any("groups" in r for r in ev["per_class"].values())
    head = "| class | instances |" + (" groups |" if groups else "") + " mAP50 |"
    head += (" mAP50 interval |" if ci else "") + " mAP50-95 |"
    align = "|---|---:|" + ("---:|" if groups else "") + "---:|" + ("---:|" if ci else "") + "---:|"
    if at:  # what users see: precision and recall at the shipped per-class thresholds (chosen on val)
        lines += [
            "Precision and recall at the shipped per-class thresholds (`thresholds.json`, chosen on val; IoU 0.5):",
            "",
            head + " threshold | precision | recall |",
            align + "---:|---:|---:|",
        ]
    else:
        lines += [head, align]
    for name, r in ev["per_class"].items():
        row = f"| `{name}` | {r['instances']} |" + (f" {r.get('groups', '-')} |" if groups else "")
        row += f" {_pct(r['map50'])} |"
        if ci:
            row += f" {_span(ci.get('per_class', {}).get(name, {}).get('map50'))} |"
        row += f" {_pct(r['map50_95'])} |"
        if at:
            t = at.get(name, {})
            rule = (info.get("thresholds") or {}).get(name, {}).get("rule", "")
            p, rc = t.get("precision"), t.get("recall")
            row += (
                f" {t.get('threshold', 0):.2f} ({rule}) | {'-' if p is None else f'{p:.2f}'} |"
                f" {'-' if rc is None else f'{rc:.2f}'} |"
            )
        lines.append(row)
    lines += ["", "| source dataset | images | mAP50 | mAP50-95 |", "|---|---:|---:|---:|"]
    for name, r in ev.get("per_source", {}).items():
        lines.append(f"| {name} | {r['images']} | {_pct(r['map50'])} | {_pct(r['map50_95'])} |")
    if info.get("parity"):
        p = info["parity"]
        lines += [
            "",
            "## Export",
            "",
            f"ONNX (opset {p.get('opset', '?')}) vs PyTorch on {p['images']} validation images: "
            f"max abs diff of raw outputs {p['max_abs_diff']:.2e}; detections identical: {p['detections_match']}.",
        ]
    if info.get("int8"):
        q = info["int8"]
        lines += [
            "",
            f"INT8 (static QDQ, ONNX Runtime): mAP50 {_pct(q['map50'])} vs fp32 {_pct(ev['map50'])}; "
            f"{q['ms_int8']:.1f} ms vs {q['ms_fp32']:.1f} ms per image (batch 1).",
        ]
    if info.get("backend_parity"):
        bp = info["backend_parity"]
        lines += [
            "",
            f"Runtimes against ONNX Runtime fp32 on {bp['images']} real images (what `backend: auto` may pick; "
            "detections at confidence 0.25 found again with the same class and IoU >= 0.9):",
            "",
            "| runtime | max abs diff of class scores | detections found |",
            "|---|---:|---:|",
        ]
        for name, r in bp.items():
            if not isinstance(r, dict):
                continue
            if "error" in r:
                lines.append(f"| {name} | not measured: {r['error']} | |")
            elif name == "openvino-bf16" and bp.get("cpu_bf16") is False:
                lines.append(f"| {name} | not measured: the exporting CPU has no bf16 units (OpenVINO ran f32) | |")
            else:
                lines.append(
                    f"| {name} | {r['max_abs_diff_scores']:.2e} | {r['detections_found']}/{r['detections_reference']} |"
                )
    val = info.get("validation")
    if val:
        lines += [
            "",
            f"Validation split (what promotion decides on): mAP50 {_pct(val['map50'])}, "
            f"mAP50-95 {_pct(val['map50_95'])}.",
        ]
    if EXPERIMENTS.is_file():  # the recipe history, kept by hand with every run that was measured
        lines += ["", "## Experiments", "", f"From `docs/{EXPERIMENTS.name}` at packaging time:", ""]
        lines += runs_table(EXPERIMENTS.read_text())
    lines += ["", "## Data sources", ""]
    for m in load_manifests():
        lines.append(
            f"- **{m.name}**: {m.upstream.repository} @ {m.upstream.commit}. Licence: {m.licence}. {m.attribution}"
        )
    lines += [
        "",
        "## Known limitations",
        "",
        "- Trained on a CPU without pretrained weights (no network), for a limited budget: "
        "far below the 0.78-0.84 mAP50 that published YOLO peers reach with pretrained weights and GPUs.",
        "- Each source covers one kind of imagery (thermal PV frames, RGB close-ups of panels, blade close-ups); "
        "the model has not seen e.g. thermal imagery of blades, and classes do not transfer between sources.",
        "- `pv_diode_fault` has few independent source groups (most boxes sit in ~50 images); its test figure "
        "rests on a handful of images. Tiny boxes (pin holes, diode cells) suffer at the training input size.",
        "- The mirror dropped ~10% of source groups for independent evaluation; scores here are on the built "
        "test split only.",
        "- One Nordtank tile subset of wind_iliad is CC BY-NC 4.0: check the licence before commercial use.",
        "",
    ]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    (folder / "metrics.json").write_text(json.dumps(info, indent=2))
    return path
