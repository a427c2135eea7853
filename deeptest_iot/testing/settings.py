"""The pytest plugin's settings: its options and ini keys, and ``Settings`` resolved from them.

Imports only pytest and the standard library (the plugin loads in every pytest session).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_BUDGET = 1000
DEFAULT_N_SEEDS = 32
DEFAULT_REPORT = "deeptest-report"
DEFAULT_COVERAGE = "nc:0.75,kmnc:10,nbc"  # as `deeptest-iot run` (see campaign.DEFAULT_COVERAGE)
#: ``--dt-model sample:dave2_steering`` tests a sample model shipped with deeptest-iot.
SAMPLE_PREFIX = "sample:"

TRUST_HELP = ("trust the model file: load Lambda layers, whose Python bytecode RUNS ARBITRARY CODE on "
              "this machine when the model is loaded. Only for model files you made or fully trust.")

#: (option, ini key, ini type, default, help) of every setting but the ``--dt-trust-model`` flag.
OPTIONS = [
    ("--dt-model", "deeptest_model", "string", None,
     "model file to test (.keras, .h5, .tflite, .onnx or SavedModel dir; its model card is the .toml beside "
     "it), or sample:NAME for a shipped sample model (sample:dave2_steering)"),
    ("--dt-seeds", "deeptest_seeds", "string", None,
     "folder of seed frames (.png/.jpg); default: generated road scenes"),
    ("--dt-labels", "deeptest_labels", "string", None, "CSV of steering labels for the seed frames"),
    ("--dt-n-seeds", "deeptest_n_seeds", "string", str(DEFAULT_N_SEEDS),
     "number of generated scenes when no seed folder is given"),
    ("--dt-report", "deeptest_report", "string", None,
     f"folder for findings (image pairs, findings.jsonl, summary.json); default: {DEFAULT_REPORT} in rootdir"),
    ("--dt-budget", "deeptest_budget", "string", str(DEFAULT_BUDGET),
     "default budget of a model test: transformed inputs the metamorphic helper checks for it"),
    ("--dt-coverage", "deeptest_coverage", "string", DEFAULT_COVERAGE,
     "coverage criteria tracked over everything model tests run, comma separated ('none' for none)"),
]


@dataclass
class Settings:
    """The plugin's settings, resolved from the command line and the ini file."""

    model: Path | str | None  # a path, or "sample:NAME" for a shipped sample model
    seeds: Path | None
    labels: Path | None
    n_seeds: int
    report: Path
    budget: int
    coverage: tuple[str, ...]
    trust: bool

    @classmethod
    def from_config(cls, config) -> "Settings":
        ini_dir = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
        cwd = Path(config.invocation_params.dir)

        def value(ini):
            cli = config.getoption(ini)
            if cli is not None:
                return cli, cwd
            return config.getini(ini), ini_dir

        def path(ini):
            v, base = value(ini)
            if v in (None, ""):
                return None
            if ini == "deeptest_model" and str(v).startswith(SAMPLE_PREFIX):
                return str(v)
            return (base / os.path.expanduser(str(v))).resolve()

        def integer(ini, low):
            v, _ = value(ini)
            try:
                n = int(str(v))
            except ValueError:
                raise pytest.UsageError(f"deeptest-iot: {ini} must be a whole number, not {v!r}") from None
            if n < low:
                raise pytest.UsageError(f"deeptest-iot: {ini} must be >= {low}, not {n}")
            return n

        cov, _ = value("deeptest_coverage")
        cov_specs = tuple(s.strip() for s in str(cov).replace("\n", ",").split(",") if s.strip())
        if cov_specs in (("none",), ()):
            cov_specs = ()
        trust = config.getoption("deeptest_trust_model")
        return cls(model=path("deeptest_model"), seeds=path("deeptest_seeds"), labels=path("deeptest_labels"),
                   n_seeds=integer("deeptest_n_seeds", 1),
                   report=path("deeptest_report") or Path(config.rootpath) / DEFAULT_REPORT,
                   budget=integer("deeptest_budget", 0), coverage=cov_specs,
                   trust=bool(trust) if trust is not None else bool(config.getini("deeptest_trust_model")))
