"""Oracles: hand-computed verdicts on tiny batches for every relation, plus properties."""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deeptest_iot.errors import ConfigError, InputError, OutputError
from deeptest_iot.tasks import make_oracle
from deeptest_iot.tasks.detection import box_iou, expected_boxes
from deeptest_iot.tasks.steering import DEFAULT_DELTA, DEFAULT_LAMBDA, steering_mse
from deeptest_iot.transforms import Chain, get


class Det(NamedTuple):
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def det(*objs):
    """Det from (x0, y0, x1, y1, score, class) tuples."""
    a = np.array(objs, dtype=np.float64).reshape(-1, 6)
    return Det(a[:, :4], a[:, 4], a[:, 5].astype(int))


def translation(dx, dy):
    return get("translation", tx=dx, ty=dy)


FLIP = get("hflip", flip=1)  # x -> (w - 1) - x on pixel centres
BRIGHT = get("brightness", severity=0.5)


def json_roundtrip(details):
    assert json.loads(json.dumps(details, allow_nan=False)) == details


# ---------------------------------------------------------------- steering


def test_steering_without_labels_uses_delta_and_the_bound_holds():
    oracle = make_oracle("steering", delta=0.25)
    v = oracle.check([0.0, 0.0, 0.5, -0.5], [0.25, 0.5, 0.0, -0.5])
    # deviations 0.25 (at the bound: holds), 0.5, 0.5, 0
    assert v.failed.tolist() == [False, True, True, False]
    assert v.violation.tolist() == [0.0, 0.25, 0.25, 0.0]
    assert v.threshold.tolist() == [0.25] * 4
    assert v.details[1]["before"] == 0.0 and v.details[1]["after"] == 0.5
    assert v.details[1]["rule"] == "reference" and v.details[1]["label"] is None
    json_roundtrip(v.details)


def test_steering_with_labels_uses_lambda_times_mse():
    # mse on the seeds: errors 0.5 and 0 -> (0.25 + 0) / 2 = 0.125; lam 2 -> bound 0.25
    mse = steering_mse([0.5, 0.0], [0.0, 0.0])
    assert mse == 0.125
    oracle = make_oracle("steering", lam=2, mse_orig=mse)
    v = oracle.check([9.0, 9.0, 9.0], [0.5, 0.75, -0.25], labels=[0.0, 0.0, 0.0])
    # squared errors 0.25 (at the bound), 0.5625, 0.0625; the reference 9.0 is ignored
    assert v.failed.tolist() == [False, True, False]
    assert v.violation.tolist() == [0.0, 0.3125, 0.0]
    assert v.threshold.tolist() == [0.25] * 3
    assert v.details[1]["label"] == 0.0 and v.details[1]["rule"] == "label"
    json_roundtrip(v.details)


def test_steering_seed_predictions_measure_mse_and_missing_labels_fall_back_to_delta():
    oracle = make_oracle("steering", lam=1, delta=0.5, seed_predictions=[1.0, 0.0], seed_labels=[0.0, np.nan])
    assert oracle.mse_orig == 1.0  # only the labelled seed counts
    v = oracle.check([0.0, 0.0], [1.5, 0.75], labels=[0.0, np.nan])
    # input 0: (0 - 1.5)^2 = 2.25 > 1 * 1.0; input 1: |0.75 - 0| = 0.75 > 0.5
    assert v.failed.tolist() == [True, True]
    assert v.violation.tolist() == [1.25, 0.25]
    assert v.threshold.tolist() == [1.0, 0.5]
    assert [d["rule"] for d in v.details] == ["label", "reference"]


def test_flip_negates_the_reference_and_the_label():
    oracle = make_oracle("steering", delta=0.1, lam=1, mse_orig=0.01)
    v = oracle.check([0.5, 0.5], [-0.5, -0.5], transforms=[FLIP, BRIGHT])
    assert v.failed.tolist() == [False, True]  # flipped: expected -0.5; not flipped: expected 0.5
    assert v.details[0]["flipped"] and v.details[0]["expected"] == -0.5
    v = oracle.check([0.0], [-0.25], transforms=[(BRIGHT, FLIP)], labels=[0.25])
    assert not v.failed[0]  # expected -label = -0.25


def test_two_flips_cancel_in_a_chain():
    oracle = make_oracle("steering", delta=0.1)
    v = oracle.check([0.5], [0.5], transforms=[[FLIP, FLIP]])
    assert not v.failed[0] and not v.details[0]["flipped"]


