"""detector.Detector on a real exported model and real mirror images: loading, batching,
thresholds, input types, tiling of large frames, the full inspect pipeline, backend parity."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from detector_fixtures import XT2_FRAMES, get_detector, model_dir, real_images

from detector import Detector, batching
from detector.decode import decode_image
from detector.detections import Detections
from detector.model import ModelLoadError, resolve_model_path
from detector.nms import box_iou


@pytest.fixture(scope="module")
def det() -> Detector:
    return get_detector("onnxruntime")


@pytest.fixture(scope="module")
def images():
    paths = real_images(6)
    if len(paths) < 3:
        pytest.skip("dataset mirror not found")
    return paths


def test_model_metadata(det):
    info = det.info
    assert len(info.names) == len(set(info.names)) > 0
    assert info.imgsz[0] % info.stride == 0 and info.dynamic_batch
    assert resolve_model_path(model_dir()) == resolve_model_path(model_dir() / "model.onnx") == info.path
    assert len(info.sha256) == 64


def test_model_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        Detector(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="no model.onnx"):
        Detector(tmp_path)
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not an .onnx"):
        Detector(tmp_path / "weights.pt")
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match="cannot load"):
        Detector(tmp_path)
    with pytest.raises(ValueError, match="backend"):
        Detector(model_dir(), backend="tensorrt")
    with pytest.raises(ValueError, match="class_conf"):
        Detector(model_dir(), class_conf={"no_such_class": 0.5})


def test_predict_boxes_in_image_and_above_threshold(det, images):
    dets = det.predict(images, conf=0.01)
    assert len(dets) == len(images)
    for path, d in zip(images, dets, strict=True):
        h, w = decode_image(path).pixels.shape[:2]
        assert isinstance(d, Detections)
        if len(d):
            assert (d.xyxy[:, [0, 2]] >= 0).all() and (d.xyxy[:, [0, 2]] <= w).all()
            assert (d.xyxy[:, [1, 3]] >= 0).all() and (d.xyxy[:, [1, 3]] <= h).all()
            assert (d.confidence > 0.01).all() and (d.class_id < len(det.names)).all()
    assert sum(len(d) for d in dets) > 0, "the model under test finds nothing even at conf 0.01"


def test_batching_does_not_change_results(det, images):
    batched = det.predict(images, conf=0.01, batch_size=4)
    single = [det.predict(p, conf=0.01, batch_size=1)[0] for p in images]
    streamed = list(det.iter_predict(iter(images), conf=0.01, chunk_size=2))
    assert len(streamed) == len(images)
    for a, b, c in zip(batched, single, streamed, strict=True):
        assert len(c) == len(a) and np.allclose(c.xyxy, a.xyxy, atol=0.05)
        assert len(a) == len(b)
        assert np.allclose(a.xyxy, b.xyxy, atol=0.05) and np.allclose(a.confidence, b.confidence, atol=1e-4)


def test_thresholds_max_det_and_class_conf(det, images):
    low = det.predict(images[:3], conf=0.001, max_det=300)
    capped = det.predict(images[:3], conf=0.001, max_det=5)
    for a, b in zip(low, capped, strict=True):
        assert len(b) == min(5, len(a))
        assert np.allclose(b.confidence, a.confidence[:5])
    mid = det.predict(images[:3], conf=0.05)
    for a, b in zip(low, mid, strict=True):
        assert len(b) <= len(a) and (b.confidence > 0.05).all()
    # per-class thresholds: silence the most frequent class
    counts = np.bincount(np.concatenate([d.class_id for d in mid]), minlength=len(det.names))
    top = det.names[int(counts.argmax())]
    strict = Detector(model_dir(), conf=0.05, class_conf={top: 0.999}, warmup=0)
    assert strict.thresholds()[det.names.index(top)] == pytest.approx(0.999)
    for d in strict.predict(images[:3]):
        assert top not in {det.names[c] for c in d.class_id}


def test_input_types_agree(det, images):
    path = images[0]
    decoded = decode_image(path)
    ref = det.predict(path, conf=0.01)[0]
    for other in (path.read_bytes(), decoded, decoded.pixels, str(path)):
        d = det.predict(other, conf=0.01)[0]
        assert len(d) == len(ref) and np.allclose(d.xyxy, ref.xyxy, atol=1e-3)
    gray16 = decoded.pixels[:, :, 0].astype(np.uint16) * 200 + 1000
    assert isinstance(det.predict(gray16, conf=0.01)[0], Detections)
    with pytest.raises(ValueError):
        det.predict(np.zeros((10, 10, 7), np.uint8))


def _small_confident_detections(det, candidates, tile_size):
    """Tile-sized canvases holding a real image at native scale, each with a small defect the model
    finds in it, most confident first."""
    found = []
    for path in candidates:
        img = decode_image(path).pixels
        h, w = img.shape[:2]
        if h > tile_size or w > tile_size:
            continue
        canvas = np.full((tile_size, tile_size, 3), 114, np.uint8)
        canvas[:h, :w] = img
        d = det.predict(canvas, conf=0.05, tiling="off")[0]
        sides = np.maximum(d.xyxy[:, 2] - d.xyxy[:, 0], d.xyxy[:, 3] - d.xyxy[:, 1])
        for i in np.flatnonzero(sides <= 48):
            found.append((canvas, path, d[int(i)]))
    return sorted(found, key=lambda f: -float(f[2].confidence[0]))


def test_tiling_finds_small_defect_whole_frame_misses(det):
    """A 4000x3000 frame with one small real defect: whole-frame inference shrinks the
    frame 6x and loses it; tiled inference sees it at native resolution and finds it."""
    tile = det.input_size
    images = real_images(12)
    if not images:
        pytest.skip("dataset mirror not found")
    found = _small_confident_detections(det, images, tile)
    assert found, "the model under test finds no small defect in the real images"
    tiles = batching.image_tiles(det.backend, det.config, (3000, 4000), "auto")
    t = tiles[len(tiles) // 2]
    assert t.width >= tile and t.height >= tile
    shown = []
    for canvas, path, ref in found[:5]:  # the most confident small defects; one must show the effect
        thr = float(min(0.25, ref.confidence[0] * 0.6))
        frame = np.full((3000, 4000, 3), 114, np.uint8)
        # the canvas in the corner of one tile of the detector's plan (the tiles run at native
        # resolution, so that tile sees the same pixels, with more grey around them)
        frame[t.y0 : t.y0 + tile, t.x0 : t.x0 + tile] = canvas
        target = ref.shifted(t.x0, t.y0)
        cls = int(ref.class_id[0])
        whole = det.predict(frame, conf=thr, tiling="off")[0]
        tiled = det.predict(frame, conf=thr, tiling="auto")[0]

        def hit(d, cls=cls, target=target):
            same = d[d.class_id == cls]
            return len(same) > 0 and box_iou(same.xyxy, target.xyxy).max() >= 0.5

        # the tiled result keeps frame coordinates
        assert (tiled.xyxy[:, 2] <= 4000).all() and (tiled.xyxy[:, 3] <= 3000).all()
        shown.append((path.name, hit(whole), hit(tiled)))
        if hit(tiled) and not hit(whole):
            return
    raise AssertionError(f"no small defect found only with tiling (image, whole-frame hit, tiled hit): {shown}")


def test_inspect_pipeline_with_bad_files_and_geo(det, tmp_path):
    if len(XT2_FRAMES) < 2:
        pytest.skip("no DJI frames in the mirror")
    good = [tmp_path / f"f{i}.jpg" for i in range(2)]
    for src, dst in zip(XT2_FRAMES[:2], good, strict=True):
        shutil.copy(src, dst)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(XT2_FRAMES[0].read_bytes()[:3000])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    results = det.inspect([good[0], bad, ("upload.jpg", good[1].read_bytes()), empty], conf=0.001)
    assert [r.ok for r in results] == [True, False, True, False]
    assert results[1].error.code == "truncated_image" and results[1].source.endswith("broken.jpg")
    assert results[3].error.code == "empty_file"
    r0, r2 = results[0], results[2]
    assert r2.source == "upload.jpg" and r0.model == det.model_key
    assert (r0.width, r0.height) == (640, 512) and r0.bytes == good[0].stat().st_size
    assert r0.geo.quality == "estimate" and r0.geo.gsd_m == pytest.approx(39 * 10.88 / 19 / 640, rel=1e-3)
    by_model = [f for f in r0.findings if f.found_by == "model"]
    merged = sum(int(x.split("merged ")[1].split()[0]) - 1 for f in by_model for x in f.reasons if "merged " in x)
    assert len(by_model) + merged == len(det.predict([good[0]], conf=0.001)[0]) > 0
    for d in r0.findings:
        assert d.location is not None and abs(d.location.latitude - r0.camera.latitude) < 2e-4
        assert d.priority in ("P1", "P2", "P3", "P4") and d.action
    assert r0.summary.defects == len(r0.findings)
    doc = r0.model_dump(mode="json")
    assert doc["geo"]["quality"] == "estimate" and doc["camera"]["relative_altitude"] == 39.0


def test_openvino_backend_matches_onnxruntime(det, images):
    ov32 = get_detector("openvino", "f32")
    assert ov32.backend.name == "openvino"
    ref = det.predict(images, conf=0.05)
    for a, b in zip(ref, ov32.predict(images, conf=0.05), strict=True):
        _assert_same(a, b, iou=0.98, dconf=0.01)
    # bfloat16 keeps 8 bits of mantissa: scores move by ~0.01 and near-tied boxes can swap in
    # NMS, so compare statistically: confident ORT detections vs bf16 ones found at a lower threshold
    bf16 = get_detector("openvino", "bf16")
    ious, dconf = [], []
    for a, b in zip(det.predict(images, conf=0.1), bf16.predict(images, conf=0.05), strict=True):
        for i in range(len(a)):
            same = b[b.class_id == a.class_id[i]]
            iou = box_iou(a.xyxy[i : i + 1], same.xyxy)[0] if len(same) else np.zeros(1)
            j = int(iou.argmax())
            ious.append(float(iou[j]))
            dconf.append(abs(float(same.confidence[j]) - float(a.confidence[i])) if len(same) else 1.0)
    ious_a, dconf_a = np.array(ious), np.array(dconf)
    assert len(ious_a) >= 5, "too few confident detections to compare backends"
    assert np.median(ious_a) >= 0.95 and (ious_a >= 0.9).mean() >= 0.75, ious_a
    assert np.median(dconf_a[ious_a >= 0.9]) <= 0.02 and dconf_a[ious_a >= 0.9].max() <= 0.05


def _assert_same(a: Detections, b: Detections, iou: float, dconf: float) -> None:
    assert abs(len(a) - len(b)) <= max(1, len(a) // 20)
    for i in range(len(a)):
        same = b[b.class_id == a.class_id[i]]
        assert len(same), f"detection {a.xyxy[i]} class {a.class_id[i]} missing"
        ious = box_iou(a.xyxy[i : i + 1], same.xyxy)[0]
        j = int(ious.argmax())
        assert ious[j] >= iou and abs(same.confidence[j] - a.confidence[i]) <= dconf, (a.xyxy[i], same.xyxy[j])


def test_settings_fingerprint_names_the_settings_that_change_results():
    from detector.priority import load_priority_config

    base = Detector(model_dir(), conf=0.25, warmup=0)
    fp = base.settings_fingerprint()
    assert len(fp) == 8 and all(c in "0123456789abcdef" for c in fp)
    assert base.model_key.endswith("+" + fp) and base.model_key.startswith(base.info.version + "@")
    # speed-only settings and the pixel ceiling (whether an image is accepted, not its result) keep it
    assert Detector(model_dir(), conf=0.25, warmup=0, threads=1, batch_size=2).settings_fingerprint() == fp
    assert Detector(model_dir(), conf=0.25, warmup=0, max_pixels=100_000_000).settings_fingerprint() == fp
    # thresholds, NMS, tiling and the priority rules change it
    for changed in ({"conf": 0.3}, {"class_conf": {base.names[0]: 0.1}}, {"iou": 0.5}, {"tiling": "off"}):
        assert Detector(model_dir(), **{"conf": 0.25, "warmup": 0, **changed}).settings_fingerprint() != fp, changed
    rules = load_priority_config()
    rules = rules.model_copy(update={"max_raise": rules.max_raise + 1})
    assert Detector(model_dir(), conf=0.25, warmup=0, priority_config=rules).settings_fingerprint() != fp
