"""The Ray engine (``run --engine ray``): a campaign's batches on Ray actors (docs/distributed.md).

Each actor (:class:`Worker`) loads the model once from its path (a Keras model is never pickled),
sets TensorFlow's intra- and inter-op threads to the CPUs Ray grants it, and reads the seed frames
from the object store (one copy per node, shared by its actors). Actor tasks are pure functions
of what they are sent, so a task lost with its actor is sent again and gives the same result: a
killed actor is restarted by Ray and its in-flight batches redone, none lost or counted twice.

Two modes, by strategy:

* **sweep and random** (no feedback): the driver runs the campaign loop of the local engine. Its
  strategy proposes every case (pure data: seed index and seeded chain) in the same batches as the
  local engine; an actor builds a batch's pixels, applies the gates and runs the model; the driver
  then finishes the one batch check in case order (coverage update, oracle, finding records and
  ids, figures), with the actor's results standing in for the gates and the forward pass. The
  findings are the local engine's, byte for byte. Batches are proposed ahead (two per actor) only
  while the budget left cannot change their size, so the batches are the local engine's.
* **deeptest and deephunter** (guided): the seeds are dealt to the workers (seed i to worker
  i mod W); each worker runs its own search on its shard with the whole batch check, starting from
  the merged coverage; every ``merge_every`` batches the driver merges the workers' coverage
  trackers (``CoverageTracker.merge``) and DeepTest's list of transform tuples that raised
  coverage, and writes the workers' findings in (worker, batch) order with the local engine's ids.
  Deterministic for a given seed, worker count and ``merge_every``; not the local engine's findings.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from deeptest_iot.engine.campaign import CHECKPOINT_EVERY_S, SUMMARY_EVERY_S, Campaign, CampaignResult
from deeptest_iot.engine.options import CampaignOptions
from deeptest_iot.engine.progress import Progress
from deeptest_iot.errors import ConfigError, DeeptestError, InternalError, OutputError
from deeptest_iot.results.writer import write_summary

#: Strategies whose cases the driver proposes (no feedback): the local engine's findings exactly.
EXACT = ("sweep", "random")
#: Case ids of worker w's search start at w * CASE_STRIDE (guided mode): unique across workers.
CASE_STRIDE = 10 ** 9
#: Batches proposed ahead per actor (sweep, random): one running, one waiting.
AHEAD_PER_WORKER = 2
#: How many times one task is sent again after its actor died before the campaign gives up.
MAX_REDO = 5
#: How long the driver waits for Ray to restart a dead actor.
RESTART_TIMEOUT_S = 300.0


def import_ray():
    """The ray module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'deeptest-iot[ray]' (docs/distributed.md)") from None
    return ray


def _actor_died_errors(ray) -> tuple:
    errors = [ray.exceptions.RayActorError]
    if hasattr(ray.exceptions, "ActorUnavailableError"):
        errors.append(ray.exceptions.ActorUnavailableError)
    return tuple(errors)


# -- the actor ----------------------------------------------------------------------------------
def granted_cpus() -> int:
    """The CPUs Ray granted this actor (1 when it runs outside Ray)."""
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    except Exception:  # noqa: BLE001 - outside an actor
        cpus = 1.0
    return max(1, int(round(cpus)))


def set_threads(cpus: int) -> dict:
    """TensorFlow's intra- and inter-op thread pools and OpenCV's threads sized to ``cpus``; must run
    before TensorFlow does anything in this process (an actor's first act)."""
    import cv2
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:  # TensorFlow already ran in this process: its pools are fixed
        pass
    cv2.setNumThreads(cpus)
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def _error_payload(exc: DeeptestError) -> tuple:
    return type(exc).__name__, str(exc), getattr(exc, "inputs", None)


def _raise_payload(payload: tuple):
    from deeptest_iot import errors

    name, message, inputs = payload
    cls = getattr(errors, name, InternalError)
    if cls is OutputError:
        raise OutputError(message, inputs=inputs)
    raise cls(message)


