"""One test campaign: seeds -> transform chains -> model (outputs + activations) -> coverage -> oracle -> findings.

Everything moves in batches. Only counters, the coverage state and the strategy's small state live
in memory; findings go to disk as they are found, and a checkpoint after every batch lets a killed
campaign resume where it stopped (``docs/results-format.md``).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deeptest_iot import __version__
from deeptest_iot.errors import ConfigError, InputError
from deeptest_iot.fileio import read_toml
from deeptest_iot.results.writer import (CHECKPOINT, FINDINGS, CampaignStats, FindingsWriter, finding_record, read_checkpoint,
                      write_checkpoint, write_summary)
from deeptest_iot.engine.search import Case, make_strategy

# Measured on the sample steering model (README, "Does coverage guidance pay?"): NC at 0.2 and 0.5 is
# ~99% on the 50 seeds alone and NC at 0.75 saturates within a few hundred inputs, while NBC keeps
# growing and separates strategies. NC is tracked for reporting; KMNC and NBC guide by default.
DEFAULT_COVERAGE = ("nc:0.75", "kmnc:10", "nbc")
SAMPLE_MODEL = "dave2_steering"
SUMMARY_EVERY_S = 5.0
CHECKPOINT_EVERY_S = 2.0


@dataclass
class CampaignOptions:
    """Every setting of a campaign; ``to_dict`` goes into summary.json so a campaign can be re-run."""

    model: str | None = None  # None: the shipped sample steering model
    card: str | None = None
    trust_model: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    seeds: str | None = None  # image folder; None: generated scenes
    labels: str | None = None
    n_seeds: int = 50  # generated scenes when no folder is given
    strategy: str = "deeptest"
    transforms: tuple[str, ...] | None = None  # None: every registered transform
    budget: int = 2000  # inputs run through the model (seeds not counted)
    time: float | None = None  # seconds; stops at whichever of budget and time comes first
    coverage: tuple[str, ...] = DEFAULT_COVERAGE
    guide: tuple[str, ...] | None = None  # criteria whose gains steer the search; None: all tracked
    profile: str | None = None
    seed: int = 0
    batch_size: int = 128
    lam: float | None = None  # steering relation with labels (None: the oracle's default)
    mse_orig: float | None = None  # steering: a fixed MSE_orig (validate: the baseline's); None: measure on seeds
    delta: float | None = None  # steering relation without labels
    max_confidence_drop: float | None = None  # classification
    alpha: float = 0.02  # DeepHunter validity
    beta: float = 0.2
    max_error_rate: float = 0.0  # exit 1 when the error rate is above this
    out: str = "deeptest-out"
    resume: bool = False

    # Options that may change between a run and its --resume (the rest must match).
    RESUMABLE = ("budget", "time", "out", "resume", "max_error_rate")

    def __post_init__(self):
        if self.budget is not None and int(self.budget) < 0:
            raise ConfigError(f"--budget must be >= 0, not {self.budget}")
        if self.time is not None and float(self.time) <= 0:
            raise ConfigError(f"--time must be > 0 seconds, not {self.time}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, not {self.batch_size}")
        if int(self.n_seeds) < 1:
            raise ConfigError(f"n_seeds must be >= 1, not {self.n_seeds}")
        if not 0.0 <= float(self.max_error_rate) <= 1.0:
            raise ConfigError(f"max_error_rate must be in [0, 1], not {self.max_error_rate}")
        for name in ("include", "exclude", "coverage"):
            setattr(self, name, tuple(getattr(self, name) or ()))
        for name in ("transforms", "guide"):
            value = getattr(self, name)
            setattr(self, name, None if value is None else tuple(value))

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_sources(cls, config_file: str | None = None, **cli: Any) -> "CampaignOptions":
        """Options from a TOML config (a ``[run]`` table or top-level keys), overridden by CLI values."""
        values: dict[str, Any] = {}
        if config_file:
            data = read_toml(config_file, "config file")
            table = data.get("run", {k: v for k, v in data.items() if not isinstance(v, dict)})
            unknown = sorted(set(table) - set(cls.fields()))
            if unknown:
                raise ConfigError(f"config file {config_file}: unknown key(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(cls.fields())}")
            values.update(table)
        values.update({k: v for k, v in cli.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"bad campaign option: {exc}") from None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def replay_dict(self) -> dict:
        """The options that define which findings a campaign makes (for resume and compare checks)."""
        d = self.to_dict()
        for k in self.RESUMABLE:
            d.pop(k, None)
        return d


@dataclass
class CampaignResult:
    summary: dict
    exit_code: int
    out_dir: Path = field(default=Path("."))


def _libraries() -> dict:
    import cv2
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "opencv": cv2.__version__}


def _load_model(opts: CampaignOptions):
    from deeptest_iot.cli.model import load_from_options

    path = opts.model
    if path is None:
        from deeptest_iot import sample_models

        path = str(sample_models.path(SAMPLE_MODEL))
    return load_from_options(path, opts.card, None, opts.include, opts.exclude, opts.trust_model)


def default_guide(tracked: Sequence[str]) -> list[str]:
    """The tracked criteria that keep growing (all but NC, which saturates), or all when only NC is tracked."""
    growing = [name for name in tracked if not name.startswith("nc:")]
    return growing or list(tracked)


def generated_frame_size(card) -> tuple[int, int]:
    """Frames rendered so that, after the card's crop, they are the network's input size: transforms
    then work on the pixels the model sees, not on pixels the resize would throw away."""
    ih, iw = card.input_size
    top, bottom, left, right = card.crop
    return max(8, round(ih / (1.0 - top - bottom))), max(8, round(iw / (1.0 - left - right)))


def _load_seeds(opts: CampaignOptions, mut):
    """Seeds from a folder (with labels), or generated: road scenes, or sign crops for a classifier."""
    from deeptest_iot.data import seeds as seed_loaders

    if opts.seeds is not None:
        return seed_loaders.load_seeds(opts.seeds, labels=opts.labels)
    if opts.labels:
        raise ConfigError("--labels needs --seeds (the folder the labels describe)")
    h, w = generated_frame_size(mut.card)
    if mut.card.task == "classification":
        from deeptest_iot.data.scenes import SIGN_CLASSES, sign_crops

        images, labels = sign_crops(opts.n_seeds, seed=opts.seed, size=max(h, w))
        return seed_loaders.SeedSet(ids=[f"sign-{opts.seed}-{i}" for i in range(len(images))], images=images,
                                    labels=labels, task="classification", class_names=SIGN_CLASSES)
    return seed_loaders.generated_seeds(opts.n_seeds, seed=opts.seed, height=h, width=w)


def _profile_for(opts: CampaignOptions, mut, seed_acts):
    """The training profile KMNC/NBC/SNAC need: --profile, the file beside the model, or the seeds."""
    from deeptest_iot.coverage import Profile, parse_specs

    needs = any(s.kind in ("kmnc", "nbc", "snac") for s in parse_specs(opts.coverage))
    if not needs:
        return None, None
    if opts.profile:
        return Profile.load(opts.profile, mut.fingerprint, mut.layer_sizes), opts.profile
    if mut.path:
        beside = Path(mut.path).with_suffix(".profile.npz")
        if beside.is_file():
            return Profile.load(beside, mut.fingerprint, mut.layer_sizes), str(beside)
    return Profile.from_batches([seed_acts], mut.fingerprint, mut.layer_sizes), "seeds"


def apply_case(image: np.ndarray, case: Case) -> np.ndarray:
    """The pixels of one case: its links applied in order to its seed image."""
    out = image[None]
    for link in case.links:
        out = link.transform(out, seed=link.seed)
    return out[0]


def build_images(seed_images: np.ndarray, cases: Sequence[Case], workers: int | None = None) -> np.ndarray:
    """Apply every case's chain; cases that share a chain run as one batched call.

    Groups are spread over a thread pool: OpenCV and NumPy release the GIL, and the model is idle
    while a batch is being built, so the cores it would use are free.
    """
    groups: dict[tuple, list[int]] = {}
    for i, case in enumerate(cases):
        groups.setdefault(case.links, []).append(i)
    out = np.empty((len(cases),) + seed_images.shape[1:], np.uint8)

    def build(indices: list[int]) -> None:
        batch = seed_images[[cases[i].seed_index for i in indices]]
        for link in cases[indices[0]].links:
            batch = link.transform(batch, seed=link.seed)
        out[indices] = batch

    jobs = list(groups.values())
    workers = workers or _POOL_SIZE
    if workers > 1 and len(jobs) > 1:
        list(_pool(workers).map(build, jobs))
    else:
        for indices in jobs:
            build(indices)
    return out


_POOL_SIZE = max(1, min(8, 2 * (os.cpu_count() or 1)))  # 2 per core: measured faster than 1 (GIL hand-offs)
_POOLS: dict[int, Any] = {}


def _pool(workers: int, purpose: str = "transforms"):
    """A long-lived thread pool per (size, purpose): prefetching uses its own, so it never waits on itself."""
    from concurrent.futures import ThreadPoolExecutor

    key = (workers, purpose)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix=f"deeptest-{purpose}")
    return _POOLS[key]


def _select(outputs, indices):
    if isinstance(outputs, np.ndarray):
        return outputs[indices]
    return [outputs[i] for i in indices]


class Progress:
    """Reports progress: a live line on a terminal, a plain log line every ``every`` seconds otherwise."""

    def __init__(self, total: int | None, time_limit: float | None, tty: bool, echo: Callable[[str], None],
                 every: float = 10.0):
        self.total, self.time_limit, self.tty, self.echo, self.every = total, time_limit, tty, echo, every
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, tried: int, coverage: dict, findings: int, final: bool = False) -> None:
        now = time.perf_counter() - self.start
        if not final and not self.tty and now - self.last < self.every:
            return
        self.last = now
        rate = tried / now if now > 0 else 0.0
        cov = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in coverage.items())
        if self.tty:
            done = min(tried / self.total, 1.0) if self.total else min(now / (self.time_limit or 1), 1.0)
            bar = "#" * int(done * 24)
            line = f"\r[{bar:<24}] {tried} inputs  {rate:6.0f}/s  {cov}  findings={findings}"
            self.echo(line + ("\n" if final else ""))
        else:
            self.echo(f"inputs={tried} rate={rate:.0f}/s {cov} findings={findings}\n")


def run_campaign(opts: CampaignOptions, echo: Callable[[str], None] | None = None, tty: bool = False,
                 stop_after_batches: int | None = None) -> CampaignResult:
    """Run (or resume) a campaign and return its summary and exit code (0 passed, 1 findings over threshold).

    ``stop_after_batches`` stops early as a kill would (for tests of resume).
    """
    from deeptest_iot.coverage import CoverageTracker
    from deeptest_iot.tasks.oracles import make_oracle
    from deeptest_iot.engine.validity import check_validity

    echo = echo or (lambda s: None)
    out = Path(opts.out)
    checkpoint = None
    if opts.resume:
        checkpoint = read_checkpoint(out)
        if checkpoint is None:
            echo(f"nothing to resume in {out}: starting a new campaign\n")
        else:
            before = checkpoint["options"]
            now = opts.replay_dict()
            diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            if diff:
                raise ConfigError(f"--resume with different options than the campaign in {out}: "
                                  + ", ".join(f"{k} was {before.get(k)!r}, now {now.get(k)!r}" for k in diff))
    elif (out / CHECKPOINT).exists() or ((out / FINDINGS).exists() and (out / FINDINGS).stat().st_size):
        raise ConfigError(f"{out} already holds a campaign; pass --resume to continue it, or choose another --out "
                          "(deeptest-iot never overwrites results)")
    out.mkdir(parents=True, exist_ok=True)

    mut = _load_model(opts)
    seeds = _load_seeds(opts, mut)
    task = mut.card.task
    with_cov = bool(opts.coverage)
    if with_cov and not mut.supports_coverage:
        raise ConfigError(f"coverage needs a Keras model; {mut.name!r} is a {mut.kind} model. Run it with "
                          "--coverage none to test the metamorphic relations only")
    ref = mut.run(seeds.images, with_activations=with_cov)
    labels = _labels_for(task, seeds)

    oracle_opts: dict[str, Any] = {}
    if task == "steering":
        oracle_opts = {"lam": opts.lam, "delta": opts.delta}
        if opts.mse_orig is not None:
            oracle_opts.update(mse_orig=opts.mse_orig)
        elif labels is not None and np.isfinite(labels).any():
            oracle_opts.update(seed_predictions=ref.outputs, seed_labels=labels)
    elif task == "classification":
        oracle_opts = {"classes": list(mut.card.classes) or None, "max_confidence_drop": opts.max_confidence_drop}
    else:
        # The card's score_threshold decides which boxes are decoded; the oracle's own (0.5) which of
        # them are confident enough that losing or gaining one is a finding.
        oracle_opts = {"classes": list(mut.card.classes) or None}
    oracle = make_oracle(task, **oracle_opts)

    from deeptest_iot.transforms import REGISTRY

    transform_names = list(opts.transforms) if opts.transforms else list(REGISTRY)
    strategy = make_strategy(opts.strategy, len(seeds.images), transform_names, opts.seed)

    tracker = None
    profile_source = None
    slot = 0
    if with_cov:
        if checkpoint is not None:
            tracker = CoverageTracker.load(out / checkpoint["coverage_file"], mut.fingerprint, mut.layer_sizes)
            profile_source = checkpoint.get("profile_source")
            slot = checkpoint["batches"]
        else:
            profile, profile_source = _profile_for(opts, mut, ref.activations)
            tracker = CoverageTracker(opts.coverage, mut.layer_sizes, profile, fingerprint=mut.fingerprint)
            tracker.update(ref.activations)
    guide = list(opts.guide) if opts.guide else default_guide(tracker.names if tracker else [])
    # Ablation control: "shuffled" keeps how many inputs count as new coverage but gives the credit to
    # random inputs of the batch, so a comparison shows what the coverage signal itself is worth.
    shuffled = guide == ["shuffled"]
    if shuffled:
        guide = tracker.names if tracker else []
    if tracker is not None:
        unknown = [g for g in guide if g not in tracker.names]
        if unknown:
            raise ConfigError(f"guide criteria {unknown} are not tracked; tracked: {tracker.names}")

    stats = CampaignStats(checkpoint["stats"] if checkpoint else None)
    if checkpoint is not None:
        strategy.restore(checkpoint["strategy"])
        writer = FindingsWriter(out, count=checkpoint["findings"], offset=checkpoint["findings_offset"])
        batches = checkpoint["batches"]
        elapsed_before = checkpoint["elapsed_s"]
    else:
        writer = FindingsWriter(out)
        batches = 0
        elapsed_before = 0.0
        if tracker is not None:
            stats.record_growth(tracker.coverage())

    model_info = {"path": mut.path, "name": mut.name, "fingerprint": mut.fingerprint, "task": task,
                  "card": mut.card.to_dict(), "layers": mut.layer_sizes, "neurons": mut.neurons}
    campaign_info = {**opts.replay_dict(), "budget": opts.budget, "time": opts.time, "transforms": transform_names,
                     "seeds_used": seeds_description(opts, seeds), "profile_source": profile_source,
                     "relation": oracle.config()}
    frame_hw = seeds.images.shape[1:3]
    start = time.perf_counter()
    progress = Progress(opts.budget, opts.time, tty, echo)

    def summary(status: str) -> dict:
        s = {"format": 1, "tool": {"name": "deeptest-iot", "version": __version__}, "libraries": _libraries(),
             "model": model_info, "campaign": campaign_info, "status": status,
             "inputs_tried": stats.tried, "inputs_rejected": stats.rejected, "findings": stats.found,
             "seeds": len(seeds.images), "duration_s": round(elapsed_before + time.perf_counter() - start, 3),
             **stats.tables()}
        if tracker is not None:
            s["coverage"] = tracker.summary()["criteria"]
            s["coverage_growth"] = stats.growth
        else:
            s["coverage"] = {}
            s["coverage_growth"] = []
        return s

    write_summary(out, summary("running"))
    last_summary = time.perf_counter()
    run_batches = 0
    checkpoints = checkpoint["checkpoints"] if checkpoint else 0
    last_checkpoint = time.perf_counter()
    max_rejected = 20 * max(opts.budget or 0, opts.batch_size)

    def propose(already: int):
        """The next batch of cases and their images, or None when the budget, time or plan is spent."""
        remaining = (opts.budget - stats.tried - already) if opts.budget is not None else opts.batch_size
        if remaining <= 0 or strategy.done:
            return None
        cases = strategy.next_batch(min(opts.batch_size, remaining))[:remaining]
        return (cases, build_images(seeds.images, cases)) if cases else None

    def save_checkpoint(strategy_state: dict) -> None:
        nonlocal checkpoints, last_checkpoint
        checkpoints += 1
        state = {"format": 1, "options": opts.replay_dict(), "batches": batches, "checkpoints": checkpoints,
                 "findings": writer.count, "findings_offset": writer.offset, "strategy": strategy_state,
                 "stats": stats.state(), "profile_source": profile_source,
                 "elapsed_s": elapsed_before + time.perf_counter() - start}
        if tracker is not None:
            # Two alternating files: the one the previous checkpoint names is never overwritten.
            state["coverage_file"] = f"coverage-{checkpoints % 2}.npz"
            tracker.save(out / state["coverage_file"])
        write_checkpoint(out, state)
        last_checkpoint = time.perf_counter()

    # Strategies that learn nothing from a batch can build the next batch while the model runs this one.
    prefetching = not strategy.uses_feedback
    prefetcher = _pool(1, "prefetch") if prefetching else None
    pending = None
    while True:
        if opts.time is not None and time.perf_counter() - start + elapsed_before >= opts.time:
            break
        if stats.rejected > max_rejected:
            echo(f"stopping: {stats.rejected} mutants in a row failed the validity check; loosen --alpha/--beta "
                 "or choose other transforms\n")
            break
        proposal = pending.result() if pending is not None else propose(0)
        pending = None
        if proposal is None:
            break
        cases, images = proposal
        strategy_state = strategy.state()  # before any prefetch: what a resume must start from
        if prefetching:
            pending = prefetcher.submit(propose, len(cases))
        if opts.strategy == "deephunter":
            originals = seeds.images[[c.seed_index for c in cases]]
            validity = check_validity(originals, images, chains=[c.transforms for c in cases], alpha=opts.alpha,
                                      beta=opts.beta)
            keep = np.flatnonzero(validity.valid)
            stats.rejected += len(cases) - len(keep)
            cases = [cases[i] for i in keep]
            images = images[keep]
            if not cases:
                continue
        res = mut.run(images, with_activations=tracker is not None)
        if tracker is not None:
            tracker.update(res.activations)
            gains = sum((tracker.last_gains[g] for g in guide), np.zeros(len(cases), np.int64))
            if shuffled:
                gains = np.random.default_rng([opts.seed, 0x5F, batches]).permutation(gains)
        else:
            gains = np.zeros(len(cases), np.int64)
        idx = np.array([c.seed_index for c in cases])
        verdicts = oracle.check(_select(ref.outputs, idx), res.outputs, [c.transforms for c in cases],
                                labels=None if labels is None else labels[idx], frame_size=frame_hw)
        strategy.feedback(cases, gains, verdicts.failed)
        if not prefetching:
            strategy_state = strategy.state()
        stats.add([c.name for c in cases], [c.severity for c in cases], verdicts.failed, verdicts.violation)
        if tracker is not None:
            stats.record_growth(tracker.coverage())

        records, pairs = [], []
        for i in verdicts.failures:
            case = cases[i]
            records.append(finding_record(
                verdicts, i, case=case.case_id, seed_id=seeds.ids[case.seed_index], seed_index=case.seed_index,
                transform=case.name, chain=[link.to_dict() for link in case.links], severity=case.severity,
                coverage_gain=gains[i]))
            pairs.append((seeds.images[case.seed_index], images[i]))
        due = time.perf_counter() - last_checkpoint >= CHECKPOINT_EVERY_S or stop_after_batches is not None
        writer.append(records, pairs, durable=due,
                      original_keys=[f"seed-{cases[i].seed_index:05d}" for i in verdicts.failures])
        batches += 1
        run_batches += 1

        # Findings go to disk every batch; the checkpoint (the state a resume starts from) at most every
        # CHECKPOINT_EVERY_S. A resume cuts findings.jsonl back to the checkpoint and replays the batches
        # after it, which give the same findings, so none is lost or written twice.
        if due:
            save_checkpoint(strategy_state)
        if time.perf_counter() - last_summary >= SUMMARY_EVERY_S:  # for readers of a running campaign
            write_summary(out, summary("running"), durable=False)
            last_summary = time.perf_counter()
        progress.update(stats.tried, tracker.coverage() if tracker else {}, stats.found)
        if stop_after_batches is not None and run_batches >= stop_after_batches:
            if pending is not None:
                pending.result()
            return CampaignResult(summary("running"), 3, out)
    if pending is not None:
        pending.result()
    if run_batches:
        save_checkpoint(strategy_state)  # a finished campaign can be resumed with a larger budget

    final = summary("complete")
    if tracker is not None:
        tracker.save(out / "coverage.npz")
    write_summary(out, final)
    progress.update(stats.tried, tracker.coverage() if tracker else {}, stats.found, final=True)
    exit_code = 1 if final["error_rate"] > opts.max_error_rate else 0
    return CampaignResult(final, exit_code, out)


def _labels_for(task: str, seeds) -> np.ndarray | None:
    """Steering labels as a float array (NaN where a seed has none); other tasks judge against the seed output."""
    if task != "steering" or getattr(seeds, "labels", None) is None:
        return None
    labels = np.asarray(seeds.labels, dtype=np.float64).reshape(-1)
    if labels.shape[0] != len(seeds.images):
        raise InputError(f"{labels.shape[0]} labels for {len(seeds.images)} seed images")
    return labels


def seeds_description(opts: CampaignOptions, seeds) -> str:
    if opts.seeds is None:
        return f"generated:{len(seeds.images)}"
    return f"{opts.seeds} ({len(seeds.images)} images)"
