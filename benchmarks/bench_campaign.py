"""Campaign speed: throughput against plain inference, disk written, memory held, where the time goes.

One run prints, each measured in that run:
  (a) sample    campaign inputs/s on the sample model dave2_steering (default strategy, default coverage,
                relation oracle, realism gate, findings written) / plain batched inference frames/s
                of the same model on network-ready input                              (goal >= 0.6)
  (b) daveorig  the same on an untrained Dave-orig-sized model (100x100 input, a Rescaling layer,
                conv 24/36/48/64/64 5x5/3x3, dense 1164/100/50/10/1: 1,561 neurons) with 640x480
                seeds: the udacity-dev frames when present (../shared/data/udacity-dev/frames beside
                the repository, or $DEEPTEST_DEV_FRAMES), else generated 640x480 scenes; the output
                says which                                                            (goal >= 0.5)
  (c) MB written per 1,000 inputs by (a) and (b)
  (d) peak RSS of a campaign (model (b), 256 inputs) at 200 and at 5,000 seeds of 640x480, each in
      its own subprocess (resource.getrusage in the child); 200 = an even spread of the dev frames,
      5,000 = the 1,500 dev frames repeated through symlinks in a temp folder (or generated frames
      written to a temp folder once, repeated the same way)
  (e) link-batched transforms: build_images on the campaign's own cases / one chain call per case
  (f) reference: inputs/s of a loop doing what the DeepTest code does (one predict per image, a
      sub-model per layer, a Python loop per neuron), on the same cases, checked to give the same NC
The per-stage profile of (a) and (b) (setup, search, transforms, gate, model, coverage, oracle,
writing, other: benchmarks/campaign_stages.py) is printed always; --cprofile adds cProfile's top entries.
The machine may be shared: the load average is printed at the start and the end, and plain inference
is timed before and after each campaign (their mean is the denominator).

The udacity-dev frames are not part of the project: without them (b) and (d) use generated scenes.
Last line: one JSON object.
Usage: python benchmarks/bench_campaign.py [--budget 2048] [--dave-budget 1024] [--reference 40]
                                           [--rss-seeds 200,5000] [--quick] [--cprofile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: Real 640x480 dashcam frames: the udacity-dev development set beside the repository, or $DEEPTEST_DEV_FRAMES.
DEV_FRAMES = Path(os.environ.get("DEEPTEST_DEV_FRAMES",
                                 str(HERE.parent.parent / "shared" / "data" / "udacity-dev" / "frames")))
HOW_TO_GET = ("to use real frames, put 640x480 front-camera frames (e.g. the Udacity self-driving car challenge "
              "frames, MIT licence, as redistributed in the DeepXplore repository's driving test set) in a "
              "folder and set DEEPTEST_DEV_FRAMES to it")
NC = 0.5

DAVE_CARD = """# An untrained Dave-orig-sized model made by benchmarks/bench_campaign.py (speed only).
task = "steering"
input_size = [100, 100]
color = "rgb"
crop = [0.0, 0.0, 0.0, 0.0]
scale = 1.0
offset = 0.0
output = 0
units = "radians"
"""


# --- models and seeds -------------------------------------------------------------------------------
def dave_orig():
    """DeepXplore's Dave-orig layout at 100x100 (NVIDIA's Dave-2 convolutions), untrained: a Rescaling
    layer, 5 ReLU conv layers 24/36/48/64/64 (5x5 stride 2 three times, then 3x3), ReLU dense
    1164/100/50/10 and one output: 236 + 1,325 = 1,561 neurons."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((100, 100, 3), name="frame")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(inp)
    for i, (f, k, s) in enumerate([(24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)]):
        x = layers.Conv2D(f, k, strides=s, activation="relu", name=f"conv{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i, u in enumerate((1164, 100, 50, 10)):
        x = layers.Dense(u, activation="relu", name=f"fc{i + 1}")(x)
    out = layers.Dense(1, name="steer")(x)
    return keras.Model(inp, out, name="dave_orig")


def save_dave_orig(folder: Path) -> Path:
    path = folder / "dave_orig.keras"
    dave_orig().save(path)
    path.with_suffix(".toml").write_text(DAVE_CARD)
    return path


def frames_folder(tmp: Path, n: int) -> tuple[Path, str]:
    """A folder of at least ``n`` 640x480 frames (a campaign takes ``max_seeds=n`` of them): the dev
    frames (a temp folder of symlinks repeating them when ``n`` is larger), else generated scenes
    written once as JPEGs (300 distinct ones, repeated through symlinks)."""
    import cv2

    if DEV_FRAMES.is_dir():
        files = sorted(p for p in DEV_FRAMES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        source = f"udacity-dev frames ({DEV_FRAMES}, {len(files)} files, 640x480)"
        if n <= len(files):  # the campaign takes an even spread of n of them (max_seeds)
            return DEV_FRAMES, source + (f", an even spread of {n}" if n < len(files) else "")
        folder = tmp / f"dev-{n}"
        source += f", repeated to {n} (symlinks)"
    else:
        source = f"generated 640x480 scenes (no frames in {DEV_FRAMES}; {HOW_TO_GET})"
        gen = tmp / "generated"
        if not gen.is_dir():
            from deeptest_iot.data.scenes import generate

            gen.mkdir()
            for start in range(0, 300, 50):
                for i, im in enumerate(generate(50, seed=start, height=480, width=640).images):
                    cv2.imwrite(str(gen / f"scene-{start + i:05d}.jpg"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        files = sorted(gen.iterdir())
        folder = tmp / f"gen-{n}"
    if not folder.is_dir():
        folder.mkdir()
        for i in range(n):
            target = files[i % len(files)]
            link = folder / f"{i:06d}{target.suffix}"
            try:
                link.symlink_to(target)
            except OSError:
                link.write_bytes(target.read_bytes())
    return folder, source


# --- measuring --------------------------------------------------------------------------------------
def plain_inference_fps(mut, frames: np.ndarray, seconds: float) -> float:
    """Frames/s of the bare model on network-ready input, in batches of the model's batch size."""
    import tensorflow as tf

    b = mut.batch_size
    frames = np.resize(frames, (b,) + frames.shape[1:]) if len(frames) < b else frames[:b]
    x = tf.constant(mut.preprocess(frames))
    plain = tf.function(lambda t: mut.model(t, training=False))
    plain(x).numpy()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        plain(x).numpy()
        n += len(x)
    return n / (time.perf_counter() - start)


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 1e6


def timed_campaign(opts, cprofile: bool = False):
    """Run a campaign with the stage timer on; (summary, stage table lines, stage dict, cProfile text)."""
    from campaign_stages import StageTimer

    from deeptest_iot.engine.campaign import run_campaign

    prof_text = ""
    with StageTimer() as timer:
        if cprofile:
            import cProfile
            import io
            import pstats

            pr = cProfile.Profile()
            pr.enable()
        summary = run_campaign(opts).summary
        if cprofile:
            pr.disable()
            buf = io.StringIO()
            pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(25)
            prof_text = buf.getvalue()
    return summary, timer.lines(summary["duration_s"]), timer.table(summary["duration_s"]), prof_text


def measure(label: str, mut, frames: np.ndarray, opts, seconds: float, cprofile: bool) -> dict:
    """Plain inference before and after the campaign, the campaign, its stages and its disk use."""
    before = plain_inference_fps(mut, frames, seconds)
    summary, lines, stages, prof = timed_campaign(opts, cprofile)
    after = plain_inference_fps(mut, frames, seconds)
    inference = (before + after) / 2
    rate = summary["inputs_tried"] / summary["duration_s"]
    mb = folder_mb(opts.out)
    fig = {"campaign_inputs_per_s": round(rate, 1), "plain_inference_fps": round(inference, 1),
           "plain_inference_fps_before_after": [round(before, 1), round(after, 1)],
           "ratio_campaign_over_inference": round(rate / inference, 3), "inputs": summary["inputs_tried"],
           "findings": summary["findings"], "mb_written": round(mb, 2),
           "mb_per_1000_inputs": round(1000 * mb / max(1, summary["inputs_tried"]), 2),
           "stages_s": stages, "frame": list(summary["campaign"]["frame_size"])
           if "campaign" in summary and "frame_size" in summary["campaign"] else None}
    print(f"{label}: campaign {rate:8.1f} inputs/s, plain inference {inference:8.1f} frames/s "
          f"(before {before:.1f}, after {after:.1f}): ratio {rate / inference:.3f}; "
          f"{summary['inputs_tried']} inputs, {summary['findings']} findings, {mb:.1f} MB written "
          f"({fig['mb_per_1000_inputs']:.1f} MB per 1,000 inputs)")
    print(f"  where the loop's {stages['loop_wall']:.2f} s went (per thread, exclusive):")
    print("\n".join(lines))
    if prof:
        print(prof)
    return fig


def transforms_speedup(seed_images: np.ndarray, strategy: str, n_seeds: int, seconds: float = 2.0) -> dict:
    """build_images (link-batched) against one chain call per case, on one strategy's first cases."""
    from deeptest_iot.engine.mutants import build_images
    from deeptest_iot.engine.search import make_strategy
    from deeptest_iot.transforms import REGISTRY

    strat = make_strategy(strategy, n_seeds, list(REGISTRY), 0)
    batches = [strat.next_batch(128) for _ in range(4)]

    def per_case():
        for cases in batches:
            np.stack([c.chain(seed_images[c.seed_index]) for c in cases])

    def batched():
        for cases in batches:
            build_images(seed_images, cases, workers=1)

    for cases in batches[:1]:  # warm the caches, and check they agree
        ref = np.stack([c.chain(seed_images[c.seed_index]) for c in cases])
        if not np.array_equal(ref, build_images(seed_images, cases)):
            raise SystemExit("build_images differs from the chains applied one case at a time")
    rates = {"per_case": [], "batched": []}
    for _ in range(3):  # interleaved, best of three each
        for name, fn in (("per_case", per_case), ("batched", batched)):
            start = time.perf_counter()
            fn()
            rates[name].append(512 / (time.perf_counter() - start))
    pc, bt = max(rates["per_case"]), max(rates["batched"])
    return {"frame": list(seed_images.shape[1:3]), "per_case_inputs_per_s": round(pc, 1),
            "batched_inputs_per_s": round(bt, 1), "speedup": round(bt / pc, 2)}


def rss_child(model: str, seeds: str, budget: int, max_seeds: int) -> None:
    """Run one campaign and print its peak RSS (MB) as JSON (run in a subprocess by --rss)."""
    from deeptest_iot.engine.campaign import CampaignOptions, run_campaign

    with tempfile.TemporaryDirectory() as tmp:
        opts = CampaignOptions(model=model, seeds=seeds, max_seeds=max_seeds, budget=budget, seed=0,
                               out=os.path.join(tmp, "out"))
        start = time.perf_counter()
        summary = run_campaign(opts).summary
        wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    print(json.dumps({"peak_rss_mb": round(peak_kb / 1024, 1), "seeds": summary["seeds"],
                      "frame": summary["campaign"].get("frame_size") if "campaign" in summary else None,
                      "inputs": summary["inputs_tried"], "wall_s": round(wall, 1)}))


def peak_rss(model: Path, folder: Path, budget: int, max_seeds: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(model), str(folder), str(budget),
                          str(max_seeds)],
                         capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"RSS child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --- the DeepTest-style reference loop ----------------------------------------------------------------
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


def reference_speed(mut, seed_images, n_cases: int, campaign_fps: float) -> dict:
    from deeptest_iot.coverage import CoverageTracker
    from deeptest_iot.engine.mutants import build_images
    from deeptest_iot.engine.search import make_strategy
    from deeptest_iot.transforms import REGISTRY

    cases = make_strategy("random", len(seed_images), list(REGISTRY), 0).next_batch(n_cases)
    images = build_images(seed_images, cases)
    net_in = mut.preprocess(images)
    start = time.perf_counter()
    ref_cov = reference_nc(mut.model, list(mut.layer_sizes), net_in, NC)
    reference_fps = len(cases) / (time.perf_counter() - start)
    tracker = CoverageTracker([f"nc:{NC}"], mut.layer_sizes, fingerprint=mut.fingerprint)
    tracker.update(mut.run(images).activations)
    ref_covered = sum(sum(v) for v in ref_cov.values())
    ours = tracker.summary()["criteria"][f"nc:{NC}"]["covered"]
    if ours != ref_covered:
        raise SystemExit(f"NC differs: campaign tracker {ours}, reference loop {ref_covered}")
    print(f"reference: {reference_fps:.2f} inputs/s (predict per image, sub-model per layer, loop per neuron), "
          f"same NC ({ours} neurons); the campaign is {campaign_fps / reference_fps:.0f}x faster")
    return {"reference_inputs_per_s": round(reference_fps, 2),
            "speedup_over_reference": round(campaign_fps / reference_fps, 1), "nc_same_as_reference": True,
            "nc_covered": int(ours)}


# --- main -------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2048, help="inputs of the sample-model campaign (a)")
    ap.add_argument("--dave-budget", type=int, default=1024, help="inputs of the Dave-orig campaign (b)")
    ap.add_argument("--dave-seeds", type=int, default=200, help="640x480 seeds of campaign (b)")
    ap.add_argument("--reference", type=int, default=40, help="inputs timed through the reference loop (0: skip)")
    ap.add_argument("--seeds", type=int, default=50, help="generated seeds of campaign (a)")
    ap.add_argument("--rss-seeds", default="200,5000", help="seed counts for peak RSS ('' to skip)")
    ap.add_argument("--rss-budget", type=int, default=256)
    ap.add_argument("--inference-seconds", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="smaller runs, no 5,000-seed RSS (noisier figures)")
    ap.add_argument("--cprofile", action="store_true", help="print cProfile's top entries of (a) and (b)")
    ap.add_argument("--only", default="", help="comma-separated parts to run: a,b,d,e,f (default all)")
    ap.add_argument("--rss-child", nargs=4, metavar=("MODEL", "SEEDS", "BUDGET", "MAX_SEEDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], int(args.rss_child[2]), int(args.rss_child[3]))
        return
    if args.quick:
        args.budget, args.dave_budget, args.reference = min(args.budget, 1024), min(args.dave_budget, 512), \
            min(args.reference, 20)
        args.rss_seeds, args.inference_seconds = "200", 2.0
    parts = set(args.only.split(",")) if args.only else set("abdef")

    from deeptest_iot import sample_models
    from deeptest_iot.data.seeds import generated_seeds, load_seeds
    from deeptest_iot.engine.campaign import CampaignOptions, auto_work_size, generated_frame_size
    from deeptest_iot.model.core import load_model

    load_start = load_average()
    print(f"load average at start: {load_start} (cpu count {os.cpu_count()}); timings on a shared machine are "
          "indicative", flush=True)
    figures: dict = {"load_average_start": load_start}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # (a) the sample model
        path = sample_models.path("dave2_steering")
        mut = load_model(path)
        seeds = generated_seeds(args.seeds, seed=0, height=generated_frame_size(mut.card)[0],
                                width=generated_frame_size(mut.card)[1])  # the frames the campaign uses
        if "a" in parts:
            opts = CampaignOptions(model=str(path), n_seeds=args.seeds, budget=args.budget, seed=0,
                                   out=str(tmp / "a"))
            fig = measure("(a) sample dave2_steering, generated scenes", mut, seeds.images, opts,
                          args.inference_seconds, args.cprofile)
            figures["sample"] = {"model": "dave2_steering", "neurons": mut.neurons, **fig, "goal": 0.6}
            if "f" in parts and args.reference:
                figures["sample"].update(reference_speed(mut, seeds.images, args.reference,
                                                         fig["campaign_inputs_per_s"]))
        if "e" in parts:
            figures["transforms_sample"] = transforms_speedup(seeds.images, "random", len(seeds.images))

        # (b) Dave-orig at 100x100 on 640x480 seeds
        model_path = save_dave_orig(tmp)
        dave = load_model(str(model_path))
        folder, source = frames_folder(tmp, args.dave_seeds)
        print(f"(b) seeds: {source}", flush=True)
        if "b" in parts or "e" in parts:
            work = lambda h, w: auto_work_size(dave.card, (h, w))  # noqa: E731 - as the campaign does
            dseeds = load_seeds(folder, work_size=work, max_seeds=args.dave_seeds)
        if "b" in parts:
            opts = CampaignOptions(model=str(model_path), seeds=str(folder), max_seeds=args.dave_seeds,
                                   budget=args.dave_budget, seed=0, out=str(tmp / "b"))
            fig = measure(f"(b) Dave-orig 100x100 ({dave.neurons} neurons), 640x480 seeds at work size "
                          f"{dseeds.images.shape[2]}x{dseeds.images.shape[1]}", dave, dseeds.images, opts,
                          args.inference_seconds, args.cprofile)
            figures["daveorig"] = {"model": "dave-orig 100x100 (untrained)", "neurons": dave.neurons,
                                   "seeds": source, "seed_frame": [480, 640],
                                   "work_size": list(dseeds.images.shape[1:3]), **fig, "goal": 0.5}
        if "e" in parts:
            figures["transforms_daveorig"] = transforms_speedup(dseeds.images, "random", len(dseeds.images))
        if "e" in parts:
            for key in ("transforms_sample", "transforms_daveorig"):
                t = figures[key]
                print(f"(e) transforms at {t['frame'][1]}x{t['frame'][0]}: link-batched build_images "
                      f"{t['batched_inputs_per_s']:.0f} inputs/s, one chain call per case "
                      f"{t['per_case_inputs_per_s']:.0f} inputs/s: {t['speedup']:.2f}x (one thread, random chains)")

        # (d) peak RSS at 200 and 5,000 seeds
        if "d" in parts and args.rss_seeds:
            figures["peak_rss"] = {}
            for n in [int(v) for v in args.rss_seeds.split(",") if v]:
                folder_n, source_n = frames_folder(tmp, n)
                r = peak_rss(model_path, folder_n, args.rss_budget, n)
                figures["peak_rss"][str(n)] = {**r, "seeds_source": source_n}
                print(f"(d) peak RSS with {r['seeds']} seeds of 640x480 ({source_n}): {r['peak_rss_mb']:.0f} MB "
                      f"({r['inputs']} inputs, {r['wall_s']:.0f} s)", flush=True)

    for key, label in (("sample", "(a) sample model"), ("daveorig", "(b) Dave-orig 640x480")):
        if key in figures:
            f = figures[key]
            state = "reached" if f["ratio_campaign_over_inference"] >= f["goal"] else "NOT reached"
            print(f"{label}: ratio {f['ratio_campaign_over_inference']:.3f} (goal >= {f['goal']}: {state}); "
                  f"(c) {f['mb_per_1000_inputs']:.1f} MB written per 1,000 inputs")
    figures["load_average_end"] = load_average()
    print(f"load average at end: {figures['load_average_end']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
