"""Where a campaign's time goes: a per-stage timer for benchmarks (not used by the tool itself).

``with StageTimer() as timer: run_campaign(opts)`` wraps the functions each stage calls and adds up
their wall time per stage, exclusively (a stage called inside another counts for itself only) and
per thread (a batch built ahead on the prefetch thread is counted under ``transforms`` while the
main thread runs the model, so the stages can add up to more than the wall time):

  setup       building the Campaign: model, seeds (decode + resize), the seeds' own inference,
              the oracle, coverage profile (everything before the loop's clock starts)
  search      the strategy proposing cases and learning from gains
  transforms  build_images: the cases' chains applied to their seeds
  gate        the realism gate (and DeepHunter's validity)
  model       ModelUnderTest.run: preprocessing, forward pass, activations
  coverage    CoverageTracker.update
  oracle      the relation's verdicts
  writing     findings.jsonl lines (and PNGs when they are written), summary and checkpoint files
  other       the rest of the loop on the main thread (wall time less the stages above)
"""

from __future__ import annotations

import functools
import threading
import time
from contextlib import ExitStack


class StageTimer:
    STAGES = ("setup", "search", "transforms", "gate", "model", "coverage", "oracle", "writing")

    def __init__(self):
        self.totals = {s: 0.0 for s in self.STAGES}
        self.calls = {s: 0 for s in self.STAGES}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stack = ExitStack()
        self.wall = 0.0
        self.loop_wall = None

    # -- wrapping ------------------------------------------------------------------------------
    def _wrap(self, stage, fn):
        timer = self

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            local = timer._local
            frames = getattr(local, "frames", None)
            if frames is None:
                frames = local.frames = []
            if frames and frames[-1][0] == "setup" and stage != "setup":
                return fn(*args, **kwargs)  # everything during setup counts as setup
            frames.append([stage, 0.0])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                _, inner = frames.pop()
                with timer._lock:
                    timer.totals[stage] += elapsed - inner
                    timer.calls[stage] += 1
                if frames:
                    frames[-1][1] += elapsed
        timed.__wrapped_by_stage_timer__ = True
        return timed

    def _patch(self, owner, name, stage):
        original = getattr(owner, name)
        if getattr(original, "__wrapped_by_stage_timer__", False):
            return
        setattr(owner, name, self._wrap(stage, original))
        self._stack.callback(setattr, owner, name, original)

    def __enter__(self):
        import deeptest_iot.engine.campaign as campaign
        from deeptest_iot.coverage import CoverageTracker
        from deeptest_iot.engine import search
        from deeptest_iot.engine.gates import Gates
        from deeptest_iot.model.core import ModelUnderTest
        from deeptest_iot.results import writer
        from deeptest_iot.tasks import classification, detection, differential, steering

        self._patch(campaign.Campaign, "__init__", "setup")
        self._patch(campaign, "build_images", "transforms")
        self._patch(Gates, "__call__", "gate")
        self._patch(ModelUnderTest, "run", "model")
        self._patch(CoverageTracker, "update", "coverage")
        for module in (steering, classification, detection, differential):
            for value in vars(module).values():
                if isinstance(value, type) and value.__module__ == module.__name__ and "check" in vars(value):
                    self._patch(value, "check", "oracle")
        for cls in search.STRATEGIES.values():
            for name in ("next_batch", "feedback"):
                if name in vars(cls):
                    self._patch(cls, name, "search")
        self._patch(writer.FindingsWriter, "append", "writing")
        self._patch(writer.FindingsWriter, "sync", "writing")
        for name in ("write_summary", "write_checkpoint"):
            self._patch(campaign, name, "writing")
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._start
        self._stack.close()
        return False

    # -- reading -------------------------------------------------------------------------------
    def table(self, loop_wall: float | None = None) -> dict:
        """Seconds per stage; ``other`` is the loop's wall time (``loop_wall``, default: the whole
        wall time less setup) less the loop stages."""
        out = {s: round(v, 3) for s, v in self.totals.items()}
        loop = loop_wall if loop_wall is not None else self.wall - self.totals["setup"]
        busy = sum(v for s, v in self.totals.items() if s != "setup")
        out["other"] = round(max(0.0, loop - busy), 3)
        out["loop_wall"] = round(loop, 3)
        return out

    def lines(self, loop_wall: float | None = None) -> list[str]:
        t = self.table(loop_wall)
        loop = max(t["loop_wall"], 1e-9)
        rows = [f"  {'setup':<11}{t['setup']:8.2f} s   (before the loop)"]
        for s in (*self.STAGES[1:], "other"):
            rows.append(f"  {s:<11}{t[s]:8.2f} s   {100 * t[s] / loop:5.1f}% of the loop")
        return rows
