"""Steering: one angle per frame (radians unless the card says degrees; positive = steer left).

**Relation** (DeepTest). With a label: input *i* fails when ``(expected_label_i - pred_t_i)**2 >
lam * mse_orig``, ``mse_orig`` the model's MSE on the seeds (:func:`steering_mse`). Without a label:
it fails when ``|pred_t_i - expected_i| > delta``, ``expected_i`` the model's output on the
untransformed seed. A chain that mirrors the frame left-right negates the expected output and the
label (``pred(flip(x))`` should be ``-pred(x)``). A value exactly at a bound holds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from deeptest_iot.errors import ConfigError, InputError, ModelError, OutputError
from deeptest_iot.tasks.base import (Task, Verdicts, finite, is_number, labels_csv, make_verdicts, number,
                                     per_chain, per_input_chains)

#: DeepTest explored lambda in 1..10. At 5 a labelled frame fails when its absolute error exceeds
#: sqrt(5) ~ 2.24 times the model's RMS error on the seeds: with roughly normal errors about 2.5%
#: of unperturbed seeds would already sit there, so a failure is an error well outside the model's
#: usual spread, not noise.
DEFAULT_LAMBDA = 5.0
#: 0.1 rad = 5.7 degrees: 5% of a [-1, 1] rad steering range (Udacity / Dave-2 style data), larger
#: than the frame-to-frame jitter of a lane-keeping model on a straight road and smaller than a lane
#: change. In the model's output units; set it when the model card's units are not radians.
DEFAULT_DELTA = 0.1


def output_vector(name: str, values, n: int | None = None) -> np.ndarray:
    """(N,) or (N, 1) model outputs as a float64 (N,) array."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"{name} must be numbers: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise OutputError(f"{name} must have shape (N,) or (N, 1), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise OutputError(f"{name} has {arr.shape[0]} entries, expected {n} (one per input)")
    return finite(name, arr)


def labels_vector(labels, n: int) -> np.ndarray:
    """Steering labels as (N,) float64; NaN (or None) marks an input without a label."""
    try:
        arr = np.asarray([np.nan if v is None else v for v in labels] if isinstance(labels, (list, tuple))
                         else labels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"steering labels must be numbers: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise InputError(f"labels must have one entry per input: shape ({n},), got {arr.shape}")
    if np.isinf(arr).any():
        raise InputError("steering labels contain Inf")
    return arr


def steering_mse(predictions, labels) -> float:
    """The model's mean squared error on the seeds (DeepTest's MSE_orig); NaN labels are skipped."""
    preds = output_vector("seed predictions", predictions)
    labs = labels_vector(labels, preds.shape[0])
    have = ~np.isnan(labs)
    if not have.any():
        raise InputError("steering_mse needs at least one labelled seed")
    return float(np.mean((labs[have] - preds[have]) ** 2))


class SteeringOracle:
    """DeepTest's steering relation, with and without labels, and the flip relation."""

    relation = "steering"

    def __init__(self, lam: float = DEFAULT_LAMBDA, delta: float = DEFAULT_DELTA, mse_orig: float | None = None):
        self.lam = number("lambda", lam, low=0.0, low_open=True)
        self.delta = number("delta", delta, low=0.0)
        self.mse_orig = None if mse_orig is None else number("mse_orig", mse_orig, low=0.0)

    @classmethod
    def from_seeds(cls, predictions, labels, lam: float = DEFAULT_LAMBDA, delta: float = DEFAULT_DELTA):
        """An oracle whose MSE_orig is measured on the seeds' predictions and labels."""
        return cls(lam=lam, delta=delta, mse_orig=steering_mse(predictions, labels))

    def config(self) -> dict:
        """The relation's settings, for summary.json's ``campaign.relation``."""
        return {"name": self.relation, "lambda": self.lam, "delta": self.delta, "mse_orig": self.mse_orig}

    def check(self, reference_outputs, outputs, transforms=None, labels=None, frame_size=None) -> Verdicts:
        """Verdicts for ``outputs`` (on transformed frames) against ``reference_outputs`` (on seeds).

        ``labels`` (N,) are the seeds' true angles; NaN marks an unlabelled seed, which is judged by
        the ``delta`` rule. Labelled inputs need ``mse_orig``. ``frame_size`` is unused here.
        """
        ref = output_vector("reference outputs", reference_outputs)
        n = ref.shape[0]
        out = output_vector("outputs", outputs, n)
        flipped = np.asarray(per_chain(per_input_chains(transforms, n), lambda c: c.mirrors_horizontally), bool)
        sign = np.where(flipped, -1.0, 1.0)

        labs = np.full(n, np.nan) if labels is None else labels_vector(labels, n)
        labelled = ~np.isnan(labs)
        if labelled.any() and self.mse_orig is None:
            raise ConfigError("steering labels were given but mse_orig is unknown: pass mse_orig= to "
                              "make_oracle (compute it with steering_mse(seed_predictions, seed_labels))")
        bound_label = self.lam * (self.mse_orig if self.mse_orig is not None else 0.0)

        expected = np.where(labelled, sign * np.nan_to_num(labs), sign * ref)
        deviation = np.where(labelled, (expected - out) ** 2, np.abs(out - expected))
        threshold = np.where(labelled, bound_label, self.delta)
        failed = deviation > threshold
        violation = deviation - threshold

        details = [
            {"before": float(ref[i]), "after": float(out[i]),
             "label": float(labs[i]) if labelled[i] else None,
             "expected": float(expected[i]), "flipped": bool(flipped[i]),
             "rule": "label" if labelled[i] else "reference",
             "deviation": float(deviation[i]),
             "violation": float(violation[i]) if failed[i] else 0.0,
             "threshold": float(threshold[i])}
            for i in range(n)
        ]
        return make_verdicts(self.relation, failed, violation, threshold, details)


def _mirrors(finding: dict) -> bool:
    """Whether a finding's chain mirrors the frame; InputError when its chain cannot be read."""
    from deeptest_iot.transforms import Chain

    try:
        return Chain.from_json(finding.get("chain") or []).mirrors_horizontally
    except ConfigError as exc:
        raise InputError(f"finding {finding.get('id')}: its chain cannot be read ({exc})") from None


def expected_steering(finding: dict) -> float:
    """What the relation expected on the transformed frame: the oracle's ``details.expected`` when
    recorded, else ``before``, negated when the chain mirrors the frame (the flip relation; a chain
    this version cannot read counts as not mirrored: this is for display)."""
    expected = (finding.get("details") or {}).get("expected")
    if is_number(expected):
        return float(expected)
    try:
        flipped = _mirrors(finding)
    except InputError:
        flipped = False
    return -float(finding["before"]) if flipped else float(finding["before"])


class SteeringTask(Task):
    name = "steering"
    description = "one steering angle per frame; it must not move when only the weather or light changed"
    oracle_class = SteeringOracle
    oracle_options = frozenset({"lam", "delta", "mse_orig"})
    drivable = True

    def make_oracle(self, seed_predictions=None, seed_labels=None, **options):
        """``seed_predictions`` + ``seed_labels`` measure ``mse_orig`` (DeepTest's MSE_orig)."""
        if (seed_predictions is None) != (seed_labels is None):
            raise ConfigError("pass seed_predictions and seed_labels together (to measure mse_orig)")
        if seed_predictions is not None:
            if options.get("mse_orig") is not None:
                raise ConfigError("pass either mse_orig or seed_predictions/seed_labels, not both")
            options["mse_orig"] = steering_mse(seed_predictions, seed_labels)
        return super().make_oracle(**options)

    def oracle_for(self, card, reference=None, labels=None, **options):
        """MSE_orig is measured on the seeds when they have labels and no fixed one is given."""
        if options.get("mse_orig") is None and labels is not None and reference is not None \
                and np.isfinite(np.asarray(labels, np.float64)).any():
            options.update(seed_predictions=reference, seed_labels=labels)
        return self.make_oracle(**options)

    def seed_labels(self, seeds, card=None):
        labels = getattr(seeds, "labels", None)
        if labels is None or getattr(seeds, "task", None) not in (None, "steering"):
            return None
        labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        if labels.shape[0] != len(seeds.images):
            raise InputError(f"{labels.shape[0]} labels for {len(seeds.images)} seed images")
        return labels

    def seed_failures(self, oracle, reference, labels, frame_hw):
        """Seeds whose own prediction breaks the labelled rule: (label - pred)^2 > lambda * MSE_orig."""
        if labels is None or not np.isfinite(np.asarray(labels, np.float64)).any() or oracle.mse_orig is None:
            return None
        return oracle.check(reference, reference, None, labels=labels).failed

    def health(self, reference, labels):
        pred = np.asarray(reference, np.float64).reshape(-1)
        problems = []
        labs = None if labels is None else np.asarray(labels, np.float64).reshape(-1)
        have = None if labs is None else np.isfinite(labs)
        label_std = float(np.std(labs[have])) if have is not None and have.sum() > 1 else 0.0
        scale = max(label_std, abs(float(np.mean(pred))) if len(pred) else 0.0, 1e-3)
        if len(pred) > 1 and float(np.std(pred)) < 1e-3 * scale:
            problems.append(f"its steering is constant on the seeds ({float(np.mean(pred)):+.4g} on all "
                            f"{len(pred)}, spread {float(np.std(pred)):.2g}): a model that ignores its input "
                            "breaks no relation that compares it with itself; check the model and its card")
        if label_std > 0 and have.sum() > 1:
            mse = float(np.mean((labs[have] - pred[have]) ** 2))
            if mse >= label_std ** 2:
                problems.append(f"its MSE on the labelled seeds ({mse:.3g}) is at least their label variance "
                                f"({label_std ** 2:.3g}): it predicts no better than a constant, so the labelled "
                                "relation's bound lambda * MSE_orig is too loose to fail")
        return problems

    def rule(self, config, labelled):
        if labelled:
            return ("(label - after)^2 <= lambda * MSE_orig: the angle on the transformed frame must stay "
                    "near the true angle (DeepTest's labelled rule)")
        return "|after - before| <= delta: the steering angle must not move when only the picture changes"

    def decode(self, raw, mut, frame_hw):
        arr = mut.check_finite(raw[mut.output_index(raw)])
        arr = arr.reshape(len(arr), -1).astype(np.float64)
        if arr.shape[1] != 1:
            raise ModelError(f"steering model {mut.name!r} has {arr.shape[1]} output units; expected one "
                             "(set task = \"classification\" or choose the output in the model card)")
        return arr[:, 0]

    def export_target(self, finding):
        """The oracle's ``details.expected`` when recorded; otherwise the seed's label, else the
        model's output on the original frame, negated when the chain mirrors the frame."""
        expected = (finding.get("details") or {}).get("expected")
        if is_number(expected):
            return float(expected), "oracle expected"
        if not (is_number(finding.get("label")) or is_number(finding.get("before"))):
            raise InputError(f"finding {finding['id']}: neither a label nor a numeric 'before' to export a "
                             "steering label from")
        sign = -1.0 if _mirrors(finding) else 1.0
        suffix = ", negated (flip)" if sign < 0 else ""
        if is_number(finding.get("label")):
            return sign * float(finding["label"]), "seed label" + suffix
        if is_number(finding.get("before")):
            return sign * float(finding["before"]), "model on original" + suffix
        raise InputError(f"finding {finding['id']}: neither a label nor a numeric 'before' to export a "
                         "steering label from")

    def export_files(self, findings, targets):
        arrays = {"labels": np.array([label for label, _ in targets], np.float32),
                  "sources": np.array([source for _, source in targets], dtype=str)}
        return arrays, {"labels.csv": labels_csv(findings, targets, lambda v: repr(float(v)))}

    def display_gain(self, findings, units):
        """Steering angles of lane keeping are a few degrees, too small to see: the largest angle is
        drawn near 45 degrees, by a round gain (1, 2, 5, 10 or 20, never below 1)."""
        return steering_gain(findings, units)

    def annotate(self, original, transformed, finding, *, scales, units, class_names, gain):
        """Arrows: before on the original, after on the transformed with what the relation expected as
        a thin ghost; the seed's label, when known, as a thin blue arrow on the original."""
        from deeptest_iot.tasks.drawing import AFTER_BGR, BEFORE_BGR, LABEL_BGR, draw_steering, text

        before, after = finding.get("before"), finding.get("after")
        if not (is_number(before) and is_number(after)):
            return super().annotate(original, transformed, finding, scales=scales, units=units,
                                    class_names=class_names, gain=gain)
        if is_number(finding.get("label")):
            draw_steering(original, gain * float(finding["label"]), LABEL_BGR, units, thickness=1)
        draw_steering(original, gain * float(before), BEFORE_BGR, units)
        draw_steering(transformed, gain * expected_steering(finding), BEFORE_BGR, units, thickness=1)
        draw_steering(transformed, gain * float(after), AFTER_BGR, units)
        # A twin's finding (differential relation): the model's answer and the twin's on the same frame.
        words = ("model", "twin") if finding.get("relation") == "differential" else ("before", "after")
        text(original, f"{words[0]} {float(before):+.3f}", (6, 16), BEFORE_BGR)
        text(transformed, f"{words[1]} {float(after):+.3f}", (6, 16), AFTER_BGR)

    def legend(self, gain):
        from deeptest_iot.tasks.drawing import AFTER_CSS, BEFORE_CSS, LABEL_CSS, POSITIVE_STEERS_RIGHT

        return (f'<span style="color:{BEFORE_CSS}">&#9650; before (original frame)</span> '
                f'<span style="color:{AFTER_CSS}">&#9650; after (transformed frame; thin green: what the relation '
                f'expected)</span> <span style="color:{LABEL_CSS}">&#9650; seed label</span> '
                f'&middot; arrows point where the car steers: up is straight, '
                f'{"right" if POSITIVE_STEERS_RIGHT else "left"} is positive'
                + (f'; tilt exaggerated &times;{gain:g} so that differences show (the numbers are exact)'
                   if gain != 1 else ''))


def steering_gain(findings: Sequence[dict], units: str = "radians") -> float:
    """The round gain (1, 2, 5, 10 or 20) that draws the largest angle of ``findings`` near 45 degrees."""
    import math

    from deeptest_iot.tasks.drawing import angle_radians

    angles = []
    for f in findings:
        for value in (f.get("before"), f.get("after"), f.get("label"), (f.get("details") or {}).get("expected")):
            if is_number(value):
                angles.append(abs(angle_radians(float(value), units)))
    biggest = max(angles, default=0.0)
    if biggest <= 0:
        return 1.0
    return max([g for g in (1.0, 2.0, 5.0, 10.0, 20.0) if g * biggest <= math.pi / 4], default=1.0)


TASK = SteeringTask()
__all__ = ["DEFAULT_DELTA", "DEFAULT_LAMBDA", "SteeringOracle", "SteeringTask", "TASK", "expected_steering",
           "labels_vector", "output_vector", "steering_gain", "steering_mse"]
