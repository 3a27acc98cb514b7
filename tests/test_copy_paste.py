"""Box copy-paste (training/copy_paste.py): what it pastes, where, for which classes, and that
Ultralytics' own training transforms use it while a run asks for it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from ultralytics.data import augment  # noqa: E402
from ultralytics.utils.instance import Instances  # noqa: E402

from training.copy_paste import BoxCopyPaste, box_copy_paste, class_ids  # noqa: E402


def _labels(img: np.ndarray, boxes: list[list[float]], cls: list[int]) -> dict:
    return {
        "img": img,
        "cls": np.asarray(cls, dtype=np.float32).reshape(-1, 1),
        "instances": Instances(
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            segments=np.zeros((0, 1000, 2), dtype=np.float32),
            bbox_format="xyxy",
            normalized=False,
        ),
    }


def _scene() -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)
    # class 4 at the left edge (mirror: free), class 1 at the left (mirror: free), class 4 in the
    # middle (its mirror lands on itself: covered, not eligible)
    boxes = [[10, 10, 30, 40], [40, 60, 70, 90], [90, 20, 110, 50]]
    return img, _labels(img.copy(), boxes, [4, 1, 4])


def test_pastes_only_chosen_classes_at_the_mirrored_place():
    img, labels = _scene()
    out = BoxCopyPaste(p=1.0, classes=[4])(labels)
    assert out["cls"].reshape(-1).tolist() == [4, 1, 4, 4]
    new = out["instances"].bboxes[-1]
    np.testing.assert_allclose(new, [170, 10, 190, 40])
    # the pasted rectangle is the object mirrored; everything outside it is untouched
    np.testing.assert_array_equal(out["img"][10:40, 170:190], img[10:40, 10:30][:, ::-1])
    mask = np.ones(img.shape[:2], bool)
    mask[10:40, 170:190] = False
    np.testing.assert_array_equal(out["img"][mask], img[mask])


def test_every_class_when_none_chosen_and_overlap_rule():
    img, labels = _scene()
    out = BoxCopyPaste(p=1.0, classes=None)(labels)
    # both free boxes are pasted; the centred one's mirror covers itself (ioa 1) and is not
    assert sorted(out["cls"].reshape(-1).tolist()) == [1, 1, 4, 4, 4]
    assert len(out["instances"]) == 5


def test_fraction_and_off():
    img, labels = _scene()
    assert len(BoxCopyPaste(p=0.5, classes=None)(labels)["instances"]) == 4  # round(0.5 * 2) of the eligible
    img, labels = _scene()
    out = BoxCopyPaste(p=0.0, classes=None)(labels)
    assert len(out["instances"]) == 3 and np.array_equal(out["img"], img)
    empty = _labels(img.copy(), np.zeros((0, 4)).tolist(), [])
    assert len(BoxCopyPaste(p=1.0)(empty)["instances"]) == 0


def test_class_names_and_modes():
    assert class_ids({0: "a", 1: "b", 2: "c"}, ["c", "a"]) == ([2, 0], [])
    assert class_ids(["a", "b"], None) == (None, [])
    assert class_ids(["a", "b"], ["a", "zzz"]) == ([0], ["zzz"])  # the unknown name is reported, not pasted
    with pytest.raises(ValueError, match="'flip' only"):
        BoxCopyPaste(p=0.5, mode="mixup")


def test_ultralytics_training_transforms_use_it(mini_dataset):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset

    from training.evaluate import read_data_yaml

    root, names, data = read_data_yaml(mini_dataset)
    chosen = [i for i, n in names.items() if n.startswith("blade_")]
    hyp = get_cfg(overrides={"copy_paste": 1.0, "mosaic": 0.0, "scale": 0.0, "translate": 0.0, "fliplr": 0.0})
    hyp.flipud = 0.0

    def dataset() -> YOLODataset:
        return YOLODataset(
            img_path=str(root / "images" / "train"), imgsz=320, augment=True, hyp=hyp, data={**data, "names": names}
        )

    original = augment.CopyPaste
    with box_copy_paste(chosen):
        ds = dataset()
    assert augment.CopyPaste is original  # patched only while building
    assert any(isinstance(t, BoxCopyPaste) for t in ds.transforms.transforms[0].transforms)
    plain = dataset()  # Ultralytics' own: masks only, so nothing pasted on box labels
    gained = {"chosen": 0, "other": 0}
    for i in range(len(ds)):
        before = plain[i]["cls"].reshape(-1).tolist()
        after = ds[i]["cls"].reshape(-1).tolist()
        for c in set(after):
            key = "chosen" if int(c) in chosen else "other"
            gained[key] += after.count(c) - before.count(c)
    assert gained["chosen"] > 0 and gained["other"] == 0


def test_training_turns_it_on_from_the_config(mini_dataset):
    import contextlib

    from training.config import load_train_config
    from training.train import copy_paste_augmentation

    said: list[str] = []
    shipped = load_train_config()
    assert shipped.ultralytics["copy_paste"] > 0 and "pv_bird_drop" in shipped.copy_paste_classes
    assert "blade_dirt" not in shipped.copy_paste_classes
    off = load_train_config(sets=["copy_paste=0"])
    assert isinstance(copy_paste_augmentation(off, mini_dataset, said.append), contextlib.nullcontext) and not said
    on = load_train_config(sets=["copy_paste=0.5", "copy_paste_classes=[blade_pinhole]"])
    original = augment.CopyPaste
    with copy_paste_augmentation(on, mini_dataset, said.append):
        built = augment.CopyPaste(None, p=0.5, mode="flip")
    assert augment.CopyPaste is original
    assert isinstance(built, BoxCopyPaste) and built.classes.tolist() == [3]
    assert said == ["box copy-paste: p 0.5 for blade_pinhole"]
    # names the dataset lacks (another training set, a typo) are named and skipped, not fatal
    said.clear()
    part = load_train_config(sets=["copy_paste=0.5", "copy_paste_classes=[blade_crack, pv_soiling]"])
    with copy_paste_augmentation(part, mini_dataset, said.append):
        built = augment.CopyPaste(None, p=0.5, mode="flip")
    assert built.classes.tolist() == [5]
    assert said == [
        "box copy-paste: blade_crack not among this dataset's classes, skipped",
        "box copy-paste: p 0.5 for pv_soiling",
    ]
    said.clear()
    none = load_train_config(sets=["copy_paste=0.5", "copy_paste_classes=[blade_crack]"])
    assert isinstance(copy_paste_augmentation(none, mini_dataset, said.append), contextlib.nullcontext)
    assert said[-1] == "box copy-paste: off (none of copy_paste_classes is in this dataset)"
    every = load_train_config(sets=["copy_paste=0.5", "copy_paste_classes=null"])
    with copy_paste_augmentation(every, mini_dataset, said.append):
        assert augment.CopyPaste(None, p=0.5, mode="flip").classes is None