@dataclass
class Prepared:
    """What an actor returns for one batch of cases (sweep, random): the gates' verdict, and for the
    mutants they kept the model's outputs and activations (or the model's error), and the pixels
    when the campaign saves images."""

    verdict: Any
    outputs: Any = None
    activations: tuple | None = None  # ({layer: (N, neurons)}, {layer: (N, 2)}) as Activations holds them
    error: tuple | None = None
    images: np.ndarray | None = None
    frame_hw: tuple = (0, 0)
    busy_s: float = 0.0  # the actor's time on this batch (build, gates, forward pass)


#: The options a worker's model depends on: a change reloads it; any other change is cheap.
MODEL_KEYS = ("model", "card", "include", "exclude", "trust_model")


class Worker:
    """One Ray actor: the model (loaded once from its path) and the gates. Every task carries the
    campaign's options: an actor restarted by Ray, or kept for the next campaign of the same Ray
    session, configures itself from them (the model is reloaded only when its path or card changed)."""

    def __init__(self, options: dict):
        self.cpus = granted_cpus()
        self.threads = set_threads(self.cpus)
        self.build_workers = 2 * self.cpus
        self._options: dict | None = None
        self._model_key: tuple | None = None
        self.configure(options)

    def configure(self, options: dict) -> dict:
        """This campaign's options, model and gates; returns :meth:`ready`."""
        if options != self._options:
            from deeptest_iot.engine.campaign import load_model_for
            from deeptest_iot.engine.gates import Gates

            opts = CampaignOptions(**options)
            key = tuple(repr(options.get(k)) for k in MODEL_KEYS)
            if key != self._model_key:
                self.mut = load_model_for(opts)
                self._model_key = key
            self.opts = opts
            self.gates = Gates.for_campaign(opts, self.mut, Campaign.strategy_checks_validity(opts))
            self._options = options
        return self.ready()

    def ready(self) -> dict:
        return {"pid": os.getpid(), "cpus": self.cpus, **self.threads, "fingerprint": self.mut.fingerprint}

    # -- sweep, random: one batch of the driver's cases ------------------------------------
    def prepare(self, options: dict, seed_images: np.ndarray, cases_json: list, with_activations: bool,
                want_images: bool) -> Prepared:
        """Build the cases' pixels from ``seed_images`` (every seed; read-only from the object store,
        where the actors of a node share one copy), gate them and run the model on the kept ones."""
        from deeptest_iot.engine.mutants import build_images
        from deeptest_iot.engine.search import Case
        from deeptest_iot.transforms import Chain

        started = time.perf_counter()
        self.configure(options)
        cases = [Case(int(cid), int(si), Chain.from_json(chain)) for cid, si, chain in cases_json]
        images = build_images(seed_images, cases, workers=self.build_workers)
        idx = np.array([c.seed_index for c in cases])
        verdict = self.gates(seed_images[idx], images, [c.chain for c in cases])
        keep = np.flatnonzero(verdict.keep)
        out = Prepared(verdict, images=images if want_images else None, frame_hw=tuple(images.shape[1:3]))
        if len(keep):
            try:
                res = self.mut.run(images[keep], with_activations=with_activations)
            except OutputError as exc:
                out.error = _error_payload(exc)
                return out
            out.outputs = res.outputs
            if res.activations is not None:
                out.activations = (dict(res.activations), dict(res.activations.ranges))
        out.busy_s = time.perf_counter() - started
        return out

    # -- deeptest, deephunter: a round of one worker's search on its shard -----------------
    def run_round(self, options: dict, shard_payload, w: int, state: dict, tracker, quota: int,
                  batches: int) -> dict:
        """Run worker ``w``'s search on its shard from ``state`` with ``tracker`` (the merged coverage)
        until ``quota`` inputs are checked (batches of up to batch_size) or its gates reject too many;
        return the new state, the tracker, and the calls the batch check made on the writer and
        the figures, for the driver to replay with the campaign's finding ids."""
        try:
            self.configure(options)
            return self._run_round(shard_payload, w, state, tracker, quota, batches)
        except DeeptestError as exc:
            return {"error": _error_payload(exc)}

    def _run_round(self, payload, w, state, tracker, quota, batches):
        from deeptest_iot.engine.check import BatchCheck
        from deeptest_iot.engine.mutants import build_images

        opts = self.opts
        if tracker is not None:
            tracker = tracker.copy()  # its arrays came read-only from the object store; the check updates it
        started = time.perf_counter()
        shard = _Shard(self, payload, state, tracker, batches)
        left_rejections = 20 * max(quota, opts.batch_size)
        check: BatchCheck = shard.check
        while shard.stats.tried < quota and shard.stats.rejected <= left_rejections and not shard.strategy.done:
            left = quota - shard.stats.tried
            cases = shard.strategy.next_batch(min(opts.batch_size, left))[:left]
            if not cases:
                break
            shard._check(cases, build_images(shard.seeds.images, cases, workers=self.build_workers))
        return {"state": shard.strategy.state(), "tracker": tracker, "events": shard.events,
                "tried": shard.stats.tried, "batches": check.batches, "busy_s": time.perf_counter() - started}


