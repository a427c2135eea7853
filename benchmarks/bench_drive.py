"""Closed-loop driving speed against plain batched inference of the same model, in one run.

N cars drive at once on the sample steering model (one model call per step for all of them; each
car's frame rendered by the scene renderer, then the condition applied). In one run:

  drive_steps_per_s = car-steps per second of deeptest_iot.drive.loop.simulate (render + condition
                      + model + physics)
  plain_fps         = frames per second of ModelUnderTest.predict on batches of N frames of the
                      same size (the model call alone)
  ratio             = drive_steps_per_s / plain_fps                          (goal >= 0.5)

plus where the drive's time went (render, model, geometry). The two measurements are interleaved
(3 rounds each, best kept) so that whatever else the machine does weighs on both alike.

Usage: python benchmarks/bench_drive.py [--cars 32] [--steps 120] [--condition fog:0.5]
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from deeptest_iot import sample_models  # noqa: E402
from deeptest_iot.drive.loop import DriveSettings, setup_drive, simulate  # noqa: E402
from deeptest_iot.drive.steer import model_steering  # noqa: E402
from deeptest_iot.engine.campaign import generated_frame_size  # noqa: E402
from deeptest_iot.model.core import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=32)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--condition", default="fog:0.5")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    mut = load_model(str(sample_models.path("dave2_steering")), batch_size=max(64, args.cars))
    hw = generated_frame_size(mut.card)
    settings = DriveSettings.from_steps(args.steps)
    setups = [setup_drive(0, i, settings) for i in range(args.cars)]
    steer = model_steering(mut)
    first = {}

    def keep_first(k, rows, frames):
        if k == 0:
            first["frames"] = frames.copy()

    simulate(steer, setups, args.condition, DriveSettings.from_steps(2), hw, on_frames=keep_first)  # warm-up
    frames = first["frames"]

    def plain(seconds: float) -> float:
        mut.predict(frames)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            mut.predict(frames)
            n += len(frames)
        return n / (time.perf_counter() - start)

    drive_rates, plain_rates, timings = [], [], []
    for _ in range(args.rounds):
        tr = simulate(steer, setups, args.condition, settings, hw)
        car_steps = int(tr.steps_driven.sum())
        drive_rates.append(car_steps / tr.seconds)
        timings.append({k: v / car_steps * 1e3 for k, v in tr.timing.items()})
        plain_rates.append(plain(min(tr.seconds, 10.0)))
    best = int(np.argmax(drive_rates))
    drive, plain_fps = drive_rates[best], max(plain_rates)
    figures = {
        "benchmark": "drive", "model": "dave2_steering", "frame": f"{hw[0]}x{hw[1]}", "cars": args.cars,
        "steps": args.steps, "condition": args.condition,
        "drive_steps_per_s": round(drive, 1), "plain_fps": round(plain_fps, 1),
        "ratio": round(drive / plain_fps, 3), "goal": 0.5,
        "ms_per_car_step": {k: round(v, 3) for k, v in timings[best].items()},
    }
    print(f"drive ({args.cars} cars, {args.condition}): {drive:8.1f} car-steps/s  "
          f"(per car-step: " + ", ".join(f"{k} {v:.2f} ms" for k, v in figures["ms_per_car_step"].items()) + ")")
    print(f"plain batched predict ({len(frames)} frames of {hw[0]}x{hw[1]}): {plain_fps:8.1f} frames/s")
    print(f"ratio {drive / plain_fps:.3f} (goal >= 0.5)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
