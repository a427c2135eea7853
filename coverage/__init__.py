"""Coverage criteria, profiling, surprise adequacy and prioritisers (installed as ``deeptest_iot.coverage``).

Activations are dicts {layer_name: (N, neurons) array} in model order; see docs/interfaces.md.
``ModelUnderTest.run`` returns an ``Activations`` (such a dict that also carries each feature map's
per-input [min, max], which NC scales by; see docs/coverage-nc.md).
"""

from .activations import Activations
from .prioritise import apfd, deepgini, entropy, margin, max_softmax, mc_dropout_variance, order
from .profile import Profile, profile_model
from .specs import DEFAULTS, KNOWN, CriterionSpec, parse_spec, parse_specs
from .surprise import DSA, LSA, MDSA, surprise_coverage
from .tracker import CoverageTracker

__all__ = [
    "Activations", "CoverageTracker", "Profile", "profile_model", "CriterionSpec", "parse_spec", "parse_specs", "DEFAULTS", "KNOWN",
    "LSA", "DSA", "MDSA", "surprise_coverage",
    "deepgini", "max_softmax", "margin", "entropy", "mc_dropout_variance", "order", "apfd",
]
