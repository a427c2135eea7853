"""Frames per second of the procedural scene generator at 160x320 on one core (goal >= 500).

Usage: taskset -c 0 python benchmarks/bench_scenes.py [--frames 1000]   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import json
import time

import cv2

from deeptest_iot.data.scenes import generate, sign_crops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    generate(8, seed=99)  # warm-up (texture caches)
    best = {}
    for name, fn in (("scenes_160x320", lambda: generate(args.frames, seed=0, height=160, width=320)),
                     ("scenes_94x200", lambda: generate(args.frames, seed=0, height=94, width=200)),
                     ("sign_crops_32", lambda: sign_crops(args.frames, seed=0, size=32))):
        rates = []
        for _ in range(3):
            start = time.process_time()
            fn()
            rates.append(args.frames / (time.process_time() - start))
        best[name] = round(max(rates), 1)
        print(f"{name:<16} {best[name]:8.1f} frames/s (CPU time, OpenCV on one thread)")
    print(json.dumps({"benchmark": "scenes", "unit": "frames/s", "goal_160x320": 500, **best}))


if __name__ == "__main__":
    main()
