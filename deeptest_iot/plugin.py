"""pytest plugin for model QA: fixtures, a marker and a report of what the session's model tests found.

Installed with deeptest-iot as the ``pytest11`` entry point ``deeptest_iot``, so it is active in
every pytest run of the environment. A project that does not use it sees nothing: the module
imports only pytest and the standard library, TensorFlow and the rest of deeptest-iot are
imported the first time a fixture needs them, and the terminal section appears only after a test
ran the ``metamorphic`` helper.

Settings (command line wins over the ini file; ini paths are relative to the ini file):

======================  =========================  ===============================================
option                  ini key                    meaning
======================  =========================  ===============================================
``--dt-model``          ``deeptest_model``         model file to test, or ``sample:NAME``
``--dt-seeds``          ``deeptest_seeds``         folder of seed frames (default: generated scenes)
``--dt-labels``         ``deeptest_labels``        steering labels CSV for the seed frames
``--dt-n-seeds``        ``deeptest_n_seeds``       generated scenes when no folder is given (32)
``--dt-report``         ``deeptest_report``        report folder (default ``deeptest-report`` in rootdir)
``--dt-budget``         ``deeptest_budget``        default inputs a model test may check (1000)
``--dt-coverage``       ``deeptest_coverage``      coverage criteria, comma separated
``--dt-trust-model``    ``deeptest_trust_model``   load Lambda layers' bytecode (runs code!)
======================  =========================  ===============================================

Fixtures: ``model_under_test`` and ``seeds``/``seed_images`` (session), ``metamorphic`` (the
helper; session-scoped so Hypothesis ``@given`` tests may use it, it finds the running test
itself). Marker: ``@pytest.mark.model_test(budget=N)``.

The report folder is a campaign folder (``docs/results-format.md``, ``campaign.strategy`` =
``"pytest"``) for the configured model, or without one for the first model a test used; tests of
other models write to ``<report>/models/<name>-<fingerprint>/``. A new session replaces the
previous session's pytest report there, and refuses to touch a folder holding a campaign.
Not supported with pytest-xdist (workers would write the same folder).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DEFAULT_BUDGET = 1000
DEFAULT_N_SEEDS = 32
DEFAULT_REPORT = "deeptest-report"
DEFAULT_COVERAGE = "nc:0.75,kmnc:10,nbc"  # as `deeptest-iot run` (see campaign.DEFAULT_COVERAGE)
#: How many of the worst broken inputs a failure message shows.
WORST_SHOWN = 5
MARKER = "model_test"
#: ``--dt-model sample:dave2_steering`` tests a sample model shipped with deeptest-iot.
SAMPLE_PREFIX = "sample:"

TRUST_HELP = ("trust the model file: load Lambda layers, whose Python bytecode RUNS ARBITRARY CODE on "
              "this machine when the model is loaded. Only for model files you made or fully trust.")


class DeeptestBudgetWarning(UserWarning):
    """A model test asked the metamorphic helper to check more inputs than its budget allows."""


# -- options -------------------------------------------------------------------------------------

_SETTINGS = [  # (option, ini key, ini type, default, help)
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


def pytest_addoption(parser):
    group = parser.getgroup("deeptest-iot", "deeptest-iot model testing")
    for opt, ini, kind, default, text in _SETTINGS:
        group.addoption(opt, dest=ini, default=None, help=f"{text} (ini: {ini})")
        parser.addini(ini, text, type=kind, default=default)
    group.addoption("--dt-trust-model", dest="deeptest_trust_model", action="store_true", default=None,
                    help=f"{TRUST_HELP} (ini: deeptest_trust_model)")
    parser.addini("deeptest_trust_model", TRUST_HELP, type="bool", default=False)


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


_STATE = pytest.StashKey["SessionState"]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{MARKER}(budget=None): a test of a neural network model; budget = most transformed "
                   "inputs the metamorphic helper checks for it (default --dt-budget)")
    state = config.stash[_STATE] = SessionState(config)
    state.settings  # resolve now: a bad option or ini value is a usage error before any test runs
    profile = getattr(config.option, "hypothesis_profile", None)
    if profile == "deeptest":
        # Register the "deeptest" profile before Hypothesis's own plugin loads it (tryfirst).
        # Imports no TensorFlow.
        import deeptest_iot.strategies  # noqa: F401


def _state(config) -> "SessionState":
    return config.stash[_STATE]


# -- the session ---------------------------------------------------------------------------------

@dataclass
class ModelRun:
    """What the session's tests did with one model: its report folder, counters and coverage."""

    mut: Any
    folder: Path
    writer: Any
    stats: Any
    tracker: Any = None
    coverage_note: str = ""
    transforms: list = field(default_factory=list)
    relations: list = field(default_factory=list)
    tests: dict = field(default_factory=dict)
    case: int = 0
    start: float = field(default_factory=time.perf_counter)


