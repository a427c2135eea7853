"""The realism curve of the weather: share of held-out real frames a learned realism gate still finds
in distribution, per weather transform and severity.

Run: ``python benchmarks/weather_realism.py [--frames DIR] [--gate PATH | --save PATH] [--size 240x320]``

Issue 18 asks that fog, rain and snow at severity <= 0.5 stay in distribution for at least 90% of
held-out frames, and that the rate falls smoothly as severity rises. The gate is the learned one of
``deeptest_iot.engine.realism`` (``LearnedGate``: SelfOracle's autoencoder, Stocco et al. 2020),
imported only when this script runs; without that module the script stops with a message.

Frames: the udacity-dev set (1,500 consecutive 640x480 dashcam frames of the Udacity challenge, MIT
licence, via the DeepXplore repository): ``--frames`` or UDACITY_DEV_FRAMES, else
``../shared/data/udacity-dev/frames`` beside the repository. The first ``--train`` frames (every
second one) train the gate unless ``--gate`` gives a saved one; the last ``--held-out`` frames, 100
frames (5 s) later, are the held-out set. Each held-out frame gets its own seed. Prints a table, then
the curve as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
NAMES = ("fog", "rain", "snow")
SEVERITIES = tuple(round(0.1 * i, 1) for i in range(11))


def frames_dir(arg: str | None) -> Path | None:
    for c in (arg, os.environ.get("UDACITY_DEV_FRAMES"), str(HERE.parent.parent / "shared" / "data" / "udacity-dev" / "frames")):
        if c and Path(c).is_dir() and any(Path(c).glob("*.jpg")):
            return Path(c)
    return None


def load(files: list[Path], size: tuple[int, int]) -> np.ndarray:
    h, w = size
    out = np.empty((len(files), h, w, 3), np.uint8)
    for i, f in enumerate(files):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        out[i] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default=None)
    ap.add_argument("--gate", default=None, help="a saved LearnedGate (.keras); otherwise one is trained")
    ap.add_argument("--save", default=None, help="where to save the trained gate")
    ap.add_argument("--train", type=int, default=1000, help="first frames used for training (every second one)")
    ap.add_argument("--held-out", type=int, default=400, help="last frames held out")
    ap.add_argument("--size", default="240x320", help="HxW the transforms run at")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()

    try:
        from deeptest_iot.engine import realism
        LearnedGate = realism.LearnedGate
    except (ImportError, AttributeError) as e:
        print(f"weather_realism: needs the learned realism gate, deeptest_iot.engine.realism.LearnedGate "
              f"(the real-frames realism work, branch 'realism'), which this checkout does not have ({e}). "
              f"Merge it, then run this script again.", file=sys.stderr)
        return 2
    from deeptest_iot.transforms import get

    src = frames_dir(args.frames)
    if src is None:
        print("weather_realism: udacity-dev frames not found; pass --frames DIR or set UDACITY_DEV_FRAMES "
              "(1,500 frames of the Udacity self-driving challenge as redistributed by the DeepXplore "
              "repository)", file=sys.stderr)
        return 2
    files = sorted(src.glob("*.jpg"))
    h, w = (int(v) for v in args.size.lower().split("x"))
    held = files[-args.held_out:]
    train_files = files[:min(args.train, len(files) - args.held_out - 100)][::2]
    if args.gate:
        gate = LearnedGate.load(args.gate)
    else:
        print(f"training the gate on {len(train_files)} frames ...", flush=True)
        gate = LearnedGate(seed=0).fit(load(train_files, (h, w)), epochs=args.epochs)
        if args.save:
            gate.save(args.save)
    x = load(held, (h, w))
    curve: dict[str, dict[str, float]] = {}
    median: dict[str, dict[str, float]] = {}
    print(f"in-distribution share of {len(x)} held-out frames ({args.size}), gate threshold {gate.threshold:.5f}; "
          f"in brackets the median score (a score below the clean frames' means the gate finds the mutants "
          f"easier than real frames, as reconstruction errors do for smoothed, low-contrast images)")
    print(f"{'severity':>8} " + " ".join(f"{n:>20}" for n in NAMES))
    for s in SEVERITIES:
        row = {}
        for name in NAMES:
            t = get(name, severity=s)
            mutants = np.stack([t(x[i], seed=i) for i in range(len(x))])  # each frame its own storm
            score = np.asarray(gate.score(mutants))
            row[name] = (float(np.mean(score <= gate.threshold)), float(np.median(score)))
            curve.setdefault(name, {})[f"{s:.1f}"] = round(row[name][0], 4)
            median.setdefault(name, {})[f"{s:.1f}"] = round(row[name][1], 6)
        print(f"{s:>8.1f} " + " ".join(f"{row[n][0]:>9.1%} ({row[n][1]:.5f})" for n in NAMES), flush=True)
    ok = {n: all(curve[n][f"{s:.1f}"] >= 0.9 for s in SEVERITIES if s <= 0.5) for n in NAMES}
    smooth = {n: max(abs(a - b) for a, b in zip(list(curve[n].values()), list(curve[n].values())[1:])) for n in NAMES}
    for n in NAMES:
        print(f"{n}: {'meets' if ok[n] else 'MISSES'} >= 90% in distribution up to severity 0.5; "
              f"largest drop between neighbouring severities {smooth[n]:.1%}")
    print(json.dumps({"benchmark": "weather_realism", "held_out": len(x), "size": args.size,
                      "threshold": gate.threshold, "curve": curve, "median_score": median, "meets_90_up_to_0.5": ok,
                      "largest_step": smooth}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