def test_one_transform_applies_to_the_whole_batch():
    v = make_oracle("steering", delta=0.1).check([0.25, -0.25], [-0.25, 0.25], transforms=FLIP)
    assert not v.failed.any()


def test_steering_defaults_are_documented_values():
    o = make_oracle("steering")
    assert (o.lam, o.delta, o.mse_orig) == (DEFAULT_LAMBDA, DEFAULT_DELTA, None) == (5.0, 0.1, None)


def test_steering_labels_without_mse_is_a_config_error():
    with pytest.raises(ConfigError, match="mse_orig"):
        make_oracle("steering").check([0.0], [0.0], labels=[0.0])


@pytest.mark.parametrize("opts", [{"lam": 0}, {"lam": -1}, {"lam": float("nan")}, {"delta": -0.1},
                                  {"delta": float("inf")}, {"delta": "0.1"}, {"lam": True}, {"mse_orig": -1.0},
                                  {"gamma": 1}])
def test_bad_steering_options_are_config_errors(opts):
    with pytest.raises(ConfigError):
        make_oracle("steering", **opts)


def test_unknown_relation_is_a_config_error():
    with pytest.raises(ConfigError, match="steering"):
        make_oracle("segmentation")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_outputs_are_output_errors(bad):
    oracle = make_oracle("steering")
    with pytest.raises(OutputError, match="inputs 1"):
        oracle.check([0.0, 0.0], [0.0, bad])
    with pytest.raises(OutputError):
        oracle.check([bad, 0.0], [0.0, 0.0])
    with pytest.raises(OutputError):
        make_oracle("classification").check([[0.5, 0.5]], [[bad, 0.5]])
    with pytest.raises(OutputError):
        make_oracle("detection").check([det((0, 0, 1, 1, 0.9, 0))], [det((0, 0, bad, 1, 0.9, 0))], frame_size=(9, 9))


def test_mismatched_lengths_are_reported():
    with pytest.raises(OutputError, match="expected 2"):
        make_oracle("steering").check([0.0, 0.0], [0.0])
    with pytest.raises(InputError, match="one per input"):
        make_oracle("steering").check([0.0, 0.0], [0.0, 0.0], transforms=[BRIGHT])


finite = st.floats(-3, 3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 8), elements=finite), st.floats(0.001, 1), st.floats(0.1, 10))
def test_identical_outputs_never_fail_the_reference_rule(ref, delta, lam):
    v = make_oracle("steering", delta=delta, lam=lam).check(ref, ref.copy())
    assert not v.failed.any() and (v.violation == 0).all()


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(
    hnp.arrays(np.float64, n, elements=finite), hnp.arrays(np.float64, n, elements=finite),
    hnp.arrays(np.float64, n, elements=st.one_of(finite, st.just(np.nan))))),
    st.floats(0, 1), st.floats(0.1, 10), st.booleans())
def test_violation_is_positive_exactly_when_failed(arrays, delta, lam, flip):
    ref, out, labels = arrays
    v = make_oracle("steering", delta=delta, lam=lam, mse_orig=0.05).check(
        ref, out, labels=labels, transforms=FLIP if flip else None)
    assert ((v.violation > 0) == v.failed).all()
    assert (v.violation >= 0).all()
    assert [d["violation"] for d in v.details] == v.violation.tolist()
    json_roundtrip(v.details)


# ---------------------------------------------------------------- classification


def test_classification_top1_change_fails_and_records_names():
    oracle = make_oracle("classification", classes=["stop", "yield", "speed"])
    ref = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25]]
    out = [[0.25, 0.75, 0.0], [0.1, 0.5, 0.4], [0.375, 0.375, 0.25]]
    v = oracle.check(ref, out, labels=np.array([0, 1, 2]))
    # input 0: stop -> yield by a margin of 0.5; input 1 keeps yield; input 2 ties stop/yield: holds
    assert v.failed.tolist() == [True, False, False]
    assert v.violation.tolist() == [0.5, 0.0, 0.0]
    assert v.threshold.tolist() == [0.0, 0.0, 0.0]
    assert v.details[0]["before"] == {"label": 0, "name": "stop", "confidence": 0.7}
    assert v.details[0]["after"] == {"label": 1, "name": "yield", "confidence": 0.75}
    assert v.details[2]["after"]["label"] == 0  # a tie keeps the reference class
    assert v.details[2]["label"] == 2 and v.details[2]["label_name"] == "speed"
    json_roundtrip(v.details)


