"""Validity (DeepHunter): the pixel rule at its edges, the chain rule, and the weather/sensor waiver."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deeptest_iot.errors import ConfigError, InputError
from deeptest_iot.engine.validity import check_validity, is_valid, pixel_distances
from deeptest_iot.transforms import get


def Link(name, kind=None, severity=0.5):
    """A real transform at ``severity`` (``kind`` is the registry's; kept to read like the rule)."""
    t = get(name, severity=severity)
    assert kind is None or t.kind == kind
    return t


ROT = Link("rotation", "geometric")
SHEAR = Link("shear", "geometric")
BRIGHT = Link("brightness", "photometric")
FOG = Link("fog", "weather")
NOISE = Link("gaussian_noise", "sensor")

# 10 x 10 x 3 = 300 elements; alpha 0.02 -> L0 must be < 6; beta 0.2 -> Linf <= 51
SEED = np.full((10, 10, 3), 100, dtype=np.uint8)


def mutant(changed: int, by: int) -> np.ndarray:
    m = SEED.copy().reshape(-1)
    m[:changed] = 100 + by
    return m.reshape(SEED.shape)


def test_pixel_rule_edges():
    batch = np.stack([
        mutant(5, 200 - 100),  # L0 5 < 6: any change allowed
        mutant(6, 51),  # L0 at 6 (not < 6) but Linf 51 = beta * 255: holds at the bound
        mutant(6, 52),  # both rules broken
        mutant(300, 51),  # every element changed a little
        mutant(300, 155),  # everything changed a lot
        SEED,  # identical
    ])
    v = check_validity(SEED, batch)
    assert v.l0.tolist() == [5, 6, 6, 300, 300, 0]
    assert v.linf.tolist() == [100, 51, 52, 51, 155, 0]
    assert v.valid.tolist() == [True, True, False, True, False, True]
    assert is_valid(SEED, batch).tolist() == v.valid.tolist()


def test_l0_counts_channels_against_the_seed_not_a_broadcast_error():
    seeds = np.stack([SEED, np.zeros_like(SEED)])
    muts = np.stack([SEED, np.zeros_like(SEED)])
    muts[1, 0, 0] = (255, 255, 255)  # one pixel, three elements
    l0, linf = pixel_distances(seeds, muts)
    assert l0.tolist() == [0, 3] and linf.tolist() == [0, 255]


def test_at_most_one_affine_transform_per_chain():
    batch = np.stack([SEED] * 4)
    v = check_validity(SEED, batch, chains=[[ROT], [ROT, BRIGHT], [ROT, SHEAR], None])
    assert v.valid.tolist() == [True, True, False, True]
    assert v.chain_ok.tolist() == [True, True, False, True]


def test_a_geometric_link_at_its_identity_is_not_counted():
    batch = np.stack([SEED] * 2)
    chains = [[ROT, get("shear", factor=0.0)], [ROT, get("shear", factor=0.2)]]
    assert is_valid(SEED, batch, chains=chains).tolist() == [True, False]


def test_weather_and_sensor_chains_waive_the_pixel_rule_but_not_the_chain_rule():
    heavy = np.stack([mutant(300, 155)] * 5)
    v = check_validity(SEED, heavy, chains=[[FOG], [BRIGHT, NOISE], [BRIGHT], [FOG, ROT, SHEAR], [FOG, ROT]])
    assert v.waived.tolist() == [True, True, False, True, True]
    assert v.valid.tolist() == [True, True, False, False, True]


def test_weather_severity_bound():
    batch = np.stack([mutant(300, 155)] * 2)
    chains = [[Link("fog", "weather", 0.9)], [Link("rain", "weather", 0.5)]]
    assert is_valid(SEED, batch, chains=chains, max_severity=0.6).tolist() == [False, True]


def test_one_chain_for_the_whole_batch():
    batch = np.stack([mutant(300, 155)] * 3)
    assert is_valid(SEED, batch, chains=FOG).tolist() == [True] * 3


@pytest.mark.parametrize("opts", [{"alpha": -0.1}, {"beta": 1.5}, {"alpha": float("nan")}, {"beta": "0.2"},
                                  {"max_severity": 2}])
def test_bad_bounds_are_config_errors(opts):
    with pytest.raises(ConfigError):
        is_valid(SEED, SEED[None], **opts)


def test_bad_shapes_and_dtypes_are_input_errors():
    with pytest.raises(InputError):
        is_valid(SEED, SEED)  # not a batch
    with pytest.raises(InputError):
        is_valid(SEED[:5], SEED[None])
    with pytest.raises(InputError):
        is_valid(SEED.astype(np.float32), SEED[None].astype(np.float32))
    with pytest.raises(InputError, match="one per mutant"):
        is_valid(SEED, np.stack([SEED] * 2), chains=[[ROT]])


images = hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.just(3)))


@settings(max_examples=60, deadline=None)
@given(images, st.floats(0, 1), st.floats(0, 1))
def test_an_unchanged_mutant_is_always_valid(batch, alpha, beta):
    assert is_valid(batch, batch.copy(), alpha=alpha, beta=beta).all()


@settings(max_examples=60, deadline=None)
@given(images, st.data())
def test_validity_matches_the_definition(batch, data):
    other = data.draw(hnp.arrays(np.uint8, batch.shape))
    alpha, beta = data.draw(st.floats(0, 1)), data.draw(st.floats(0, 1))
    got = is_valid(batch, other, alpha=alpha, beta=beta)
    for i in range(batch.shape[0]):
        d = np.abs(batch[i].astype(int) - other[i].astype(int))
        assert got[i] == ((d != 0).sum() < alpha * d.size or d.max() <= beta * 255)


def test_real_chains():
    from deeptest_iot.transforms import Chain, get

    seeds = np.stack([SEED] * 3)
    fogged = Chain([get("fog", severity=0.8)])
    two_affine = Chain([get("rotation", degrees=10), get("shear", factor=0.2)])
    identity_affine = Chain([get("rotation", degrees=10), get("shear", factor=0.0), get("brightness", severity=0.9)])
    muts = np.stack([fogged(SEED), two_affine(SEED), SEED])
    v = check_validity(seeds, muts, chains=[fogged, two_affine, identity_affine])
    assert v.waived.tolist() == [True, False, False]
    assert v.chain_ok.tolist() == [True, False, True]
    assert v.valid.tolist() == [True, False, True]
