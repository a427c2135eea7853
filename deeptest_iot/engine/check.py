"""The one batch check every door uses (campaigns, the pytest helper, and what a worker runs):
transformed images in -> model outputs and activations in one forward pass -> coverage gains ->
verdicts -> finding records written, and the running figures updated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from deeptest_iot.errors import OutputError


def default_guide(tracked: Sequence[str]) -> list[str]:
    """The tracked criteria that keep growing (all but NC, which saturates), or all when only NC is tracked."""
    growing = [name for name in tracked if not name.startswith("nc")]
    return growing or list(tracked)


@dataclass
class SeedBatch:
    """Where each transformed input came from: its seed's id, index, frame and (optionally) the
    model's output on it and its label."""

    ids: Sequence[str]
    indices: np.ndarray
    images: np.ndarray
    reference: Any = None  # the model's outputs on the seeds; None: run them with the batch
    labels: Any = None
    failing: Any = None  # (N,) bool: the model already breaks the relation on this seed itself

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class CheckResult:
    """What one check found: outputs, coverage gains, verdicts and the ids of the findings written."""

    reference: Any
    outputs: Any
    gains: np.ndarray
    verdicts: Any
    oracle: Any = None
    finding_ids: list = field(default_factory=list)


class BatchCheck:
    """Runs batches through a model and records what breaks the relation.

    Holds what a run shares across batches: the model, the findings writer and the running figures
    (``CampaignStats``), and optionally a coverage tracker with the criteria that count as gains
    (``guide``). ``shuffle_seed`` turns on the ablation control that gives each batch's gains to
    random inputs of the batch.
    """

    def __init__(self, mut, writer, stats, tracker=None, guide: Sequence[str] | None = None,
                 shuffle_seed: int | None = None):
        self.mut, self.writer, self.stats, self.tracker = mut, writer, stats, tracker
        self.task = mut.task
        names = tracker.names if tracker is not None else []
        self.guide = list(guide) if guide else default_guide(names)
        unknown = [g for g in self.guide if g not in names]
        if tracker is not None and unknown:
            from deeptest_iot.errors import ConfigError

            raise ConfigError(f"guide criteria {unknown} are not tracked; tracked: {names}")
        self.shuffle_seed = shuffle_seed
        self.batches = 0

    def __call__(self, images: np.ndarray, chains: Sequence, seeds: SeedBatch, *, oracle,
                 case_ids: Sequence[int], original_keys: Sequence[str] | None = None,
                 extra: dict | None = None, per_input: Sequence[dict] | None = None,
                 durable: bool = True) -> CheckResult:
        """Check one batch: ``images`` (N, H, W, 3) made by ``chains`` (one seeded Chain per input)
        from ``seeds``. ``oracle`` is an oracle, or a function of the seeds' reference outputs that
        makes one (when they are run with the batch). ``original_keys`` name each seed's image so
        that it is written once; ``extra`` goes into every finding record, ``per_input[i]`` into
        input i's (its realism score, say)."""
        from deeptest_iot.results.writer import finding_record

        try:
            reference, outputs, gains = self._run(images, seeds)
        except OutputError as exc:
            raise self._named(exc, chains, seeds) from None
        if not hasattr(oracle, "check"):
            oracle = oracle(reference)
        verdicts = oracle.check(reference, outputs, list(chains), labels=seeds.labels, frame_size=images.shape[1:3])
        self.batches += 1

        records, pairs = [], []
        for i in verdicts.failures:
            chain = chains[i]
            flag = {"seed_failed": True} if seeds.failing is not None and seeds.failing[i] else {}
            records.append(finding_record(
                verdicts, i, case=case_ids[i], seed_id=seeds.ids[i], seed_index=int(seeds.indices[i]),
                transform=chain.name, chain=chain.to_json(), severity=chain.severity, coverage_gain=gains[i],
                **flag, **(per_input[i] if per_input is not None else {}), **(extra or {})))
            pairs.append((seeds.images[i], images[i]))
        first = self.writer.count
        keys = None if original_keys is None else [original_keys[i] for i in verdicts.failures]
        self.writer.append(records, pairs, durable=durable, original_keys=keys)
        ids = [f"f{first + k:06d}" for k in range(len(records))]
        self.stats.add([c.name for c in chains], [c.severity for c in chains], verdicts.failed, verdicts.violation,
                       apart=seeds.failing, seed_ids=seeds.ids, families=[c.family for c in chains], finding_ids=ids)
        if self.tracker is not None:
            self.stats.record_growth(self.tracker.coverage())
        return CheckResult(reference, outputs, gains, verdicts, oracle, ids)

    def _named(self, exc: OutputError, chains: Sequence, seeds: SeedBatch) -> OutputError:
        """The model's NaN/Inf error with the batch positions turned into seeds and chains."""
        if exc.inputs is None or not len(exc.inputs):
            return exc
        n = len(chains)
        with_seeds = seeds.reference is None  # the seeds ran first in the same batch
        named = []
        for pos in exc.inputs[:5]:
            pos = int(pos)
            if with_seeds and pos < n:
                named.append(f"seed {seeds.ids[pos]!r} itself")
            else:
                i = pos - n if with_seeds else pos
                named.append(f"seed {seeds.ids[i]!r} under {chains[i].name}")
        more = f" and {len(exc.inputs) - 5} more" if len(exc.inputs) > 5 else ""
        head = str(exc).split(" for ")[0] if " for " in str(exc) else str(exc)
        return OutputError(f"{head} on {len(exc.inputs)} input(s): {'; '.join(named)}{more}. Check the model "
                           "and its card's scale/offset; findings written so far are kept",
                           inputs=exc.inputs)

    def _run(self, images: np.ndarray, seeds: SeedBatch):
        """One forward pass (with the seeds when their outputs are not known yet) and the coverage it added."""
        n = len(images)
        track = self.tracker is not None
        if seeds.reference is None:
            res = self.mut.run(np.concatenate([seeds.images, images]), with_activations=track)
            reference = self.task.select(res.outputs, np.arange(n))
            outputs = self.task.select(res.outputs, np.arange(n, 2 * n))
        else:
            res = self.mut.run(images, with_activations=track)
            reference, outputs = seeds.reference, res.outputs
        gains = np.zeros(n, np.int64)
        if track:
            self.tracker.update(res.activations)
            if self.guide:
                gains = np.sum([self.tracker.last_gains[g] for g in self.guide], axis=0)[-n:].astype(np.int64)
            if self.shuffle_seed is not None:
                gains = np.random.default_rng([self.shuffle_seed, 0x5F, self.batches]).permutation(gains)
        return reference, outputs, gains

