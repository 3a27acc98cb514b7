"""A faster CPU training path for Ultralytics detection.

Stock Ultralytics trains in float32 on a CPU: its ``autocast`` helper refuses
bfloat16 off CUDA, and it only uses channels-last memory on CUDA. On CPUs with
bfloat16 matrix instructions (AVX512-BF16, AMX) oneDNN runs convolutions in bf16
much faster, and channels-last (NHWC) is oneDNN's native layout, faster in float32
too (6-12 % on a 2-core AVX2 EPYC, ``bench/train_speed.py``). The bf16 trainer
turns both on, the channels-last trainer only the layout (CPUs without bf16):

* the model (before the EMA copy and the optimizer are made) and every batch are
  converted to ``torch.channels_last``;
* the forward pass and the loss run under ``torch.autocast("cpu", torch.bfloat16)``
  (weights, optimizer state and EMA stay float32; autocast keeps reductions and
  the loss' float32 ops in float32).

The hook points are the trainer's ``set_model_attributes`` and
``preprocess_batch`` methods and the module-level ``autocast`` that
``ultralytics.engine.trainer`` imports; ``tests/test_fastcpu.py`` fails when an
Ultralytics update moves them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import ultralytics.engine.trainer as _trainer_module
from ultralytics.models.yolo.detect import DetectionTrainer


def cpu_has_bf16() -> bool:
    """True when this CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX-BF16)
    and PyTorch's oneDNN can use them."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    try:
        mkldnn_ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        mkldnn_ok = torch.backends.mkldnn.is_available()
    return native and mkldnn_ok


def _is_cpu(device: str) -> bool:
    return str(device) in ("cpu", "") or str(device).startswith("cpu")


def fast_path_mode(setting: str | bool, device: str = "cpu") -> str:
    """Which CPU training path to take: ``"bf16"`` (bf16 autocast + channels-last),
    ``"channels_last"`` (float32, channels-last memory only) or ``"off"`` (stock).

    ``setting``: "auto" (bf16 where the CPU has bf16 units, else channels-last, which
    is faster in float32 too), True/"on" (bf16), "channels_last", False/"off". A CUDA
    device is always "off": AMP does the job there.
    """
    if not _is_cpu(device):
        return "off"
    if isinstance(setting, bool):
        return "bf16" if setting else "off"
    s = str(setting).lower().replace("-", "_")
    if s in ("on", "true", "1", "yes", "bf16"):
        return "bf16"
    if s in ("off", "false", "0", "no"):
        return "off"
    if s == "channels_last":
        return "channels_last"
    if s != "auto":
        raise ValueError(f"fast_cpu must be auto, on, channels_last or off, not {setting!r}")
    return "bf16" if cpu_has_bf16() else "channels_last"


def fast_path_wanted(setting: str | bool, device: str = "cpu") -> bool:
    """True when the bf16 fast path is taken (see :func:`fast_path_mode`)."""
    return fast_path_mode(setting, device) == "bf16"


def cpu_trainer(mode: str, device: str = "cpu") -> type[DetectionTrainer]:
    """The Ultralytics trainer class for a :func:`fast_path_mode` result; on a CUDA ``device``
    Ultralytics' own (AMP does the job there, and the thread count is not ours to set)."""
    if not _is_cpu(device):
        return DetectionTrainer
    return {"bf16": FastCPUDetectionTrainer, "channels_last": ChannelsLastDetectionTrainer}.get(
        mode, CPUDetectionTrainer
    )


@contextlib.contextmanager
def cpu_bf16_autocast() -> Iterator[None]:
    """Within the block, the trainer's ``autocast(...)`` calls give bf16 CPU autocast."""
    original = _trainer_module.autocast

    def _autocast(enabled: bool, device: str = "cuda") -> contextlib.AbstractContextManager:
        if device == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return original(enabled, device=device)

    _trainer_module.autocast = _autocast
    try:
        yield
    finally:
        _trainer_module.autocast = original


def usable_cores() -> int:
    """The cores this process may run on (its affinity; ``os.cpu_count()`` counts the whole machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class CPUDetectionTrainer(DetectionTrainer):
    """``DetectionTrainer`` that computes on every core of the CPU.

    Ultralytics' ``select_device`` sets torch to ``cpu_count - 1`` intra-op threads for CPU training
    (a core kept for loader workers), and its trainer then forces 0 loader workers on a CPU: on a
    2-core machine the model trained on **one** thread while the other core idled. The trainer is
    built after ``select_device``, so its ``__init__`` sets the threads back (``cpu_threads``; 0 = all)."""

    cpu_threads: int = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.device.type == "cpu":
            torch.set_num_threads(self.cpu_threads or usable_cores())


class ChannelsLastDetectionTrainer(CPUDetectionTrainer):
    """``DetectionTrainer`` with channels-last (NHWC) memory on the CPU, in float32.

    The half of the fast path that needs no bf16 units: oneDNN's native layout saves
    the NCHW<->NHWC reorders around every convolution (``bench/train_speed.py``)."""

    def set_model_attributes(self) -> None:
        super().set_model_attributes()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    def preprocess_batch(self, batch: dict) -> dict:
        batch = super().preprocess_batch(batch)
        if self.device.type == "cpu":
            batch["img"] = batch["img"].contiguous(memory_format=torch.channels_last)
        return batch


class FastCPUDetectionTrainer(ChannelsLastDetectionTrainer):
    """``DetectionTrainer`` with bf16 autocast and channels-last memory on the CPU."""

    def _do_train(self):
        if self.device.type != "cpu":
            return super()._do_train()
        with cpu_bf16_autocast():
            return super()._do_train()