class SessionState:
    """Per-session state: settings, the loaded model and seeds, one ModelRun per model used."""

    def __init__(self, config):
        self.config = config
        self._settings: Settings | None = None
        self.current = None  # the running test item
        self.spent: dict[str, int] = {}  # test node id -> inputs checked
        self.runs: dict[str, ModelRun] = {}  # fingerprint -> run
        self.configured = None  # the model from --dt-model, once loaded
        self.models: dict[Any, Any] = {}  # id(keras model) or resolved path -> ModelUnderTest
        self._seeds = None
        self.root_prepared = False

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_config(self.config)
        return self._settings

    # models and seeds
    def configured_model(self):
        if self.configured is None:
            s = self.settings
            if s.model is None:
                return None
            from .cli_model import load_from_options

            model = s.model
            if isinstance(model, str):  # sample:NAME
                from . import sample_models

                model = sample_models.path(model[len(SAMPLE_PREFIX):])
            self.configured = load_from_options(str(model), trust_model=s.trust)
            self.models[str(Path(model).resolve())] = self.configured
        return self.configured

    def resolve_model(self, model):
        """A ModelUnderTest for whatever a test passed: itself, a path, or a Keras model (loaded once)."""
        from .model import ModelUnderTest, load_model

        if isinstance(model, ModelUnderTest):
            return model
        if isinstance(model, (str, os.PathLike)):
            key = str(Path(model).resolve())
            if key not in self.models:
                self.models[key] = load_model(key, trust=self.settings.trust)
            return self.models[key]
        key = id(model)
        if key not in self.models:
            self.models[key] = (model, load_model(model))  # keep the object alive so its id stays unique
        return self.models[key][1]

    def seeds(self):
        if self._seeds is None:
            from .seeds import generated_seeds, load_seeds

            s = self.settings
            if s.seeds is None and s.labels is None:
                self._seeds = generated_seeds(s.n_seeds, seed=0)
            else:
                self._seeds = load_seeds(s.seeds, labels=s.labels)
        return self._seeds

    def seeds_description(self) -> str:
        s = self.settings
        if s.seeds is None and s.labels is None:
            return f"generated:{s.n_seeds}"
        return f"{s.seeds or s.labels.parent} ({len(self.seeds())} images)"

    # budget
    def budget_for(self, item) -> int:
        marker = item.get_closest_marker(MARKER) if item is not None else None
        if marker is not None:
            budget = marker.kwargs.get("budget", marker.args[0] if marker.args else None)
            if budget is not None:
                if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
                    raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}(budget=...) must be a whole "
                                            f"number >= 0, not {budget!r}")
                return budget
        return self.settings.budget

    # runs
    def run_for(self, mut) -> ModelRun:
        if mut.fingerprint in self.runs:
            return self.runs[mut.fingerprint]
        from .results import CampaignStats, FindingsWriter

        root = self.settings.report
        if not self.root_prepared:
            _prepare_folder(root)
            models_dir = root / "models"
            if models_dir.is_dir():
                for sub in sorted(models_dir.iterdir()):
                    if sub.is_dir():
                        _prepare_folder(sub)
            self.root_prepared = True
        configured = self.configured_model() if self.settings.model is not None else None
        owns_root = (configured.fingerprint == mut.fingerprint if configured is not None
                     else not any(r.folder == root for r in self.runs.values()))
        if owns_root:
            folder = root
        else:
            fp = mut.fingerprint.split(":")[-1][:12]
            folder = root / "models" / f"{_safe(mut.name)}-{fp}"
            _prepare_folder(folder)
        run = ModelRun(mut=mut, folder=folder, writer=FindingsWriter(folder), stats=CampaignStats())
        self._start_coverage(run)
        self.runs[mut.fingerprint] = run
        return run

    def _start_coverage(self, run: ModelRun) -> None:
        mut, specs = run.mut, self.settings.coverage
        if not specs:
            run.coverage_note = "coverage not tracked (deeptest_coverage = none)"
            return
        if not mut.supports_coverage or not mut.layer_sizes:
            run.coverage_note = f"coverage not tracked: {mut.name!r} is a {mut.kind} model without readable layers"
            return
        from .coverage import CoverageTracker, Profile, parse_specs

        profile = None
        if any(s.kind in ("kmnc", "nbc", "snac") for s in parse_specs(specs)):
            beside = Path(mut.path).with_suffix(".profile.npz") if mut.path else None
            if beside is not None and beside.is_file():
                profile = Profile.load(beside, mut.fingerprint, mut.layer_sizes)
                run.coverage_note = f"profile: {beside}"
            else:
                acts = mut.run(self.seeds().images, with_activations=True).activations
                profile = Profile.from_batches([acts], mut.fingerprint, mut.layer_sizes)
                run.coverage_note = f"profile: the session's seeds ({self.seeds_description()})"
        run.tracker = CoverageTracker(specs, mut.layer_sizes, profile, fingerprint=mut.fingerprint)

    def write_summary(self, run: ModelRun, status: str) -> None:
        from . import __version__
        from .campaign import _libraries
        from .results import write_summary

        mut = run.mut
        model = {"path": mut.path, "name": mut.name, "fingerprint": mut.fingerprint, "task": mut.card.task,
                 "card": mut.card.to_dict(), "units": mut.card.units, "classes": list(mut.card.classes),
                 "layers": mut.layer_sizes, "neurons": mut.neurons}
        campaign = {"seed": 0, "strategy": "pytest", "budget": self.settings.budget,
                    "seeds": self.seeds_description(), "transforms": sorted(set(run.transforms)),
                    "coverage": list(self.settings.coverage) if run.tracker is not None else [],
                    "relation": run.relations[0] if run.relations else None,
                    "relations": run.relations, "tests": len(run.tests)}
        summary = {"format": 1, "tool": {"name": "deeptest-iot", "version": __version__},
                   "libraries": _libraries(), "model": model, "campaign": campaign, "status": status,
                   "inputs_tried": run.stats.tried, "inputs_rejected": 0, "findings": run.stats.found,
                   "duration_s": round(time.perf_counter() - run.start, 3), **run.stats.tables(),
                   "coverage": run.tracker.summary()["criteria"] if run.tracker is not None else {},
                   "coverage_growth": run.stats.growth if run.tracker is not None else [],
                   "tests": run.tests}
        write_summary(run.folder, summary)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)) or "model"


