"""The realism curve of the weather: share of held-out real frames the learned realism gate still finds
in distribution, per weather transform and severity.

Run::

    python benchmarks/weather_realism.py [--frames DIR] [--gate PATH | --save PATH] [--size 240x320]
        [--train 0:1000] [--held-out 1200:1500] [--epochs 30] [--transition] [--all]
        [--sheet docs/images/weather-realism.jpg] [--plot docs/images/weather-realism-curve.png] [--write-docs]

Issue 18 asks that weather at severity <= 0.5 stay in distribution for at least 90% of held-out
frames, and that the rate fall smoothly as severity rises. The gate is ``LearnedGate`` of
``deeptest_iot.engine.realism``: SelfOracle's autoencoder (Stocco et al. 2020) and a Gaussian density
of six global image statistics; a frame is in distribution when it passes both. The script also
prints what the autoencoder alone (the gate before format version 2) says.

Frames: the udacity-dev set (1,500 consecutive 640x480 dashcam frames of the Udacity challenge, MIT
licence, via the DeepXplore repository): ``--frames`` or UDACITY_DEV_FRAMES, else
``../shared/data/udacity-dev/frames`` beside the repository. Frames ``--train`` (default 0-999, in
recording order) train the gate unless ``--gate`` gives a saved one; frames ``--held-out`` (default
1200-1499, 10 s after the last training frame: neighbouring frames are near duplicates) are the
held-out set, read at ``--size`` (area averaging). Every weather transform of the registry (kind
"weather") is applied at severities 0.1, ..., 1.0, each held-out frame with its own seed.

Prints the in-distribution share per transform and severity, the median score / threshold (the gate's
continuous measure: above 1 is out), the in-distribution share for the autoencoder alone,
whether each transform meets the goal and its largest drop between neighbouring severities. Options:
``--transition`` adds, for each transform whose rate drops by more than 30 points within one step of
0.1, that step at 0.02 resolution; ``--all`` every registered transform at 0.25/0.5/0.75/1.0 (the
learned gate's table in docs/realism.md); ``--plot`` writes the curve as a PNG line chart; ``--sheet`` writes a contact sheet of the mutants just in
and just out of distribution per weather transform; ``--write-docs`` writes the tables into
docs/weather.md and (with ``--all``) docs/realism.md between their markers. The last line is every
figure as one JSON object. About 10 minutes on 2 shared, loaded cores (training the gate: 2-3 of them;
``--all`` about 10 more).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
SEVERITIES = tuple(round(0.1 * i, 1) for i in range(11))
LEVELS = (0.25, 0.5, 0.75, 1.0)
HOW_TO_GET = ("weather_realism: udacity-dev frames not found; pass --frames DIR or set UDACITY_DEV_FRAMES (1,500 "
              "consecutive 640x480 front-camera frames of the Udacity self-driving challenge, MIT licence, as "
              "redistributed in the DeepXplore repository's driving test set, github.com/peikexin9/deepxplore)")


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
        if img is None:
            raise SystemExit(f"weather_realism: cannot read {f}")
        out[i] = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    return out


def span(text: str) -> slice:
    a, b = (int(v) for v in text.split(":"))
    return slice(a, b)


def mutate(name: str, sev: float, x: np.ndarray) -> np.ndarray:
    """Every frame transformed with its own seed (its own storm)."""
    from deeptest_iot.transforms import get

    t = get(name, severity=sev)
    return np.stack([t(x[i], seed=i) for i in range(len(x))])


def rates(gate, mutants: np.ndarray) -> dict:
    s = gate.scores(mutants)
    return {"in": float(np.mean(s.score <= gate.threshold)),
            "autoencoder": float(np.mean(s.reconstruction <= gate.threshold)),
            "density": float(np.mean(s.density <= gate.density_threshold)),
            "ratio": s.score / gate.threshold,  # <= 1: in distribution
            "median": float(np.median(s.score / gate.threshold)),
            "by_density": (s.density / gate.density_threshold) >= (s.reconstruction / gate.threshold)}


def largest_step(curve: list[float]) -> tuple[float, int]:
    drops = [a - b for a, b in zip(curve, curve[1:])]
    k = int(np.argmax(drops))
    return drops[k], k


def pct(v: float) -> str:
    return f"{100 * v:.0f}" if v in (0.0, 1.0) else f"{100 * v:.1f}"


# --- contact sheet ---------------------------------------------------------------------------------
def pick(cands: list[tuple], k: int = 3, apart: int = 25) -> list[tuple]:
    """Up to k candidates (already sorted best first) from frames at least ``apart`` frames apart."""
    out: list[tuple] = []
    for c in cands:
        if all(abs(c[2] - o[2]) >= apart for o in out):
            out.append(c)
        if len(out) == k:
            break
    return out


def sheet(path: Path, names, x: np.ndarray, found: dict, first: int, tile=(150, 200)) -> None:
    """Per weather transform: the 3 mutants just inside (score/threshold just below 1) and the 3 just
    outside, from different frames; each labelled with severity, frame number, score/threshold and the
    part that decided (d = density, r = reconstruction)."""
    th, tw = tile
    bar = np.zeros((th, 8, 3), np.uint8)
    rows = []
    for name in names:
        cands = found[name]  # (ratio, severity, frame index, by_density)
        inside = pick(sorted((c for c in cands if c[0] <= 1.0), key=lambda c: -c[0]))
        outside = pick(sorted((c for c in cands if c[0] > 1.0), key=lambda c: c[0]))
        tiles = []
        for group in (inside, outside):
            for j in range(3):
                if j >= len(group):
                    t = np.full((th, tw, 3), 40, np.uint8)
                    cv2.putText(t, "none out" if group is outside else "none in", (10, th // 2), cv2.FONT_HERSHEY_SIMPLEX,
                                0.6, (255, 255, 255), 1, cv2.LINE_AA)
                    tiles.append(t)
                    continue
                ratio, sev, i, dens = group[j]
                img = mutate(name, sev, x[i:i + 1])[0]  # frame i with its own seed, as in the curve
                t = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
                label = f"{name} {sev:.1f} #{first + i} {ratio:.2f}{'d' if dens else 'r'}"
                cv2.rectangle(t, (0, 0), (tw, 16), (0, 0, 0), -1)
                cv2.putText(t, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
                tiles.append(t)
        rows.append(np.concatenate(tiles[:3] + [bar] + tiles[3:], axis=1))
    img = np.concatenate([np.concatenate([r, np.zeros((4, r.shape[1], 3), np.uint8)]) for r in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"contact sheet -> {path}")


# --- plot ------------------------------------------------------------------------------------------
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75))


def plot(path: Path, curve: dict, n_frames: int, size=(360, 560)) -> None:
    """A line chart (OpenCV, no plotting library) of % in distribution against severity, one line per
    weather transform, the 90% goal dashed and severity 0.5 marked."""
    h, w = size
    left, right, top, bottom = 52, 110, 30, 42
    img = np.full((h, w, 3), 255, np.uint8)
    px = lambda s: int(round(left + s * (w - left - right)))  # noqa: E731
    py = lambda v: int(round(top + (1.0 - v) * (h - top - bottom)))  # noqa: E731
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (150, 150, 150)
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        cv2.line(img, (left, py(v)), (px(1.0), py(v)), (230, 230, 230), 1)
        cv2.putText(img, f"{100 * v:.0f}", (left - 34, py(v) + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for s in SEVERITIES:
        cv2.putText(img, f"{s:.1f}", (px(s) - 9, h - bottom + 16), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for x0 in range(left, px(1.0), 10):  # the goal: 90% up to severity 0.5
        cv2.line(img, (x0, py(0.9)), (min(x0 + 5, px(0.5)), py(0.9)), grey, 1) if x0 < px(0.5) else None
    cv2.line(img, (px(0.5), top), (px(0.5), py(0.0)), grey, 1)
    cv2.rectangle(img, (left, top), (px(1.0), py(0.0)), (0, 0, 0), 1)
    for k, (name, ys) in enumerate(curve.items()):
        c = COLOURS[k % len(COLOURS)]
        pts = np.array([(px(s), py(v)) for s, v in zip(SEVERITIES, ys)], np.int32)
        cv2.polylines(img, [pts], False, c, 2, cv2.LINE_AA)
        for q in pts:
            cv2.circle(img, tuple(int(v) for v in q), 3, c, -1, cv2.LINE_AA)
        cv2.line(img, (px(1.0) + 12, top + 12 + 18 * k), (px(1.0) + 32, top + 12 + 18 * k), c, 2)
        cv2.putText(img, name, (px(1.0) + 38, top + 16 + 18 * k), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"% of {n_frames} held-out frames in distribution (learned gate)", (left, 18), font, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "severity", (px(0.5) - 25, h - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "goal", (left + 4, py(0.9) - 4), font, 0.35, grey, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[:, :, ::-1])
    print(f"plot -> {path}")


# --- docs ------------------------------------------------------------------------------------------
def replace_between(path: Path, tag: str, body: str) -> None:
    text = path.read_text(encoding="utf-8")
    pat = re.compile(rf"(<!-- {tag}:begin -->\n).*?(<!-- {tag}:end -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"weather_realism: no <!-- {tag}:begin --> ... <!-- {tag}:end --> markers in {path}")
    path.write_text(pat.sub(lambda m: m.group(1) + body + m.group(2), text), encoding="utf-8")
    print(f"wrote the table into {path}")


def weather_table(names, curve, auto, clean, clean_ae, median=None) -> str:
    head = "| transform | " + " | ".join(["clean"] + [f"{s:.1f}" for s in SEVERITIES[1:]]) + " |\n"
    head += "|---" * (len(SEVERITIES) + 1) + "|\n"
    rows = [f"| {n} | " + " | ".join([pct(clean)] + [pct(v) for v in curve[n][1:]]) + " |" for n in names]
    rows += [f"| {n}, autoencoder alone | " + " | ".join([pct(clean_ae)] + [pct(v) for v in auto[n][1:]]) + " |"
             for n in names]
    if median:
        rows += [f"| {n}, median score / threshold | " + " | ".join(f"{v:.2f}" for v in median[n]) + " |" for n in names]
    return head + "\n".join(rows) + "\n"


def all_table(table: dict) -> str:
    out = "| transform | " + " | ".join(f"{s}" for s in LEVELS) + " |\n" + "|---" * (len(LEVELS) + 1) + "|\n"
    for name, cells in table.items():
        out += f"| {name} | " + " | ".join(f"{pct(c['in'])} ({pct(c['autoencoder'])})" for c in cells) + " |\n"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default=None)
    ap.add_argument("--gate", default=None, help="a saved LearnedGate (.keras); otherwise one is trained")
    ap.add_argument("--save", default=None, help="where to save the trained gate")
    ap.add_argument("--train", type=span, default=span("0:1000"), help="training frames, first:end (default 0:1000)")
    ap.add_argument("--held-out", type=span, default=span("1200:1500"), help="held-out frames (default 1200:1500)")
    ap.add_argument("--size", default="240x320", help="HxW the frames are read and transformed at")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--transition", action="store_true", help="the steepest step of each curve at 0.02 resolution")
    ap.add_argument("--all", action="store_true", help="every registered transform at 0.25/0.5/0.75/1.0")
    ap.add_argument("--sheet", type=Path, default=None, help="write a contact sheet of mutants just in and just out")
    ap.add_argument("--plot", type=Path, default=None, help="write the curve as a PNG line chart")
    ap.add_argument("--write-docs", action="store_true", help="write the tables into docs/weather.md (and realism.md)")
    args = ap.parse_args()

    from deeptest_iot.engine.realism import LearnedGate
    from deeptest_iot.transforms import REGISTRY

    src = frames_dir(args.frames)
    if src is None:
        print(HOW_TO_GET, file=sys.stderr)
        return 2
    files = sorted(src.glob("*.jpg"))
    h, w = (int(v) for v in args.size.lower().split("x"))
    held_files = files[args.held_out]
    if not held_files:
        print(f"weather_realism: no held-out frames in {args.held_out} of {len(files)}", file=sys.stderr)
        return 2
    first = args.held_out.start or 0
    figures: dict = {"benchmark": "weather_realism", "size": args.size, "held_out": [first, first + len(held_files)]}
    if args.gate:
        gate = LearnedGate.load(args.gate)
        train = None
    else:
        train_files = files[args.train]
        train = load(train_files, (h, w))
        print(f"training the gate on frames {args.train.start or 0}-{(args.train.start or 0) + len(train) - 1} "
              f"({len(train)} at {args.size}, {args.epochs} epochs) ...", flush=True)
        t0 = time.perf_counter()
        gate = LearnedGate(seed=0).fit(train, epochs=args.epochs)
        figures["fit_seconds"] = round(time.perf_counter() - t0, 1)
        if args.save:
            gate.save(args.save)
    if gate.density is None:
        print("weather_realism: this gate file has no density (format version 1); train a new one", file=sys.stderr)
        return 2
    x = load(held_files, (h, w))
    clean = rates(gate, x)
    figures.update(threshold=gate.threshold, density_threshold=gate.density_threshold,
                   held_out_clean=clean["in"], held_out_clean_autoencoder=clean["autoencoder"])
    print(f"gate: reconstruction threshold {gate.threshold:.5f}, density threshold {gate.density_threshold:.3f} "
          f"(Mahalanobis, {gate.density['folds']} contiguous folds)")
    if train is not None:
        tr = rates(gate, train)
        figures["training_in_distribution"] = tr["in"]
        print(f"in distribution: training frames {pct(tr['in'])}% (autoencoder {pct(tr['autoencoder'])}%, "
              f"density {pct(tr['density'])}%)")
    print(f"in distribution: held-out clean frames {first}-{first + len(x) - 1}: {pct(clean['in'])}% "
          f"(autoencoder {pct(clean['autoencoder'])}%, density {pct(clean['density'])}%)")

    names = [n for n, spec in REGISTRY.items() if spec.kind == "weather"]
    curve = {n: [clean["in"]] for n in names}
    auto = {n: [clean["autoencoder"]] for n in names}
    median = {n: [clean["median"]] for n in names}
    found: dict = {n: [] for n in names}
    print(f"\n% of {len(x)} held-out frames ({args.size}) in distribution; severity 0 = the clean frames")
    print(f"{'severity':>8} " + " ".join(f"{n:>8}" for n in names))
    print(f"{0.0:>8.1f} " + " ".join(f"{pct(clean['in']):>8}" for _ in names), flush=True)
    for s in SEVERITIES[1:]:
        for n in names:
            r = rates(gate, mutate(n, s, x))
            curve[n].append(r["in"])
            auto[n].append(r["autoencoder"])
            median[n].append(r["median"])
            found[n] += [(float(v), s, i, bool(d)) for i, (v, d) in enumerate(zip(r["ratio"], r["by_density"]))]
        print(f"{s:>8.1f} " + " ".join(f"{pct(curve[n][-1]):>8}" for n in names), flush=True)
    print("median score / threshold (> 1: out of distribution):")
    for s_i, s in enumerate(SEVERITIES):
        print(f"{s:>8.1f} " + " ".join(f"{median[n][s_i]:>8.2f}" for n in names))
    print("autoencoder alone (the gate before):")
    for s_i, s in enumerate(SEVERITIES):
        print(f"{s:>8.1f} " + " ".join(f"{pct(auto[n][s_i]):>8}" for n in names))
    meets, steps = {}, {}
    for n in names:
        meets[n] = all(v >= 0.9 for v, s in zip(curve[n], SEVERITIES) if s <= 0.5)
        drop, k = largest_step(curve[n])
        steps[n] = (drop, SEVERITIES[k], SEVERITIES[k + 1])
        rise = max(b - a for a, b in zip(curve[n], curve[n][1:]))
        print(f"{n}: {'meets' if meets[n] else 'MISSES'} >= 90% in distribution up to severity 0.5; "
              f"{'monotone' if rise <= 0 else f'rises {100 * rise:.1f} points at most'}; at 1.0 "
              f"{pct(curve[n][-1])}%; largest drop {100 * drop:.0f} points ({SEVERITIES[k]:.1f} -> {SEVERITIES[k + 1]:.1f})")
    figures.update(curve={n: dict(zip((f"{s:.1f}" for s in SEVERITIES), (round(v, 4) for v in curve[n]))) for n in names},
                   autoencoder_alone={n: dict(zip((f"{s:.1f}" for s in SEVERITIES), (round(v, 4) for v in auto[n])))
                                      for n in names},
                   median_score_ratio={n: dict(zip((f"{s:.1f}" for s in SEVERITIES), (round(v, 3) for v in median[n])))
                                       for n in names},
                   meets_90_up_to_0_5=meets, largest_drop={n: round(v[0], 4) for n, v in steps.items()})

    fine_rows = {}
    if args.transition:
        print("\nsteepest steps at 0.02 resolution (% in distribution):")
        for n in names:
            drop, a, b = steps[n]
            if drop <= 0.3:
                continue
            levels = [round(a + 0.02 * k, 2) for k in range(6)]
            fine_rows[n] = {f"{s:.2f}": round(rates(gate, mutate(n, s, x))["in"], 4) for s in levels}
            print(f"  {n}: " + "  ".join(f"{s}: {pct(v)}" for s, v in fine_rows[n].items()), flush=True)
        figures["transition"] = fine_rows

    table = {}
    if args.all:
        print(f"\nevery transform, % in distribution at severity {', '.join(map(str, LEVELS))} "
              "(in brackets: autoencoder alone; density alone after the bar)")
        for name in REGISTRY:
            table[name] = [rates(gate, mutate(name, s, x)) for s in LEVELS]
            print(f"  {name:16s} " + " ".join(f"{pct(c['in']):>5} ({pct(c['autoencoder']):>5})" for c in table[name])
                  + " | " + " ".join(f"{pct(c['density']):>5}" for c in table[name]), flush=True)
        figures["all"] = {n: {str(s): {k: c[k] for k in ("in", "autoencoder", "density")} for s, c in zip(LEVELS, cells)}
                          for n, cells in table.items()}

    if args.plot:
        plot(args.plot, curve, len(x))
    if args.sheet:
        sheet(args.sheet, names, x, found, first)
    if args.write_docs:
        body = weather_table(names, curve, auto, clean["in"], clean["autoencoder"], median)
        if fine_rows:
            body += "\nSteepest steps at 0.02 resolution: " + "; ".join(
                f"{n} " + ", ".join(f"{s}: {pct(v)}" for s, v in row.items()) for n, row in fine_rows.items()) + ".\n"
        replace_between(DOCS / "weather.md", "weather-realism", body)
        if table:
            replace_between(DOCS / "realism.md", "learned-gate-table", all_table(table))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
