"""What every task shares: the verdicts an oracle returns, argument checks, and the ``Task`` interface.

A task (steering, classification, detection) owns every rule that depends on what a model's output
means: its relation and the relation's defaults, how a transform changes the expected output, how
raw network outputs are decoded, which seed labels the relation uses, the label an exported frame
gets, and how the report draws an output. Adding a task means adding one module to this package.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from deeptest_iot.errors import ConfigError, InputError, OutputError

# --------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdicts:
    """The oracle's answer for a batch: one entry per input, in batch order.

    ``violation`` is how far past the bound an input went (0 exactly when the relation holds),
    ``threshold`` the bound it was compared with, ``details`` one JSON-able dict per input carrying
    ``before``/``after``/``label``/``violation``/``threshold`` (docs/results-format.md).
    """

    relation: str
    failed: np.ndarray  # (N,) bool
    violation: np.ndarray  # (N,) float64, 0 exactly where the relation holds
    threshold: np.ndarray  # (N,) float64, the bound each input was compared with
    details: list  # N JSON-able dicts

    def __len__(self) -> int:
        return int(self.failed.shape[0])

    @property
    def failures(self) -> np.ndarray:
        """Indices of the inputs that broke the relation."""
        return np.flatnonzero(self.failed)


def make_verdicts(relation: str, failed, violation, threshold, details) -> Verdicts:
    failed = np.asarray(failed, dtype=bool)
    violation = np.where(failed, np.asarray(violation, dtype=np.float64), 0.0)
    return Verdicts(relation, failed, violation, np.asarray(threshold, dtype=np.float64), details)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def number(name: str, value, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """A finite real option in [low, high] (or (low, high]); ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if v < low or (low_open and v == low) or v > high:
        lo = "(" if low_open else "["
        hi = "]" if math.isfinite(high) else ")"
        raise ConfigError(f"{name} must be in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return v


def finite(name: str, arr: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1)) if arr.ndim else np.array([0])
        shown = ", ".join(str(int(i)) for i in rows[:10]) + (", ..." if rows.size > 10 else "")
        raise OutputError(f"{name} contain NaN or Inf (inputs {shown}); the model is numerically broken "
                          f"on them or the model card's scale/offset is wrong")
    return arr


def frame_size(value) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"frame_size must be (height, width), got {value!r}") from None
    if h <= 0 or w <= 0:
        raise InputError(f"frame_size must be positive, got {value!r}")
    return h, w


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# Transform chains per input
# --------------------------------------------------------------------------------------------


def per_input_chains(transforms, n: int, what: str = "input") -> list:
    """One Chain per input: None (no transform), one transform/chain for the whole batch, or a
    sequence of one transform/chain (or list of transforms) per input."""
    from deeptest_iot.transforms import as_chain

    if transforms is None or not isinstance(transforms, (list, tuple)):
        return [as_chain(transforms)] * n
    if len(transforms) != n:
        raise InputError(f"transforms must be one transform/chain for the whole batch or one per {what} "
                         f"({n}), got a sequence of {len(transforms)}")
    return per_chain(list(transforms), as_chain)


def per_chain(chains: list, fn: Callable[[Any], Any]) -> list:
    """``fn(chain)`` for every chain, computed once per distinct chain object."""
    cache: dict[int, Any] = {}
    out = []
    for c in chains:
        key = id(c)
        if key not in cache:
            cache[key] = fn(c)
        out.append(cache[key])
    return out


# --------------------------------------------------------------------------------------------
# The task interface
# --------------------------------------------------------------------------------------------


