"""The one batch check every door uses (campaigns, the pytest helper, and what a worker runs):
transformed images in -> model outputs and activations in one forward pass -> coverage gains ->
verdicts -> finding records written, and the running figures updated.

With a twin (a converted LiteRT/ONNX copy of the model, docs/twins.md), the same images also run
through the twin, and each input is judged by the differential relation too (twin against float
model on the same frame). An input that breaks both relations gives two findings, one per relation
(each with its own ``before``, ``after`` and ``violation``), next to each other in findings.jsonl.
The differential relation keeps its own running figures, and the disagreement of the twin can
steer the search (``guide`` "disagreement", see :meth:`BatchCheck.disagreement_gains`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from deeptest_iot.errors import OutputError


#: The guide that credits inputs raising the twin's disagreement (DiffChaser/DFlare-style fitness).
DISAGREEMENT = "disagreement"


def default_guide(tracked: Sequence[str], twin: bool = False) -> list[str]:
    """The tracked criteria that keep growing (all but NC, which saturates), or all when only NC is
    tracked; with a twin, also the twin's disagreement."""
    growing = [name for name in tracked if not name.startswith("nc")]
    return (growing or list(tracked)) + ([DISAGREEMENT] if twin else [])


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
    twin_failing: Any = None  # (N,) bool: the twin already disagrees with the model on this seed itself

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class CheckResult:
    """What one check found: outputs, coverage gains, verdicts and the ids of the findings written."""

    reference: Any
    outputs: Any
    gains: np.ndarray
    verdicts: Any  # the task's relation (None when only the differential relation was checked)
    oracle: Any = None
    finding_ids: list = field(default_factory=list)
    twin_outputs: Any = None
    twin_verdicts: Any = None  # the differential relation, with a twin
    twin_finding_ids: list = field(default_factory=list)
    disagreement: Any = None  # (N,) the twin's disagreement with the model, with a twin

    @property
    def failed(self) -> np.ndarray:
        """(N,) inputs that broke any relation checked."""
        out = np.zeros(len(self.gains), bool)
        for v in (self.verdicts, self.twin_verdicts):
            if v is not None:
                out |= v.failed
        return out


