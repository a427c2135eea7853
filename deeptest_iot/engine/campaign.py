"""One test campaign: seeds -> transform chains -> the batch check (model, coverage, oracle,
findings) -> the search strategy's next batch, until the budget, the time or the plan is spent.

Everything moves in batches. Only counters, the coverage state and the strategy's small state live
in memory; findings go to disk as they are found, and a checkpoint lets a killed campaign resume
where it stopped (docs/results-format.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from deeptest_iot.engine.check import BatchCheck, SeedBatch
from deeptest_iot.engine.gates import Gates
from deeptest_iot.engine.mutants import build_images, pool
from deeptest_iot.engine.options import SAMPLE_MODEL, CampaignOptions
from deeptest_iot.engine.progress import Progress
from deeptest_iot.engine.search import make_strategy
from deeptest_iot.engine.summary import build_summary, campaign_record, model_info, twin_info
from deeptest_iot.errors import ConfigError, DeeptestError, OutputError
from deeptest_iot.fileio import ensure_dir
from deeptest_iot.results.writer import (CHECKPOINT, FINDINGS, CampaignStats, FindingsWriter, read_checkpoint,
                                         write_checkpoint, write_summary)

SUMMARY_EVERY_S = 5.0
CHECKPOINT_EVERY_S = 2.0


@dataclass
class CampaignResult:
    summary: dict
    exit_code: int
    out_dir: Path = field(default=Path("."))


def run_campaign(opts: CampaignOptions, echo: Callable[[str], None] | None = None, tty: bool = False,
                 stop_after_batches: int | None = None) -> CampaignResult:
    """Run (or resume) a campaign and return its summary and exit code (0 passed, 1 findings over threshold).

    ``stop_after_batches`` stops early as a kill would (for tests of resume).
    """
    opts, checkpoint = open_out_folder(opts)
    return campaign_class(opts, checkpoint)(opts, checkpoint, echo or (lambda s: None)).run(tty, stop_after_batches)


def campaign_class(opts: CampaignOptions, checkpoint: dict | None):
    """The engine that runs a campaign: this process (``Campaign``) or Ray actors (docs/distributed.md)."""
    if opts.engine == "ray":
        if opts.twin is not None:
            raise ConfigError("--twin runs on the local engine only (the Ray workers do not load a twin yet): leave "
                              "out --engine ray")
        from deeptest_iot.engine.ray_engine import RayCampaign

        return RayCampaign
    for name in ("address", "workers"):
        if getattr(opts, name) is not None and name in opts.given:
            raise ConfigError(f"--{name} is for the Ray engine: add --engine ray (docs/distributed.md)")
    if checkpoint is not None and "ray_shards" in checkpoint.get("strategy", {}):
        raise ConfigError(f"{opts.out} holds a {opts.strategy} campaign that ran on the Ray engine, one search per "
                          "worker: resume it with --engine ray (docs/distributed.md)")
    return Campaign


def open_out_folder(opts: CampaignOptions) -> tuple[CampaignOptions, dict | None]:
    """The options to run with and the checkpoint to resume from (None: a new campaign).

    A new campaign refuses a folder that holds one (results are never overwritten); ``--resume``
    takes the campaign's options from its checkpoint, refusing options given again with another value.
    """
    out = Path(opts.out)
    if opts.resume:
        checkpoint = read_checkpoint(out)
        if checkpoint is None:
            where = "no such folder" if not out.exists() else "no checkpoint.json there"
            raise ConfigError(f"--resume: nothing to resume in {out} ({where}); run without --resume to start "
                              "a campaign there")
        return opts.resumed_from(checkpoint["options"], str(out)), checkpoint
    if (out / CHECKPOINT).exists() or ((out / FINDINGS).exists() and (out / FINDINGS).stat().st_size):
        raise ConfigError(f"{out} already holds a campaign; pass --resume to continue it, or choose another --out "
                          "(deeptest-iot never overwrites results)")
    return opts, None


def load_model_for(opts: CampaignOptions):
    """The model a campaign tests: ``opts.model``, or the shipped sample steering model."""
    from deeptest_iot.model.core import load_model

    path = opts.model
    if path is None:
        from deeptest_iot import sample_models

        path = str(sample_models.path(SAMPLE_MODEL))
    return load_model(path, opts.card, include=opts.include, exclude=opts.exclude, trust=opts.trust_model)


def load_twin_for(opts: CampaignOptions, mut):
    """The twin a campaign compares ``mut`` with (``opts.twin``: a path, or a conversion target for the
    twin beside the model) and what ``check_twin`` found; (None, None) without one. A twin that
    cannot be compared with the model (another input size, preprocessing, task or output shape) is a
    ModelError (exit 2)."""
    if opts.twin is None:
        if opts.coverage_on == "twin":
            raise ConfigError("--coverage-on twin needs a twin: give --twin")
        return None, None
    from deeptest_iot.model.twins import check_twin, load_twin, resolve_twin_path

    path = resolve_twin_path(opts.twin, mut.path)
    twin = load_twin(str(path), mut)
    return twin, check_twin(mut, twin)


def generated_frame_size(card) -> tuple[int, int]:
    """Frames rendered so that, after the card's crop, they are the network's input size: transforms
    then work on the pixels the model sees, not on pixels the resize would throw away."""
    ih, iw = card.input_size
    top, bottom, left, right = card.crop
    return max(16, round(ih / (1.0 - top - bottom))), max(16, round(iw / (1.0 - left - right)))


#: Auto working size: the card's crop region at this many times the network input, so that the card's
#: resize to the input loses little while transforms do not pay for pixels the model never sees.
WORK_FACTOR = 1.5


def auto_work_size(card, frame_hw: tuple[int, int]) -> tuple[int, int]:
    """The working size for frames of ``frame_hw``: aspect kept, the crop region at WORK_FACTOR x the
    network input in both directions, never larger than the frame itself."""
    h, w = frame_hw
    top, bottom, left, right = card.crop
    ih, iw = card.input_size
    scale = min(1.0, max(WORK_FACTOR * ih / (h * (1 - top - bottom)), WORK_FACTOR * iw / (w * (1 - left - right))))
    return max(16, round(h * scale)), max(16, round(w * scale))


def load_seeds_for(opts: CampaignOptions, mut):
    """Seeds from a folder (with labels) at the working size, or generated by the model's task (road
    scenes, sign crops) at the card's frame size."""
    from deeptest_iot.data.seeds import load_seeds
    from deeptest_iot.engine.options import parse_work_size

    if opts.seeds is not None:
        work = parse_work_size(opts.work_size)
        if work == "native":
            work = None
        elif work == "auto":
            work = lambda h, w: auto_work_size(mut.card, (h, w))  # noqa: E731 - of the first frame's size
        return load_seeds(opts.seeds, labels=opts.labels, work_size=work, max_seeds=opts.max_seeds)
    if opts.labels:
        raise ConfigError("--labels needs --seeds (the folder the labels describe)")
    h, w = generated_frame_size(mut.card)
    seeds = mut.task.generated_seeds(opts.n_seeds, opts.seed, h, w)
    if opts.max_seeds is not None and opts.max_seeds < len(seeds.images):
        raise ConfigError(f"--max-seeds {opts.max_seeds} with generated scenes: ask for fewer with --n-seeds")
    return seeds


