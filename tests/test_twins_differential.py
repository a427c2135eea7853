"""The differential relation (float model vs its twin on the same image), with hand-computed verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from deeptest_iot.errors import ConfigError, OutputError
from deeptest_iot.tasks.boxes import Detections
from deeptest_iot.tasks.differential import DEFAULT_DELTA, make_differential_oracle


def test_steering_bound_and_details():
    oracle = make_differential_oracle("steering")
    assert oracle.delta == DEFAULT_DELTA == 0.02
    f = np.array([0.5, 0.5, -0.25, 0.0])
    t = np.array([[0.515625], [0.53125], [-0.25], [0.02]])  # (N, 1) outputs are read too
    v = oracle.check(f, t)
    # deviations 0.015625 (holds), 0.03125 (fails by 0.01125), 0 (holds), 0.02 (at the bound: holds)
    assert v.relation == "differential"
    assert v.failed.tolist() == [False, True, False, False]
    np.testing.assert_allclose(v.violation, [0.0, 0.03125 - 0.02, 0.0, 0.0])
    np.testing.assert_allclose(v.threshold, 0.02)
    d = v.details[1]
    assert d["relation"] == "differential" and d["task"] == "steering"
    assert (d["before"], d["after"], d["deviation"]) == (0.5, 0.53125, 0.03125)
    assert make_differential_oracle("steering", delta=0.04).check(f, t).failed.sum() == 0


def test_classification_top1_and_confidence_drop():
    f = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0]])
    t = np.array([[0.6, 0.3, 0.1], [0.3, 0.45, 0.25], [0.5, 0.5, 0.0]])
    v = make_differential_oracle("classification", classes=["stop", "yield", "ahead"]).check(f, t)
    # input 0 keeps "stop" on top; input 1 flips to "yield" (margin 0.45 - 0.3 = 0.15); a tie holds
    assert v.failed.tolist() == [False, True, False]
    np.testing.assert_allclose(v.violation, [0.0, 0.15, 0.0], atol=1e-12)
    assert v.details[1]["relation"] == "differential"
    assert v.details[1]["before"]["name"] == "stop" and v.details[1]["after"]["name"] == "yield"
    # with a bound on the confidence drop, input 0 (0.7 -> 0.6) fails by 0.1 - 0.05
    v = make_differential_oracle("classification", max_confidence_drop=0.05).check(f, t)
    assert v.failed.tolist() == [True, True, False]
    np.testing.assert_allclose(v.violation[0], 0.05, atol=1e-12)


def _det(boxes, scores, classes):
    return Detections(boxes=np.asarray(boxes, np.float32).reshape(-1, 4), scores=np.asarray(scores, np.float32),
                      classes=np.asarray(classes, np.int64))


def test_detection_boxes_matched_at_iou_half():
    ref = _det([[0, 0, 10, 10]], [0.9], [0])
    float_out = [ref, ref, ref, _det([], [], [])]
    twin_out = [
        _det([[1, 0, 11, 10]], [0.8], [0]),  # IoU 90/110 = 0.82: the same object
        _det([[6, 0, 16, 10]], [0.8], [0]),  # IoU 40/160 = 0.25: the float box vanished, a new one appeared
        _det([[0, 0, 10, 10]], [0.8], [1]),  # same box, other class: changed
        _det([[0, 0, 10, 10]], [0.2], [0]),  # a box below the score threshold appearing is no finding
    ]
    v = make_differential_oracle("detection").check(float_out, twin_out)
    assert v.failed.tolist() == [False, True, True, False]
    assert v.violation.tolist() == [0.0, 2.0, 1.0, 0.0]
    assert len(v.details[1]["vanished"]) == 1 and len(v.details[1]["appeared"]) == 1
    assert len(v.details[2]["changed"]) == 1
    assert v.details[0]["relation"] == "differential" and v.details[0]["task"] == "detection"
    # a stricter IoU bound separates the first pair too
    assert make_differential_oracle("detection", iou_threshold=0.9).check(float_out, twin_out).failed[0]


def test_transform_is_ignored_and_config():
    oracle = make_differential_oracle("steering", delta=0.1)
    v = oracle.check([0.2], [0.25], transforms=object())
    assert not v.failed[0]
    assert oracle.config() == {"name": "differential", "task": "steering", "delta": 0.1}
    cfg = make_differential_oracle("detection", classes=None).config()
    assert cfg["name"] == "differential" and cfg["iou_threshold"] == 0.5


def test_bad_options_and_outputs():
    with pytest.raises(ConfigError, match="unknown task"):
        make_differential_oracle("parking")
    with pytest.raises(ConfigError, match="lam"):
        make_differential_oracle("steering", lam=5)
    with pytest.raises(ConfigError, match="delta"):
        make_differential_oracle("steering", delta=-1)
    with pytest.raises(OutputError, match="entries"):
        make_differential_oracle("steering").check([0.1, 0.2], [0.1])
    with pytest.raises(OutputError, match="NaN"):
        make_differential_oracle("steering").check([0.1], [np.nan])


def test_disagreement_by_hand():
    """The fitness a search climbs (``disagreement`` in every detail, also where the relation holds)."""
    from deeptest_iot.tasks.differential import disagreement

    v = make_differential_oracle("steering").check([0.5, 0.5, -0.25, 0.0], [0.515625, 0.53125, -0.25, 0.02])
    np.testing.assert_allclose(disagreement(v), [0.015625, 0.03125, 0.0, 0.02])
    # classification: the gap in the float top-1's probability, + 1 when the twin's top-1 is another class
    f = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0]])
    t = np.array([[0.6, 0.3, 0.1], [0.3, 0.45, 0.25], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(disagreement(make_differential_oracle("classification").check(f, t)),
                               [0.1, 1.1, 0.0], atol=1e-12)
    # detection: objects counted by the relation + the largest 1 - IoU of a confident box with its match
    ref = _det([[0, 0, 10, 10]], [0.9], [0])
    twin_out = [_det([[1, 0, 11, 10]], [0.8], [0]), _det([[6, 0, 16, 10]], [0.8], [0]),
                _det([[0, 0, 10, 10]], [0.8], [1]), _det([[0, 0, 10, 10]], [0.2], [0])]
    v = make_differential_oracle("detection").check([ref, ref, ref, _det([], [], [])], twin_out)
    np.testing.assert_allclose(disagreement(v), [1 - 90 / 110, 2 + 1 - 40 / 160, 1 + 1, 0.0], atol=1e-6)
