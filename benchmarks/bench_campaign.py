"""Campaign throughput against plain inference, and against a DeepTest-style reference loop.

In one run, on the sample steering model (dave2_steering) and generated seed scenes:
  ratio_campaign_over_inference = campaign inputs/s (transforms + model with NC + KMNC(10) tracked + oracle
                                  + findings written) / plain batched model inference frames/s   (goal >= 0.6)
  speedup_over_reference        = campaign inputs/s / inputs/s of a loop doing what the DeepTest code does
                                  (one predict per image, a sub-model per layer, a Python loop per neuron),
                                  on the same cases, checked to give the same NC                 (goal >= 100)
Last line: one JSON object.   Usage: python benchmarks/bench_campaign.py [--budget 2048] [--reference 40]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deeptest_iot import sample_models  # noqa: E402
from deeptest_iot.engine.campaign import CampaignOptions, generated_frame_size, run_campaign  # noqa: E402
from deeptest_iot.engine.mutants import build_images  # noqa: E402
from deeptest_iot.coverage import CoverageTracker  # noqa: E402
from deeptest_iot.model.core import load_model  # noqa: E402
from deeptest_iot.engine.search import make_strategy  # noqa: E402
from deeptest_iot.data.seeds import generated_seeds  # noqa: E402

NC = 0.5


def reference_nc(keras_model, layer_names, inputs, threshold):
    """What the DeepTest implementation does: per image, predict the output and each layer's sub-model,
    min-max scale that layer's whole output, then loop over neurons in Python (a neuron's value is the
    mean of its channel of the scaled output). Returns the covered flags per layer."""
    import keras

    subs = {n: keras.Model(keras_model.inputs, keras_model.get_layer(n).output) for n in layer_names}
    covered = {n: None for n in layer_names}
    for x in inputs:
        keras_model.predict(x[None], verbose=0)
        for n, sub in subs.items():
            out = sub.predict(x[None], verbose=0)[0]
            lo, hi = out.min(), out.max()
            scaled = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
            if covered[n] is None:
                covered[n] = [False] * out.shape[-1]
            for j in range(out.shape[-1]):
                if float(np.mean(scaled[..., j])) > threshold:
                    covered[n][j] = True
    return covered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--reference", type=int, default=40, help="inputs timed through the reference loop")
    ap.add_argument("--seeds", type=int, default=50)
    args = ap.parse_args()

    path = sample_models.path("dave2_steering")
    mut = load_model(path)
    seeds = generated_seeds(args.seeds, seed=0, height=generated_frame_size(mut.card)[0],
                            width=generated_frame_size(mut.card)[1])  # the frames the campaign uses

    # Plain batched inference of the same model on network-ready input.
    x = tf.constant(mut.preprocess(seeds.images[:64]) if len(seeds.images) >= 64
                    else mut.preprocess(np.resize(seeds.images, (64,) + seeds.images.shape[1:])))
    plain = tf.function(lambda t: mut.model(t, training=False))
    plain(x)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5.0:
        plain(x).numpy()
        n += len(x)
    inference_fps = n / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        opts = CampaignOptions(model=str(path), n_seeds=args.seeds, strategy="random", budget=args.budget,
                               coverage=(f"nc:{NC}", "kmnc:10"), seed=0, out=os.path.join(tmp, "out"))
        summary = run_campaign(opts).summary
    campaign_fps = summary["inputs_tried"] / summary["duration_s"]

    # Reference loop on the first cases of the same campaign (same seeds, same transforms).
    strategy = make_strategy("random", len(seeds.images), opts.transforms or list(_registry()), 0)
    cases = strategy.next_batch(args.reference)
    images = build_images(seeds.images, cases)
    net_in = mut.preprocess(images)
    layer_names = list(mut.layer_sizes)
    start = time.perf_counter()
    ref_cov = reference_nc(mut.model, layer_names, net_in, NC)
    reference_fps = len(cases) / (time.perf_counter() - start)
    tracker = CoverageTracker([f"nc:{NC}"], mut.layer_sizes, fingerprint=mut.fingerprint)
    tracker.update(mut.run(images).activations)
    ref_covered = sum(sum(v) for v in ref_cov.values())
    ours = tracker.summary()["criteria"][f"nc:{NC}"]["covered"]
    if ours != ref_covered:
        raise SystemExit(f"NC differs: campaign tracker {ours}, reference loop {ref_covered}")

    figures = {
        "model": "dave2_steering", "neurons": mut.neurons, "frame": list(seeds.images.shape[1:3]),
        "campaign_inputs_per_s": round(campaign_fps, 1), "plain_inference_fps": round(inference_fps, 1),
        "ratio_campaign_over_inference": round(campaign_fps / inference_fps, 3),
        "reference_inputs_per_s": round(reference_fps, 2),
        "speedup_over_reference": round(campaign_fps / reference_fps, 1),
        "nc_same_as_reference": True, "nc_covered": int(ours), "findings": summary["findings"],
    }
    print(f"campaign   {campaign_fps:8.1f} inputs/s (NC + KMNC(10), oracle, findings to disk)")
    print(f"inference  {inference_fps:8.1f} frames/s (plain batched call)")
    print(f"reference  {reference_fps:8.2f} inputs/s (predict per image, sub-model per layer, loop per neuron)")
    print(json.dumps(figures))


def _registry():
    from deeptest_iot.transforms import REGISTRY

    return REGISTRY


if __name__ == "__main__":
    main()