class _Recorder:
    """Stands in for the findings writer and the running figures inside a worker's batch check: it
    records the calls, which the driver replays in order with the campaign's finding ids."""

    def __init__(self, events: list, save_images: bool):
        self.events, self.save_images = events, save_images
        self.count = self.tried = self.rejected = 0

    # the writer's side
    def append(self, records, pairs, durable=True, original_keys=None):
        self.events.append(("append", records, pairs if self.save_images else None, original_keys))
        self.count += len(records)

    # the figures' side
    def add(self, names, *args, **kwargs):
        kwargs.pop("finding_ids", None)  # given again by the driver, with the campaign's ids
        self.events.append(("add", (names, *args), kwargs))
        self.tried += len(names)

    def reject(self, counts):
        self.events.append(("reject", dict(counts)))
        self.rejected += sum(int(k) for k in counts.values())

    def record_growth(self, coverage):
        pass  # the driver records growth after each merge


class _Shard:
    """A worker's view of a guided campaign: its shard of the seeds, its search and a batch check on
    the merged tracker; ``_check`` is the local engine's own (gates, batch check, feedback)."""

    _check = Campaign._check

    def __init__(self, worker: Worker, payload: dict, state: dict, tracker, batches: int):
        from deeptest_iot.engine.check import BatchCheck
        from deeptest_iot.engine.search import make_strategy

        opts = worker.opts
        self.opts, self.mut, self.gates = opts, worker.mut, worker.gates
        self.seed_small = None  # the gate reduces each batch's seeds itself (a shard lives for one round)
        self.seeds, self.labels, self.failing = payload["seeds"], payload["labels"], payload["failing"]
        self.ref = SimpleNamespace(outputs=payload["reference"])
        self.oracle = payload["oracle"]
        self.twin_oracle = self.twin_failing = None  # twins run on the local engine only (campaign_class)
        self.strategy = make_strategy(opts.strategy, len(self.seeds), payload["transforms"], opts.seed,
                                      max_links=opts.max_links)
        self.strategy.restore(state)
        self.events: list = []
        self.stats = self.writer = _Recorder(self.events, opts.save_images)
        self.check = BatchCheck(self.mut, self.writer, self.stats, tracker, payload["guide"],
                                shuffle_seed=payload["shuffle_seed"])
        self.check.batches = batches


class _ActorPool:
    """Actors kept between campaigns of one Ray session that the caller started (each holds one CPU
    and a loaded model; starting them is most of a short campaign's time)."""

    def __init__(self):
        self.job, self.actors = None, []

    @staticmethod
    def _job(ray):
        ctx = ray.get_runtime_context()  # the node id is new in every Ray session; job ids repeat
        return ctx.get_node_id(), ctx.get_job_id()

    def take(self, ray, workers: int) -> list:
        """The kept actors when they are ``workers`` of this session; otherwise none (and any kept
        actors are stopped, freeing their CPUs)."""
        actors, job = self.actors, self.job
        self.job, self.actors = None, []
        if actors and job == self._job(ray) and len(actors) == workers:
            return actors
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone, or another session's
                pass
        return []

    def keep(self, ray, actors: list) -> None:
        self.take(ray, -1)
        self.job, self.actors = self._job(ray), list(actors)


_POOL = _ActorPool()


