"""LSA, DSA, MDSA and surprise coverage on tiny data checked by hand."""

import math

import numpy as np
import pytest

from deeptest_iot.coverage import DSA, LSA, MDSA, surprise_coverage
from deeptest_iot.errors import ConfigError, InputError


def gauss(x, mu, var):
    return math.exp(-(x - mu) ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)


def test_lsa_one_neuron_by_hand():
    train = np.array([[0.0], [2.0]])
    var = 2.0                                # sample variance (ddof=1) of {0, 2}
    h2 = (2 ** (-1 / 5)) ** 2 * var          # Scott factor n^(-1/(d+4)), squared, times the variance
    for x in (1.0, 0.0, 7.0):
        kde = 0.5 * (gauss(x, 0.0, h2) + gauss(x, 2.0, h2))
        assert LSA(train)(np.array([[x]]))[0] == pytest.approx(-math.log(kde), rel=1e-10)


def test_lsa_drops_low_variance_neurons_and_is_finite_far_away():
    train = np.array([[0.0, 5.0], [2.0, 5.0]])  # second neuron constant: dropped
    lsa = LSA(train)
    assert lsa.kept[None].tolist() == [0]
    assert lsa(np.array([[1.0, 100.0]]))[0] == pytest.approx(LSA(train[:, :1])(np.array([[1.0]]))[0])
    far = lsa(np.array([[1e6, 0.0]]))[0]
    assert np.isfinite(far) and far > 1e10


def test_lsa_per_class_uses_the_predicted_class_kde():
    train = np.array([[0.0], [2.0], [10.0], [14.0]])
    classes = np.array([0, 0, 1, 1])
    lsa = LSA(train, classes)
    x = np.array([[1.0], [1.0]])
    got = lsa(x, classes=[0, 1])
    assert got[0] == pytest.approx(LSA(train[:2])(x[:1])[0])
    assert got[1] == pytest.approx(LSA(train[2:])(x[:1])[0])
    with pytest.raises(InputError, match="predicted classes"):
        lsa(x)
    with pytest.raises(InputError, match="no training traces of predicted classes \\[7\\]"):
        lsa(x, classes=[0, 7])


def test_mdsa_by_hand():
    train = np.array([[1.0, 0], [-1, 0], [0, 2], [0, -2]])  # mean 0, variances 2/3 and 8/3, no covariance
    got = MDSA(train)(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert got[0] == pytest.approx(math.sqrt(1 / (2 / 3) + 1 / (8 / 3)))
    assert got[1] == pytest.approx(0.0)


def test_singular_covariance_gives_finite_values_in_the_spanned_subspace():
    train = np.array([[0.0, 0.0], [1, 1], [2, 2]])  # rank 1: the line x == y, variance 2 along it
    md = MDSA(train)
    assert md.whiteners[None].rank == 1
    got = md(np.array([[2.0, 2.0], [2.0, 0.0]]))
    assert got.tolist() == pytest.approx([1.0, 0.0])  # (2, 0) differs from the mean only off the line
    lsa = LSA(train)(np.array([[2.0, 2.0], [50.0, -50.0]]))
    assert np.isfinite(lsa).all()


def test_no_varying_neuron_is_a_clear_error():
    with pytest.raises(ConfigError, match="variance"):
        LSA(np.ones((5, 3)))
    with pytest.raises(ConfigError, match="at least 2"):
        MDSA(np.array([[0.0], [1.0], [5.0]]), classes=[0, 0, 1])
    with pytest.raises(InputError, match="NaN"):
        MDSA(np.array([[0.0], [np.nan]]))


def test_dsa_by_hand():
    train = np.array([[0.0, 0], [1, 0], [3, 0]])
    classes = np.array([0, 0, 1])
    dsa = DSA(train, classes)
    got = dsa(np.array([[0.0, 1.0], [1.0, 0.0], [4.0, 0.0]]), classes=[0, 0, 1])
    # x=(0,1): x_a=(0,0) at 1, nearest other-class to x_a is (3,0) at 3 -> 1/3
    # x=(1,0): equals a training trace -> 0
    # x=(4,0) class 1: x_a=(3,0) at 1, nearest class-0 trace to it (1,0) at 2 -> 1/2
    assert got.tolist() == pytest.approx([1 / 3, 0.0, 0.5])
    with pytest.raises(ConfigError, match="classes"):
        DSA(train, None)


def test_surprise_coverage_buckets():
    # [0, 1] in 4 buckets: 0 and 0.1 -> bucket 0; 1.0 (== upper) -> last bucket; 1.5 and -0.1 in none
    assert surprise_coverage([0.0, 0.1, 1.0, 1.5, -0.1], upper=1.0, n_buckets=4) == 0.5
    assert surprise_coverage([], upper=1.0, n_buckets=4) == 0.0
    with pytest.raises(ConfigError):
        surprise_coverage([0.5], upper=0.0)


def test_dict_traces_concatenate_layers():
    train = {"a": np.array([[1.0], [-1], [0], [0]]), "b": np.array([[0.0], [0], [2], [-2]])}
    assert MDSA(train)({"a": np.array([[1.0]]), "b": np.array([[1.0]])})[0] == pytest.approx(math.sqrt(1.875))


def test_lsa_matches_the_multivariate_formula():
    rng = np.random.default_rng(4)
    train = rng.standard_normal((30, 3)) @ np.array([[1.0, 0.5, 0], [0, 1, 0.3], [0, 0, 0.2]])
    test = rng.standard_normal((5, 3))
    n, d = train.shape
    h = np.cov(train, rowvar=False) * n ** (-2 / (d + 4))  # Scott: factor^2 * covariance
    inv, det = np.linalg.inv(h), np.linalg.det(h)
    expected = []
    for x in test:
        diffs = x - train
        dens = np.exp(-0.5 * np.einsum("ij,jk,ik->i", diffs, inv, diffs)) / math.sqrt((2 * math.pi) ** d * det)
        expected.append(-math.log(dens.mean()))
    assert LSA(train)(test).tolist() == pytest.approx(expected, rel=1e-9)


def test_far_out_inputs_are_infinitely_surprising_not_nan():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((40, 3))
    classes = np.repeat([0, 1], 20)
    far = np.array([[1e200, -1e200, 1e200], [0.1, 0.2, 0.3]])
    for values in (LSA(train)(far), MDSA(train)(far), DSA(train, classes)(far, classes=[0, 1])):
        assert not np.isnan(values).any()
        assert values[0] == np.inf and np.isfinite(values[1])