class Task:
    """The rules of one task. Subclasses set ``name``, ``description``, ``oracle_class`` and
    ``oracle_options`` (the keyword options its oracle takes) and override what differs."""

    name = "task"
    description = ""
    oracle_class: type = type(None)
    oracle_options: frozenset = frozenset()
    #: Its output is a front-wheel angle, so the model can drive a car in closed loop.
    drivable = False
    #: What ``generated_seeds`` draws, in words.
    generated_kind = "generated scenes"

    # -- the relation ------------------------------------------------------------------------
    def make_oracle(self, **options):
        """This task's oracle; options set to None are ignored, unknown ones refused by name."""
        opts = {k: v for k, v in options.items() if v is not None}
        unknown = set(opts) - self.oracle_options
        if unknown:
            raise ConfigError(f"unknown option(s) for the {self.name} relation: {', '.join(sorted(unknown))}; "
                              f"valid: {', '.join(sorted(self.oracle_options))}")
        return self.oracle_class(**opts)

    def oracle_for(self, card, reference=None, labels=None, **options):
        """The oracle with this task's defaults for a model card and its seeds' reference outputs
        and labels (what the campaign and the pytest helper both use)."""
        return self.make_oracle(**options)

    def seed_labels(self, seeds, card=None) -> Any:
        """The seeds' labels in the form the relation takes (for ``card``'s model), or None when it
        judges against the model's own output on the seed or the labels do not fit the model."""
        return None

    def seed_failures(self, oracle, reference, labels, frame_hw) -> np.ndarray | None:
        """(N,) bool: the seeds the model already gets wrong by their labels (their findings would
        not be the transforms' doing), or None when that cannot be told (no labels)."""
        return None

    def health(self, reference, labels) -> list[str]:
        """What is wrong with the model's answers on the seeds themselves that would make a campaign
        pass for the wrong reason (constant outputs, worse than a constant): one sentence each."""
        return []

    def rule(self, config: dict | None, labelled: bool) -> str:
        """The relation in one line, for failure messages."""
        return f"the {self.name} relation"

    # -- outputs -----------------------------------------------------------------------------
    def decode(self, raw: list[np.ndarray], mut, frame_hw: tuple[int, int]):
        """Raw network outputs of a batch as this task's outputs (NaN/Inf refused by the model)."""
        raise NotImplementedError

    @staticmethod
    def select(outputs, indices):
        """The outputs of some inputs of a batch (arrays are indexed, lists picked)."""
        if isinstance(outputs, np.ndarray):
            return outputs[indices]
        return [outputs[int(i)] for i in indices]

    def show(self, value: Any) -> str:
        """A recorded output (findings.jsonl form) as a person reads it, in one short line."""
        if value is None:
            return "\u2014"
        if is_number(value):
            return f"{float(value):+.4f}"
        return str(value)

    # -- seeds -------------------------------------------------------------------------------
    def generated_seeds(self, n: int, seed: int, height: int, width: int):
        """Seeds to use when the user gives no folder: generated road scenes with labels."""
        from deeptest_iot.data.seeds import generated_seeds

        return generated_seeds(n, seed=seed, height=height, width=width)

    # -- export ------------------------------------------------------------------------------
    def export_target(self, finding: dict):
        """The label the transformed frame of a finding should have had, and the rule that gave it."""
        raise NotImplementedError

    def export_files(self, findings: list[dict], targets: list) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The arrays for findings.npz and the label files (name -> text) of an export."""
        raise NotImplementedError

    # -- drawing -----------------------------------------------------------------------------
    def display_gain(self, findings: list[dict], units: str) -> float:
        """How much drawings exaggerate outputs so that differences show (1: drawn as they are)."""
        return 1.0

    def annotate(self, original: np.ndarray, transformed: np.ndarray, finding: dict, *, units: str,
                 class_names: Sequence[str], gain: float) -> None:
        """Draw a finding's outputs in place on its two display frames (BGR)."""
        from deeptest_iot.tasks.drawing import AFTER_BGR, BEFORE_BGR, text

        text(original, self.show(finding.get("before")), (6, 16), BEFORE_BGR)
        text(transformed, self.show(finding.get("after")), (6, 16), AFTER_BGR)

    def legend(self, gain: float) -> str:
        """The report's legend for the drawings (HTML)."""
        from deeptest_iot.tasks.drawing import AFTER_CSS, BEFORE_CSS

        return (f'<span style="color:{BEFORE_CSS}">before</span> / <span style="color:{AFTER_CSS}">after</span>: '
                'the model\'s output')


def labels_csv(findings: list[dict], targets: list, format_label: Callable[[Any], Any]) -> str:
    """labels.csv of an export: id,image,label,source,transform,seed_id,violation."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "image", "label", "source", "transform", "seed_id", "violation"])
    for f, (label, source) in zip(findings, targets):
        writer.writerow([f["id"], f"images/{f['id']}.png", format_label(label), source, f["transform"],
                         f.get("seed_id", ""), f["violation"]])
    return buf.getvalue()
