"""Float model against its twins: disagreement per transform family and severity, and throughput ratios.

For each sample model (and, with --keras/--frames, a real-frames steering model), in one run:

* disagreement rate: the share of inputs on which the differential relation (deeptest_iot.tasks.
  differential, default bounds) fails between the float Keras model and its int8 / float16 twin
  (and ONNX with --onnx), on generated seeds (road scenes; sign crops for the classifier) and on
  every registered transform of each family (photometric, geometric, weather, sensor) applied at
  each severity with deeptest_iot.transforms.get(name, severity=s);
* throughput: frames/s of each twin's outputs-only run (and of its run with coverage
  activations) divided by the float Keras model's, on the same batch, measured in turn.

Twins come from sample_models/ (benchmarks/make_twins.py) or are converted into a temporary folder.
Last line: one JSON object.   Usage:
    python benchmarks/bench_twins.py [--seeds 60] [--severities 0.3 0.6 0.9] [--onnx] [--markdown]
    python benchmarks/bench_twins.py --keras real.keras --frames DIR   # a real-frames model too
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from deeptest_iot import sample_models, transforms  # noqa: E402
from deeptest_iot.model.convert import _generated_frame_size, convert, read_calibration_folder  # noqa: E402
from deeptest_iot.model.core import load_model  # noqa: E402
from deeptest_iot.model.twins import check_twin, load_twin, twin_path_for  # noqa: E402
from deeptest_iot.tasks.differential import make_differential_oracle  # noqa: E402


def seeds_for(mut, n: int, frames_dir=None) -> np.ndarray:
    if frames_dir:
        groups = read_calibration_folder(frames_dir, limit=n)
        return max(groups, key=len)
    h, w = _generated_frame_size(mut.card)
    if mut.card.task == "classification":
        from deeptest_iot.data.scenes import sign_crops

        return sign_crops(n, seed=101, size=max(h, w))[0]  # not the calibration seed (0)
    from deeptest_iot.data.scenes import generate

    return generate(n, seed=101, height=h, width=w).images


def disagreement(float_mut, twins: dict, seeds: np.ndarray, severities) -> dict:
    """{twin: {family: {severity: rate}}} plus the clean seeds as severity 0."""
    oracle = make_differential_oracle(float_mut.card.task, classes=float_mut.card.classes or None)
    frame_size = seeds.shape[1:3]
    batches = [("clean", 0.0, seeds)]
    for kind in transforms.KINDS:
        for name in transforms.names(kind):
            for s in severities:
                batches.append((kind, s, transforms.get(name, severity=s)(seeds, seed=0)))
    out = {t: {} for t in twins}
    for kind, s, frames in batches:
        ref = float_mut.predict(frames)
        for tname, twin in twins.items():
            v = oracle.check(ref, twin.predict(frames), frame_size=frame_size)
            cell = out[tname].setdefault(kind, {}).setdefault(f"{s:g}", [0, 0])
            cell[0] += int(v.failed.sum())
            cell[1] += len(v)
    return {t: {k: {s: round(f / n, 4) for s, (f, n) in d.items()} for k, d in fam.items()} for t, fam in out.items()}


def rate(fn, frames, seconds: float) -> float:
    fn(frames)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(frames)
        n += len(frames)
    return n / (time.perf_counter() - start)


def throughput(float_mut, twins: dict, seconds: float, batch: int = 64) -> dict:
    h, w = float_mut.card.input_size
    frames = np.random.default_rng(0).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    base = rate(lambda f: float_mut.run(f, with_activations=False), frames, seconds)
    base_cov = rate(lambda f: float_mut.run(f, with_activations=True), frames, seconds)
    out = {"float_fps": round(base, 1), "float_coverage_fps": round(base_cov, 1)}
    for tname, twin in twins.items():
        fps = rate(lambda f: twin.run(f, with_activations=False), frames, seconds)
        entry = {"fps": round(fps, 1), "ratio": round(fps / base, 3)}
        if twin.supports_coverage:
            cov = rate(lambda f: twin.run(f, with_activations=True), frames, seconds)
            entry.update(coverage_fps=round(cov, 1), coverage_ratio=round(cov / base_cov, 3))
        out[tname] = entry
    return out


def twins_of(path: Path, mut, targets, tmp: Path) -> dict:
    found = {}
    for to in targets:
        shipped = twin_path_for(path, to)
        if not shipped.is_file():
            shipped = twin_path_for(tmp / path.name, to)
            convert(mut, to, shipped, isolate=(to == "int8"))
        twin = load_twin(shipped, mut)
        check_twin(mut, twin)
        found[to] = twin
    return found


def markdown(results: dict, severities) -> str:
    cols = ["clean"] + [f"{k} {s:g}" for k in transforms.KINDS for s in severities]
    lines = ["| model | twin | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for model, r in results.items():
        for tname, fam in r["disagreement"].items():
            cells = [fam["clean"]["0"]] + [fam[k][f"{s:g}"] for k in transforms.KINDS for s in severities]
            lines.append(f"| {model} | {tname} | " + " | ".join(f"{100 * c:.1f}%" for c in cells) + " |")
    lines += ["", "| model | float fps | twin | fps ratio | with coverage: float fps | ratio |", "|---|---|---|---|---|---|"]
    for model, r in results.items():
        t = r["throughput"]
        for tname in r["disagreement"]:
            e = t[tname]
            lines.append(f"| {model} | {t['float_fps']:.0f} | {tname} | {e['ratio']:.2f} | "
                         f"{t['float_coverage_fps']:.0f} | {e.get('coverage_ratio', float('nan')):.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=60)
    ap.add_argument("--severities", type=float, nargs="*", default=[0.3, 0.6, 0.9])
    ap.add_argument("--seconds", type=float, default=3.0, help="per throughput measurement")
    ap.add_argument("--models", nargs="*", default=list(sample_models.NAMES))
    ap.add_argument("--onnx", action="store_true", help="also the ONNX twin (converted on the fly)")
    ap.add_argument("--keras", type=Path, help="a real-frames steering model (its card beside it)")
    ap.add_argument("--frames", type=Path, help="folder of real frames for --keras (seeds and calibration)")
    ap.add_argument("--markdown", action="store_true", help="print the docs table too")
    args = ap.parse_args()
    targets = ("int8", "float16") + (("onnx",) if args.onnx else ())
    models = [(n, sample_models.path(n), None) for n in args.models]
    if args.keras:
        models.append((args.keras.stem, args.keras, args.frames))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, frames_dir in models:
            mut = load_model(path)
            if frames_dir:  # calibrate the real model on its own frames, not generated scenes
                twins = {}
                for to in targets:
                    out = twin_path_for(Path(tmp) / Path(path).name, to)
                    convert(mut, to, out, calibration=frames_dir if to == "int8" else None, isolate=(to == "int8"))
                    twins[to] = load_twin(out, mut)
            else:
                twins = twins_of(Path(path), mut, targets, Path(tmp))
            seeds = seeds_for(mut, args.seeds, frames_dir)
            start = time.perf_counter()
            dis = disagreement(mut, twins, seeds, args.severities)
            thr = throughput(mut, twins, args.seconds)
            results[name] = {"disagreement": dis, "throughput": thr, "seeds": len(seeds),
                             "seconds": round(time.perf_counter() - start, 1)}
            print(f"{name}: " + ", ".join(f"{t} clean {100 * d['clean']['0']:.1f}% / x{thr[t]['ratio']:.2f} fps"
                                         for t, d in dis.items()), flush=True)
    if args.markdown:
        print(markdown(results, args.severities))
    print(json.dumps({"cpu_count": os.cpu_count(), "severities": args.severities, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
