"""The ``metamorphic`` fixture's helper: ``assert_invariant``, ``assert_equivalent`` (a model against its
twin) and the failure messages they raise.

A check runs original and transformed frames through the model, judges them with an oracle, adds
their activations to the session's coverage and writes broken inputs to the report as findings.
Imports only pytest and the standard library at module level (the plugin loads in every session).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deeptest_iot.testing.session import SessionState

MARKER = "model_test"
#: How many of the worst broken inputs a failure message shows.
WORST_SHOWN = 5


class DeeptestBudgetWarning(UserWarning):
    """A model test asked the metamorphic helper to check more inputs than its budget allows."""


@dataclass
class InvariantResult:
    """What ``assert_invariant`` checked when the relation held for every input."""

    checked: int
    relation: str
    outputs_before: Any
    outputs_after: Any
    violation: Any
    #: Inputs whose frame the model already gets wrong by its label: recorded apart, never a failure.
    already_wrong: int = 0


class Metamorphic:
    """Runs original and transformed frames through a model and checks a metamorphic relation."""

    def __init__(self, state: SessionState):
        self._state = state

    @property
    def budget(self) -> int:
        """The running test's budget of transformed inputs: its marker's, else the session's default."""
        item = self._state.current
        marker = item.get_closest_marker(MARKER) if item is not None else None
        if marker is not None:
            budget = marker.kwargs.get("budget", marker.args[0] if marker.args else None)
            if budget is not None:
                if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
                    raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}(budget=...) must be a whole "
                                            f"number >= 0, not {budget!r}")
                return budget
        return self._state.settings.budget

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

        from deeptest_iot.errors import DeeptestError

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

    def assert_equivalent(self, model, twin, images, transform=None, labels=None, **options):
        """Assert that ``twin`` (a converted copy of ``model``: LiteRT, ONNX, or any model ``load_model``
        reads) answers as ``model`` does on ``images``, or on ``transform`` of them when given: the
        differential relation on the same frame (docs/twins.md#the-differential-relation).

        ``model`` and ``images`` as for :meth:`assert_invariant`; ``twin``: a ModelUnderTest (e.g. the
        ``twin_under_test`` fixture), a path (its card: the ``.toml`` beside it, else the model's) or a
        Keras model (given the model's card). ``options`` go to the differential relation (``delta=``
        for steering, ``max_confidence_drop=`` for classification, ``score_threshold=`` /
        ``iou_threshold=`` for detection). A twin that cannot be compared with the model (another input
        size, preprocessing, task or output shape) fails the test with that reason.

        Both models run the same frames through the campaign engine's batch check; the model's
        activations go into the session's coverage. Disagreements are written to the model's report
        folder as findings with ``relation: "differential"`` (``before`` the model's output, ``after``
        the twin's) and raise an AssertionError naming the worst inputs and the paths of their images.
        Returns an :class:`InvariantResult` (``outputs_before`` the model's outputs, ``outputs_after``
        the twin's) when the twin agrees on every input.
        """
        __tracebackhide__ = True
        import numpy as np

        from deeptest_iot.errors import DeeptestError

        try:
            mut, frames, ids, labs, chain = self._prepare(model, images, transform, labels)
            twin_mut = self._state.resolve_twin(twin, mut)
        except DeeptestError as exc:
            pytest.fail(f"deeptest-iot: {exc}", pytrace=False)
        if len(frames) == 0:
            return InvariantResult(0, "differential", None, None, np.zeros(0))
        try:
            result, message = self._check_twin(mut, twin_mut, frames, ids, labs, chain, options)
        except DeeptestError as exc:
            pytest.fail(f"deeptest-iot: {exc}", pytrace=False)
        if message is not None:
            raise AssertionError(message)
        return result

    def assert_keeps_lane(self, model, condition, drives: int = 8, seed: int = 0, **options):
        """Assert that steering ``model`` keeps its lane in ``drives`` closed-loop drives under
        ``condition`` (e.g. "fog:0.5"; see deeptest_iot.drive.keeps_lane, whose ``distance=``,
        ``steps=``, ``speed=`` and ``out=`` it passes on). Raises an AssertionError naming the drives
        that left their lane; returns the DriveReport."""
        __tracebackhide__ = True
        from deeptest_iot.drive import keeps_lane
        from deeptest_iot.errors import DeeptestError

        try:
            report = keeps_lane(self._state.resolve_model(model), condition, drives=drives, seed=seed, **options)
        except DeeptestError as exc:
            pytest.fail(f"deeptest-iot: {exc}", pytrace=False)
        if not report.passed:
            raise AssertionError(report.message())
        return report

    def _prepare(self, model, images, transform, labels):
        import numpy as np

        from deeptest_iot.errors import ConfigError
        from deeptest_iot.model.core import check_frames
        from deeptest_iot.transforms import as_chain

        mut = self._state.resolve_model(model)
        ids = None
        if hasattr(images, "images") and hasattr(images, "ids"):
            ids = list(images.ids)
            if labels is None:
                labels = mut.task.seed_labels(images, mut.card)
            images = images.images
        frames = check_frames(images)
        if ids is None:
            ids = [f"input-{i}" for i in range(len(frames))]
        chain = as_chain(transform)
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

        from deeptest_iot.engine.check import SeedBatch

        state = self._state
        run = state.run_for(mut)
        n = len(frames)
        chain = chain.seeded(0)
        transformed = chain(frames)
        task = _relation(mut, relation)
        labels = labs

        def oracle_for(reference):
            if task is None:
                return relation  # an oracle object the test passed
            return task.oracle_for(mut.card, reference, labels, **oracle_options)

        failing = None
        if task is not None and labels is not None:
            # Frames the model already gets wrong by their labels break the relation whatever the
            # transform: as in campaigns, their findings are recorded apart (seed_failed) and do not
            # fail the test. Telling them needs the seeds' outputs before the check: one more forward
            # pass over the seeds, without activations.
            reference = mut.run(frames, with_activations=False).outputs
            oracle_for = task.oracle_for(mut.card, reference, labels, **oracle_options)
            failing = task.seed_failures(oracle_for, reference, labels, frames.shape[1:3])
            failing = None if failing is None else np.asarray(failing, bool)

        item = state.current
        nodeid = item.nodeid if item is not None else "(outside a test)"
        first_case = run.case
        result = run.check(transformed, [chain] * n, SeedBatch(ids=ids, indices=np.arange(n), images=frames,
                                                             labels=labels, failing=failing),
                           oracle=oracle_for, case_ids=[first_case + i for i in range(n)], extra={"test": nodeid})
        verdicts = result.verdicts
        apart = np.zeros(n, bool) if failing is None else failing
        counted = verdicts.failed & ~apart
        config = result.oracle.config() if hasattr(result.oracle, "config") else {"name": verdicts.relation}
        if config not in run.relations:
            run.relations.append(config)
        self._record(run, nodeid, chain, n, int(counted.sum()))

        message = None
        if counted.any():
            saved = {int(i): int(fid[1:]) for i, fid in zip(verdicts.failures, result.finding_ids)}
            message = failure_message(run.folder, mut, chain, verdicts, ids, saved, config, apart=apart)
        return InvariantResult(n, verdicts.relation, result.reference, result.outputs, verdicts.violation,
                               int(apart.sum())), message

    def _record(self, run, nodeid, chain, n, findings):
        """Count a checked batch of ``n`` inputs (``findings`` of them failing) against the run, the test
        and the session budget, and rewrite the run's summary."""
        run.case += n
        self._state.spent[nodeid] = self._state.spent.get(nodeid, 0) + n
        run.transforms.append(chain.name)
        test = run.tests.setdefault(nodeid, {"tried": 0, "findings": 0})
        test["tried"] += n
        test["findings"] += findings
        self._state.write_summary(run, "running")

    def _check_twin(self, mut, twin, frames, ids, labs, chain, options):
        import numpy as np

        from deeptest_iot.engine.check import SeedBatch
        from deeptest_iot.engine.summary import twin_info
        from deeptest_iot.tasks.differential import differential_oracle_for

        state = self._state
        run = state.run_for(mut)
        n = len(frames)
        chain = chain.seeded(0)
        transformed = chain(frames)
        oracle = differential_oracle_for(mut.card, **options)
        item = state.current
        nodeid = item.nodeid if item is not None else "(outside a test)"
        result = run.check(transformed, [chain] * n, SeedBatch(ids=ids, indices=np.arange(n), images=frames, labels=labs),
                           oracle=None, twin=twin, twin_oracle=oracle, case_ids=[run.case + i for i in range(n)],
                           extra={"test": nodeid, "twin": twin.name})
        verdicts = result.twin_verdicts
        if twin.fingerprint not in run.twins:
            run.twins[twin.fingerprint] = twin_info(twin, state.twin_checks.get((mut.fingerprint, twin.fingerprint)),
                                                    oracle.config())
        self._record(run, nodeid, chain, n, int(verdicts.failed.sum()))

        message = None
        if verdicts.failed.any():
            saved = {int(i): int(fid[1:]) for i, fid in zip(verdicts.failures, result.twin_finding_ids)}
            message = equivalence_message(run.folder, mut, twin, chain, verdicts, ids, saved, oracle.rule())
        return InvariantResult(n, verdicts.relation, result.outputs, result.twin_outputs, verdicts.violation), message


