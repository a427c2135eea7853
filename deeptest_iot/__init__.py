"""deeptest-iot: metamorphic, coverage-guided testing of camera neural networks.

The public API, importable from here (loaded on first use, so that ``import deeptest_iot`` stays
light for the pytest plugin)::

    from deeptest_iot import load_model, get, Chain, make_oracle, CoverageTracker, run_campaign, open_run

* ``load_model(path_or_keras_model, card=None, task=None, ...)``: the model under test.
* ``get(name, severity=None, **params)`` / ``Chain([...])``: transforms and chains of them.
* ``make_oracle(task, **options)``: a task's metamorphic relation.
* ``CoverageTracker(criteria, layer_sizes, profile=None)``: coverage criteria over activations.
* ``CampaignOptions(...)`` / ``run_campaign(options)``: a whole campaign, as ``deeptest-iot run``.
* ``open_run(folder)``: read a campaign's output folder.
"""

import os as _os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (no CUDA driver, CPU instruction sets) is noise for a test tool's
# users; errors that matter reach them as Python exceptions. Set before anything imports TensorFlow.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_API = {
    "load_model": ("deeptest_iot.model.core", "load_model"),
    "get": ("deeptest_iot.transforms", "get"),
    "Chain": ("deeptest_iot.transforms", "Chain"),
    "make_oracle": ("deeptest_iot.tasks", "make_oracle"),
    "CoverageTracker": ("deeptest_iot.coverage", "CoverageTracker"),
    "CampaignOptions": ("deeptest_iot.engine.options", "CampaignOptions"),
    "run_campaign": ("deeptest_iot.engine.campaign", "run_campaign"),
    "open_run": ("deeptest_iot.results.reader", "open_run"),
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name):
    if name in _API:
        import importlib

        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deeptest_iot' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
