"""The Ray engine against the local engine on this machine, measured in one run.

On the sample steering model (dave2_steering), generated seed scenes, NC + KMNC(10), the same options
and campaign seed for both engines, on a local Ray instance of 2 CPUs started once (its actors start
once too, then serve every Ray campaign of the run; start-up is reported apart, as the local engine's
model loading is not in its figure either):

  ratio_ray2_over_local      = random campaign inputs/s, --engine ray --workers 2 / local engine   (goal >= 0.8)
  ratio_ray2_over_local_deephunter = the same for deephunter (--merge-every 4; one search per worker)
  worker_inputs_per_busy_s   = inputs a Ray worker finishes per second it is busy (build, gates, model)
  driver_inputs_per_busy_s   = inputs the driver finishes per second it is not waiting for results
                               (proposing, sending, receiving, coverage, oracle, findings): the ceiling
                               of the exact mode (sweep, random) whatever the worker count
  check_inputs_per_s         = the batch check's share of that (coverage update, oracle, findings)

Each engine runs --repeats times, alternately; the best run of each counts (the machine is shared:
figures are indicative). Last line: one JSON object.
Usage: python benchmarks/bench_ray.py [--budget 1024] [--repeats 2] [--no-guided]   (needs the ray extra)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from deeptest_iot import sample_models  # noqa: E402
from deeptest_iot.engine.campaign import CampaignOptions, run_campaign  # noqa: E402


def campaign(tmp: str, name: str, **kw) -> dict:
    base = dict(model=str(sample_models.path("dave2_steering")), n_seeds=50, strategy="random", budget=1024,
                coverage=("nc:0.5", "kmnc:10"), seed=0, out=os.path.join(tmp, name))
    base.update(kw)
    return run_campaign(CampaignOptions(**base)).summary


def rate(summary: dict) -> float:
    return summary["inputs_tried"] / summary["duration_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-guided", action="store_true", help="skip the deephunter comparison")
    args = ap.parse_args()
    try:
        import ray
    except ImportError:
        raise SystemExit("bench_ray.py needs Ray: pip install -e '.[ray]'") from None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    figures: dict = {"model": "dave2_steering", "budget": args.budget, "seeds": args.seeds, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(budget=args.budget, n_seeds=args.seeds)
        # Warm-up: the actors start (TensorFlow imported, model loaded) and both engines trace their graphs.
        warm = campaign(tmp, "warm-ray", engine="ray", workers=2, budget=256, n_seeds=args.seeds)
        campaign(tmp, "warm-local", budget=256, n_seeds=args.seeds)
        figures["ray_startup_s"] = warm["engine"]["startup_s"]
        strategies = ["random"] + ([] if args.no_guided else ["deephunter"])
        for strategy in strategies:
            local, on_ray = [], []
            for r in range(args.repeats):
                local.append(campaign(tmp, f"local-{strategy}-{r}", strategy=strategy, **common))
                on_ray.append(campaign(tmp, f"ray-{strategy}-{r}", strategy=strategy, engine="ray", workers=2,
                                       merge_every=4, **common))
            best_local, best_ray = max(local, key=rate), max(on_ray, key=rate)
            suffix = "" if strategy == "random" else f"_{strategy}"
            figures[f"local_inputs_per_s{suffix}"] = round(rate(best_local), 1)
            figures[f"ray2_inputs_per_s{suffix}"] = round(rate(best_ray), 1)
            figures[f"ratio_ray2_over_local{suffix}"] = round(rate(best_ray) / rate(best_local), 3)
            engine = best_ray["engine"]
            # each input is checked by one worker: inputs over the busy time summed over the workers
            figures[f"worker_inputs_per_busy_s{suffix}"] = round(best_ray["inputs_tried"] / engine["worker_s"], 1)
            figures[f"worker_busy_share{suffix}"] = round(engine["worker_s"] / 2 / best_ray["duration_s"], 3)
            figures[f"driver_inputs_per_busy_s{suffix}"] = round(
                best_ray["inputs_tried"] / max(1e-6, best_ray["duration_s"] - engine["wait_s"]), 1)
            figures[f"check_inputs_per_s{suffix}"] = round(best_ray["inputs_tried"] / max(1e-6, engine["driver_s"]), 1)
            if strategy == "random":
                same = all((o / "findings.jsonl").read_bytes() == (l / "findings.jsonl").read_bytes()
                           for o, l in ((_p(tmp, f"ray-random-{r}"), _p(tmp, f"local-random-{r}"))
                                        for r in range(args.repeats)))
                figures["random_findings_identical"] = same
                size = (_p(tmp, "ray-random-0") / "findings.jsonl").stat().st_size
                figures["findings_per_input"] = round(best_ray["findings"] / best_ray["inputs_tried"], 3)
                figures["findings_bytes_per_input"] = round(size / best_ray["inputs_tried"], 1)
            print(f"{strategy:10s} local {rate(best_local):7.1f} inputs/s   ray x2 {rate(best_ray):7.1f} inputs/s   "
                  f"ratio {rate(best_ray) / rate(best_local):.3f}   "
                  f"(worker {figures[f'worker_inputs_per_busy_s{suffix}']}"
                  f" inputs/busy s, driver {figures[f'driver_inputs_per_busy_s{suffix}']} inputs/busy s)")
    ray.shutdown()
    load = os.getloadavg()[0]
    figures["load_average_1min"] = round(load, 1)
    print(f"indicative: a shared {os.cpu_count()}-core machine, load average {load:.1f}")
    print(json.dumps(figures))


def _p(tmp: str, name: str):
    from pathlib import Path

    return Path(tmp) / name


if __name__ == "__main__":
    main()
