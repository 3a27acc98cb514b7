"""The transpose augmentation (training/transpose.py): the pixels and boxes it moves, and that
Ultralytics' training transforms (not validation's) end with it while a run asks for it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from ultralytics.utils.instance import Instances  # noqa: E402

from training.transpose import RandomTranspose, random_transpose  # noqa: E402


def _labels(img: np.ndarray, boxes: list[list[float]], fmt: str = "xyxy", normalized: bool = False) -> dict:
    return {
        "img": img,
        "cls": np.arange(len(boxes), dtype=np.float32).reshape(-1, 1),
        "instances": Instances(
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            segments=np.zeros((0, 1000, 2), dtype=np.float32),
            bbox_format=fmt,
            normalized=normalized,
        ),
    }


def test_the_box_follows_its_pixels():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)  # not square: a swapped axis would show
    given = [[10, 20, 50, 35], [150, 90, 190, 118]]
    out = RandomTranspose(p=1.0)(_labels(img.copy(), given))
    assert out["img"].shape == (200, 120, 3) and out["img"].flags.c_contiguous
    boxes = out["instances"].bboxes
    np.testing.assert_allclose(boxes, [[20, 10, 35, 50], [90, 150, 118, 190]])
    for (x1, y1, x2, y2), (ox1, oy1, ox2, oy2) in zip(boxes.astype(int), given, strict=True):
        np.testing.assert_array_equal(out["img"][y1:y2, x1:x2], img[oy1:oy2, ox1:ox2].transpose(1, 0, 2))
    assert out["cls"].reshape(-1).tolist() == [0, 1]


def test_normalised_centre_boxes_keep_their_format_and_twice_is_nothing():
    # the format Ultralytics' flips hand on: normalised xywh
    img = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    labels = _labels(img.copy(), [[0.25, 0.5, 0.1, 0.3]], fmt="xywh", normalized=True)
    once = RandomTranspose(p=1.0)(labels)
    assert once["instances"]._bboxes.format == "xywh" and once["instances"].normalized
    np.testing.assert_allclose(once["instances"].bboxes, [[0.5, 0.25, 0.3, 0.1]], atol=1e-6)
    twice = RandomTranspose(p=1.0)(once)
    np.testing.assert_array_equal(twice["img"], img)
    np.testing.assert_allclose(twice["instances"].bboxes, [[0.25, 0.5, 0.1, 0.3]], atol=1e-6)


def test_probability():
    img = np.zeros((8, 16, 3), np.uint8)
    assert RandomTranspose(p=0.0)(_labels(img, [[0, 0, 4, 4]]))["img"].shape == (8, 16, 3)
    t = RandomTranspose(p=0.5)
    shapes = [t(_labels(img, [[0, 0, 4, 4]]))["img"].shape for _ in range(400)]
    assert 150 < shapes.count((16, 8, 3)) < 250
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        RandomTranspose(p=1.5)


def test_ultralytics_training_transforms_end_with_it_validation_not(mini_dataset):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset
    from ultralytics.data import dataset as ul_dataset

    from training.evaluate import read_data_yaml

    root, names, data = read_data_yaml(mini_dataset)
    hyp = get_cfg(overrides={"mosaic": 0.0, "copy_paste": 0.0})

    def dataset(augment: bool) -> YOLODataset:
        return YOLODataset(
            img_path=str(root / "images" / "train"), imgsz=320, augment=augment, hyp=hyp, data={**data, "names": names}
        )

    original = ul_dataset.v8_transforms
    with random_transpose(1.0):
        train, val = dataset(True), dataset(False)
        train.close_mosaic(hyp)  # the last epochs rebuild the transforms: still transposed
    assert ul_dataset.v8_transforms is original  # patched only while the run builds
    assert isinstance(train.transforms.transforms[-2], RandomTranspose)  # before Ultralytics' Format
    assert not any(isinstance(t, RandomTranspose) for t in val.transforms.transforms)
    boxed = [i for i in range(len(train)) if len(train.labels[i]["cls"])]
    item = train[boxed[0]]
    assert tuple(item["img"].shape[1:]) == (320, 320) and len(item["bboxes"]) > 0
    assert ((item["bboxes"] >= 0) & (item["bboxes"] <= 1)).all()


def test_training_turns_it_on_from_the_config():
    import contextlib

    from ultralytics.data import dataset as ul_dataset

    from training.config import load_train_config
    from training.train import transpose_augmentation

    said: list[str] = []
    assert load_train_config().transpose == 0.0  # off until a run shows it helps
    assert isinstance(transpose_augmentation(load_train_config(), said.append), contextlib.nullcontext) and not said
    with transpose_augmentation(load_train_config(sets=["transpose=0.5"]), said.append):
        assert ul_dataset.v8_transforms.__name__ == "v8_transforms_with_transpose"
    assert said == ["transpose: p 0.5 (with flipud / fliplr: the 8 symmetries of the square)"]
    with pytest.raises(ValueError, match="transpose"):
        load_train_config(sets=["transpose=2"])


def test_the_model_card_says_the_recipe_a_model_was_trained_with():
    from training.card import _recipe_lines

    t = {
        "augmentation": {"rare_class_repeat": 0.1, "copy_paste_classes": ["blade_pinhole"], "transpose": 0.5},
        "ema": {"decay": 0.997, "tau": 100.0},
        "ultralytics": {"copy_paste": 0.5},
    }
    assert _recipe_lines(t) == [
        "- Recipe additions (configs/train.yaml): rare-class repeat t 0.1; box copy-paste p 0.5 for blade_pinhole; "
        "transpose p 0.5; EMA decay 0.997 / tau 100 steps."
    ]
    t["augmentation"] = {"rare_class_repeat": None, "copy_paste_classes": None, "transpose": 0.0}
    t["ultralytics"] = {"copy_paste": 0.0}
    assert "no rare-class repeat; no copy-paste; no transpose" in _recipe_lines(t)[0]
    assert _recipe_lines({"ultralytics": {}}) == []  # a model from before the record: nothing claimed
