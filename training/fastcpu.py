"""A faster CPU training path for Ultralytics detection.

Stock Ultralytics trains in float32 on a CPU: its ``autocast`` helper refuses
bfloat16 off CUDA, and it only uses channels-last memory on CUDA. On CPUs with
bfloat16 matrix instructions (AVX512-BF16, AMX) oneDNN runs convolutions in bf16
much faster, and channels-last (NHWC) is oneDNN's native layout. This trainer
turns both on:

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


def fast_path_wanted(setting: str | bool, device: str = "cpu") -> bool:
    """``setting``: "auto" (on when the CPU supports bf16), True/"on", False/"off"."""
    if str(device) not in ("cpu", "") and not str(device).startswith("cpu"):
        return False
    if isinstance(setting, bool):
        return setting
    s = str(setting).lower()
    if s in ("on", "true", "1", "yes"):
        return True
    if s in ("off", "false", "0", "no"):
        return False
    return cpu_has_bf16()


@contextlib.contextmanager
def cpu_bf16_autocast() -> Iterator[None]:
    """Within the block, the trainer's ``autocast(...)`` calls give bf16 CPU autocast."""
    original = _trainer_module.autocast

    def _autocast(enabled, device: str = "cuda"):
        if device == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return original(enabled, device=device)

    _trainer_module.autocast = _autocast
    try:
        yield
    finally:
        _trainer_module.autocast = original


class FastCPUDetectionTrainer(DetectionTrainer):
    """``DetectionTrainer`` with bf16 autocast and channels-last memory on the CPU."""

    def set_model_attributes(self) -> None:
        super().set_model_attributes()
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)

    def preprocess_batch(self, batch: dict) -> dict:
        batch = super().preprocess_batch(batch)
        if self.device.type == "cpu":
            batch["img"] = batch["img"].contiguous(memory_format=torch.channels_last)
        return batch

    def _do_train(self):
        if self.device.type != "cpu":
            return super()._do_train()
        with cpu_bf16_autocast():
            return super()._do_train()
