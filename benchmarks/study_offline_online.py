"""Offline against online: do the offline sweep's findings predict that the car leaves its lane?

For each transform family at three severities, on the sample steering model (dave2_steering):

offline  The DeepTest sweep campaign (``engine.campaign.run_campaign``, strategy ``sweep``, the
         presets' transforms, DeepTest's labelled steering relation: a finding when
         (label - pred)^2 > lambda * MSE_orig, lambda = 5, MSE_orig the model's MSE on the seeds).
         Seeds: frames recorded along each drive's road by the ground-truth driver (pure pursuit on
         the true lane centre, the labels' controller: the "human" who recorded the data), one every
         ``--every`` steps, labelled with the pure-pursuit angle. So every seed belongs to a drive.
online   The same drives (same roads, scenes, starts), driven in closed loop by the model under
         the condition ``NAME:SEVERITY`` (the same transform as the offline one).

Agreement, at the drive level. A drive is online-positive when the car left its lane, and
offline-positive by one of two rules:
  finding  at least one of its seed frames is a finding of the sweep (what the offline report tells
           a developer: this road has a problem);
  bias     the mean signed error (pred - label) over its seed frames under the transform exceeds
           ``--bias`` (0.02 rad) in magnitude (each frame transformed as the drive would: with the
           drive's camera, speed, seed and the frame's time; the sweep uses the transforms'
           defaults, as `run` does). Pure pursuit turns a constant steering bias b into a
           steady offset of b * 12^2 / (2 * 2.7) = 26.7 b metres: 0.02 rad uses 0.53 m of the
           0.7-1.1 m a car has before a wheel crosses the line (predictions: one batched call per
           transform, randomness seed 0).
Per family, over its three severities and all drives: precision = P(online failure |
offline-positive), recall = P(offline-positive | online failure). The baseline (no transform)
shows what the model does on clean frames, and the clean seeds' own "error rate" under the
labelled rule is the floor below which an offline error rate says nothing.

Usage: python benchmarks/study_offline_online.py [--drives 20] [--distance 300] [--quick]
Prints the table (markdown) and, last, one JSON object. Takes ~10-20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402

import numpy as np  # noqa: E402

from deeptest_iot.data.seeds import load_seeds  # noqa: E402
from deeptest_iot.drive.campaign import drive_campaign, frame_size, load_for_drive  # noqa: E402
from deeptest_iot.drive.condition import parse_condition  # noqa: E402
from deeptest_iot.drive.loop import DriveSettings, camera_values, replay_frames, setup_drive, simulate  # noqa: E402
from deeptest_iot.engine.campaign import CampaignOptions, run_campaign  # noqa: E402

# family -> (transform, three severities): each severity is a transform of the sweep presets
# (weather and sensor: 0.25/0.5/0.75/1; deeptest-brightness: delta 10..100 = 0.1..1; deeptest-blur:
# gaussian k 3/5/7 = 1/3, 2/3, 1; deeptest-rotation 3..30 deg and deeptest-translation 10..100 px =
# 0.1..1).
FAMILIES = {
    "fog": ("fog", (0.25, 0.5, 1.0)),
    "rain": ("rain", (0.25, 0.5, 1.0)),
    "snow": ("snow", (0.25, 0.5, 1.0)),
    "brightness": ("brightness", (0.3, 0.6, 1.0)),
    "blur": ("blur_gaussian", (1 / 3, 2 / 3, 1.0)),
    "noise": ("gaussian_noise", (0.25, 0.5, 1.0)),
    "rotation": ("rotation", (0.1, 0.2, 0.3)),
    "translation": ("translation", (0.1, 0.2, 0.3)),
}


def sev_key(v: float) -> str:
    return f"{v:.3f}"


def record_seeds(mut, setups, settings, hw, every: int, folder: Path) -> dict[str, int]:
    """Drive every road with the ground-truth driver and save a frame every ``every`` steps with its
    label; returns seed id -> drive index."""
    tr = simulate(None, setups, "none", settings, hw)
    owner, rows = {}, []
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(setups):
        ks = list(range(every // 2, int(tr.steps_driven[i]), every))
        frames = replay_frames(s, "none", settings, tr.row(i), hw, ks)
        for k, frame in zip(ks, frames):
            name = f"d{i:03d}_k{k:04d}.png"
            cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            rows.append((name, float(tr["label"][i, k])))
            owner[name] = i
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame_id", "steering_angle"])
        w.writerows(rows)
    return owner


def offline(folder: Path, out: Path, owner: dict[str, int], seed: int) -> tuple[dict, dict]:
    """The sweep campaign on the recorded seeds: per (transform, severity), the error rate and the
    drives with at least one finding."""
    names = sorted({t for t, _ in FAMILIES.values()})
    opts = CampaignOptions(seeds=str(folder), labels=str(folder / "labels.csv"), strategy="sweep",
                           transforms=tuple(names), coverage=(), budget=10_000_000, out=str(out), seed=seed,
                           batch_size=256)
    done = out / "summary.json"
    if done.is_file() and json.loads(done.read_text()).get("status") == "complete":  # a --work folder reused
        summary = json.loads(done.read_text())
    else:
        summary = run_campaign(opts).summary
    flagged: dict[tuple, set] = defaultdict(set)
    count: dict[tuple, int] = defaultdict(int)
    for line in (out / "findings.jsonl").read_text().splitlines():
        f = json.loads(line)
        key = (f["transform"], sev_key(f["severity"]))
        count[key] += 1
        flagged[key].add(owner[f["seed_id"]])
    return {"count": count, "flagged": flagged, "seeds": len(owner),
            "mse_orig": summary["campaign"]["relation"].get("mse_orig")}, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=20)
    ap.add_argument("--distance", type=float, default=300.0)
    ap.add_argument("--every", type=int, default=25, help="steps between two recorded seed frames")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bias", type=float, default=0.02, help="rad: the bias rule's threshold")
    ap.add_argument("--quick", action="store_true", help="4 drives of 100 m, two families (a smoke test)")
    ap.add_argument("--work", help="folder for the seeds and the sweep campaign (default: a temp folder)")
    args = ap.parse_args()
    families = dict(FAMILIES)
    if args.quick:
        args.drives, args.distance = 4, 100.0
        families = {k: families[k] for k in ("fog", "rotation")}
    start = time.perf_counter()
    mut = load_for_drive(batch=args.drives)
    hw = frame_size(mut.card)
    settings = DriveSettings(distance=args.distance)
    setups = [setup_drive(args.seed, i, settings) for i in range(args.drives)]
    work = Path(args.work or tempfile.mkdtemp(prefix="deeptest-study-"))
    owner = record_seeds(mut, setups, settings, hw, args.every, work / "seeds")
    off, off_summary = offline(work / "seeds", work / "offline", owner, args.seed)
    print(f"offline: {off['seeds']} seed frames from {args.drives} drives, sweep campaign "
          f"{off_summary['inputs_tried']} inputs, {off_summary['findings']} findings "
          f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    # the seeds again, for the bias rule and the clean floor
    seeds = load_seeds(work / "seeds", labels=work / "seeds" / "labels.csv")
    labels = np.asarray(seeds.labels, np.float64)
    drive_of = np.array([owner[i] for i in seeds.ids])
    clean = np.asarray(mut.predict(seeds.images), np.float64)
    lam = off_summary["campaign"]["relation"]["lambda"]
    floor = float(np.mean((labels - clean) ** 2 > lam * off["mse_orig"]))

    # the bias rule sees each seed frame as the drive would: the drive's camera and speed, the frame's time
    step_of = np.array([int(i.split("_k")[1].split(".")[0]) for i in seeds.ids])
    cams = [camera_values(s, settings, hw) for s in setups]

    def bias_flagged(name: str, sev: float) -> tuple[set, float]:
        cond = parse_condition(f"{name}:{sev:.6g}")
        frames = np.stack([cond.chain(0.0, k * settings.dt, cams[d])(img, seed=setups[d].condition_seed)
                           for img, d, k in zip(seeds.images, drive_of, step_of)])
        pred = np.asarray(mut.predict(frames), np.float64)
        err = pred - labels
        bias = np.array([err[drive_of == i].mean() for i in range(args.drives)])
        return set(np.flatnonzero(np.abs(bias) > args.bias).tolist()), float(np.mean(np.abs(err)))

    cache = work / "online"
    cache.mkdir(exist_ok=True)

    def online(cond: str) -> tuple[set, dict]:
        path = cache / f"{cond.replace(':', '_')}.json"
        key = {"drives": args.drives, "seed": args.seed, "settings": settings.to_dict()}
        if path.is_file() and json.loads(path.read_text()).get("key") == key:
            saved = json.loads(path.read_text())
            return set(saved["failing"]), saved["metrics"]
        r = drive_campaign(mut, cond, drives=args.drives, seed=args.seed, settings=settings)
        path.write_text(json.dumps({"key": key, "failing": r.failing, "metrics": r.metrics}))
        print(f"online {cond:<26} {r.failures}/{r.drives} left their lane ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)
        return set(r.failing), r.metrics

    base_fail, base_metrics = online("none")
    rows, per_family = [], {}
    for fam, (name, levels) in families.items():
        counts = {"finding": [0, 0, 0, 0], "bias": [0, 0, 0, 0]}  # tp, fp, fn, tn
        for sev in levels:
            cond = f"{name}:{sev:.6g}"
            failing, metrics = online(cond)
            key = (name, sev_key(sev))
            flagged = off["flagged"].get(key, set())
            biased, mae = bias_flagged(name, sev)
            n_find = off["count"].get(key, 0)
            for rule, pos in (("finding", flagged), ("bias", biased)):
                c = counts[rule]
                for i in range(args.drives):
                    a, b = i in pos, i in failing
                    c[0] += a and b
                    c[1] += a and not b
                    c[2] += b and not a
                    c[3] += not a and not b
            rows.append({"family": fam, "transform": name, "severity": round(sev, 3),
                         "offline_error_rate": n_find / off["seeds"],
                         "offline_drives_flagged": len(flagged) / args.drives,
                         "offline_mean_abs_error": mae,
                         "offline_drives_biased": len(biased) / args.drives,
                         "online_failure_rate": len(failing) / args.drives,
                         "online_steering_error_rms": metrics["mean_steering_error_rms_rad"],
                         "online_mean_abs_offset": metrics["mean_abs_offset_m"]})
        per_family[fam] = {}
        for rule, (tp, fp, fn, tn) in counts.items():
            per_family[fam][rule] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                                     "precision": tp / (tp + fp) if tp + fp else None,
                                     "recall": tp / (tp + fn) if tp + fn else None,
                                     "agreement": (tp + tn) / (tp + fp + fn + tn)}

    def pct(v):
        return "-" if v is None else f"{100 * v:.0f}%"

    print(f"\nBaseline (no transform): {len(base_fail)}/{args.drives} drives left their lane; steering error RMS "
          f"along the drives {base_metrics['mean_steering_error_rms_rad']:.4f} rad. Offline: {off['seeds']} seed "
          f"frames, MSE_orig {off['mse_orig']:.3g} rad^2; the clean seeds' own error rate under the labelled rule "
          f"(lambda {lam:g}): {pct(floor)}\n")
    print("| family | transform | severity | offline error rate | drives with a finding | offline mean abs error "
          "(rad) | drives biased > %g rad | online failure rate | online steering error RMS (rad) |" % args.bias)
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['transform']} | {r['severity']:g} | {pct(r['offline_error_rate'])} | "
              f"{pct(r['offline_drives_flagged'])} | {r['offline_mean_abs_error']:.4f} | "
              f"{pct(r['offline_drives_biased'])} | {pct(r['online_failure_rate'])} | "
              f"{r['online_steering_error_rms']:.4f} |")
    for rule in ("finding", "bias"):
        print(f"\nRule '{rule}':\n")
        print("| family | offline+ online+ | offline+ online- | offline- online+ | offline- online- | precision | "
              "recall | agreement |")
        print("|---|---|---|---|---|---|---|---|")
        for fam, pr in per_family.items():
            p = pr[rule]
            print(f"| {fam} | {p['tp']} | {p['fp']} | {p['fn']} | {p['tn']} | {pct(p['precision'])} | "
                  f"{pct(p['recall'])} | {pct(p['agreement'])} |")
    figures = {"study": "offline_online", "model": "dave2_steering", "drives": args.drives,
               "distance_m": args.distance, "seed": args.seed, "seed_frames": off["seeds"],
               "offline_inputs": off_summary["inputs_tried"], "mse_orig": off["mse_orig"], "clean_floor": floor,
               "bias_threshold": args.bias,
               "baseline_failures": len(base_fail), "rows": rows, "per_family": per_family,
               "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
