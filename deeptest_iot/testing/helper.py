"""The ``metamorphic`` fixture's helper: ``assert_invariant`` and the failure message it raises.

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

    def _prepare(self, model, images, transform, labels):
        import numpy as np

        from deeptest_iot.errors import ConfigError
        from deeptest_iot.model.core import check_frames

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

        from deeptest_iot.results.writer import finding_record

        state = self._state
        run = state.run_for(mut)
        n = len(frames)
        transformed = chain(frames, seed=0)
        track = run.tracker is not None
        res = mut.run(np.concatenate([frames, transformed]), with_activations=track)
        ref, out = res.outputs[:n], res.outputs[n:]  # an array, or a list of detections
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
    from deeptest_iot.errors import ConfigError
    from deeptest_iot.transforms import Chain, Transform, from_dict

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


def _oracle(mut, relation, labels, reference, options):
    from deeptest_iot.tasks.oracles import make_oracle

    if relation is not None and not isinstance(relation, str):
        if not hasattr(relation, "check"):
            raise TypeError(f"relation must be a task name or an oracle with .check, not {relation!r}")
        return relation
    task = relation or mut.card.task
    defaults: dict[str, Any] = {}
    if task == "steering":
        if labels is not None and options.get("mse_orig") is None:
            defaults = {"seed_predictions": reference, "seed_labels": labels}
    elif task in ("classification", "detection"):
        # Detection as in campaigns: the card's threshold decodes boxes, the oracle's (0.5) says which
        # are confident.
        defaults = {"classes": list(mut.card.classes) or None}
    return make_oracle(task, **{**defaults, **options})


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