def test_classification_confidence_drop_bound():
    oracle = make_oracle("classification", max_confidence_drop=0.25)
    ref = [[1.0, 0.0], [1.0, 0.0], [0.75, 0.25]]
    out = [[0.75, 0.25], [0.625, 0.375], [0.25, 0.75]]
    v = oracle.check(ref, out)
    # drops 0.25 (at the bound: holds), 0.375 (fails by 0.125); input 2 changes label (margin 0.5)
    assert v.failed.tolist() == [False, True, True]
    assert v.violation.tolist() == [0.0, 0.125, 0.5]
    assert v.threshold.tolist() == [0.25, 0.25, 0.0]
    assert v.details[1]["confidence_drop"] == 0.375


@pytest.mark.parametrize("drop", [-0.1, 1.5, float("nan")])
def test_bad_confidence_drop_is_a_config_error(drop):
    with pytest.raises(ConfigError):
        make_oracle("classification", max_confidence_drop=drop)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.data())
def test_classification_properties(n, c, data):
    probs = hnp.arrays(np.float64, (n, c), elements=st.floats(0, 1, width=16))
    ref, out = data.draw(probs), data.draw(probs)
    oracle = make_oracle("classification", max_confidence_drop=data.draw(st.one_of(st.none(), st.floats(0, 1))))
    same = oracle.check(ref, ref)
    assert not same.failed.any()
    v = oracle.check(ref, out)
    assert ((v.violation > 0) == v.failed).all()
    label_changed = np.array([d["after"]["label"] != d["before"]["label"] for d in v.details])
    assert (v.failed | ~label_changed).all()  # a changed top-1 class always fails
    json_roundtrip(v.details)


# ---------------------------------------------------------------- detection


def test_photometric_transform_keeps_boxes():
    ref = [det((10, 10, 30, 30, 0.9, 1), (50, 50, 70, 80, 0.8, 2))]
    out = [det((51, 50, 71, 80, 0.7, 2), (11, 10, 31, 31, 0.95, 1))]
    v = make_oracle("detection").check(ref, out, transforms=BRIGHT, frame_size=(100, 100))
    assert not v.failed[0] and v.violation[0] == 0
    assert v.details[0]["expected"] == [[10, 10, 30, 30], [50, 50, 70, 80]]


def test_confident_object_disappears():
    ref = [det((10, 10, 30, 30, 0.9, 1), (50, 50, 70, 70, 0.3, 2))]
    out = [det()]
    v = make_oracle("detection").check(ref, out, frame_size=(100, 100))
    # the 0.3 object is not confident: only one object vanished
    assert v.failed[0] and v.violation[0] == 1 and v.threshold[0] == 0
    assert v.details[0]["vanished"] == [{"box": [10, 10, 30, 30], "score": 0.9, "class": 1}]
    json_roundtrip(v.details)


def test_new_confident_object_appears_but_a_faint_one_does_not_count():
    ref = [det((10, 10, 30, 30, 0.9, 1))]
    out = [det((10, 10, 30, 30, 0.9, 1), (60, 60, 90, 90, 0.5, 3), (0, 60, 20, 90, 0.49, 3))]
    v = make_oracle("detection", classes=["a", "b", "c", "d"]).check(ref, out, frame_size=(100, 100))
    assert v.failed[0] and v.violation[0] == 1
    assert v.details[0]["appeared"] == [{"box": [60, 60, 90, 90], "score": 0.5, "class": 3, "name": "d"}]


def test_class_change_is_reported_with_both_sides():
    ref = [det((10, 10, 30, 30, 0.9, 1)), det((10, 10, 30, 30, 0.9, 1))]
    out = [det((10, 10, 30, 32, 0.8, 2)), det((10, 10, 30, 30, 0.2, 1))]
    v = make_oracle("detection").check(ref, out, frame_size=(100, 100))
    # input 1: same class, lower score, still matched: holds
    assert v.failed.tolist() == [True, False]
    ch = v.details[0]["changed"]
    assert len(ch) == 1 and ch[0]["before"]["class"] == 1 and ch[0]["after"]["class"] == 2
    assert ch[0]["iou"] == pytest.approx(400 / 440)
    assert v.details[0]["vanished"] == [] and v.details[0]["appeared"] == []