# -- the driver ---------------------------------------------------------------------------------
class _PreparedModel:
    """Stands in for the model inside the driver's batch check: ``run`` returns what an actor
    computed for the batch (the forward pass ran there)."""

    def __init__(self, mut):
        self._mut, self.pending = mut, None

    def __getattr__(self, name):
        return getattr(self._mut, name)

    def run(self, frames, with_activations: bool = True):
        from deeptest_iot.coverage.activations import Activations
        from deeptest_iot.model.core import RunResult

        p, self.pending = self.pending, None
        if p.error is not None:
            _raise_payload(p.error)
        acts = None
        if p.activations is not None:  # copies: arrays from the object store are read-only
            arrays, ranges = p.activations
            acts = Activations({k: np.array(v) for k, v in arrays.items()},
                               ranges={k: np.array(v) for k, v in ranges.items()})
        if len(frames) != _count(p):
            raise InternalError(f"the Ray engine's batch has {len(frames)} kept inputs, its actor ran {_count(p)}")
        return RunResult(outputs=p.outputs, activations=acts)


def _count(p: Prepared) -> int:
    return int(np.count_nonzero(p.verdict.keep))


class _PreparedGates:
    """Stands in for the gates on the driver: the verdict an actor computed for the batch."""

    def __init__(self, gates):
        self._gates, self.pending = gates, None

    def __getattr__(self, name):
        return getattr(self._gates, name)

    def __call__(self, seeds, mutants, chains, seed_small=None):
        verdict, self.pending = self.pending, None
        return verdict


