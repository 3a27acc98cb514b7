"""The CPU fast path (bf16 autocast + channels-last) stays wired into Ultralytics."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

import ultralytics.engine.trainer as trainer_module  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402

from training.fastcpu import (  # noqa: E402
    ChannelsLastDetectionTrainer,
    CPUDetectionTrainer,
    FastCPUDetectionTrainer,
    cpu_bf16_autocast,
    cpu_has_bf16,
    cpu_trainer,
    fast_path_mode,
    fast_path_wanted,
    usable_cores,
)


def test_hook_points_exist_in_this_ultralytics():
    # the fast path replaces these; an Ultralytics update that moves them must fail here
    assert callable(trainer_module.autocast)
    for name in ("set_model_attributes", "preprocess_batch", "_do_train"):
        assert callable(getattr(DetectionTrainer, name, None)), name


def test_autocast_patch_is_scoped():
    original = trainer_module.autocast
    with cpu_bf16_autocast():
        ctx = trainer_module.autocast(False, device="cpu")
        with ctx:
            y = torch.nn.functional.conv2d(torch.ones(1, 3, 8, 8), torch.ones(4, 3, 3, 3))
        assert y.dtype == torch.bfloat16
    assert trainer_module.autocast is original


def test_setting_values():
    assert fast_path_wanted("off") is False and fast_path_wanted(False) is False
    assert fast_path_wanted("on") is True and fast_path_wanted(True) is True
    assert fast_path_wanted("on", device="cuda:0") is False


def test_modes_and_their_trainers():
    assert fast_path_mode("off") == "off" and fast_path_mode("on") == "bf16"
    assert fast_path_mode("channels_last") == fast_path_mode("channels-last") == "channels_last"
    # auto never leaves a CPU on the stock path: bf16 where the units are, else the layout alone
    assert fast_path_mode("auto") == ("bf16" if cpu_has_bf16() else "channels_last")
    assert fast_path_mode("auto", device="0") == fast_path_mode("channels_last", device="cuda:0") == "off"
    assert cpu_trainer("bf16") is FastCPUDetectionTrainer
    assert cpu_trainer("channels_last") is ChannelsLastDetectionTrainer
    assert cpu_trainer("off") is CPUDetectionTrainer and cpu_trainer("bf16", device="0") is DetectionTrainer
    with pytest.raises(ValueError, match="fast_cpu must be"):
        fast_path_mode("fast")


def test_words_name_the_path_a_run_took():
    from training.config import fast_path_words

    assert fast_path_words("bf16") == fast_path_words(True) == "bf16 autocast + channels-last"
    assert fast_path_words("off", "cpu").startswith("off") and fast_path_words(False).startswith("off")
    # a CUDA run records mode "off" but never ran stock float32: AMP trained it
    assert "CUDA device 0" in fast_path_words("off", "0") and "float32" not in fast_path_words("off", "0")


SEEN: dict = {}


def _record(mod, inp, out):  # module level: checkpoints pickle the model with its hooks
    if mod.training:
        SEEN.setdefault("dtype", out.dtype)
        SEEN.setdefault("channels_last", inp[0].is_contiguous(memory_format=torch.channels_last))
        SEEN.setdefault("threads", torch.get_num_threads())


def _probe(base: type) -> type:
    class Probe(base):
        def set_model_attributes(self):
            super().set_model_attributes()
            first_conv = next(m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d))
            first_conv.register_forward_hook(_record)

        def preprocess_batch(self, batch):
            batch = super().preprocess_batch(batch)
            SEEN.setdefault("batch_channels_last", batch["img"].is_contiguous(memory_format=torch.channels_last))
            return batch

    return Probe


@pytest.mark.parametrize(
    ("trainer", "dtype"),
    [(FastCPUDetectionTrainer, torch.bfloat16), (ChannelsLastDetectionTrainer, torch.float32)],
    ids=["bf16", "channels_last"],
)
def test_cpu_trainers_train_channels_last(mini_dataset, tmp_path, trainer, dtype):
    from ultralytics import YOLO

    SEEN.clear()
    model = YOLO("yolo11n.yaml")
    model.train(
        data=str(mini_dataset),
        trainer=_probe(trainer),
        epochs=1,
        imgsz=64,
        batch=8,
        workers=0,
        amp=False,
        val=False,
        plots=False,
        project=str(tmp_path),
        name="run",
        fraction=0.25,
        verbose=False,
    )
    assert SEEN["dtype"] == dtype
    # every core computes: Ultralytics' select_device had set cpu_count - 1 (one thread on 2 cores)
    assert SEEN["threads"] == usable_cores()
    assert SEEN["channels_last"] and SEEN["batch_channels_last"]
    assert all(torch.isfinite(v).all() for v in model.trainer.tloss.values())
    assert (tmp_path / "run" / "weights" / "last.pt").exists()
