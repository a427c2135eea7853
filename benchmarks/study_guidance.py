"""Does coverage guidance pay? deeptest and deephunter against random, same budget, several campaign seeds.

Runs campaigns on the sample steering model with generated seeds and tracks NC at three thresholds,
KMNC(10) and NBC, so the table also shows which criterion saturates and which keeps growing.
Prints a Markdown table (mean and spread over seeds) and, last, one JSON object with every run.

Usage: python benchmarks/study_guidance.py [--budget 2000] [--seeds 0,1,2] [--strategies deeptest,deephunter,random]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from deeptest_iot.engine.campaign import CampaignOptions, run_campaign  # noqa: E402

CRITERIA = ("nc:0.2", "nc:0.5", "nc:0.75", "kmnc:10", "nbc")


def one_run(strategy: str, seed: int, budget: int, guide: tuple[str, ...] | None, tmp: str) -> dict:
    opts = CampaignOptions(strategy=strategy, seed=seed, budget=budget, coverage=CRITERIA, guide=guide,
                           out=os.path.join(tmp, f"{strategy}-{'-'.join(guide or ())}-{seed}"))
    s = run_campaign(opts).summary
    seeds_only = s["coverage_growth"][0]
    return {"strategy": strategy, "seed": seed, "inputs": s["inputs_tried"], "findings": s["findings"],
            "rejected": s.get("inputs_rejected", 0), "error_rate": s["error_rate"],
            "seed_coverage": {c: seeds_only[c] for c in CRITERIA},
            "coverage": {c: s["coverage"][c]["coverage"] for c in CRITERIA}, "duration_s": s["duration_s"]}


def fmt(values: list[float], pct: bool = True) -> str:
    m = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * sd:.1f}" if pct else f"{m:.0f} ± {sd:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--strategies", default="deeptest,deephunter,random")
    ap.add_argument("--guide", default="kmnc:10,nbc", help="criteria whose gains steer the guided strategies")
    ap.add_argument("--ablation", action="store_true",
                    help="also run deeptest and deephunter with --guide shuffled (same number of coverage "
                         "credits, given to random inputs): what the coverage signal itself is worth")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    guide = tuple(args.guide.split(",")) if args.guide else None
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = [(s, guide, s) for s in args.strategies.split(",")]
        if args.ablation:
            plan += [(s, ("shuffled",), f"{s} (shuffled)") for s in args.strategies.split(",") if s != "random"]
        for strategy, strategy_guide, label in plan:
            for seed in seeds:
                runs.append({**one_run(strategy, seed, args.budget, strategy_guide, tmp), "label": label})
                r = runs[-1]
                print(f"# {label} seed={seed}: findings={r['findings']} "
                      + " ".join(f"{c}={r['coverage'][c]:.4f}" for c in CRITERIA), flush=True)
    print()
    print(f"Budget {args.budget} inputs, campaign seeds {seeds}, guided by {', '.join(guide or ('all',))}; "
          "coverage in %, mean ± sd over seeds.\n")
    print("| strategy | findings | " + " | ".join(CRITERIA) + " |")
    print("|---|---|" + "---|" * len(CRITERIA))
    first = runs[0]
    print("| seeds only | - | " + " | ".join(f"{100 * first['seed_coverage'][c]:.1f}" for c in CRITERIA) + " |")
    for label in dict.fromkeys(r["label"] for r in runs):
        rs = [r for r in runs if r["label"] == label]
        print(f"| {label} | {fmt([r['findings'] for r in rs], pct=False)} | "
              + " | ".join(fmt([r["coverage"][c] for r in rs]) for c in CRITERIA) + " |")
    print(json.dumps({"budget": args.budget, "guide": guide, "runs": runs}))


if __name__ == "__main__":
    main()
