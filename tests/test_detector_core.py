"""detector/: the Detections type, YOLO output decoding, NMS, letterbox geometry, tiling (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from detector_fixtures import model_dir

from detector.detections import Detections
from detector.letterbox import batch_input_shape, letterbox, letterbox_info, letterbox_into, rect_shape, to_tensor
from detector.nms import batched_nms, box_iou, iou, merge_overlapping, nms
from detector.tiling import mark_cut, merge_tiles, plan_tiles, should_tile


# -- Detections ---------------------------------------------------------------------------------
def test_detections_validates_columns():
    d = Detections([[0, 0, 10, 10], [5, 5, 8, 9]], [0.9, 0.5], [1, 2])
    assert d.xyxy.dtype == np.float32 and d.confidence.dtype == np.float32 and d.class_id.dtype == np.int64
    assert len(d) == 2 and np.allclose(d.area, [100, 12])
    with pytest.raises(ValueError, match="shape"):
        Detections([[0, 0, 10]], [0.9], [1])
    with pytest.raises(ValueError, match="length"):
        Detections([[0, 0, 10, 10]], [0.9, 0.8], [1])
    with pytest.raises(ValueError, match="x1 <= x2"):
        Detections([[10, 0, 0, 10]], [0.9], [1])
    with pytest.raises(ValueError, match="NaN"):
        Detections([[0, 0, np.nan, 10]], [0.9], [1])
    with pytest.raises(ValueError, match="integers"):
        Detections([[0, 0, 1, 1]], [0.9], [1.5])
    with pytest.raises(ValueError, match="data"):
        Detections([[0, 0, 1, 1]], [0.9], [1], {"tile": np.array([1, 2])})
    e = Detections.empty()
    assert len(e) == 0 and e.xyxy.shape == (0, 4)


def test_detections_indexing_merge_shift():
    d = Detections([[0, 0, 10, 10], [5, 5, 8, 9], [1, 1, 2, 2]], [0.2, 0.9, 0.5], [0, 1, 0], {"k": np.array([7, 8, 9])})
    s = d.sorted()
    assert s.confidence.tolist() == pytest.approx([0.9, 0.5, 0.2]) and s.data["k"].tolist() == [8, 9, 7]
    assert d[d.class_id == 0].data["k"].tolist() == [7, 9]
    assert len(d[1]) == 1 and d[1].class_id.tolist() == [1]
    m = Detections.merge([d, d.shifted(100, 50)])
    assert len(m) == 6 and m.xyxy[3].tolist() == [100, 50, 110, 60] and m.data["k"].tolist() == [7, 8, 9] * 2
    c = Detections([[-5, -5, 700, 20]], [0.5], [0]).clipped(640, 480)
    assert c.xyxy[0].tolist() == [0, 0, 640, 20]


# -- decoding raw YOLO output -------------------------------------------------------------------
def _raw(boxes_cxcywh, scores, nc):
    """Build a (4 + nc, A) detect-head output: one anchor per box, class score per row."""
    a = len(boxes_cxcywh)
    out = np.zeros((4 + nc, a), np.float32)
    out[:4] = np.asarray(boxes_cxcywh, np.float32).T
    for i, (c, s) in enumerate(scores):
        out[4 + c, i] = s
    return out


def test_from_yolo_output_thresholds_nms_and_classes():
    raw = _raw(
        [[50, 50, 20, 20], [51, 50, 20, 20], [50, 50, 20, 20], [200, 200, 10, 10], [300, 300, 4, 4]],
        [(0, 0.9), (0, 0.8), (1, 0.7), (2, 0.3), (2, 0.1)],
        nc=3,
    )
    d = Detections.from_yolo_output(raw, conf=0.25, iou=0.7)
    # anchor 1 is suppressed by anchor 0 (same class, IoU 0.9); anchor 2 survives (other class);
    # anchor 4 is below the threshold
    assert d.class_id.tolist() == [0, 1, 2]
    assert d.confidence.tolist() == pytest.approx([0.9, 0.7, 0.3])
    assert d.xyxy[0].tolist() == [40, 40, 60, 60]
    # per-class thresholds: class 2 needs > 0.35, class 0 > 0.05
    d2 = Detections.from_yolo_output(raw, conf=np.array([0.05, 0.5, 0.35]), iou=0.7)
    assert d2.class_id.tolist() == [0, 1]
    # max_det keeps the best
    assert Detections.from_yolo_output(raw, conf=0.01, iou=0.7, max_det=2).confidence.tolist() == pytest.approx(
        [0.9, 0.7]
    )
    # nothing above threshold
    assert len(Detections.from_yolo_output(raw, conf=0.95)) == 0


def test_from_yolo_output_end2end():
    out = np.array([[10, 10, 20, 30, 0.9, 3], [0, 0, 5, 5, 0.1, 1], [1, 1, 4, 4, 0.6, 1]], np.float32)
    d = Detections.from_yolo_output(out, conf=0.25, end2end=True)
    assert d.class_id.tolist() == [3, 1] and d.xyxy[0].tolist() == [10, 10, 20, 30]


def test_from_yolo_output_rejects_bad_shapes():
    with pytest.raises(ValueError):
        Detections.from_yolo_output(np.zeros((3, 100), np.float32))


# -- NMS ------------------------------------------------------------------------------------------
def _reference_nms(boxes, scores, thr):
    iou = box_iou(boxes, boxes)
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if iou[i, j] <= thr]
    return keep


def test_nms_matches_reference_on_random_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(5, 60, (300, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.uniform(0, 1, 300)
    for thr in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, thr).tolist() == _reference_nms(boxes, scores, thr)
    # max_det: the same as full NMS, truncated
    assert nms(boxes, scores, 0.5, max_det=10).tolist() == _reference_nms(boxes, scores, 0.5)[:10]


def test_box_iou_values():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]]))
    assert iou[0].tolist() == pytest.approx([25 / 175, 1.0, 0.0])


def test_the_scalar_iou_is_box_iou_of_one_pair():
    # the matcher of re-score changes and review outcomes uses the scalar form: the same numbers,
    # touching and zero-area boxes included
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 50, (120, 2))
    boxes = np.c_[xy, xy + rng.uniform(0, 30, (120, 2))]
    boxes = np.r_[boxes, [[0, 0, 10, 10], [10, 0, 20, 10], [3, 3, 3, 3]]]
    ref = box_iou(boxes, boxes)
    got = np.array([[iou(a, b) for b in boxes] for a in boxes])
    assert np.allclose(got, ref, atol=1e-12) and (ref > 0).sum() > len(boxes)  # overlaps were compared
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0 and iou([3, 3, 3, 3], [3, 3, 3, 3]) == 0.0


def test_batched_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    assert sorted(batched_nms(boxes, scores, np.array([0, 1, 0]), 0.5).tolist()) == [0, 1]
    assert batched_nms(boxes, scores, np.array([0, 1, 0]), 0.5, agnostic=True).tolist() == [0]


def test_merge_overlapping_joins_fragments_only_when_allowed():
    # two halves of one object cut by a tile border at x=100, plus a separate small box
    d = Detections([[60, 10, 102, 40], [98, 12, 140, 42], [300, 300, 310, 310]], [0.8, 0.6, 0.5], [0, 0, 0])
    m = merge_overlapping(d, threshold=0.0)
    assert len(m) == 2 and m.xyxy[0].tolist() == [60, 10, 140, 42] and m.confidence[0] == pytest.approx(0.8)
    # not mergeable (two complete detections): kept apart
    kept = merge_overlapping(d, threshold=0.0, mergeable=np.zeros(3, bool))
    assert len(kept) == 3


# -- letterbox -------------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(512, 640), (3000, 4000), (100, 37), (640, 640), (416, 416)])
def test_letterbox_roundtrip(hw):
    h, w = hw
    img = np.zeros((h, w, 3), np.uint8)
    img[h // 4 : h // 2, w // 3 : w // 2] = 255  # a white rectangle
    for shape in [(640, 640), rect_shape(hw, (640, 640), 32)]:
        out, info = letterbox(img, shape)
        assert out.shape == (*shape, 3)
        assert out[0, 0].tolist() in ([114] * 3, [0] * 3)
        ys, xs = np.nonzero(out[:, :, 0] > 127)
        box_in = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        back = info.to_original(box_in)[0]
        expect = [w // 3, h // 4, w // 2, h // 2]
        tol = 1.5 / info.gain + 1
        assert np.allclose(back, expect, atol=tol), (back, expect)


def test_rect_shape_and_batch_shape():
    assert rect_shape((512, 640), (640, 640), 32) == (512, 640)
    assert rect_shape((3000, 4000), (640, 640), 32) == (480, 640)
    assert rect_shape((416, 416), (640, 640), 32) == (640, 640)
    assert batch_input_shape([(512, 640), (3000, 4000)], (640, 640), 32, True) == (512, 640)
    assert batch_input_shape([(512, 640)], (640, 640), 32, False) == (640, 640)
    info = letterbox_info((512, 640), (640, 640))
    assert (info.left, info.top, info.gain) == (0, 64, 1.0)


def test_letterbox_into_equals_letterbox_then_tensor():
    rng = np.random.default_rng(3)
    for hw, shape in [((512, 640), (512, 640)), ((300, 500), (640, 640)), ((640, 640), (640, 640))]:
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        slot = np.empty((3, *shape), np.float32)
        info = letterbox_into(img, slot)
        ref, ref_info = letterbox(img, shape)
        assert info == ref_info and np.array_equal(slot, to_tensor(ref[None])[0])


@pytest.mark.parametrize("hw", [(512, 640), (640, 640), (300, 500)])
def test_letterbox_border_keeps_grey_around_the_scaled_image(hw):
    h, w = hw
    img = np.full((h, w, 3), 200, np.uint8)
    inner = rect_shape(hw, (416, 416), 32)
    shape = (inner[0] + 64, inner[1] + 64)
    out, info = letterbox(img, shape, border=32)
    plain = letterbox_info(hw, inner)
    assert info.gain == plain.gain and info.new_wh == plain.new_wh  # same scale as without a border
    assert (info.left, info.top) == (plain.left + 32, plain.top + 32)
    assert (out[:32] == 114).all() and (out[-32:] == 114).all()
    assert (out[:, :32] == 114).all() and (out[:, -32:] == 114).all()
    assert (out[info.top : info.top + info.new_wh[1], info.left : info.left + info.new_wh[0]] == 200).all()
    back = info.to_original(np.array([[info.left, info.top, info.left + info.new_wh[0], info.top + info.new_wh[1]]]))
    assert np.allclose(back[0], [0, 0, w, h], atol=1)
    slot = np.empty((3, *shape), np.float32)
    assert letterbox_into(img, slot, border=32) == info and np.array_equal(slot, to_tensor(out[None])[0])
    with pytest.raises(ValueError, match="does not fit"):
        letterbox_info(hw, (64, 64), border=32)


def test_whole_frame_input_grows_by_the_border():
    from detector import Detector
    from detector.batching import image_jobs

    det = Detector(model_dir(), backend="onnxruntime", border=32)
    frame = np.zeros((640, 960, 3), np.uint8)
    jobs, _ = image_jobs(det.backend, det.config, 0, frame, tiling="off", prepare=True)
    inner = rect_shape((640, 960), det.info.imgsz, det.info.stride)
    assert jobs[0].shape == (inner[0] + 64, inner[1] + 64) and jobs[0].info.left >= 32
    big, n = image_jobs(det.backend, det.config, 0, np.zeros((3000, 4000, 3), np.uint8), tiling="on")
    assert n > 0 and all(j.border == 0 for j in big[1:])  # tiles run at native resolution, no border
    with pytest.raises(ValueError, match="multiple of the model's stride"):
        Detector(model_dir(), backend="onnxruntime", border=16)


def test_to_tensor_layout():
    b = np.zeros((2, 4, 5, 3), np.uint8)
    b[1, 2, 3] = [255, 0, 51]
    x = to_tensor(b)
    assert x.shape == (2, 3, 4, 5) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[1, :, 2, 3].tolist() == pytest.approx([1.0, 0.0, 0.2])


# -- tiling ----------------------------------------------------------------------------------------
def test_plan_tiles_covers_frame_with_overlap():
    tiles = plan_tiles(3000, 4000, 640, overlap=0.2)
    cover = np.zeros((3000, 4000), bool)
    for t in tiles:
        assert t.width == 640 and t.height == 640
        cover[t.y0 : t.y1, t.x0 : t.x1] = True
    assert cover.all()
    xs = sorted({t.x0 for t in tiles})
    assert xs[0] == 0 and xs[-1] == 4000 - 640
    assert min(np.diff(xs)) <= 640 - 128  # neighbours overlap by >= 20% of a tile
    assert plan_tiles(300, 500, 640) == [plan_tiles(300, 500, 640)[0]] and plan_tiles(300, 500, 640)[0].width == 500


def test_should_tile_modes():
    assert should_tile(3000, 4000, 640, "auto") and not should_tile(512, 640, 640, "auto")
    assert not should_tile(1200, 1200, 640, "auto")  # < 2x: whole-frame inference is fine
    assert should_tile(1200, 1200, 640, "on") and not should_tile(3000, 4000, 640, "off")
    with pytest.raises(ValueError):
        should_tile(10, 10, 640, "sometimes")


def test_merge_tiles_reassembles_cut_object_and_dedups():
    from detector.tiling import Tile

    left, right = Tile(0, 0, 640, 640), Tile(512, 0, 1152, 640)
    # object spanning x 600..700: the left tile sees a fragment (cut at its right edge 640),
    # the right tile sees it whole; a small defect at x 550 is seen whole by both tiles
    a = Detections([[600, 100, 640, 150], [550, 300, 560, 310]], [0.6, 0.7], [0, 1])
    b = Detections([[600, 101, 700, 150], [550, 300, 560, 310]], [0.8, 0.75], [0, 1])
    a = a.with_data(mergeable=mark_cut(a, left, 640, 1152))
    b = b.with_data(mergeable=mark_cut(b, right, 640, 1152))
    assert a.data["mergeable"].tolist() == [True, False] and b.data["mergeable"].tolist() == [False, False]
    m = merge_tiles([a, b])
    assert len(m) == 2
    obj = m[m.class_id == 0]
    assert obj.xyxy[0].tolist() == pytest.approx([600, 100, 700, 150]) and obj.confidence[0] == pytest.approx(0.8)


def test_auto_backend_takes_int8_only_where_the_cpu_has_int8_dot_products():
    from detector_fixtures import model_dir

    from detector.model import INT8_FILE, choose_backend, cpu_has_bf16, cpu_has_int8_dot, int8_verdict

    model = model_dir() / "model.onnx"
    choice = choose_backend(model)
    if cpu_has_bf16():
        assert choice.backend in ("openvino", "onnxruntime")
        return
    allowed, _ = int8_verdict(model, 0.01)
    int8 = allowed and cpu_has_int8_dot()
    assert choice.backend == "onnxruntime"
    assert (choice.path.name == INT8_FILE) == int8 and choice.precision == ("int8" if int8 else "f32")
    if allowed and not int8:
        assert "VNNI" in choice.reason