def test_same_class_match_is_preferred_over_a_closer_box_of_another_class():
    # two overlapping objects; the detection of class 1 overlaps the class-2 object more
    ref = [det((0, 0, 20, 20, 0.9, 1), (2, 0, 22, 20, 0.9, 2))]
    out = [det((2, 0, 22, 20, 0.95, 1), (0, 0, 20, 20, 0.9, 2))]
    v = make_oracle("detection").check(ref, out, frame_size=(50, 50))
    assert not v.failed[0]  # matched within classes: no class change


def test_iou_threshold_edge():
    # IoU of (0,0,10,10) and (0,0,10,20) is exactly 0.5: matched (at the bound holds)
    ref = [det((0, 0, 10, 10, 0.9, 0))]
    assert box_iou(np.array([[0, 0, 10, 10.]]), np.array([[0, 0, 10, 20.]]))[0, 0] == 0.5
    v = make_oracle("detection").check(ref, [det((0, 0, 10, 20, 0.9, 0))], frame_size=(50, 50))
    assert not v.failed[0]
    v = make_oracle("detection").check(ref, [det((0, 0, 10, 21, 0.9, 0))], frame_size=(50, 50))
    assert v.failed[0] and v.violation[0] == 2  # vanished and appeared


def test_translated_box_is_matched_through_the_matrix():
    ref = [det((10, 10, 30, 30, 0.9, 1))]
    moved = [det((50, 30, 70, 50, 0.9, 1))]
    oracle = make_oracle("detection")
    v = oracle.check(ref, moved, transforms=translation(40, 20), frame_size=(100, 100))
    assert not v.failed[0]
    assert v.details[0]["expected"] == [[50, 30, 70, 50]]
    # without the transform the same output is a vanished + an appeared object
    assert oracle.check(ref, moved, transforms=BRIGHT, frame_size=(100, 100)).violation[0] == 2


def test_box_leaving_the_frame_is_not_required():
    ref = [det((10, 10, 30, 30, 0.9, 1), (80, 10, 100, 30, 0.9, 2))]
    # translate by +15: box 2 keeps 5/20 of its width -> not required; box 1 is found
    out = [det((25, 10, 45, 30, 0.9, 1))]
    v = make_oracle("detection").check(ref, out, transforms=translation(15, 0), frame_size=(100, 100))
    assert not v.failed[0]
    # at min_visible 0.25 the clipped box (visible share exactly 0.25) is required and vanished
    v = make_oracle("detection", min_visible=0.25).check(ref, out, transforms=translation(15, 0),
                                                        frame_size=(100, 100))
    assert v.failed[0] and v.details[0]["vanished"][0]["class"] == 2


def test_map_boxes_hull_clip_and_visibility():
    # pixel centres: (x, y) -> (99 - y, x), a quarter turn of a 100 x 100 frame; in edge
    # coordinates that is (u, v) -> (100 - v, u)
    rot90 = np.array([[0, -1, 99], [1, 0, 0], [0, 0, 1]], dtype=float)
    boxes, vis = expected_boxes(rot90, [[10, 20, 30, 60]], (100, 100))
    assert boxes.tolist() == [[40, 10, 80, 30]] and vis.tolist() == [1.0]
    # a flip of a 100-wide frame (centres: x -> 99 - x) sends edges [10, 30] to [70, 90]
    flip = np.array([[-1, 0, 99], [0, 1, 0], [0, 0, 1]], dtype=float)
    assert expected_boxes(flip, [[10, 0, 30, 10]], (10, 100))[0].tolist() == [[70, 0, 90, 10]]
    boxes, vis = expected_boxes(np.array([[1, 0, 200], [0, 1, 0], [0, 0, 1.]]), [[10, 20, 30, 60]], (100, 100))
    assert vis.tolist() == [0.0]


def test_chain_matrix_composes_links_in_order():
    m = Chain([translation(5, 0), BRIGHT, FLIP]).matrix(10, 100)
    # x -> x + 5 -> 99 - (x + 5)
    assert (m @ np.array([10, 3, 1.0])).tolist() == [84, 3, 1]
    assert Chain([BRIGHT]).matrix(10, 10) is None