class _Pixels:
    """A batch's pixels on the driver when they stayed on the actor: its shape only. Indexing gives
    another placeholder; nothing on the driver reads pixels unless images are saved (then the actor
    sends them)."""

    def __init__(self, n: int, frame_hw: tuple):
        self.shape = (n, *frame_hw, 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return None
        return _Pixels(len(np.arange(self.shape[0])[key]), self.shape[1:3])


@dataclass
class _Flight:
    """A batch sent to an actor and not consumed yet."""

    cases: list
    state_after: dict  # the strategy's state after proposing it: where a resume continues
    worker: int
    args: tuple
    future: Any = None
    redone: int = 0


@dataclass
class _EngineInfo:
    workers: int = 0
    address: str | None = None
    mode: str = "exact"
    merge_every: int = 0
    redone: int = 0
    startup_s: float = 0.0
    worker_s: float = 0.0  # the actors' time on batches, summed over actors
    driver_s: float = 0.0  # the driver's time finishing batches (sweep, random) or merging rounds (guided)
    wait_s: float = 0.0  # the driver's time waiting for (and receiving) the actors' results
    actors: list = field(default_factory=list)


class RayCampaign(Campaign):
    """A campaign whose batches run on Ray actors; set up, checkpointed, resumed and summarised as a
    local one (``Campaign``)."""

    def __init__(self, opts: CampaignOptions, checkpoint: dict | None, echo):
        self.ray = import_ray()
        self._shard_resume = None
        super().__init__(opts, checkpoint, echo)
        self.engine = _EngineInfo(address=opts.address, mode="exact" if opts.strategy in EXACT else "shards",
                                  merge_every=opts.merge_every)
        self._started_ray = False
        self.actors: list = []
        #: called as hook(campaign, batches_sent) after each batch (or round) is sent: tests kill actors here
        self.fault_hook = None
        try:
            self._start()
        except BaseException:
            self.close(keep=False)
            raise

    # -- Ray up and down ---------------------------------------------------------------------
    def _start(self) -> None:
        ray, opts = self.ray, self.opts
        started = time.perf_counter()
        if not ray.is_initialized():
            import logging

            try:
                ray.init(address=opts.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except ConnectionError as exc:
                raise ConfigError(f"--address {opts.address}: cannot join a Ray cluster there ({exc})") from None
            self._started_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        workers = opts.workers or max(1, cpus)
        if workers > cpus:
            raise ConfigError(f"--workers {workers}: the Ray cluster has {cpus} CPU(s), one per worker")
        self.engine.workers = workers
        self._check_resume_shape()
        self._seeds_ref = ray.put(self.seeds.images) if self.engine.mode == "exact" else None
        options = self.opts.to_dict()
        self._options_ref = ray.put(options)
        self.actors = _POOL.take(ray, workers)
        if self.actors:  # kept from an earlier campaign of this Ray session: configured, not started
            calls = [a.configure.remote(options) for a in self.actors]
        else:
            # Restarted by Ray when they die (their constructor's arguments are plain values).
            actor_class = ray.remote(Worker).options(num_cpus=1, max_restarts=-1, max_task_retries=0)
            self.actors = [actor_class.remote(options) for _ in range(workers)]
            calls = [a.ready.remote() for a in self.actors]
        try:
            info = ray.get(calls)
        except ray.exceptions.RayTaskError as exc:  # e.g. the model path does not exist on a node
            cause = exc.cause if hasattr(exc, "cause") else exc
            if isinstance(cause, DeeptestError):
                raise type(cause)(f"a Ray worker could not start: {cause}") from None
            raise
        if any(i["fingerprint"] != self.mut.fingerprint for i in info):
            raise ConfigError("a Ray worker loaded another model than the driver (the model path must name the "
                              "same file on every node)")
        self.engine.actors = info
        self.engine.startup_s = time.perf_counter() - started
        self.start = time.perf_counter()  # duration_s counts the loop, as the local engine's does
        self.echo(f"ray: {workers} worker(s), {self.engine.mode} mode"
                  f"{'' if opts.address is None else ' at ' + opts.address}\n")
        # The driver's batch check gets the actors' forward passes and gates' verdicts (sweep, random).
        self._model_stand_in = _PreparedModel(self.mut)
        self._gates_stand_in = _PreparedGates(self.gates)
        if self.engine.mode == "exact":
            self.check.mut = self._model_stand_in
            self.gates = self._gates_stand_in

    def close(self, keep: bool = True) -> None:
        """Stop Ray when this campaign started it; otherwise keep the actors for the session's next
        campaign (Ray was started by the caller: a test session, a notebook, a service)."""
        if self.actors and not self._started_ray and keep:
            _POOL.keep(self.ray, self.actors)
        elif self.actors:
            for actor in self.actors:
                try:
                    self.ray.kill(actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        self.actors = []
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()
            self._started_ray = False

    def run(self, tty: bool = False, stop_after_batches: int | None = None) -> CampaignResult:
        try:
            return super().run(tty, stop_after_batches)
        finally:
            self.close()

    def _loop(self, tty: bool, stop_after_batches: int | None) -> CampaignResult:
        if self.engine.mode == "exact":
            return self._loop_exact(tty, stop_after_batches)
        return self._loop_shards(tty, stop_after_batches)

    def summary(self, status: str) -> dict:
        s = super().summary(status)
        engine = getattr(self, "engine", None)
        if engine is not None:
            s["engine"] = {"name": "ray", "mode": engine.mode, "workers": engine.workers, "address": engine.address,
                           "redone_batches": engine.redone, "startup_s": round(engine.startup_s, 3),
                           "worker_s": round(engine.worker_s, 3), "driver_s": round(engine.driver_s, 3),
                           "wait_s": round(engine.wait_s, 3)}
            if engine.mode == "shards":
                s["engine"]["merge_every"] = engine.merge_every
        return s

    def _get(self, flight: _Flight, submit):
        """The result of a flight; when its actor died, the same task again once Ray restarted it (the
        task is a pure function of its arguments: redoing it loses and doubles nothing)."""
        died = _actor_died_errors(self.ray)
        while True:
            started = time.perf_counter()
            try:
                return self.ray.get(flight.future)
            except died as exc:
                flight.redone += 1
                self.engine.redone += 1
                if flight.redone > MAX_REDO:
                    raise InternalError(f"a Ray worker died {flight.redone} times on the same batch: {exc}") from None
                self.echo(f"ray: worker {flight.worker} died; its batch is sent again\n")
                self._wait_restarted(flight.worker)
                flight.future = submit(flight)
            finally:
                self.engine.wait_s += time.perf_counter() - started

    def _wait_restarted(self, w: int) -> None:
        """Wait until Ray has restarted actor ``w`` (a task sent while it restarts fails again)."""
        died = _actor_died_errors(self.ray)
        deadline = time.perf_counter() + RESTART_TIMEOUT_S
        while True:
            try:
                self.ray.get(self.actors[w].configure.remote(self.opts.to_dict()), timeout=RESTART_TIMEOUT_S)
                return
            except died as exc:
                if time.perf_counter() > deadline:
                    raise InternalError(f"Ray did not restart worker {w} in {RESTART_TIMEOUT_S} s: {exc}") from None
                time.sleep(0.2)

    # -- sweep, random: the local loop with the actors' batches ------------------------------
    def _submit_exact(self, flight: _Flight):
        return self.actors[flight.worker].prepare.remote(*flight.args)

    def _send(self, cases: list) -> _Flight:
        with_acts = self.tracker is not None
        args = (self._options_ref, self._seeds_ref, [(c.case_id, c.seed_index, c.chain.to_json()) for c in cases],
                with_acts,
                self.opts.save_images)
        flight = _Flight(cases, self.strategy.state(), self._sent % self.engine.workers, args)
        flight.future = self._submit_exact(flight)
        self._sent += 1
        if self.fault_hook is not None:
            self.fault_hook(self, self._sent)
        return flight

    def _propose_exact(self, in_flight: int) -> _Flight | None:
        """The local engine's ``_propose`` (same sizes, same stop reasons), sent to an actor."""
        remaining = self.opts.budget - self.stats.tried - in_flight
        if remaining <= 0 or self.strategy.done:
            self.stopped_by = "plan" if self.strategy.done else "budget"
            return None
        cases = self.strategy.next_batch(min(self.opts.batch_size, remaining))[:remaining]
        return self._send(cases) if cases else None

    def _propose_ahead(self, queue: deque, checking: int = 0) -> None:
        """More batches in flight, while they are the batches the local engine would propose: the
        budget left, counting every batch in flight (and the ``checking`` inputs of the one being
        checked) as fully checked (it can only be more), still holds a whole batch."""
        size = self.opts.batch_size
        while len(queue) < AHEAD_PER_WORKER * self.engine.workers and not self.strategy.done:
            if self.opts.budget - self.stats.tried - checking - sum(len(f.cases) for f in queue) < size:
                return
            cases = self.strategy.next_batch(size)
            if not cases:
                return
            queue.append(self._send(cases))

    def _check_prepared(self, flight: _Flight, prepared: Prepared) -> bool:
        self._gates_stand_in.pending = prepared.verdict
        self._model_stand_in.pending = prepared
        images = prepared.images if prepared.images is not None else _Pixels(len(flight.cases), prepared.frame_hw)
        started = time.perf_counter()
        try:
            return Campaign._check(self, flight.cases, images)
        finally:
            self.engine.worker_s += prepared.busy_s
            self.engine.driver_s += time.perf_counter() - started

    def _loop_exact(self, tty: bool, stop_after_batches: int | None) -> CampaignResult:
        """Campaign._loop (the local engine, building ahead) with the batches built and run by actors."""
        opts = self.opts
        write_summary(self.out, self.summary("running"))
        progress = Progress(opts.budget, opts.time, tty, self.echo)
        last_summary = last_checkpoint = time.perf_counter()
        self._sent = 0
        run_batches, resume_state = 0, self.strategy.state()
        queue: deque[_Flight] = deque()
        first = self._propose_exact(in_flight=0)
        if first is not None:
            queue.append(first)
            self._propose_ahead(queue)
        while queue:
            if self._must_stop():
                break
            flight = queue.popleft()
            resume_state = flight.state_after
            if not queue:  # the local engine proposes the next batch now, before checking this one
                following = self._propose_exact(in_flight=len(flight.cases))
                if following is not None:
                    queue.append(following)
            if queue:
                self._propose_ahead(queue, checking=len(flight.cases))
            checked = self._check_prepared(flight, self._get(flight, self._submit_exact))
            if checked:
                run_batches += 1
                if time.perf_counter() - last_checkpoint >= CHECKPOINT_EVERY_S or stop_after_batches is not None:
                    self._save_checkpoint(resume_state)
                    last_checkpoint = time.perf_counter()
                if time.perf_counter() - last_summary >= SUMMARY_EVERY_S:
                    write_summary(self.out, self.summary("running"), durable=False)
                    last_summary = time.perf_counter()
                progress.update(self.stats.tried, self._coverage(), self.stats.found)
                if stop_after_batches is not None and run_batches >= stop_after_batches:
                    return CampaignResult(self.summary("running"), 3, self.out)
            if not queue:  # nothing in flight: the gates may have rejected part of the last batch
                following = self._propose_exact(in_flight=0)
                if following is not None:
                    queue.append(following)
                    self._propose_ahead(queue)
        if run_batches:
            self._save_checkpoint(resume_state)
        return self._finish(progress)

    # -- deeptest, deephunter: one search per worker, merged every merge_every batches -------
    def _restore(self, checkpoint: dict) -> None:
        shards = checkpoint.get("strategy", {}).get("ray_shards")
        if shards is None:
            super()._restore(checkpoint)
            return
        self._shard_resume = shards
        super()._restore({**checkpoint, "strategy": self.strategy.state()})

    def _check_resume_shape(self) -> None:
        """A guided campaign resumes with the worker count and merge interval it ran with; a local
        guided campaign cannot continue as shards (its one search is not split)."""
        if self.engine.mode != "shards" or not self.opts.resume:
            return
        saved = self._shard_resume
        if saved is None:
            raise ConfigError(f"{self.out} holds a {self.opts.strategy} campaign run by the local engine: its one "
                              "search cannot be split over Ray workers; resume it without --engine ray")
        for name in ("workers", "merge_every"):
            if saved[name] != getattr(self.engine, name):
                if name in self.opts.given:
                    raise ConfigError(f"--resume: this campaign ran with --{name.replace('_', '-')} {saved[name]}, "
                                      f"not {getattr(self.engine, name)} (its searches are split that way); "
                                      "leave it out")
                setattr(self.engine, name, saved[name])
        if self.engine.workers > int(self.ray.cluster_resources().get("CPU", 0)):
            raise ConfigError(f"--resume: this campaign ran with {self.engine.workers} Ray workers; the cluster "
                              "has fewer CPUs")

    def _shard_payloads(self, workers: int) -> list:
        """Per worker: its seeds (seed i goes to worker i mod W) and what the batch check needs of them."""
        task, payloads = self.mut.task, []
        for w in range(workers):
            idx = np.arange(w, len(self.seeds.images), workers)
            payloads.append(self.ray.put({
                "seeds": self.seeds.subset(idx), "labels": None if self.labels is None else self.labels[idx],
                "failing": None if self.failing is None else self.failing[idx],
                "reference": task.select(self.ref.outputs, idx), "oracle": self.oracle,
                "transforms": self.transform_names, "guide": self.check.guide,
                "shuffle_seed": self.check.shuffle_seed}))
        return payloads

    def _fresh_shards(self, workers: int) -> dict:
        from deeptest_iot.engine.search import make_strategy

        states = []
        for w in range(workers):
            n = len(range(w, len(self.seeds.images), workers))
            s = make_strategy(self.opts.strategy, n, self.transform_names, self.opts.seed,
                              max_links=self.opts.max_links)
            s.next_case = w * CASE_STRIDE
            s.rng = np.random.default_rng([self.opts.seed, 0x5EA4C4, w])
            states.append(s.state())
        return {"workers": workers, "merge_every": self.engine.merge_every, "rounds": 0, "states": states,
                "batches": [0] * workers}

    def _loop_shards(self, tty: bool, stop_after_batches: int | None) -> CampaignResult:
        opts, ray = self.opts, self.ray
        workers = self.engine.workers
        if workers > len(self.seeds.images):
            raise ConfigError(f"--workers {workers}: more workers than the {len(self.seeds.images)} seeds to deal "
                              "out (each worker searches its own seeds)")
        write_summary(self.out, self.summary("running"))
        progress = Progress(opts.budget, opts.time, tty, self.echo)
        shards = self._shard_resume or self._fresh_shards(workers)
        payloads = self._shard_payloads(workers)
        last_summary = last_checkpoint = time.perf_counter()
        run_batches = 0
        self._sent = 0
        while True:
            if self._must_stop():
                break
            remaining = opts.budget - self.stats.tried
            if remaining <= 0:
                self.stopped_by = "budget"
                break
            total = min(remaining, workers * self.engine.merge_every * opts.batch_size)
            quotas = [total // workers + (1 if w < total % workers else 0) for w in range(workers)]
            tracker_ref = ray.put(self.tracker)
            flights = []
            for w in range(workers):
                args = (self._options_ref, payloads[w], w, shards["states"][w], tracker_ref, quotas[w],
                        shards["batches"][w])
                flight = _Flight([], {}, w, args)
                flight.future = self._submit_round(flight)
                flights.append(flight)
                self._sent += 1
                if self.fault_hook is not None:
                    self.fault_hook(self, self._sent)
            results = [self._get(f, self._submit_round) for f in flights]
            for result in results:
                if "error" in result:
                    _raise_payload(result["error"])
            started = time.perf_counter()
            new_batches = self._merge_round(shards, results)
            self.engine.driver_s += time.perf_counter() - started
            self.engine.worker_s += sum(r["busy_s"] for r in results)
            if not new_batches:  # every mutant of the round was rejected
                continue
            run_batches += new_batches
            if time.perf_counter() - last_checkpoint >= CHECKPOINT_EVERY_S or stop_after_batches is not None:
                self._save_checkpoint({"ray_shards": shards})
                last_checkpoint = time.perf_counter()
            if time.perf_counter() - last_summary >= SUMMARY_EVERY_S:
                write_summary(self.out, self.summary("running"), durable=False)
                last_summary = time.perf_counter()
            progress.update(self.stats.tried, self._coverage(), self.stats.found)
            if stop_after_batches is not None and run_batches >= stop_after_batches:
                return CampaignResult(self.summary("running"), 3, self.out)
        if run_batches:
            self._save_checkpoint({"ray_shards": shards})
        return self._finish(progress)

    def _submit_round(self, flight: _Flight):
        return self.actors[flight.worker].run_round.remote(*flight.args)

    def _merge_round(self, shards: dict, results: list) -> int:
        """Fold a round into the campaign, worker by worker and batch by batch: findings appended with
        the campaign's ids, figures counted, trackers merged, DeepTest's winners shared."""
        new_batches = 0
        for result in results:
            ids: list = []
            for event in result["events"]:
                kind = event[0]
                if kind == "reject":
                    self.stats.reject(event[1])
                elif kind == "append":
                    _, records, pairs, keys = event
                    first = self.writer.count
                    if pairs is None:
                        pairs = [(None, None)] * len(records)
                    self.writer.append(records, pairs, durable=False, original_keys=keys)
                    ids = [f"f{first + k:06d}" for k in range(len(records))]
                else:  # "add": the batch's figures, with the ids its findings got here
                    _, args, kwargs = event
                    self.stats.add(*args, **kwargs, finding_ids=ids)
                    ids = []
                    new_batches += 1
        if self.tracker is not None:
            before = self.tracker.n_inputs
            for result in results:
                self.tracker.merge(result["tracker"])
            self.tracker.n_inputs = before + sum(r["tracker"].n_inputs - before for r in results)
            self.stats.record_growth(self.tracker.coverage())
        self.check.batches += new_batches
        shards["states"] = [r["state"] for r in results]
        shards["batches"] = [r["batches"] for r in results]
        shards["rounds"] += 1
        if self.opts.strategy == "deeptest":
            share_winners(shards["states"])
        return new_batches


def share_winners(states: list) -> None:
    """DeepTest's transform tuples that raised coverage, shared by every worker's search: rank by rank
    (each worker's newest first), worker by worker, without repeats, cut to the search's length."""
    lists = [s["winners"] for s in states]
    keep = max((len(w) for w in lists), default=0)
    merged: list = []
    for rank in range(keep):
        for winners in lists:
            if rank < len(winners) and winners[rank] not in merged:
                merged.append(winners[rank])
    for s in states:
        s["winners"] = [list(w) for w in merged[:keep]]
