"""Throughput of ModelUnderTest.run (outputs + every counted layer) against a plain batched call.

On a Dave-2 sized model (NVIDIA's 66x200 architecture, random weights), in one run:
  ratio         = run() frames/s / plain compiled model call frames/s   (goal >= 0.85)
  vs_per_image  = run() frames/s / model.predict-per-image frames/s
Last line: one JSON object.  Usage: python benchmarks/bench_model.py [--batch 64] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deeptest_iot.model.core import load_model  # noqa: E402


def dave2() -> keras.Model:
    """NVIDIA's Dave-2 (Bojarski et al. 2016): 5 conv layers, 4 dense layers, one steering output."""
    inp = keras.Input((66, 200, 3))
    x = keras.layers.Conv2D(24, 5, strides=2, activation="relu")(inp)
    x = keras.layers.Conv2D(36, 5, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(48, 5, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    for units in (1164, 100, 50, 10):
        x = keras.layers.Dense(units, activation="relu")(x)
    out = keras.layers.Dense(1)(x)
    return keras.Model(inp, out, name="dave2")


def rate(fn, n_per_call: int, seconds: float) -> float:
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * n_per_call / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    keras.utils.set_random_seed(0)
    model = dave2()
    mut = load_model(model, {"task": "steering"}, batch_size=args.batch)
    frames = np.random.default_rng(0).integers(0, 256, (args.batch, 66, 200, 3), dtype=np.uint8)
    x = tf.constant(mut.preprocess(frames))
    plain = tf.function(lambda t: model(t, training=False))

    # Interleave the two measurements to share whatever else the machine is doing.
    run_rates, plain_rates = [], []
    for _ in range(3):
        plain_rates.append(rate(lambda: plain(x).numpy(), args.batch, args.seconds / 3))
        run_rates.append(rate(lambda: mut.run(frames), args.batch, args.seconds / 3))
    run_fps, plain_fps = max(run_rates), max(plain_rates)
    one = frames[:1]
    per_image = rate(lambda: model.predict(mut.preprocess(one), verbose=0), 1, min(args.seconds, 3.0))
    figures = {
        "model": "dave2 (66x200)",
        "neurons": mut.neurons,
        "layers": len(mut.layers),
        "batch": args.batch,
        "run_fps": round(run_fps, 1),
        "plain_batched_fps": round(plain_fps, 1),
        "ratio_run_over_plain": round(run_fps / plain_fps, 3),
        "predict_per_image_fps": round(per_image, 1),
        "speedup_over_per_image_predict": round(run_fps / per_image, 1),
    }
    print(f"run (outputs + {mut.neurons} neurons in {len(mut.layers)} layers): {run_fps:8.1f} frames/s")
    print(f"plain batched call:                                 {plain_fps:8.1f} frames/s")
    print(f"model.predict per image:                            {per_image:8.1f} frames/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
