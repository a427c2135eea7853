"""IoU, NMS, the grid decoder and mAP@0.5, checked against hand-computed values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deeptest_iot.tasks.boxes import (DECODERS, Detections, average_precision, decode_grid, encode_grid, iou,
                                    match, mean_average_precision, nms)
from deeptest_iot.errors import ConfigError, OutputError


def test_iou_hand_computed():
    a = np.array([[0, 0, 2, 2]])
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [2, 0, 4, 2], [5, 5, 6, 6], [0, 0, 1, 2]])
    assert iou(a, b)[0] == pytest.approx([1 / 7, 1.0, 0.0, 0.0, 0.5])
    assert iou(a, np.zeros((0, 4))).shape == (1, 0)
    assert iou(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))[0, 0] == 0.0  # empty union


box = st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(0.5, 50), st.floats(0.5, 50)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=60, deadline=None)
@given(a=st.lists(box, min_size=1, max_size=5), b=st.lists(box, min_size=1, max_size=5))
def test_iou_symmetric_bounded_and_one_on_itself(a, b):
    m = iou(np.array(a), np.array(b))
    assert np.allclose(m, iou(np.array(b), np.array(a)).T)
    assert np.all((m >= 0) & (m <= 1 + 1e-12))
    assert np.allclose(np.diag(iou(np.array(a), np.array(a))), 1.0)


def test_nms_hand_computed():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # box 1 overlaps box 0 with IoU 81/119 = 0.68 > 0.45; box 3 is box 0 again
    assert nms(boxes, scores, 0.45).tolist() == [0, 2]
    assert nms(boxes, scores, 0.45, classes=[0, 0, 0, 1]).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2]  # 0.68 is under 0.7
    assert nms(boxes[[2, 0]], np.array([0.1, 0.5])).tolist() == [1, 0]  # score order
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_match_and_ap_hand_computed():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
    det = Detections(boxes=[[0, 0, 10, 10], [50, 50, 60, 60], [21, 0, 31, 10], [0, 0, 10, 9]],
                     scores=[0.9, 0.8, 0.7, 0.6], classes=[0, 0, 0, 0])
    # det 2 vs gt 1: IoU 90/110 = 0.82; det 3 duplicates gt 0, already taken -> false positive
    assert match(det, gt, [0, 0]).tolist() == [0, -1, 1, -1]
    res = mean_average_precision([det], [gt], [np.array([0, 0])])
    # PR points: (0.5, 1), (0.5, 0.5), (1, 2/3), (1, 0.5) -> AP = 0.5 * 1 + 0.5 * 2/3
    assert res["ap"][0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert res["map"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_map_classes_and_images():
    gts = [np.array([[0, 0, 10, 10]], float), np.array([[0, 0, 10, 10]], float)]
    gcs = [np.array([0]), np.array([1])]
    perfect = [Detections([[0, 0, 10, 10]], [0.9], [0]), Detections([[0, 0, 10, 10]], [0.9], [1])]
    assert mean_average_precision(perfect, gts, gcs)["map"] == 1.0
    wrong_class = [Detections([[0, 0, 10, 10]], [0.9], [1]), Detections([[0, 0, 10, 10]], [0.95], [1])]
    res = mean_average_precision(wrong_class, gts, gcs)
    assert res["ap"] == {0: 0.0, 1: 1.0} and res["map"] == 0.5
    # a class that never appears in the ground truth is left out of the mean
    extra = perfect + [Detections([[0, 0, 5, 5]], [0.99], [2])]
    assert mean_average_precision(extra, gts + [np.zeros((0, 4))], gcs + [np.zeros(0)])["map"] == 1.0
    # a miss at IoU just under 0.5: box [0,0,10,10] vs [0,0,10,4.9] -> 0.49
    half = [Detections([[0, 0, 10, 4.9]], [0.9], [0]), Detections([[0, 0, 10, 10]], [0.9], [1])]
    assert mean_average_precision(half, gts, gcs)["ap"][0] == 0.0
    with pytest.raises(ConfigError):
        mean_average_precision(perfect, gts[:1], gcs)


def test_average_precision_envelope():
    # precision rises after a dip: the envelope lifts the dip to the later maximum
    assert average_precision(np.array([0.25, 0.25, 0.5, 1.0]), np.array([1.0, 0.5, 0.67, 0.5])) == \
        pytest.approx(0.25 * 1.0 + 0.25 * 0.67 + 0.5 * 0.5)


def test_grid_encode_decode_round_trip():
    boxes = np.array([[10, 20, 30, 60], [100, 8, 140, 40], [200, 90, 210, 120]], np.float32)
    classes = np.array([0, 2, 1])
    t = encode_grid(boxes, classes, input_hw=(128, 256), grid_hw=(16, 32), n_classes=3)
    assert t.shape == (16, 32, 8) and t[..., 0].sum() == 3
    (det,) = decode_grid([t[None]], input_hw=(128, 256), score_threshold=0.5)
    order = np.argsort(det.boxes[:, 0])
    assert np.allclose(det.boxes[order], boxes, atol=1e-4)
    assert det.classes[order].tolist() == [0, 2, 1]
    assert np.allclose(det.scores, 1.0)
    assert DECODERS["grid"] is decode_grid


def test_grid_decoder_threshold_and_nms():
    g = np.zeros((1, 2, 2, 7))
    # stride 8 on a 16x16 input; size channel 1.0 -> a 16x16 box, clipped to the input
    g[0, 0, 0] = [0.9, 0.5, 0.5, 1.0, 1.0, 0.8, 0.2]  # score 0.72, class 0, centre (4, 4) -> [0, 0, 12, 12]
    g[0, 0, 1] = [0.9, 0.1, 0.5, 1.0, 1.0, 0.7, 0.3]  # score 0.63, centre (8.8, 4) -> [0.8, 0, 16, 12]: IoU 0.7
    g[0, 1, 1] = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]  # score 0.25, a 4x4 box at (12, 12)
    (det,) = decode_grid([g], input_hw=(16, 16), score_threshold=0.3)
    assert det.scores.tolist() == pytest.approx([0.72])
    assert det.boxes.tolist() == [pytest.approx([0, 0, 12, 12])]
    (det,) = decode_grid([g], input_hw=(16, 16), score_threshold=0.2)
    assert len(det) == 2
    with pytest.raises(OutputError):
        decode_grid([np.zeros((1, 4, 4))], input_hw=(16, 16), score_threshold=0.5)


def test_detections_checks_lengths():
    with pytest.raises(OutputError):
        Detections(np.zeros((2, 4)), np.zeros(1), np.zeros(2))
    assert len(Detections.empty()) == 0