def _relation(mut, relation):
    """The task whose oracle judges (the card's, or the one ``relation`` names), or None when
    ``relation`` is an oracle object the test passed."""
    from deeptest_iot.tasks import get_task

    if relation is not None and not isinstance(relation, str):
        if not hasattr(relation, "check"):
            raise TypeError(f"relation must be a task name or an oracle with .check, not {relation!r}")
        return None
    return get_task(relation or mut.card.task)


def equivalence_message(folder: Path, mut, twin, chain, verdicts, ids, saved: dict[int, int], rule: str) -> str:
    """What a person needs to act on a twin that disagrees: how many, the worst ones, where their images are."""
    n, bad = len(verdicts), verdicts.failures
    order = bad[sorted(range(len(bad)), key=lambda k: -float(verdicts.violation[bad[k]]))]
    show = mut.task.show
    where = "on the images themselves" if not len(chain) else f"under {chain.name} (severity {chain.severity:.2f})"
    lines = [f"{len(bad)} of {n} input(s): twin {twin.name!r} disagreed with model {mut.name!r} {where}",
             f"relation: {rule}", f"worst {min(len(bad), WORST_SHOWN)}:"]
    for i in order[:WORST_SHOWN]:
        d = verdicts.details[i]
        fid = f"f{saved[int(i)]:06d}"
        v, thr = float(verdicts.violation[i]), float(verdicts.threshold[i])
        size = (f"|twin - model| {d['deviation']:.4f} > {thr:.4g} (violation {v:.4f})"
                if isinstance(d.get("deviation"), float) else f"violation {v:.4f} past the threshold {thr:.4g}")
        lines.append(f"  input {int(i)} ({ids[i]}): model {show(d.get('before'))}, twin {show(d.get('after'))}; {size}")
        lines.append(f"      frame both saw: {folder / 'images' / (fid + '_trans.png')}")
    if len(bad) > WORST_SHOWN:
        lines.append(f"  ... and {len(bad) - WORST_SHOWN} more")
    ids_saved = sorted(saved.values())
    span = f"f{ids_saved[0]:06d}" + (f"..f{ids_saved[-1]:06d}" if len(ids_saved) > 1 else "")
    lines.append(f"this check's {len(bad)} finding(s) ({span}, relation differential) are in "
                 f"{folder / 'findings.jsonl'}; see every finding with: deeptest-iot report {folder}")
    return "\n".join(lines)


