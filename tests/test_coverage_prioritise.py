"""Prioritisers on hand-checked probabilities, and APFD on hand-worked orderings."""

import math

import numpy as np
import pytest

from deeptest_iot.coverage import apfd, deepgini, entropy, margin, max_softmax, mc_dropout_variance, order
from deeptest_iot.errors import InputError

P = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0.6, 0.3, 0.1]])


def test_classifier_scores_by_hand():
    assert deepgini(P).tolist() == pytest.approx([0.0, 0.5, 0.54])
    assert max_softmax(P).tolist() == pytest.approx([0.0, 0.5, 0.4])
    assert margin(P).tolist() == pytest.approx([0.0, 1.0, 0.7])
    h = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1))
    assert entropy(P).tolist() == pytest.approx([0.0, math.log(2), h])
    assert order(deepgini(P)).tolist() == [2, 1, 0]
    assert order(margin(P)).tolist() == [1, 2, 0]


def test_order_is_stable_on_ties():
    assert order([0.5, 0.9, 0.5, 0.9]).tolist() == [1, 3, 0, 2]


def test_bad_probabilities_refused():
    with pytest.raises(InputError, match="sum to 1"):
        deepgini([[0.5, 0.6]])
    with pytest.raises(InputError, match="NaN"):
        entropy([[np.nan, 1.0]])


def test_mc_dropout_variance_from_samples_and_callable():
    assert mc_dropout_variance(np.array([[1.0, 2.0], [3.0, 2.0]])).tolist() == [1.0, 0.0]
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # T=2, N=1, C=2: variance 0.25 per class
    assert mc_dropout_variance(samples).tolist() == [0.5]
    outputs = iter([np.array([0.0, 5.0]), np.array([2.0, 5.0]), np.array([4.0, 5.0])])
    got = mc_dropout_variance(lambda x: next(outputs), inputs=np.zeros((2, 1)), t=3)
    assert got.tolist() == pytest.approx([8 / 3, 0.0])
    with pytest.raises(InputError):
        mc_dropout_variance(np.zeros((1, 4)))


def test_apfd_hand_worked():
    # 5 inputs, failures at inputs 1 and 4. Natural order: first detections at positions 2 and 5:
    # 1 - (2 + 5) / (5 * 2) + 1 / (2 * 5) = 0.4; failures first: positions 1, 2 -> 0.8
    failed = np.array([False, True, False, False, True])
    assert apfd([0, 1, 2, 3, 4], failed) == pytest.approx(0.4)
    assert apfd([4, 1, 0, 2, 3], failed) == pytest.approx(0.8)
    # fault matrix: input 0 reveals f0, input 1 reveals f1 and f2, input 2 reveals f0
    faults = np.zeros((5, 3), bool)
    faults[0, 0] = faults[1, 1] = faults[1, 2] = faults[2, 0] = True
    # order [2, 0, 1, 3, 4]: f0 at 1, f1 and f2 at 3 -> 1 - 7/15 + 1/10
    assert apfd([2, 0, 1, 3, 4], faults) == pytest.approx(1 - 7 / 15 + 1 / 10)


def test_apfd_refuses_undefined_cases():
    with pytest.raises(InputError, match="permutation"):
        apfd([0, 0, 1], [True, False, False])
    with pytest.raises(InputError, match="no input reveals"):
        apfd([0, 1], [False, False])
    with pytest.raises(InputError, match="revealed by no input"):
        apfd([0, 1], np.array([[True, False], [False, False]]))
