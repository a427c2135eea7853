"""Model QA acceptance tests for a steering model, written with the deeptest-iot pytest plugin.

Copy this file into your test suite and point the plugin at your model, on the command line::

    pytest test_model_qa.py --dt-model=sample:dave2_steering      # or --dt-model=path/to/model.keras

or once for all runs, in pytest.ini::

    [pytest]
    deeptest_model = models/steering.keras     ; model card: models/steering.toml
    deeptest_seeds = data/frames               ; default: generated road scenes
    deeptest_labels = data/frames/labels.csv   ; optional steering labels
    deeptest_report = deeptest-report          ; findings: image pairs, findings.jsonl, summary.json

Failing inputs are saved to the report folder; ``deeptest-iot report deeptest-report`` renders them.
"""

import pytest
from hypothesis import given, settings

from deeptest_iot.testing import strategies as dst
from deeptest_iot.transforms import get

# Light weather the car must drive through: severity 0.3 of each transform's documented range.
WEATHER = ["rain", "fog"]


@pytest.mark.model_test(budget=200)
@pytest.mark.parametrize("weather", WEATHER)
def test_steering_holds_in_light_weather(model_under_test, seeds, metamorphic, weather):
    # `seeds` carries steering labels (generated scenes have exact ones), so this checks DeepTest's
    # labelled rule: (label - angle_after)^2 <= lambda * MSE of the model on the seeds.
    metamorphic.assert_invariant(model_under_test, seeds, get(weather, severity=0.3))


@pytest.mark.model_test(budget=400)
@settings(settings.get_profile("deeptest"), max_examples=15)
@given(chain=dst.chains(max_links=2, names=["rain", "fog", "brightness", "blur_gaussian"], max_severity=0.3),
       images=dst.seed_images(n=32, max_size=8))
def test_steering_stays_within_delta_under_mild_changes(model_under_test, metamorphic, chain, images):
    # Without labels the relation is |angle_after - angle_before| <= delta (0.1 rad by default).
    # A failure shrinks to the fewest, weakest links and fewest frames that still break it.
    metamorphic.assert_invariant(model_under_test, images, chain)