def failure_message(folder: Path, mut, chain, verdicts, ids, saved: dict[int, int],
                    relation_config: dict | None = None, apart=None) -> str:
    """What a person needs to act on a broken relation: how many, the worst ones, where their images
    are. ``apart`` (N,) bool marks inputs whose frame the model already gets wrong: left out, counted."""
    import numpy as np

    n = len(verdicts)
    apart = np.zeros(n, bool) if apart is None else np.asarray(apart, bool)
    bad = np.asarray([i for i in verdicts.failures if not apart[i]], dtype=np.int64)
    order = bad[sorted(range(len(bad)), key=lambda k: -float(verdicts.violation[bad[k]]))]
    params = ", ".join(f"{t.name}({', '.join(f'{k}={v}' for k, v in t.params.items())})"
                       for t in chain.transforms)
    labelled = any(verdicts.details[i].get("rule") == "label" for i in bad)
    from deeptest_iot.tasks import TASKS

    task = TASKS.get(verdicts.relation)
    show = task.show if task is not None else str
    lines = [f"{len(bad)} of {n} input(s) broke the {verdicts.relation} relation of model {mut.name!r} under "
             f"{chain.name} (severity {chain.severity:.2f}): {params}",
             f"relation: {task.rule(relation_config, labelled) if task else f'the {verdicts.relation} relation'}",
             f"worst {min(len(bad), WORST_SHOWN)}:"]
    for i in order[:WORST_SHOWN]:
        d = verdicts.details[i]
        label = "" if d.get("label") is None else f", label {show(d.get('label'))}"
        fid = f"f{saved[int(i)]:06d}"
        v, thr = float(verdicts.violation[i]), float(verdicts.threshold[i])
        size = (f"deviation {d['deviation']:.4f} > threshold {thr:.4g} (violation {v:.4f})"
                if isinstance(d.get("deviation"), float) else f"violation {v:.4f} past the threshold {thr:.4g}")
        lines.append(f"  input {int(i)} ({ids[i]}): before {show(d.get('before'))} -> after "
                     f"{show(d.get('after'))}{label}; {size}")
        lines.append(f"      images: {folder / 'images' / (fid + '_orig.png')}")
        lines.append(f"              {folder / 'images' / (fid + '_trans.png')}")
    if len(bad) > WORST_SHOWN:
        lines.append(f"  ... and {len(bad) - WORST_SHOWN} more")
    if apart.any():
        lines.append(f"not counted: the model is already wrong on {int(apart.sum())} of these {n} frame(s) by their "
                     "labels, untransformed (their findings are recorded apart, marked seed_failed)")
    ids_saved = sorted(saved.values())
    span = f"f{ids_saved[0]:06d}" + (f"..f{ids_saved[-1]:06d}" if len(ids_saved) > 1 else "")
    lines.append(f"this check's {len(ids_saved)} finding(s) ({span}) are in {folder / 'findings.jsonl'}; "
                 f"see every finding with: deeptest-iot report {folder}")
    return "\n".join(lines)