def seeds_description(opts: CampaignOptions, seeds) -> str:
    if opts.seeds is None:
        return f"generated:{len(seeds.images)}"
    return f"{opts.seeds} ({len(seeds.images)} images)"


@dataclass
class _Batch:
    """Proposed cases and their images (built now, or a future when built ahead on another thread)."""

    cases: list
    pending: object

    def images(self) -> np.ndarray:
        return self.pending.result() if hasattr(self.pending, "result") else self.pending


class Campaign:
    """A campaign set up and ready to run: model, seeds and their reference outputs, oracle,
    strategy, coverage, findings writer and running figures (fresh, or restored from a checkpoint)."""

    def __init__(self, opts: CampaignOptions, checkpoint: dict | None, echo: Callable[[str], None]):
        from deeptest_iot.engine.tracking import make_tracker, profile_warning
        from deeptest_iot.transforms import REGISTRY

        self.opts, self.echo, self.out = opts, echo, Path(opts.out)
        self.mut = load_model_for(opts)
        self.twin, self.twin_check = load_twin_for(opts, self.mut)
        ensure_dir(self.out)
        self.seeds = load_seeds_for(opts, self.mut)
        for note in getattr(self.seeds, "notes", []):
            echo(f"seeds: {note}\n")
        task = self.mut.task
        self.labels = task.seed_labels(self.seeds, self.mut.card)
        with_cov = bool(opts.coverage)
        self.cov_mut = self.twin if opts.coverage_on == "twin" else self.mut  # whose neurons are tracked
        if with_cov and not self.cov_mut.supports_coverage:
            make_tracker(self.cov_mut, opts.coverage, None, dict)  # raises the "needs a Keras model" error
        try:
            self.ref = self.mut.run(self.seeds.images, with_activations=with_cov and self.cov_mut is self.mut)
        except OutputError as exc:
            named = ", ".join(repr(self.seeds.ids[int(i)]) for i in (exc.inputs if exc.inputs is not None else [])[:5])
            raise OutputError(f"{exc} (on the seeds themselves: {named})" if named else str(exc)) from None
        self.oracle = task.oracle_for(self.mut.card, self.ref.outputs, self.labels,
                                      **opts.relation_options(task.name))
        self.notes = list(getattr(self.mut, "notes", []))
        self.warnings = [f"the model under test: {p}" for p in task.health(self.ref.outputs, self.labels)]
        for note in self.notes:
            echo(f"note: {note}\n")
        for warning in self.warnings:
            echo(f"WARNING: {warning}\n")
        self.failing, self.seed_failures = self._seed_failures(task)
        self.twin_oracle = self.twin_ref = self.twin_failing = self.seed_disagreements = None
        if self.twin is not None:
            self._twin_on_seeds()
        self.gates = Gates.for_campaign(opts, self.mut, self.strategy_checks_validity(opts))
        self.seed_small = self.gates.seed_copies(self.seeds.images)  # the seeds reduced once, not per batch
        self.transform_names = list(opts.transforms) if opts.transforms else list(REGISTRY)
        self.strategy = make_strategy(opts.strategy, len(self.seeds.images), self.transform_names, opts.seed,
                                      max_links=opts.max_links)

        self.twin_stats = None
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            cov_ref = self.ref if self.cov_mut is self.mut else self.twin_ref
            self.tracker, self.profile_source = make_tracker(self.cov_mut, opts.coverage, opts.profile,
                                                             lambda: cov_ref.activations)
            mismatch = profile_warning(self.tracker.profile if self.tracker is not None else None, self.cov_mut.card)
            if mismatch:
                self.notes.append(mismatch)
                echo(f"WARNING: {mismatch}\n")
            if self.tracker is not None:
                self.tracker.update(cov_ref.activations)
            self.stats, self.writer = CampaignStats(), FindingsWriter(self.out, save_images=opts.save_images)
            if self.twin is not None:
                self.twin_stats = CampaignStats()
            self.checkpoints, self.elapsed_before = 0, 0.0
            if self.tracker is not None:
                self.stats.record_growth(self.tracker.coverage())
        guide = list(opts.guide) if opts.guide else None
        shuffled = guide == ["shuffled"]  # ablation: the same number of gains, credited to random inputs
        if shuffled:
            guide = self.tracker.names if self.tracker is not None else []
        self.check = BatchCheck(self.mut, self.writer, self.stats, self.tracker, guide,
                                shuffle_seed=opts.seed if shuffled else None, twin=self.twin,
                                twin_stats=self.twin_stats, coverage_on=opts.coverage_on)
        if self.twin is not None:
            self.check.seed_disagreements(self.seeds.ids, self.seed_disagreement_values)
        if checkpoint is not None:
            self.check.batches = checkpoint["batches"]
            self.check.best.update(checkpoint.get("disagreement_best") or {})
        self.model_info = model_info(self.mut)
        self.twin_info = None
        if self.twin is not None:
            self.twin_info = twin_info(self.twin, self.twin_check, self.twin_oracle.config(), self.seed_disagreements)
        self.campaign_info = campaign_record(
            opts, transforms=self.transform_names, seeds_used=seeds_description(opts, self.seeds),
            seeds_notes=getattr(self.seeds, "notes", []), frame_size=self.seeds.images.shape[1:3],
            profile_source=self.profile_source, relation=self.oracle.config(), seed_failures=self.seed_failures,
            gates=self.gates.describe())
        self.start = time.perf_counter()
        self.stopped_by = None  # budget | time | plan | rejections, once the loop ends

    def _seed_failures(self, task):
        """Which seeds the model already gets wrong by their labels: skipped (the search sees only the
        others) or, with --failing-seeds test, kept and counted apart. Returns (mask or None, summary)."""
        failing = task.seed_failures(self.oracle, self.ref.outputs, self.labels, self.seeds.images.shape[1:3])
        n = len(self.seeds.images)
        if failing is None:  # no labels to tell
            return None, {"known": False, "count": 0, "seeds": n, "policy": self.opts.failing_seeds, "ids": []}
        failing = np.asarray(failing, bool)
        k = int(failing.sum())
        info = {"known": True, "count": k, "seeds": n, "policy": self.opts.failing_seeds,
                "ids": [self.seeds.ids[int(i)] for i in np.flatnonzero(failing)[:20]]}
        if not k or self.opts.failing_seeds == "count":
            if k:
                self.echo(f"seeds: the model is already wrong on {k} of {n} seeds by their labels; they are "
                          "tested and counted as the others (--failing-seeds count)\n")
            return None, info
        if k == n:
            raise ConfigError(f"the model is already wrong on all {n} seeds by their labels: nothing is left to "
                              "test (check the labels' units and sign, and the model card)")
        how = ("they are not searched (--failing-seeds test searches them too, counted apart)"
               if self.opts.failing_seeds == "skip" else "their findings are counted apart from the error rates")
        self.echo(f"seeds: the model is already wrong on {k} of {n} seeds by their labels; {how}\n")
        if self.opts.failing_seeds == "test":
            return failing, info
        keep = np.flatnonzero(~failing)
        self.seeds = self.seeds.subset(keep)
        self.labels = None if self.labels is None else self.labels[keep]
        self.ref = type(self.ref)(outputs=self.mut.task.select(self.ref.outputs, keep), activations=self.ref.activations,
                                  raw=[])
        return None, info

    def _twin_on_seeds(self) -> None:
        """Run the twin on the seeds and judge it against the model there: seeds where the two already
        disagree are reported (like seeds the model gets wrong by their labels), and the differential
        findings made from them are counted apart from its error rates (unless --failing-seeds count)."""
        from deeptest_iot.tasks.differential import differential_oracle_for, disagreement, option_names

        opts, card = self.opts, self.mut.card
        if opts.twin_delta is not None and "delta" not in option_names(card.task):
            raise ConfigError(f"--twin-delta bounds the differential relation of steering models; a {card.task} "
                              "twin is judged by its own relation (docs/twins.md#the-differential-relation)")
        self.twin_oracle = differential_oracle_for(card, delta=opts.twin_delta)
        with_cov = bool(opts.coverage) and self.cov_mut is self.twin
        try:
            self.twin_ref = self.twin.run(self.seeds.images, with_activations=with_cov)
        except OutputError as exc:
            named = ", ".join(repr(self.seeds.ids[int(i)]) for i in (exc.inputs if exc.inputs is not None else [])[:5])
            raise OutputError(f"the twin {self.twin.name!r}: {exc}" + (f" (on the seeds themselves: {named})"
                                                                       if named else "")) from None
        v = self.twin_oracle.check(self.ref.outputs, self.twin_ref.outputs, labels=self.labels,
                                   frame_size=self.seeds.images.shape[1:3])
        self.seed_disagreement_values = disagreement(v)
        n, k = len(v), int(v.failed.sum())
        policy = opts.failing_seeds
        self.seed_disagreements = {"count": k, "seeds": n, "policy": policy,
                                   "ids": [self.seeds.ids[int(i)] for i in v.failures[:20]],
                                   "max_disagreement": float(self.seed_disagreement_values.max(initial=0.0))}
        if k:
            how = ("its differential findings on them are counted as the others (--failing-seeds count)"
                   if policy == "count" else "its differential findings on them are counted apart")
            shown = ", ".join(self.seed_disagreements["ids"][:5]) + (", ..." if k > 5 else "")
            self.echo(f"twin: {self.twin.name} already disagrees with the model on {k} of {n} seeds ({shown}); "
                      f"{how}\n")
        self.twin_failing = None if policy == "count" or not k else v.failed.copy()

    def _restore(self, checkpoint: dict) -> None:
        from deeptest_iot.coverage import CoverageTracker

        self.tracker = None
        if self.opts.coverage:
            self.tracker = CoverageTracker.load(self.out / checkpoint["coverage_file"], self.cov_mut.fingerprint,
                                                self.cov_mut.layer_sizes)
        self.profile_source = checkpoint.get("profile_source")
        self.strategy.restore(checkpoint["strategy"])
        self.stats = CampaignStats(checkpoint["stats"])
        if self.twin is not None:
            self.twin_stats = CampaignStats(checkpoint.get("twin_stats"))
        self.writer = FindingsWriter(self.out, count=checkpoint["findings"], offset=checkpoint["findings_offset"],
                                     save_images=self.opts.save_images)
        self.checkpoints = checkpoint["checkpoints"]
        self.elapsed_before = checkpoint["elapsed_s"]

    # -- the loop ------------------------------------------------------------------------------
    def run(self, tty: bool = False, stop_after_batches: int | None = None) -> CampaignResult:
        """Run until the budget, the time or the plan is spent. On an error (say NaN outputs) the
        summary is left final, with status "failed" and the error, and the findings so far are kept."""
        try:
            return self._loop(tty, stop_after_batches)
        except DeeptestError as exc:
            self.writer.sync()
            write_summary(self.out, {**self.summary("failed"), "error": str(exc)})
            raise

    def _loop(self, tty: bool, stop_after_batches: int | None) -> CampaignResult:
        opts, strategy = self.opts, self.strategy
        write_summary(self.out, self.summary("running"))
        progress = Progress(opts.budget, opts.time, tty, self.echo)
        last_summary = last_checkpoint = time.perf_counter()
        # A strategy that learns nothing from a batch gets its next batch built while the model runs
        # this one. The next cases are proposed here, on this thread, from state this thread owns;
        # only the pixels are built ahead, by a pure function of those cases.
        ahead = not strategy.uses_feedback
        run_batches, resume_state = 0, strategy.state()
        batch = self._propose(in_flight=0, ahead=ahead)
        while batch is not None:
            if self._must_stop():
                break
            cases, images = batch.cases, batch.images()
            batch = None
            if ahead:
                resume_state = strategy.state()  # after proposing these cases: where a resume continues
                batch = self._propose(in_flight=len(cases), ahead=True)
            checked = self._check(cases, images)
            if not ahead:
                resume_state = strategy.state()
            if checked:
                run_batches += 1
                # Findings reach disk every batch; the checkpoint (the state a resume starts from) at
                # most every CHECKPOINT_EVERY_S. A resume cuts findings.jsonl back to the checkpoint and
                # replays the batches after it, which give the same findings: none is lost or doubled.
                if time.perf_counter() - last_checkpoint >= CHECKPOINT_EVERY_S or stop_after_batches is not None:
                    self._save_checkpoint(resume_state)
                    last_checkpoint = time.perf_counter()
                if time.perf_counter() - last_summary >= SUMMARY_EVERY_S:  # for readers of a running campaign
                    write_summary(self.out, self.summary("running"), durable=False)
                    last_summary = time.perf_counter()
                progress.update(self.stats.tried, self._coverage(), self.stats.found)
                if stop_after_batches is not None and run_batches >= stop_after_batches:
                    if batch is not None:
                        batch.images()
                    return CampaignResult(self.summary("running"), 3, self.out)
            if batch is None:  # nothing in flight now: gates may have rejected part of the last batch
                batch = self._propose(in_flight=0, ahead=ahead)
        if batch is not None:
            batch.images()  # let a batch built ahead finish before the pool is reused
        if run_batches:
            self._save_checkpoint(resume_state)  # a finished campaign can be resumed with a larger budget
        return self._finish(progress)

    def _propose(self, in_flight: int, ahead: bool) -> _Batch | None:
        """The next cases and their images, or None when the budget or the plan is spent."""
        remaining = self.opts.budget - self.stats.tried - in_flight
        if remaining <= 0 or self.strategy.done:
            self.stopped_by = "plan" if self.strategy.done else "budget"
            return None
        cases = self.strategy.next_batch(min(self.opts.batch_size, remaining))[:remaining]
        if not cases:
            return None
        if ahead:
            return _Batch(cases, pool(1, "prefetch").submit(build_images, self.seeds.images, cases))
        return _Batch(cases, build_images(self.seeds.images, cases))

    @staticmethod
    def strategy_checks_validity(opts) -> bool:
        from deeptest_iot.engine.search import STRATEGIES

        return STRATEGIES[opts.strategy].checks_validity if opts.strategy in STRATEGIES else False

    def _check(self, cases: list, images: np.ndarray) -> bool:
        """Gate the mutants (realism; DeepHunter's validity for the strategy that asks for it), run the
        batch check on the rest, feed the strategy back; False when the gates left nothing to check."""
        idx = np.array([c.seed_index for c in cases])
        chains = [c.chain for c in cases]
        seed_images = self.seeds.images[idx]
        verdict = self.gates(seed_images, images, chains,
                             None if self.seed_small is None else self.seed_small[idx])
        self.stats.reject(verdict.rejected_by)
        keep = np.flatnonzero(verdict.keep)
        if len(keep) < len(cases):  # the strategy learns that rejected mutants added nothing
            dropped = [cases[i] for i in np.flatnonzero(~verdict.keep)]
            self.strategy.feedback(dropped, np.zeros(len(dropped), np.int64), np.zeros(len(dropped), bool))
            cases, images, idx = [cases[i] for i in keep], images[keep], idx[keep]
            seed_images = seed_images[keep]
            chains = [chains[i] for i in keep]
        if not cases:
            return False
        seeds = SeedBatch(ids=[self.seeds.ids[i] for i in idx], indices=self.seeds.origin[idx],
                          images=seed_images,
                          reference=self.mut.task.select(self.ref.outputs, idx),
                          labels=None if self.labels is None else self.labels[idx],
                          failing=None if self.failing is None else self.failing[idx],
                          twin_failing=None if self.twin_failing is None else self.twin_failing[idx])
        result = self.check(images, chains, seeds, oracle=self.oracle, twin_oracle=self.twin_oracle,
                            case_ids=[c.case_id for c in cases],
                            original_keys=[f"seed-{i:05d}" for i in self.seeds.origin[idx]],
                            durable=False, per_input=verdict.record(keep))
        self.strategy.feedback(cases, result.gains, result.failed)
        return True

    # -- state on disk -------------------------------------------------------------------------
    def _must_stop(self) -> bool:
        """Whether the time limit passed or too many mutants were rejected (20 x the budget): sets
        ``stopped_by`` and says why; the campaign loops of every engine ask it before each batch."""
        opts = self.opts
        if opts.time is not None and self.elapsed() >= opts.time:
            self.stopped_by = "time"
            return True
        if self.stats.rejected > 20 * max(opts.budget, opts.batch_size):
            self.echo(f"stopping: {self.stats.rejected} mutants were rejected as unrealistic or invalid "
                      f"({self.stats.rejected_by}); loosen --alpha/--beta, --realism flag, or choose other "
                      "transforms\n")
            self.stopped_by = "rejections"
            return True
        return False

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    def _coverage(self) -> dict:
        return self.tracker.coverage() if self.tracker is not None else {}

    def _save_checkpoint(self, strategy_state: dict) -> None:
        self.writer.sync()
        self.checkpoints += 1
        state = {"format": 1, "options": self.opts.replay_dict(), "batches": self.check.batches,
                 "checkpoints": self.checkpoints, "findings": self.writer.count, "findings_offset": self.writer.offset,
                 "strategy": strategy_state, "stats": self.stats.state(), "profile_source": self.profile_source,
                 "elapsed_s": self.elapsed()}
        if self.twin is not None:
            state["twin_stats"] = self.check.twin_stats.state()
            state["disagreement_best"] = dict(self.check.best)
        if self.tracker is not None:
            # Two alternating files: the one the previous checkpoint names is never overwritten.
            state["coverage_file"] = f"coverage-{self.checkpoints % 2}.npz"
            self.tracker.save(self.out / state["coverage_file"])
        write_checkpoint(self.out, state)

    def summary(self, status: str) -> dict:
        extra = {"stopped_by": self.stopped_by} if status == "complete" else {}
        if self.strategy.plan_size is not None:  # a finite plan (a sweep): how much of it ran
            extra["plan"] = {"inputs": self.strategy.plan_size, "done": self.strategy.plan_done}
        return build_summary(model=self.model_info, campaign=self.campaign_info, status=status, stats=self.stats,
                             tracker=self.tracker, duration_s=self.elapsed(), seeds=len(self.seeds.images),
                             notes=self.notes, warnings=self.warnings, twin=self.twin_info,
                             twin_stats=self.check.twin_stats if self.twin is not None else None,
                             relation=self.oracle.relation, **extra)

    def _finish(self, progress: Progress) -> CampaignResult:
        final = self.summary("complete")
        if self.tracker is not None:
            self.tracker.save(self.out / "coverage.npz")
        write_summary(self.out, final)
        progress.update(self.stats.tried, self._coverage(), self.stats.found, final=True)
        # A model unfit to be judged (constant outputs, worse than a constant) fails, whatever it found.
        exit_code = 1 if over_threshold(final, self.opts.max_error_rate) or self.warnings else 0
        return CampaignResult(final, exit_code, self.out)


def over_threshold(summary: dict, max_error_rate: float) -> bool:
    """Whether a summary fails a campaign: the error rate of any relation above ``max_error_rate``, or,
    with a twin, the share of seeds on which the twin already disagrees with the model above it."""
    rates = [summary.get("error_rate") or 0.0]
    rates += [(r or {}).get("error_rate") or 0.0 for r in (summary.get("relations") or {}).values()]
    seeds = ((summary.get("twin") or {}).get("seed_disagreements") or {})
    if seeds.get("seeds"):
        rates.append(seeds["count"] / seeds["seeds"])
    return any(rate > max_error_rate for rate in rates)


__all__ = ["Campaign", "CampaignOptions", "CampaignResult", "campaign_class", "generated_frame_size",
           "load_model_for", "load_seeds_for", "load_twin_for", "open_out_folder", "over_threshold", "run_campaign"]