def test_detection_needs_frame_size_and_options_are_checked():
    with pytest.raises(InputError, match="frame_size"):
        make_oracle("detection").check([det()], [det()])
    for bad in ({"iou_threshold": 0}, {"score_threshold": 1.5}, {"min_visible": -0.1}, {"lam": 1}):
        with pytest.raises(ConfigError):
            make_oracle("detection", **bad)


def test_detection_batch_with_uneven_counts():
    ref = [det(), det((0, 0, 10, 10, 0.9, 0)), det((0, 0, 10, 10, 0.9, 0), (20, 20, 30, 30, 0.9, 1))]
    out = [det((0, 0, 10, 10, 0.9, 0)), det((0, 0, 10, 10, 0.9, 0)), det((20, 20, 30, 30, 0.9, 1))]
    v = make_oracle("detection").check(ref, out, frame_size=(40, 40))
    assert v.failed.tolist() == [True, False, True]
    assert v.violation.tolist() == [1, 0, 1]


box_st = st.tuples(st.integers(0, 80), st.integers(0, 80), st.integers(1, 20), st.integers(1, 20),
                   st.floats(0, 1), st.integers(0, 3)).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3], t[4], t[5]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(box_st, max_size=6), min_size=1, max_size=4), st.integers(-10, 10), st.integers(-10, 10))
def test_detection_properties(objs, dx, dy):
    ref = [det(*o) for o in objs]
    oracle = make_oracle("detection")
    assert not oracle.check(ref, ref, transforms=BRIGHT, frame_size=(100, 100)).failed.any()
    # a model that follows the translation exactly (clipped at the border) never fails
    t = translation(dx, dy)
    mapped = []
    for d in ref:
        b, vis = expected_boxes(t.matrix(100, 100), d.boxes, (100, 100))
        keep = vis > 0
        mapped.append(Det(b[keep], d.scores[keep], d.classes[keep]))
    v = oracle.check(ref, mapped, transforms=t, frame_size=(100, 100))
    assert not v.failed.any()
    v = oracle.check(ref, [det()] * len(ref), transforms=t, frame_size=(100, 100))
    assert ((v.violation > 0) == v.failed).all()
    json_roundtrip(v.details)


def test_boxes_reaching_past_the_border_are_compared_clipped():
    # the expected box is clipped to (0, 0, 10, 10); an unclipped detection (-15, 0, 10, 10) would
    # have IoU 0.4 with it, the clipped one IoU 1
    ref = [det((-15, 0, 10, 10, 0.9, 0))]
    v = make_oracle("detection", min_visible=0.3).check(ref, ref, transforms=BRIGHT, frame_size=(50, 50))
    assert not v.failed[0]


def test_a_flip_link_at_its_identity_does_not_flip():
    noflip = get("hflip", flip=0)
    v = make_oracle("steering", delta=0.1).check([0.5], [0.5], transforms=noflip)
    assert not v.failed[0] and not v.details[0]["flipped"]


# ---------------------------------------------------------------- with the real transforms package


def test_real_transforms_translation_flip_and_photometric():
    from deeptest_iot.transforms import Chain, get

    frame = (100, 200)
    ref = [det((10, 10, 30, 30, 0.9, 1))] * 3
    moved = det((50, 30, 70, 50, 0.9, 1))
    chains = [get("translation", tx=40, ty=20), Chain([get("brightness", severity=0.5)]),
              Chain([get("hflip", flip=1), get("fog", severity=0.3)])]
    out = [moved, ref[0], det((170, 10, 190, 30, 0.9, 1))]  # a flip of width 200 sends [10, 30] to [170, 190]
    v = make_oracle("detection").check(ref, out, chains, frame_size=frame)
    assert not v.failed.any()
    assert [d["expected"] for d in v.details] == [[[50, 30, 70, 50]], [[10, 10, 30, 30]], [[170, 10, 190, 30]]]
    # the same outputs against the wrong transforms are findings
    assert make_oracle("detection").check(ref, out[::-1], chains, frame_size=frame).failed.tolist() == [True, False, True]

    steer = make_oracle("steering", delta=0.1).check([0.3, 0.3, 0.3], [0.3, 0.3, -0.3], chains)
    assert not steer.failed.any() and [d["flipped"] for d in steer.details] == [False, False, True]
    assert not make_oracle("steering").check([0.3], [0.3], get("hflip", flip=0)).failed[0]
