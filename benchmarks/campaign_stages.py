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

As a script it runs one campaign and prints the table (timings on a shared machine are indicative):
  python benchmarks/campaign_stages.py                       # sample model dave2_steering, generated scenes
  python benchmarks/campaign_stages.py --model M.keras --seeds FOLDER --max-seeds 200 --budget 1024
  python benchmarks/campaign_stages.py --cprofile             # and cProfile's top entries
bench_campaign.py uses the same timer for both of its campaigns (and can make a Dave-orig model).
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


def main() -> None:
    import argparse
    import os
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    ap = argparse.ArgumentParser(description="Where one campaign's time goes, stage by stage.")
    ap.add_argument("--model", default=None, help="model file (default: the sample model dave2_steering)")
    ap.add_argument("--seeds", default=None, help="seed folder (default: generated scenes)")
    ap.add_argument("--max-seeds", type=int, default=None)
    ap.add_argument("--n-seeds", type=int, default=50, help="generated seeds when --seeds is not given")
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--strategy", default=None, help="default: the tool's default strategy")
    ap.add_argument("--work-size", default=None)
    ap.add_argument("--cprofile", action="store_true")
    args = ap.parse_args()

    from deeptest_iot import sample_models
    from deeptest_iot.engine.campaign import CampaignOptions, run_campaign

    with tempfile.TemporaryDirectory() as tmp:
        values = {"model": args.model or str(sample_models.path("dave2_steering")), "budget": args.budget,
                  "seed": 0, "out": os.path.join(tmp, "out")}
        if args.seeds:
            values["seeds"] = args.seeds
            if args.max_seeds:
                values["max_seeds"] = args.max_seeds
        else:
            values["n_seeds"] = args.n_seeds
        for key in ("strategy", "work_size"):
            if getattr(args, key):
                values[key] = getattr(args, key)
        opts = CampaignOptions(**values)
        pr = None
        with StageTimer() as timer:
            if args.cprofile:
                import cProfile

                pr = cProfile.Profile()
                pr.enable()
            summary = run_campaign(opts).summary
            if pr is not None:
                pr.disable()
    loop = summary["duration_s"]
    print(f"{summary['inputs_tried']} inputs in {loop:.2f} s ({summary['inputs_tried'] / loop:.1f} inputs/s), "
          f"{summary['findings']} findings; where the loop's time went (per thread, exclusive):")
    print("\n".join(timer.lines(loop)))
    if pr is not None:
        import pstats

        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