def _prepare_folder(folder: Path) -> None:
    """Make ``folder`` ready for this session: remove a previous pytest session's report, refuse others."""
    from .errors import ConfigError

    summary, findings = folder / "summary.json", folder / "findings.jsonl"
    if summary.is_file():
        try:
            strategy = (json.loads(summary.read_text(encoding="utf-8")).get("campaign") or {}).get("strategy")
        except (ValueError, UnicodeDecodeError, AttributeError):
            strategy = "unreadable"
        if strategy != "pytest":
            raise ConfigError(f"report folder {folder} holds a deeptest-iot campaign (strategy {strategy!r}), "
                              "not a pytest report; choose another --dt-report / deeptest_report "
                              "(deeptest-iot never overwrites campaign results)")
        for name in ("findings.jsonl", "summary.json", "coverage.npz"):
            (folder / name).unlink(missing_ok=True)
        for png in (folder / "images").glob("f*_*.png"):
            if png.stem.endswith(("_orig", "_trans")):
                png.unlink()
    elif findings.is_file() and findings.stat().st_size:
        raise ConfigError(f"report folder {folder} holds findings.jsonl but no summary.json (a killed campaign?); "
                          "choose another --dt-report / deeptest_report")


# -- the metamorphic helper ----------------------------------------------------------------------

