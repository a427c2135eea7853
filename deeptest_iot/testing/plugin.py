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
``--dt-twin``           ``deeptest_twin``          the model's converted twin (.tflite/.onnx, or int8 ...)
======================  =========================  ===============================================

Fixtures: ``model_under_test``, ``twin_under_test`` and ``seeds``/``seed_images`` (session),
``metamorphic`` (the helper, with ``assert_invariant`` and ``assert_equivalent``; session-scoped so
Hypothesis ``@given`` tests may use it, it finds the running test itself). Marker: ``@pytest.mark.model_test(budget=N)``.

The report folder is a campaign folder (``docs/results-format.md``, ``campaign.strategy`` =
``"pytest"``) for the configured model, or without one for the first model a test used; tests of
other models write to ``<report>/models/<name>-<fingerprint>/``. A new session replaces the
previous session's pytest report there, and refuses to touch a folder holding a campaign.
Not supported with pytest-xdist (workers would write the same folder).

This module holds only the hooks and fixtures: the settings are in ``settings`` (derived from the
campaign options schema), the session's models and report folders in ``session``, the helper in
``helper``; every check runs the campaign engine's batch check.
"""

from __future__ import annotations

import pytest

from deeptest_iot.testing.helper import MARKER, DeeptestBudgetWarning, InvariantResult, Metamorphic
from deeptest_iot.testing.settings import Settings, add_options
from deeptest_iot.testing.session import SessionState

# Public names of the plugin's API, importable from here as before the helper and settings moved out.
__all__ = ["DeeptestBudgetWarning", "InvariantResult", "Metamorphic", "Settings"]


def pytest_addoption(parser):
    add_options(parser)


_STATE = pytest.StashKey[SessionState]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{MARKER}(budget=None): a test of a neural network model; budget = most transformed "
                   "inputs the metamorphic helper checks for it (default --dt-budget)")
    # Resolved now: a bad option or ini value is a usage error before any test runs.
    config.stash[_STATE] = SessionState(Settings.from_config(config))
    profile = getattr(config.option, "hypothesis_profile", None)
    if profile == "deeptest":
        # Register the "deeptest" profile before Hypothesis's own plugin loads it (tryfirst).
        # Imports no TensorFlow.
        import deeptest_iot.testing.strategies  # noqa: F401


def _state(config) -> SessionState:
    return config.stash[_STATE]


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def model_under_test(request):
    """The model given by --dt-model / deeptest_model, loaded once; tests skip when none is configured."""
    from deeptest_iot.errors import DeeptestError

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
def twin_under_test(request, model_under_test):
    """The model's converted twin given by --dt-twin / deeptest_twin (a .tflite/.onnx file, or int8,
    float16, dynamic or onnx for the twin beside the model), loaded once and checked against the model;
    tests skip when none is configured. Use it with ``metamorphic.assert_equivalent``."""
    from deeptest_iot.errors import DeeptestError

    state = _state(request.config)
    try:
        twin = state.configured_twin()
    except DeeptestError as exc:
        pytest.fail(f"deeptest-iot: cannot load the twin under test: {exc}", pytrace=False)
    if twin is None:
        pytest.skip("no twin under test configured: pass --dt-twin PATH (or int8, float16, ...) or set "
                    "deeptest_twin = PATH in pytest.ini")
    return twin


@pytest.fixture(scope="session")
def seeds(request):
    """The seed frames as a SeedSet (ids, images, labels): --dt-seeds/--dt-labels, or generated scenes."""
    from deeptest_iot.errors import DeeptestError

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
    if state is not None:
        state.finish()


def pytest_terminal_summary(terminalreporter, config):
    state = config.stash.get(_STATE, None)
    if state is None or not state.runs:
        return
    tr = terminalreporter
    tr.write_sep("=", "deeptest-iot model tests")
    for run in state.runs.values():
        s = run.stats
        apart = s.apart["findings"]
        found = s.found - apart
        rate = found / (s.tried - s.apart["tried"]) if s.tried > s.apart["tried"] else 0.0
        twins = run.twin_stats is not None and run.twin_stats.tried
        by = " against its relation" if twins else ""  # the twins' own figures follow on their line
        tr.write_line(f"model {run.mut.name} ({run.mut.fingerprint[:19]}...): {s.tried} input(s) checked{by} by "
                      f"{len(run.tests)} test(s), {found} finding(s) ({rate:.1%})")
        if s.apart["tried"]:
            tr.write_line(f"  not counted: {s.apart['tried']} input(s) made from frames the model already gets wrong "
                          f"by their labels ({apart} finding(s), recorded apart)")
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
        t = run.twin_stats
        if t is not None and t.tried:
            tr.write_line(f"  twin{'s' if len(run.twins) > 1 else ''} {', '.join(x['name'] for x in run.twins.values())}: "
                          f"{t.tried} input(s) compared, {t.found} differential finding(s) ({t.found / t.tried:.1%})")
        tr.write_line(f"  report folder: {run.folder}  (deeptest-iot report {run.folder})")
