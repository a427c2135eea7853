"""Search strategies: which transformed inputs to try next, given what earlier ones covered.

A strategy proposes :class:`Case` values (a seed and a chain of transform links) in batches and
learns from the coverage each case added. It never touches pixels or the model: the campaign
applies chains, runs the model and feeds back ``gains``. All state is small (seed indices and
chains, never images) and JSON-able, so memory stays flat and a campaign can resume.

Every case draws its random choices from its own Generator, seeded by (campaign seed, case id);
strategy-level choices (which seed next) come from one Generator whose state is checkpointed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from deeptest_iot.errors import ConfigError
from deeptest_iot.transforms import Chain


@dataclass(frozen=True)
class Case:
    """A test input to build: the seeded ``chain`` applied to seed ``seed_index``."""

    case_id: int
    seed_index: int
    chain: Chain

    @property
    def name(self) -> str:
        return self.chain.name

    @property
    def severity(self) -> float:
        return self.chain.severity


#: The chain of a seed itself: no transform yet.
EMPTY = Chain((), ())


def case_rng(campaign_seed: int, case_id: int) -> np.random.Generator:
    """The Generator of one case: a pure function of (campaign seed, case id)."""
    return np.random.default_rng([int(campaign_seed), int(case_id)])


class Strategy:
    """Base: a case counter, a strategy Generator, and the pool of transform names to draw from."""

    name = "base"
    uses_feedback = True  # False: the next batch does not depend on the last one's coverage
    checks_validity = False  # True: the campaign drops mutants that fail DeepHunter's validity rule

    def __init__(self, n_seeds: int, transform_names: Sequence[str], campaign_seed: int, **options):
        from deeptest_iot.transforms import REGISTRY

        if n_seeds < 1:
            raise ConfigError("a campaign needs at least one seed image")
        unknown = [t for t in transform_names if t not in REGISTRY]
        if unknown:
            raise ConfigError(f"unknown transform(s) {', '.join(unknown)}; see `deeptest-iot transforms list`")
        if not transform_names:
            raise ConfigError("no transforms to try: --transforms is empty")
        self.registry = REGISTRY
        self.n_seeds = n_seeds
        self.names = list(transform_names)
        self.seed = int(campaign_seed)
        self.next_case = 0
        self.rng = np.random.default_rng([self.seed, 0x5EA4C4])
        self.options = options

    @property
    def done(self) -> bool:
        return False

    #: The number of inputs a finite plan holds (a sweep), None when the search is open-ended.
    plan_size: int | None = None

    @property
    def plan_done(self) -> int | None:
        return None

    # -- building cases ------------------------------------------------------------------------
    def _new_case(self, seed_index: int, prefix: Chain, choose) -> Case:
        """A case: ``prefix`` plus a random-parameter link per name ``choose(rng)`` picks.

        Every random choice of the case (names, parameters, link seeds) comes from its own Generator.
        """
        case_id = self.next_case
        self.next_case += 1
        rng = case_rng(self.seed, case_id)
        chain = prefix
        for name in choose(rng):
            chain = chain.then(self.registry[name].random(rng), int(rng.integers(0, 2**31 - 1)))
        return Case(case_id, int(seed_index), chain)

    def _pick_names(self, k: int, rng: np.random.Generator, chain: Chain = None) -> list[str]:
        """``k`` distinct names (when there are enough) to extend ``chain`` with, keeping the chain's
        one-affine rule (``Chain.accepts_affine``): at most one affine name, none when the chain has one."""
        affine = [n for n in self.names if self.registry[n].affine]
        other = [n for n in self.names if not self.registry[n].affine]
        avoid = chain is not None and not chain.accepts_affine()
        if not other:  # only affine transforms were asked for: the rule cannot hold, honour the request
            avoid, affine, other = False, [], list(self.names)
        picked: list[str] = []
        for _ in range(k):
            pool = other if (avoid or any(p in affine for p in picked)) else self.names
            fresh = [n for n in pool if n not in picked] or pool
            picked.append(fresh[int(rng.integers(len(fresh)))])
        return picked

    def next_batch(self, size: int) -> list[Case]:
        raise NotImplementedError

    def feedback(self, cases: Sequence[Case], gains: np.ndarray, failed: np.ndarray) -> None:
        """Learn from the coverage ``gains`` (N,) and oracle ``failed`` (N,) of the last batch."""

    # -- checkpointing -------------------------------------------------------------------------
    def state(self) -> dict:
        return {"next_case": self.next_case, "rng": self.rng.bit_generator.state}

    def restore(self, state: dict) -> None:
        self.next_case = int(state["next_case"])
        self.rng.bit_generator.state = state["rng"]


class RandomStrategy(Strategy):
    """The baseline: a random seed and a chain of ``links`` random transforms (DeepTest's 2), no feedback."""

    name = "random"
    uses_feedback = False

    def __init__(self, *args, links: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.links = int(links)

    def next_batch(self, size):
        cases = []
        for _ in range(size):
            seed_index = int(self.rng.integers(self.n_seeds))
            cases.append(self._new_case(seed_index, EMPTY, lambda rng: self._pick_names(self.links, rng)))
        return cases


class SweepStrategy(Strategy):
    """DeepTest's systematic experiment: every preset transform over every seed, in order.

    By default DeepTest's seven fixed sweeps plus the weather and sensor presets at four severities.
    """

    name = "sweep"
    uses_feedback = False

    def __init__(self, *args, presets: Sequence[str] = ("deeptest-sweep", "weather", "sensor"), **kwargs):
        super().__init__(*args, **kwargs)
        from deeptest_iot.transforms import PRESETS

        unknown = [p for p in presets if p not in PRESETS]
        if unknown:
            raise ConfigError(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(sorted(PRESETS))}")
        allowed = set(self.names)
        self.plan = [t for p in presets for t in PRESETS[p] if t.name in allowed]
        # A transform no preset sweeps is swept over four severities (duplicates, e.g. a flip, once).
        swept = {t.name for t in self.plan}
        seen = set()
        for name in self.names:
            if name in swept:
                continue
            for level in (0.25, 0.5, 0.75, 1.0):
                t = self.registry[name].from_severity(level)
                key = json.dumps(t.to_dict(), sort_keys=True)
                if key not in seen and not getattr(t, "is_identity", False):
                    seen.add(key)
                    self.plan.append(t)
        if not self.plan:
            raise ConfigError(f"presets {', '.join(presets)} have no transform among {', '.join(self.names)}")
        self.position = 0

        # Order: seeds in chunks of CHUNK; each chunk goes through every transform of the plan before
        # the next chunk starts. A budget smaller than the plan still samples every transform, and
        # one transform over a chunk of seeds is one batched call.
        chunks = [range(c, min(c + self.CHUNK, self.n_seeds)) for c in range(0, self.n_seeds, self.CHUNK)]
        self.order = [(t, s) for chunk in chunks for t in range(len(self.plan)) for s in chunk]

    CHUNK = 8

    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def plan_size(self) -> int:
        return self.total

    @property
    def plan_done(self) -> int:
        return self.position

    @property
    def done(self) -> bool:
        return self.position >= self.total

    def next_batch(self, size):
        cases = []
        while len(cases) < size and not self.done:
            t_index, seed_index = self.order[self.position]
            case_id = self.next_case
            self.next_case += 1
            self.position += 1
            # One randomness seed per preset, shared by all seeds, so a preset runs as one batched call.
            seed = int(np.random.default_rng([self.seed, 0x5EE9, t_index]).integers(0, 2**31 - 1))
            cases.append(Case(case_id, seed_index, Chain([self.plan[t_index]], [seed])))
        return cases

    def state(self):
        return {**super().state(), "position": self.position}

    def restore(self, state):
        super().restore(state)
        self.position = int(state["position"])


class DeepTestStrategy(Strategy):
    """DeepTest's coverage-guided greedy search (Tian et al. 2018, Algorithm 1), batched.

    Depth first from each seed: a popped node gets ``tries`` children, each the node's chain plus
    2 transforms with random parameters (at most one affine transform per chain, as DESIGN's
    validity rule asks); a child that raises coverage is pushed as a new node (up to
    ``max_depth`` levels, so chains stay plausible). Transform pairs that raised coverage are tried
    first. When the stack empties, it is refilled with the seeds. Many nodes' children share a batch.
    """

    name = "deeptest"

    def __init__(self, *args, tries: int = 10, links: int = 2, max_depth: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        self.tries, self.links, self.max_depth = int(tries), int(links), int(max_depth)
        self.stack: list[tuple[int, Chain, int]] = []  # (seed index, chain, depth)
        self.winners: list[tuple[str, ...]] = []  # transform-name tuples that raised coverage, newest first
        self.rounds = 0
        self._pending: dict[int, tuple[int, Chain, int]] = {}

    def _refill(self):
        # Reverse so that seed 0 is popped first.
        self.stack = [(i, EMPTY, 0) for i in reversed(range(self.n_seeds))]
        self.rounds += 1

    def next_batch(self, size):
        cases = []
        while len(cases) < size:
            if not self.stack:
                self._refill()
            seed_index, chain, depth = self.stack.pop()
            for t in range(self.tries):
                winner = self.winners[t] if t < len(self.winners) else None
                if winner is not None and (chain.accepts_affine() or not any(
                        self.registry[n].affine for n in winner)):
                    choose = lambda rng, names=list(winner): names  # noqa: E731 - reuse what worked first
                else:
                    choose = lambda rng, c=chain: self._pick_names(self.links, rng, c)  # noqa: E731
                case = self._new_case(seed_index, chain, choose)
                self._pending[case.case_id] = (seed_index, case.chain, depth + 1)
                cases.append(case)
        return cases

    def feedback(self, cases, gains, failed):
        pushed = []
        for case, gain in zip(cases, gains):
            node = self._pending.pop(case.case_id, None)
            if node is None or gain <= 0:
                continue
            new_names = tuple(t.name for t in case.chain.transforms[len(case.chain) - self.links:])
            if new_names in self.winners:
                self.winners.remove(new_names)
            self.winners.insert(0, new_names)
            del self.winners[self.tries // 2:]  # keep room for fresh random pairs
            if node[2] < self.max_depth:
                pushed.append(node)
        # Depth first: the newest successful children are explored next.
        self.stack.extend(reversed(pushed))

    def state(self):
        return {**super().state(), "rounds": self.rounds,
                "stack": [[s, c.to_json(), d] for s, c, d in self.stack],
                "winners": [list(w) for w in self.winners]}

    def restore(self, state):
        super().restore(state)
        self.rounds = int(state["rounds"])
        self.stack = [(int(s), Chain.from_json(c), int(d)) for s, c, d in state["stack"]]
        self.winners = [tuple(w) for w in state["winners"]]
        self._pending = {}


class DeepHunterStrategy(Strategy):
    """DeepHunter's fuzzing loop (Xie et al. 2019): seed queue, probabilistic picks, mutant batches.

    A queue element is picked with weight max(0.8 - f / gamma, 0.3), f the times it was fuzzed; each
    pick yields ``mutants`` children (its chain plus one random transform, at most one affine per
    chain); the campaign drops invalid mutants (DeepHunter's L0/Linf rule) before the model sees
    them; children that add coverage join the queue.
    """

    name = "deephunter"
    checks_validity = True

    def __init__(self, *args, mutants: int = 16, gamma: float = 5.0, p_max: float = 0.8, p_min: float = 0.3,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.mutants, self.gamma, self.p_max, self.p_min = int(mutants), float(gamma), float(p_max), float(p_min)
        self.queue: list[tuple[int, Chain]] = [(i, EMPTY) for i in range(self.n_seeds)]
        self.fuzzed: list[int] = [0] * self.n_seeds

    def _weights(self) -> np.ndarray:
        f = np.asarray(self.fuzzed, np.float64)
        w = np.maximum(self.p_max - f / self.gamma, self.p_min)
        return w / w.sum()

    def next_batch(self, size):
        cases = []
        while len(cases) < size:
            pick = int(self.rng.choice(len(self.queue), p=self._weights()))
            self.fuzzed[pick] += 1
            seed_index, chain = self.queue[pick]
            for _ in range(self.mutants):
                cases.append(self._new_case(seed_index, chain, lambda rng: self._pick_names(1, rng, chain)))
        return cases

    def feedback(self, cases, gains, failed):
        for case, gain in zip(cases, gains):
            if gain > 0:
                self.queue.append((case.seed_index, case.chain))
                self.fuzzed.append(0)

    def state(self):
        return {**super().state(), "queue": [[s, c.to_json()] for s, c in self.queue],
                "fuzzed": list(self.fuzzed)}

    def restore(self, state):
        super().restore(state)
        self.queue = [(int(s), Chain.from_json(c)) for s, c in state["queue"]]
        self.fuzzed = [int(f) for f in state["fuzzed"]]


STRATEGIES = {cls.name: cls for cls in (DeepTestStrategy, DeepHunterStrategy, SweepStrategy, RandomStrategy)}


def make_strategy(name: str, n_seeds: int, transform_names: Sequence[str], campaign_seed: int,
                  **options) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](n_seeds, transform_names, campaign_seed, **options)
