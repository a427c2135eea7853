"""The gates a mutant passes before the model sees it.

* **Realism** (every strategy, ``--realism reject|flag|off``): the similarity gate of
  :mod:`deeptest_iot.engine.realism`, and the learned (autoencoder) gate when one is given. A
  mutant that no longer looks like its seed's road scene is rejected before the model (``reject``,
  the default), or run and its finding marked unrealistic (``flag``).
* **Validity** (DeepHunter's strategy, which asks for it): the L0/Linf pixel rule.

Each finding records its realism score; rejected mutants are counted per gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeptest_iot.errors import ConfigError

#: The learned gate beside a model: MODEL.gate.keras (and MODEL.gate.json), as `profile --learned-gate` writes.
GATE_SUFFIX = ".gate.keras"


def learned_gate_path(model_path) -> Path:
    return Path(model_path).with_suffix(GATE_SUFFIX)


@dataclass
class GateVerdict:
    """Per mutant: whether it goes to the model, its realism score and flags, and the rejections."""

    keep: np.ndarray
    score: np.ndarray | None = None
    realistic: np.ndarray | None = None
    in_distribution: np.ndarray | None = None
    rejected_by: dict = field(default_factory=dict)

    def record(self, kept: np.ndarray) -> list[dict]:
        """What each kept mutant's finding records about its realism, in the order of ``kept``."""
        out = []
        for i in kept:
            entry = {}
            if self.score is not None:
                entry["realism"] = round(float(self.score[i]), 4)
                entry["realistic"] = bool(self.realistic[i])
            if self.in_distribution is not None:
                entry["in_distribution"] = bool(self.in_distribution[i])
            out.append(entry)
        return out


class Gates:
    """The realism gate (similarity, optionally learned) and DeepHunter's validity, applied together."""

    def __init__(self, mode: str = "reject", learned=None, validity: tuple[float, float] | None = None):
        from deeptest_iot.engine.realism import RealismGate

        if mode not in ("reject", "flag", "off"):
            raise ConfigError(f"realism must be reject, flag or off, not {mode!r}")
        self.mode = mode
        self.similarity = RealismGate() if mode != "off" else None
        self.learned = learned if mode != "off" else None
        self.validity = validity

    @classmethod
    def for_campaign(cls, opts, mut, checks_validity: bool) -> "Gates":
        """The gates a campaign's options ask for; ``learned_gate`` auto uses the one beside the model."""
        learned = None
        choice = opts.learned_gate
        if opts.realism != "off" and choice not in (None, "none", "off"):
            path = learned_gate_path(mut.path) if choice == "auto" and mut.path else None
            if choice != "auto":
                path = Path(choice)
                if not path.is_file():
                    raise ConfigError(f"--learned-gate {choice}: no such file (make one with `deeptest-iot profile "
                                      "MODEL --learned-gate`)")
            if path is not None and path.is_file():
                from deeptest_iot.engine.realism import LearnedGate

                learned = LearnedGate.load(path)
        return cls(opts.realism, learned, (opts.alpha, opts.beta) if checks_validity else None)

    def describe(self) -> dict:
        """For summary.json: which gates ran, with their thresholds."""
        out = {"mode": self.mode}
        if self.similarity is not None:
            out["thresholds"] = dict(self.similarity.thresholds)
        if self.learned is not None:
            out["learned_threshold"] = self.learned.threshold
        if self.validity is not None:
            out["validity"] = {"alpha": self.validity[0], "beta": self.validity[1]}
        return out

    def seed_copies(self, seeds: np.ndarray) -> np.ndarray | None:
        """What ``__call__`` takes as ``seed_small`` for these seeds (None when no similarity gate runs)."""
        if self.similarity is None:
            return None
        from deeptest_iot.engine.realism import seed_copies

        return seed_copies(seeds, self.similarity.size)

    def __call__(self, seeds: np.ndarray, mutants: np.ndarray, chains: list,
                 seed_small: np.ndarray | None = None) -> GateVerdict:
        """``seed_small``: the rows of ``seed_copies`` for ``seeds``, when made once beforehand."""
        n = len(mutants)
        keep = np.ones(n, bool)
        verdict = GateVerdict(keep)
        if self.validity is not None:
            from deeptest_iot.engine.validity import check_validity

            valid = check_validity(seeds, mutants, chains=chains, alpha=self.validity[0], beta=self.validity[1]).valid
            verdict.rejected_by["validity"] = int((~valid).sum())
            keep &= valid
        if self.similarity is not None:
            r = self.similarity(seeds, mutants, chains, seed_small)
            verdict.score, verdict.realistic = r.score, r.ok.copy()
            if self.learned is not None:
                verdict.in_distribution = self.learned.in_distribution(mutants)
            if self.mode == "reject":
                gone = keep & ~r.ok
                verdict.rejected_by["realism"] = int(gone.sum())
                keep &= r.ok
                if verdict.in_distribution is not None:
                    gone = keep & ~verdict.in_distribution
                    verdict.rejected_by["learned"] = int(gone.sum())
                    keep &= verdict.in_distribution
            elif verdict.in_distribution is not None:
                verdict.realistic &= verdict.in_distribution
        verdict.keep = keep
        return verdict