@dataclass
class InvariantResult:
    """What ``assert_invariant`` checked when the relation held for every input."""

    checked: int
    relation: str
    outputs_before: Any
    outputs_after: Any
    violation: Any


class Metamorphic:
    """Runs original and transformed frames through a model and checks a metamorphic relation."""

    def __init__(self, state: SessionState):
        self._state = state

    @property
    def budget(self) -> int:
        """The running test's budget of transformed inputs."""
        return self._state.budget_for(self._state.current)

    @property
    def remaining(self) -> int:
        """Inputs the running test may still check."""
        item = self._state.current
        return max(self.budget - self._state.spent.get(item.nodeid if item else "", 0), 0)

    def assert_invariant(self, model, images, transform, relation=None, labels=None, **oracle_options):
        """Assert that ``model``'s output keeps ``relation`` when ``transform`` is applied to ``images``.

        ``model``: a ModelUnderTest (e.g. the ``model_under_test`` fixture), a model path or a Keras
        model. ``images``: uint8 RGB (N, H, W, 3), or a SeedSet (``seeds`` fixture; its ids name the
        findings and its steering labels are used). ``transform``: a Transform, a Chain, a list of
        transforms (applied in order) or a ``to_dict()`` dict. ``relation``: "steering",
        "classification", "detection" (default: the model card's task) or an oracle object.
        ``labels``: steering angles (N,) for DeepTest's labelled rule. ``oracle_options`` go to
        ``make_oracle`` (``delta=``, ``lam=``, ``max_confidence_drop=``, ...).

        Originals and transformed frames run through the model in one batched call; their
        activations go into the session's coverage. Broken inputs are written to the report folder
        as findings (campaign format) and raise an AssertionError naming the worst of them and the
        paths of their image pairs. Returns an :class:`InvariantResult` when the relation holds.
        """
        __tracebackhide__ = True
        import numpy as np

        from .errors import DeeptestError

        try:
            prepared = self._prepare(model, images, transform, labels)
        except DeeptestError as exc:
            pytest.fail(f"deeptest-iot: {exc}", pytrace=False)
        mut, frames, ids, labs, chain = prepared
        n = len(frames)
        if n == 0:
            return InvariantResult(0, str(relation or mut.card.task), None, None, np.zeros(0))
        try:
            result, message = self._check(mut, frames, ids, labs, chain, relation, oracle_options)
        except DeeptestError as exc:
            pytest.fail(f"deeptest-iot: {exc}", pytrace=False)
        if message is not None:
            raise AssertionError(message)
        return result

    def _prepare(self, model, images, transform, labels):
        import numpy as np

        from .errors import ConfigError
        from .model import check_frames

        mut = self._state.resolve_model(model)
        ids = None
        if hasattr(images, "images") and hasattr(images, "ids"):
            ids = list(images.ids)
            if labels is None and mut.card.task == "steering" and getattr(images, "task", None) == "steering":
                labels = images.labels
            images = images.images
        frames = check_frames(images)
        if ids is None:
            ids = [f"input-{i}" for i in range(len(frames))]
        chain = _as_chain(transform)
        labs = None
        if labels is not None:
            labs = np.asarray(labels)
            if labs.shape[:1] != (len(frames),):
                raise ConfigError(f"labels: {labs.shape[0] if labs.ndim else 0} label(s) for {len(frames)} image(s)")
        item = self._state.current
        remaining = self.remaining
        if len(frames) > remaining:
            where = item.nodeid if item is not None else "this test"
            warnings.warn(DeeptestBudgetWarning(
                f"{where}: budget of {self.budget} inputs reached; checking {remaining} of {len(frames)} "
                f"input(s). Raise it with @pytest.mark.{MARKER}(budget=N) or --dt-budget"), stacklevel=4)
            frames, ids = frames[:remaining], ids[:remaining]
            labs = None if labs is None else labs[:remaining]
        return mut, frames, ids, labs, chain

    def _check(self, mut, frames, ids, labs, chain, relation, oracle_options):
        import numpy as np

        from .results import finding_record

        state = self._state
        run = state.run_for(mut)
        n = len(frames)
        transformed = chain(frames, seed=0)
        track = run.tracker is not None
        res = mut.run(np.concatenate([frames, transformed]), with_activations=track)
        ref, out = _split(res.outputs, n)
        gains = np.zeros(n, np.int64)
        if track:
            all_gains = run.tracker.update(res.activations)
            gains = all_gains[n:]

        oracle = _oracle(mut, relation, labs, ref, oracle_options)
        task_labels = labs if oracle.relation in ("steering", "classification") else None
        verdicts = oracle.check(ref, out, [chain] * n, labels=task_labels, frame_size=frames.shape[1:3])

        item = state.current
        nodeid = item.nodeid if item is not None else "(outside a test)"
        state.spent[nodeid] = state.spent.get(nodeid, 0) + n
        run.stats.add([chain.name] * n, [chain.severity] * n, verdicts.failed, verdicts.violation)
        if track:
            run.stats.record_growth(run.tracker.coverage())
        run.transforms.append(chain.name)
        config = oracle.config()
        if config not in run.relations:
            run.relations.append(config)
        test = run.tests.setdefault(nodeid, {"tried": 0, "findings": 0})
        test["tried"] += n
        test["findings"] += int(verdicts.failed.sum())

        records, pairs, first_id = [], [], run.writer.count
        for i in verdicts.failures:
            records.append(finding_record(
                verdicts, i, case=run.case + int(i), seed_id=ids[i], seed_index=int(i), transform=chain.name,
                chain=[t.to_dict() for t in chain.transforms], severity=chain.severity, coverage_gain=gains[i],
                test=nodeid))
            pairs.append((frames[i], transformed[i]))
        run.writer.append(records, pairs)
        run.case += n
        state.write_summary(run, "running")

        message = None
        if verdicts.failed.any():
            saved = {int(i): first_id + k for k, i in enumerate(verdicts.failures)}
            message = failure_message(run.folder, mut, chain, verdicts, ids, saved, config)
        return InvariantResult(n, verdicts.relation, ref, out, verdicts.violation), message