class BatchCheck:
    """Runs batches through a model (and its twin) and records what breaks the relations.

    Holds what a run shares across batches: the model, the findings writer and the running figures
    (``CampaignStats``), and optionally a coverage tracker with the criteria that count as gains
    (``guide``). ``shuffle_seed`` turns on the ablation control that gives each batch's gains to
    random inputs of the batch.

    ``twin``: a converted copy of the model, run on the same images and judged by the differential
    relation (its figures in ``twin_stats``); ``coverage_on="twin"`` tracks the twin's neurons
    instead of the model's. ``best`` holds, per seed id, the largest disagreement seen on an input
    made from that seed (the seed's own to begin with, see :meth:`seed_disagreements`).
    """

    def __init__(self, mut, writer, stats, tracker=None, guide: Sequence[str] | None = None,
                 shuffle_seed: int | None = None, *, twin=None, twin_stats=None, coverage_on: str = "model"):
        from deeptest_iot.errors import ConfigError

        self.mut, self.writer, self.stats, self.tracker = mut, writer, stats, tracker
        self.task = mut.task
        self.twin = twin
        self.twin_stats = twin_stats
        if coverage_on not in ("model", "twin"):
            raise ConfigError(f"coverage_on must be model or twin, not {coverage_on!r}")
        if coverage_on == "twin" and twin is None:
            raise ConfigError("coverage on the twin (--coverage-on twin) needs a twin (--twin)")
        self.coverage_on = coverage_on
        names = tracker.names if tracker is not None else []
        self.guide = list(guide) if guide else default_guide(names, twin is not None)
        unknown = [g for g in self.guide if g not in names and g != DISAGREEMENT]
        if tracker is not None and unknown:
            raise ConfigError(f"guide criteria {unknown} are not tracked; tracked: {names}")
        if DISAGREEMENT in self.guide and twin is None:
            raise ConfigError("guide 'disagreement' needs a twin (--twin): it credits inputs on which the twin "
                              "disagrees more with the model")
        self.shuffle_seed = shuffle_seed
        self.batches = 0
        self.best: dict[str, float] = {}

    def seed_disagreements(self, ids: Sequence[str], disagreement: np.ndarray) -> None:
        """Start each seed's best disagreement at the twin's disagreement on the seed itself."""
        for key, d in zip(ids, np.asarray(disagreement, np.float64).tolist()):
            self.best[str(key)] = max(self.best.get(str(key), -np.inf), d)

    def disagreement_gains(self, ids: Sequence[str], disagreement: np.ndarray) -> np.ndarray:
        """The fitness rule: 1 for an input whose disagreement is larger than every disagreement seen
        before this batch on inputs made from its seed (and on the seed itself), else 0; then the
        seeds' best are raised to this batch's largest. Inputs of a seed never seen (no start-up
        value) count against 0."""
        d = np.asarray(disagreement, np.float64)
        before = np.array([self.best.get(str(k), 0.0) for k in ids], np.float64)
        gains = (d > before).astype(np.int64)
        for key, value in zip(ids, d.tolist()):
            key = str(key)
            if value > self.best.get(key, 0.0):
                self.best[key] = value
        return gains

    def __call__(self, images: np.ndarray, chains: Sequence, seeds: SeedBatch, *, oracle,
                 case_ids: Sequence[int], original_keys: Sequence[str] | None = None,
                 extra: dict | None = None, per_input: Sequence[dict] | None = None,
                 durable: bool = True, twin=None, twin_oracle=None) -> CheckResult:
        """Check one batch: ``images`` (N, H, W, 3) made by ``chains`` (one seeded Chain per input)
        from ``seeds``. ``oracle`` is an oracle, or a function of the seeds' reference outputs that
        makes one (when they are run with the batch), or None to check only the differential
        relation. ``twin`` (default: the check's own) and ``twin_oracle`` (a differential oracle)
        add the differential relation. ``original_keys`` name each seed's image so that it is
        written once; ``extra`` goes into every finding record, ``per_input[i]`` into input i's
        (its realism score, say)."""
        from deeptest_iot.results.writer import CampaignStats, finding_record

        twin = twin if twin is not None else self.twin
        if twin is not None and twin_oracle is None:
            raise ValueError("a check with a twin needs the differential oracle (twin_oracle)")
        if oracle is None and twin is None:
            raise ValueError("a check needs an oracle, a twin, or both")
        try:
            reference, outputs, gains = self._run(images, seeds, with_reference=oracle is not None,
                                                  track_model=self.coverage_on == "model")
        except OutputError as exc:
            raise self._named(exc, chains, seeds) from None
        twin_outputs = tverdicts = disagreement = None
        if twin is not None:
            try:
                twin_outputs, twin_gains = self._run_twin(twin, images)
            except OutputError as exc:
                raise self._named(exc, chains, seeds, who=f"the twin {twin.name!r}") from None
            if twin_gains is not None:
                gains = twin_gains
            tverdicts = twin_oracle.check(outputs, twin_outputs, list(chains), labels=seeds.labels,
                                          frame_size=images.shape[1:3])
            from deeptest_iot.tasks.differential import disagreement as _disagreement

            disagreement = _disagreement(tverdicts)
        coverage_gains = gains
        if twin is not None and DISAGREEMENT in self.guide:
            gains = gains + self.disagreement_gains(seeds.ids, disagreement)
        verdicts = None
        if oracle is not None:
            if not hasattr(oracle, "check"):
                oracle = oracle(reference)
            verdicts = oracle.check(reference, outputs, list(chains), labels=seeds.labels,
                                    frame_size=images.shape[1:3])
        self.batches += 1

        # Per input, the task's relation first, then the differential one: an input that breaks both
        # gives two findings, next to each other.
        records, pairs, keys, owners = [], [], [], []
        per_relation = [(v, fail_flags) for v, fail_flags in ((verdicts, seeds.failing), (tverdicts, seeds.twin_failing))
                        if v is not None]
        for i in np.flatnonzero(np.any([v.failed for v, _ in per_relation], axis=0)):
            chain = chains[i]
            for k, (v, fail_flags) in enumerate(per_relation):
                if not v.failed[i]:
                    continue
                flag = {"seed_failed": True} if fail_flags is not None and fail_flags[i] else {}
                records.append(finding_record(
                    v, i, case=case_ids[i], seed_id=seeds.ids[i], seed_index=int(seeds.indices[i]),
                    transform=chain.name, chain=chain.to_json(), severity=chain.severity,
                    coverage_gain=coverage_gains[i], **flag, **(per_input[i] if per_input is not None else {}), **(extra or {})))
                pairs.append((seeds.images[i], images[i]))
                keys.append(None if original_keys is None else original_keys[i])
                owners.append(k)
        first = self.writer.count
        self.writer.append(records, pairs, durable=durable, original_keys=None if original_keys is None else keys)
        all_ids = [f"f{first + k:06d}" for k in range(len(records))]
        ids_of = [[fid for fid, owner in zip(all_ids, owners) if owner == k] for k in range(len(per_relation))]
        names, severities = [c.name for c in chains], [c.severity for c in chains]
        families = [c.family for c in chains]
        ids = twin_ids = []
        if verdicts is not None:
            ids = ids_of[0]
            self.stats.add(names, severities, verdicts.failed, verdicts.violation, apart=seeds.failing,
                           seed_ids=seeds.ids, families=families, finding_ids=ids)
        if tverdicts is not None:
            twin_ids = ids_of[-1]
            if self.twin_stats is None:
                self.twin_stats = CampaignStats()
            self.twin_stats.add(names, severities, tverdicts.failed, tverdicts.violation, apart=seeds.twin_failing,
                                seed_ids=seeds.ids, families=families, finding_ids=twin_ids)
        if self.tracker is not None:
            self.stats.record_growth(self.tracker.coverage())
        return CheckResult(reference, outputs, gains, verdicts, oracle, ids, twin_outputs, tverdicts, twin_ids,
                           disagreement)

    def _named(self, exc: OutputError, chains: Sequence, seeds: SeedBatch, who: str | None = None) -> OutputError:
        """The model's NaN/Inf error with the batch positions turned into seeds and chains."""
        if exc.inputs is None or not len(exc.inputs):
            return OutputError(f"{who}: {exc}", inputs=exc.inputs) if who else exc
        n = len(chains)
        with_seeds = seeds.reference is None and who is None  # the seeds ran first in the same batch
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
        head = f"{who}: {head}" if who else head
        return OutputError(f"{head} on {len(exc.inputs)} input(s): {'; '.join(named)}{more}. Check the model "
                           "and its card's scale/offset; findings written so far are kept",
                           inputs=exc.inputs)

    def _run(self, images: np.ndarray, seeds: SeedBatch, with_reference: bool = True, track_model: bool = True):
        """One forward pass (with the seeds when their outputs are not known yet and a relation needs
        them) and the coverage it added."""
        n = len(images)
        track = self.tracker is not None and track_model
        if seeds.reference is None and with_reference:
            res = self.mut.run(np.concatenate([seeds.images, images]), with_activations=track)
            reference = self.task.select(res.outputs, np.arange(n))
            outputs = self.task.select(res.outputs, np.arange(n, 2 * n))
        else:
            res = self.mut.run(images, with_activations=track)
            reference, outputs = seeds.reference, res.outputs
        gains = self._gains(res.activations, n) if track else np.zeros(n, np.int64)
        return reference, outputs, gains

    def _run_twin(self, twin, images: np.ndarray):
        """The twin's outputs on the batch, and the coverage gains when coverage is on the twin (else None)."""
        track = self.tracker is not None and self.coverage_on == "twin"
        res = twin.run(images, with_activations=track)
        return res.outputs, (self._gains(res.activations, len(images)) if track else None)

    def _gains(self, activations: dict, n: int) -> np.ndarray:
        """Update the tracker; each of the last ``n`` inputs' gains in the guiding criteria."""
        self.tracker.update(activations)
        criteria = [g for g in self.guide if g != DISAGREEMENT]
        gains = np.zeros(n, np.int64)
        if criteria:
            gains = np.sum([self.tracker.last_gains[g] for g in criteria], axis=0)[-n:].astype(np.int64)
        if self.shuffle_seed is not None:
            gains = np.random.default_rng([self.shuffle_seed, 0x5F, self.batches]).permutation(gains)
        return gains

