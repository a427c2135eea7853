"""Run every speed benchmark, one after the other, and print their figures as one JSON object.

Usage: python benchmarks/run_all.py [--quick]    (takes a few minutes on 2 cores; the studies
study_guidance.py, study_offline_online.py and retrain_loop.py and the table deeptest_table.py are run
on their own)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("bench_model", "bench_transforms", "bench_coverage", "bench_scenes", "bench_campaign", "bench_drive")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    args = ap.parse_args()
    quick = {"bench_model": ["--seconds", "2"], "bench_coverage": ["--quick"], "bench_scenes": ["--frames", "300"],
             "bench_campaign": ["--quick"], "bench_drive": ["--steps", "60", "--rounds", "2"]}
    figures, failed = {}, []
    for name in BENCHMARKS:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(quick.get(name, []) if args.quick else [])]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        for line in lines[:-1]:
            print(line)
        try:
            figures[name] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            failed.append(name)
            print(out.stderr[-2000:], file=sys.stderr)
    print(json.dumps({"benchmarks": figures, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