def _as_chain(transform):
    from .errors import ConfigError
    from .transforms import Chain, Transform, from_dict

    if isinstance(transform, Chain):
        return transform
    if isinstance(transform, Transform):
        return Chain([transform])
    if isinstance(transform, dict):
        t = from_dict(transform)
        return t if isinstance(t, Chain) else Chain([t])
    if isinstance(transform, (list, tuple)) and transform:
        return Chain(transform)
    if isinstance(transform, str):
        raise ConfigError(f"transform {transform!r}: pass a transform value, e.g. "
                          f"deeptest_iot.transforms.get({transform!r}, severity=0.5)")
    raise ConfigError(f"expected a Transform, a Chain or a list of transforms, not {transform!r}")


def _split(outputs, n):
    if hasattr(outputs, "shape"):
        return outputs[:n], outputs[n:]
    outputs = list(outputs)
    return outputs[:n], outputs[n:]


def _oracle(mut, relation, labels, reference, options):
    from .oracles import make_oracle

    if relation is not None and not isinstance(relation, str):
        if not hasattr(relation, "check"):
            raise TypeError(f"relation must be a task name or an oracle with .check, not {relation!r}")
        return relation
    task = relation or mut.card.task
    defaults: dict[str, Any] = {}
    if task == "steering":
        if labels is not None and options.get("mse_orig") is None:
            defaults = {"seed_predictions": reference, "seed_labels": labels}
    elif task == "classification":
        defaults = {"classes": list(mut.card.classes) or None}
    elif task == "detection":
        # As in campaigns: the card's threshold decodes boxes, the oracle's (0.5) says which are confident.
        defaults = {"classes": list(mut.card.classes) or None}
    return make_oracle(task, **{**defaults, **options})


