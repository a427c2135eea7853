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
    """Base: a case counter, a strategy Generator, the pool of transform names, and the chain cap.

    Every strategy tries every seed before it deepens any (breadth first across seeds: with a
    budget of a few times the seeds, each seed is tried), and no chain has more than ``max_links``
    links or more than one affine link.
    """

    name = "base"
    uses_feedback = True  # False: the next batch does not depend on the last one's coverage
    checks_validity = False  # True: the campaign drops mutants that fail DeepHunter's validity rule

    def __init__(self, n_seeds: int, transform_names: Sequence[str], campaign_seed: int, max_links: int = 3,
                 **options):
        from deeptest_iot.transforms import REGISTRY

        if n_seeds < 1:
            raise ConfigError("a campaign needs at least one seed image")
        unknown = [t for t in transform_names if t not in REGISTRY]
        if unknown:
            raise ConfigError(f"unknown transform(s) {', '.join(unknown)}; see `deeptest-iot transforms list`")
        if not transform_names:
            raise ConfigError("no transforms to try: --transforms is empty")
        if int(max_links) < 1:
            raise ConfigError(f"max_links must be >= 1, not {max_links}")
        self.registry = REGISTRY
        self.n_seeds = n_seeds
        self.names = list(transform_names)
        self.seed = int(campaign_seed)
        self.max_links = int(max_links)
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
        """Up to ``k`` distinct names (when there are enough) to extend ``chain`` with, within the
        chain cap and the one-affine rule (``Chain.accepts_affine``): at most one affine name, none
        when the chain has one."""
        k = min(k, self.max_links - (len(chain) if chain is not None else 0))
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
    """The baseline: a chain of ``links`` random transforms (DeepTest's 2) on each seed in turn, no
    feedback. The seeds come in passes, each pass a fresh random order of all of them."""

    name = "random"
    uses_feedback = False

    def __init__(self, *args, links: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.links = int(links)
        self.order: list[int] = []

    def next_batch(self, size):
        cases = []
        for _ in range(size):
            if not self.order:
                self.order = [int(i) for i in self.rng.permutation(self.n_seeds)][::-1]
            cases.append(self._new_case(self.order.pop(), EMPTY, lambda rng: self._pick_names(self.links, rng)))
        return cases

    def state(self):
        return {**super().state(), "order": list(self.order)}

    def restore(self, state):
        super().restore(state)
        self.order = [int(i) for i in state["order"]]


class SweepStrategy(Strategy):
    """DeepTest's systematic experiment: every preset transform over every seed, once.

    By default DeepTest's seven fixed sweeps plus the weather and sensor presets at four severities.
    """

    name = "sweep"
    uses_feedback = False
    CHUNK = 8

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
        # Order: seeds in chunks of CHUNK, one preset transform over one chunk as a unit (one batched
        # call). In round r, chunk c gets transform (r + c) mod T: the first round reaches every seed
        # (each chunk with another transform), the first T units reach every transform, and the whole
        # plan is every (transform, seed) pair once.
        n_t = len(self.plan)
        chunks = [range(c, min(c + self.CHUNK, self.n_seeds)) for c in range(0, self.n_seeds, self.CHUNK)]
        self.order = [((r + c) % n_t, s) for r in range(n_t) for c, chunk in enumerate(chunks) for s in chunk]

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
    """DeepTest's coverage-guided greedy search (Tian et al. 2018, Algorithm 1), breadth first.

    The frontier starts as the seeds. Each pass over the frontier gives every node one try: its
    chain plus ``links`` random transforms (fewer at the chain cap; at most one affine link), the
    transform tuples that raised coverage tried first. A node leaves the frontier after ``tries``
    tries. A child that raises coverage joins the end of the frontier (up to ``max_depth`` levels
    and while its chain can still grow), so every seed gets its try before any child is deepened:
    a budget of a few times the seeds reaches every seed (the depth-first original visited 13 of
    200 real seeds at a budget of 3,000). When the frontier empties, it is refilled with the seeds.
    """

    name = "deeptest"

    def __init__(self, *args, tries: int = 10, links: int = 2, max_depth: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.tries, self.links, self.max_depth = int(tries), int(links), int(max_depth)
        self.frontier: list[list] = []  # [seed index, chain, depth, tries used]
        self.position = 0  # the next frontier node to try in this pass
        self.winners: list[tuple[str, ...]] = []  # transform-name tuples that raised coverage, newest first
        self.rounds = 0
        self._pending: dict[int, tuple[int, Chain, int, int]] = {}  # case id -> (seed, chain, depth, parent links)

    def _refill(self):
        self.frontier = [[i, EMPTY, 0, 0] for i in range(self.n_seeds)]
        self.position = 0
        self.rounds += 1

    def next_batch(self, size):
        cases = []
        while len(cases) < size:
            if not self.frontier:
                self._refill()
            if self.position >= len(self.frontier):
                self.position = 0  # the next pass
            node = self.frontier[self.position]
            seed_index, chain, depth, used = node
            winner = self.winners[used] if used < len(self.winners) else None
            if winner is not None and len(chain) + len(winner) <= self.max_links and (
                    chain.accepts_affine() or not any(self.registry[n].affine for n in winner)):
                choose = lambda rng, names=list(winner): names  # noqa: E731 - reuse what worked first
            else:
                choose = lambda rng, c=chain: self._pick_names(self.links, rng, c)  # noqa: E731
            case = self._new_case(seed_index, chain, choose)
            self._pending[case.case_id] = (seed_index, case.chain, depth + 1, len(chain))
            cases.append(case)
            node[3] += 1
            if node[3] >= self.tries:
                del self.frontier[self.position]
            else:
                self.position += 1
        return cases

    def feedback(self, cases, gains, failed):
        for case, gain in zip(cases, gains):
            node = self._pending.pop(case.case_id, None)
            if node is None or gain <= 0:
                continue
            seed_index, chain, depth, parent_links = node
            new_names = tuple(t.name for t in chain.transforms[parent_links:])  # what this try added
            if new_names in self.winners:
                self.winners.remove(new_names)
            self.winners.insert(0, new_names)
            del self.winners[self.tries // 2:]  # keep room for fresh random pairs
            if depth < self.max_depth and len(chain) < self.max_links:
                self.frontier.append([seed_index, chain, depth, 0])

    def state(self):
        return {**super().state(), "rounds": self.rounds, "position": self.position,
                "frontier": [[s, c.to_json(), d, u] for s, c, d, u in self.frontier],
                "winners": [list(w) for w in self.winners]}

    def restore(self, state):
        super().restore(state)
        self.rounds, self.position = int(state["rounds"]), int(state["position"])
        self.frontier = [[int(s), Chain.from_json(c), int(d), int(u)] for s, c, d, u in state["frontier"]]
        self.winners = [tuple(w) for w in state["winners"]]
        self._pending = {}


class DeepHunterStrategy(Strategy):
    """DeepHunter's fuzzing loop (Xie et al. 2019): seed queue, probabilistic picks, mutant batches.

    A queue element not fuzzed yet is picked first, in queue order (so every seed is fuzzed before
    any element is fuzzed again); then an element is picked with weight max(0.8 - f / gamma, 0.3),
    f the times it was fuzzed. Each pick yields ``mutants`` children (its chain plus one random
    transform, at most one affine per chain); the campaign drops invalid mutants (DeepHunter's
    L0/Linf rule) before the model sees them; children that add coverage join the queue while their
    chain can still grow.
    """

    name = "deephunter"
    checks_validity = True

    def __init__(self, *args, mutants: int = 4, gamma: float = 5.0, p_max: float = 0.8, p_min: float = 0.3,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.mutants, self.gamma, self.p_max, self.p_min = int(mutants), float(gamma), float(p_max), float(p_min)
        self.queue: list[tuple[int, Chain]] = [(i, EMPTY) for i in range(self.n_seeds)]
        self.fuzzed: list[int] = [0] * self.n_seeds
        self.fresh = 0  # queue elements before this index have all been fuzzed at least once

    def _weights(self) -> np.ndarray:
        f = np.asarray(self.fuzzed, np.float64)
        w = np.maximum(self.p_max - f / self.gamma, self.p_min)
        return w / w.sum()

    def _pick(self) -> int:
        while self.fresh < len(self.queue) and self.fuzzed[self.fresh] > 0:
            self.fresh += 1
        if self.fresh < len(self.queue):
            return self.fresh
        return int(self.rng.choice(len(self.queue), p=self._weights()))

    def next_batch(self, size):
        cases = []
        while len(cases) < size:
            pick = self._pick()
            self.fuzzed[pick] += 1
            seed_index, chain = self.queue[pick]
            for _ in range(self.mutants):
                cases.append(self._new_case(seed_index, chain, lambda rng: self._pick_names(1, rng, chain)))
        return cases

    def feedback(self, cases, gains, failed):
        for case, gain in zip(cases, gains):
            if gain > 0 and len(case.chain) < self.max_links:
                self.queue.append((case.seed_index, case.chain))
                self.fuzzed.append(0)

    def state(self):
        return {**super().state(), "queue": [[s, c.to_json()] for s, c in self.queue],
                "fuzzed": list(self.fuzzed), "fresh": self.fresh}

    def restore(self, state):
        super().restore(state)
        self.queue = [(int(s), Chain.from_json(c)) for s, c in state["queue"]]
        self.fuzzed = [int(f) for f in state["fuzzed"]]
        self.fresh = int(state["fresh"])


STRATEGIES = {cls.name: cls for cls in (DeepTestStrategy, DeepHunterStrategy, SweepStrategy, RandomStrategy)}


def make_strategy(name: str, n_seeds: int, transform_names: Sequence[str], campaign_seed: int,
                  **options) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](n_seeds, transform_names, campaign_seed, **options)