# -- the failure message -------------------------------------------------------------------------

def _show(value) -> str:
    """A model output as a person reads it: an angle, a class with its confidence, or the objects found."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:+.4f}"
    if isinstance(value, dict) and "name" in value:
        conf = value.get("confidence")
        return f"{value['name']}" + (f" ({conf:.2f})" if isinstance(conf, (int, float)) else "")
    if isinstance(value, dict) and "boxes" in value:
        classes = value.get("classes") or []
        return f"{len(value['boxes'])} object(s) {sorted(classes)}"
    return str(value)


def _rule(verdicts, oracle_config: dict | None, labelled: bool) -> str:
    rel = verdicts.relation
    if rel == "steering":
        if labelled:
            return ("(label - after)^2 <= lambda * MSE_orig: the angle on the transformed frame must stay "
                    "near the true angle (DeepTest's labelled rule)")
        return "|after - before| <= delta: the steering angle must not move when only the picture changes"
    if rel == "classification":
        drop = (oracle_config or {}).get("max_confidence_drop")
        extra = f" and its confidence must not drop by more than {drop}" if drop is not None else ""
        return f"the top-1 class must stay the same{extra}"
    if rel == "detection":
        return "the same confident objects must be found in the same places with the same classes (IoU match)"
    return f"the {rel} relation"


def failure_message(folder: Path, mut, chain, verdicts, ids, saved: dict[int, int],
                    relation_config: dict | None = None) -> str:
    """What a person needs to act on a broken relation: how many, the worst ones, where their images are."""
    n = len(verdicts)
    bad = verdicts.failures
    order = bad[sorted(range(len(bad)), key=lambda k: -float(verdicts.violation[bad[k]]))]
    params = ", ".join(f"{t.name}({', '.join(f'{k}={v}' for k, v in t.params.items())})"
                       for t in chain.transforms)
    labelled = any(verdicts.details[i].get("rule") == "label" for i in bad)
    lines = [f"{len(bad)} of {n} input(s) broke the {verdicts.relation} relation of model {mut.name!r} under "
             f"{chain.name} (severity {chain.severity:.2f}): {params}",
             f"relation: {_rule(verdicts, relation_config, labelled)}",
             f"worst {min(len(bad), WORST_SHOWN)}:"]
    for i in order[:WORST_SHOWN]:
        d = verdicts.details[i]
        label = "" if d.get("label") is None else f", label {_show(d.get('label'))}"
        fid = f"f{saved[int(i)]:06d}"
        v, thr = float(verdicts.violation[i]), float(verdicts.threshold[i])
        size = (f"deviation {d['deviation']:.4f} > threshold {thr:.4g} (violation {v:.4f})"
                if isinstance(d.get("deviation"), float) else f"violation {v:.4f} past the threshold {thr:.4g}")
        lines.append(f"  input {int(i)} ({ids[i]}): before {_show(d.get('before'))} -> after "
                     f"{_show(d.get('after'))}{label}; {size}")
        lines.append(f"      images: {folder / 'images' / (fid + '_orig.png')}")
        lines.append(f"              {folder / 'images' / (fid + '_trans.png')}")
    if len(bad) > WORST_SHOWN:
        lines.append(f"  ... and {len(bad) - WORST_SHOWN} more")
    ids_saved = sorted(saved.values())
    span = f"f{ids_saved[0]:06d}" + (f"..f{ids_saved[-1]:06d}" if len(ids_saved) > 1 else "")
    lines.append(f"this check's {len(bad)} finding(s) ({span}) are in {folder / 'findings.jsonl'}; "
                 f"see every finding with: deeptest-iot report {folder}")
    return "\n".join(lines)


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def model_under_test(request):
    """The model given by --dt-model / deeptest_model, loaded once; tests skip when none is configured."""
    from .errors import DeeptestError

    state = _state(request.config)
    try:
        mut = state.configured_model()
    except DeeptestError as exc:
        pytest.fail(f"deeptest-iot: cannot load the model under test: {exc}", pytrace=False)
    if mut is None:
        pytest.skip("no model under test configured: pass --dt-model PATH or set deeptest_model = PATH "
                    "in pytest.ini")
    return mut


@pytest.fixture(scope="session")
def seeds(request):
    """The seed frames as a SeedSet (ids, images, labels): --dt-seeds/--dt-labels, or generated scenes."""
    from .errors import DeeptestError

    try:
        return _state(request.config).seeds()
    except DeeptestError as exc:
        pytest.fail(f"deeptest-iot: cannot load the seed frames: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def seed_images(seeds):
    """The seed frames, uint8 RGB (N, H, W, 3)."""
    return seeds.images


@pytest.fixture(scope="session")
def metamorphic(request):
    """The metamorphic helper: ``metamorphic.assert_invariant(model, images, transform, ...)``."""
    return Metamorphic(_state(request.config))


# -- hooks ---------------------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _state(item.config).current = item


def pytest_runtest_teardown(item):
    state = _state(item.config)
    if state.current is item:
        state.current = None


def pytest_sessionfinish(session):
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    for run in state.runs.values():
        if run.tracker is not None:
            run.tracker.save(run.folder / "coverage.npz")
        state.write_summary(run, "complete")


def pytest_terminal_summary(terminalreporter, config):
    state = config.stash.get(_STATE, None)
    if state is None or not state.runs:
        return
    tr = terminalreporter
    tr.write_sep("=", "deeptest-iot model tests")
    for run in state.runs.values():
        s = run.stats
        rate = s.found / s.tried if s.tried else 0.0
        tr.write_line(f"model {run.mut.name} ({run.mut.fingerprint[:19]}...): {s.tried} input(s) checked by "
                      f"{len(run.tests)} test(s), {s.found} finding(s) ({rate:.1%})")
        if run.tracker is not None:
            summary = run.tracker.summary()["criteria"]
            parts = []
            for name, c in summary.items():
                if "coverage" in c:
                    parts.append(f"{name} {c['coverage']:.1%} ({c['covered']}/{c['total']})")
                else:
                    parts.append(f"{name} {c.get('patterns')} patterns")
            tr.write_line(f"  coverage of {run.tracker.n_inputs} input(s) run: " + ", ".join(parts))
        if run.coverage_note:
            tr.write_line(f"  {run.coverage_note}")
        worst = sorted(((name, row) for name, row in s.per_transform.items() if row["findings"]),
                       key=lambda kv: -kv[1]["findings"] / kv[1]["tried"])
        for name, row in worst[:5]:
            tr.write_line(f"  {name}: {row['findings']} of {row['tried']} broke the relation "
                          f"(max violation {row['max_violation']:.4g})")
        tr.write_line(f"  report folder: {run.folder}  (deeptest-iot report {run.folder})")
