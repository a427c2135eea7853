"""Calibrate and measure the realism gate (deeptest_iot.engine.realism) on real dashcam frames.

Usage::

    python benchmarks/calibrate_realism.py [--data DIR] [--frames 300] [--chains 3000] [--detail]
        [--findings MODEL|sample] [--sheet docs/images/realism-sheet.jpg]
        [--pearson-sheet docs/images/realism-pearson.jpg] [--speed] [--learned] [--no-sweep]

Everything (``--detail --sheet ... --pearson-sheet ... --speed --learned``) takes about 15 minutes
on 2 cores; the parts alone take a few minutes each.

Reads a folder of real dashcam frames (default: the udacity-dev development set beside the
repository, ``../shared/data/udacity-dev``, or ``$DEEPTEST_DEV_DATA``); the project itself never
needs it. ``--frames`` frames spread evenly over the folder are resized to the working size
(``--size``, default 240x320, area averaging). Then it prints:

1. the similarity score of every registered transform at severities 0.1..1.0, per family and
   severity (5th percentile, median, share rejected by the default thresholds), and per transform;
2. random chains of 1-3 links with DeepTest's random parameters (``REGISTRY[name].random(rng)``,
   distinct names, at most one affine link, as the campaign draws them) and random 6-link chains
   (what issue 13 saw): acceptance per family, and issue 13's measure on the accepted mutants:
   the share whose plain Pearson correlation with the seed on a small grey copy is below 0.3
   (at 32x64, and at 24x32 and 60x80 to show the figure does not hinge on the copy's size); with
   ``--findings MODEL``, the same on the mutants whose steering answer moves by more than 0.1 rad
   (findings as the steering relation without labels would flag them); ``--pearson-sheet`` writes
   mutants on which plain Pearson correlation and the gate disagree;
3. with ``--sheet``, a contact sheet of mutants just below and just above each family's threshold;
4. with ``--speed``, similarity throughput at 160x320 and 66x200, against the sample steering
   model's inference throughput in the same run (timings on a shared machine are indicative);
5. with ``--learned``, the SelfOracle-style autoencoder gate: trained on one contiguous block of
   frames, the in-distribution rate of held-out clean frames and of transformed held-out frames
   per transform at severities 0.25/0.5/0.75/1.0.

The last line is every figure as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from deeptest_iot.engine.realism import DEFAULT_THRESHOLDS, FAMILIES, RealismGate, chain_families, similarity
from deeptest_iot.transforms import REGISTRY, Chain, get

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "udacity-dev"
SEVERITIES = tuple(round(0.1 * k, 1) for k in range(1, 11))
FINDING_DELTA = 0.1  # rad: the steering relation's default delta without labels
HOW_TO_GET = """\
No frames found in {path}.
This benchmark needs a folder of real front-camera dashcam frames (JPEG or PNG, any size; a few
hundred are enough). The development set used for docs/realism.md is 1,500 consecutive 640x480
frames of the Udacity self-driving car challenge data (MIT licence), as redistributed in the
DeepXplore repository's driving test set (github.com/peikexin9/deepxplore, Driving/). Put such
frames in a folder (optionally under frames/) and run:
    python benchmarks/calibrate_realism.py --data /path/to/folder
or set DEEPTEST_DEV_DATA=/path/to/folder."""


# --- data ------------------------------------------------------------------------------------------
def frame_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    sub = folder / "frames"
    root = sub if sub.is_dir() else folder
    return sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def read_frames(files, size) -> np.ndarray:
    h, w = size
    out = np.empty((len(files), h, w, 3), np.uint8)
    for i, p in enumerate(files):
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if im is None:
            raise SystemExit(f"cannot read image {p}")
        out[i] = cv2.cvtColor(cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return out


def spread(files, n: int) -> list:
    if n >= len(files):
        return list(files)
    return [files[i] for i in np.linspace(0, len(files) - 1, n).round().astype(int)]


# --- chains ----------------------------------------------------------------------------------------
def random_chain(rng: np.random.Generator, links: int) -> Chain:
    """``links`` distinct transforms with DeepTest's random parameters, at most one affine."""
    names = list(REGISTRY)
    geometric = {n for n in names if REGISTRY[n].kind == "geometric"}
    picked: list[str] = []
    for _ in range(links):
        pool = [n for n in names if n not in picked and not (n in geometric and geometric & set(picked))]
        picked.append(pool[int(rng.integers(len(pool)))])
    return Chain([REGISTRY[n].random(rng) for n in picked])


def apply_each(frames, chains, rng) -> tuple[np.ndarray, np.ndarray]:
    """Each chain applied to one random frame, with its own random-pattern seed."""
    idx = rng.integers(0, len(frames), len(chains))
    out = np.empty((len(chains), *frames.shape[1:]), np.uint8)
    for k, (c, i) in enumerate(zip(chains, idx)):
        out[k] = c(frames[i], seed=int(rng.integers(2**31 - 1)))
    return idx, out


def family_label(chain) -> str:
    fams = chain_families(chain)
    if not fams:
        return "identity"
    if len(fams) == 1:
        return next(iter(fams))
    return "+".join(f for f in FAMILIES if f in fams)


# --- 1. severity sweep -----------------------------------------------------------------------------
def sweep(frames, gate: RealismGate, detail: bool) -> dict:
    rows = {}
    for name, spec in REGISTRY.items():
        for sev in SEVERITIES:
            t = get(name, severity=sev)
            r = gate(frames, t(frames, seed=1), t)
            rows[(name, sev)] = (spec.kind, r.score, r.ok)
    print("\n== 1. every transform at severity 0.1..1.0 on every frame: score p5 / median, % rejected")
    print(f"{'family':12s} " + " ".join(f"{s:>14.1f}" for s in SEVERITIES))
    table = {}
    for fam in FAMILIES:
        cells = []
        for sev in SEVERITIES:
            sc = np.concatenate([v[1] for (n, s), v in rows.items() if s == sev and v[0] == fam])
            ok = np.concatenate([v[2] for (n, s), v in rows.items() if s == sev and v[0] == fam])
            table[f"{fam}@{sev}"] = {"p5": float(np.percentile(sc, 5)), "median": float(np.median(sc)),
                                    "rejected": float(1 - ok.mean())}
            cells.append(f"{np.percentile(sc, 5):4.2f}/{np.median(sc):4.2f} {100 * (1 - ok.mean()):3.0f}%")
        print(f"{fam:12s} " + " ".join(f"{c:>14s}" for c in cells))
    if detail:
        print(f"\n{'transform':16s} " + " ".join(f"{s:>14.1f}" for s in SEVERITIES))
        for name in REGISTRY:
            cells = [f"{np.percentile(rows[(name, s)][1], 5):4.2f}/{np.median(rows[(name, s)][1]):4.2f} "
                     f"{100 * (1 - rows[(name, s)][2].mean()):3.0f}%" for s in SEVERITIES]
            print(f"{name:16s} " + " ".join(f"{c:>14s}" for c in cells))
    per_transform = {f"{n}@{s}": {"p5": float(np.percentile(v[1], 5)), "rejected": float(1 - v[2].mean())}
                     for (n, s), v in rows.items()}
    return {"family_severity": table, "transform_severity": per_transform}


# --- 2. random chains ------------------------------------------------------------------------------
def chain_study(frames, gate: RealismGate, n: int, rng, label: str, links, model=None,
                pearson_sheet: Path | None = None) -> dict:
    chains = [random_chain(rng, int(rng.integers(links[0], links[1] + 1))) for _ in range(n)]
    idx, mutants = apply_each(frames, chains, rng)
    seeds = frames[idx]
    r = gate(seeds, mutants, chains)
    finding = None
    if model is not None:  # findings: the steering answer moved by more than the relation's delta
        finding = np.abs(np.ravel(model.predict(mutants)) - np.ravel(model.predict(seeds))) > FINDING_DELTA
    sim = {size: similarity(seeds, mutants, chains, size) for size in ((32, 64), (24, 32), (60, 80))}
    fams = [family_label(c) for c in chains]
    geo = np.array(["geometric" in chain_families(c) for c in chains])
    print(f"\n== 2. {n} random chains of {links[0]}-{links[1]} links ({label}): score p1/p5/median, % rejected")
    groups = {}
    for fam in sorted(set(fams), key=lambda f: (f.count("+"), f)):
        sel = np.array([f == fam for f in fams])
        if sel.sum() < 20:
            continue
        sc = r.score[sel]
        groups[fam] = {"n": int(sel.sum()), "p1": float(np.percentile(sc, 1)), "p5": float(np.percentile(sc, 5)),
                       "median": float(np.median(sc)), "rejected": float(1 - r.ok[sel].mean())}
        print(f"  {fam:34s} n={sel.sum():5d}  {np.percentile(sc, 1):5.2f} {np.percentile(sc, 5):5.2f} "
              f"{np.median(sc):5.2f}  {100 * (1 - r.ok[sel].mean()):5.1f}%")
    out = {"n": n, "links": list(links), "rejected": float(1 - r.ok.mean()), "families": groups}
    print(f"  all: {100 * (1 - r.ok.mean()):.1f}% rejected")
    parts = [("without a geometric link", ~geo), ("with a geometric link (warp undone)", geo)]
    if finding is not None:
        print(f"  findings (|steering change| > {FINDING_DELTA} rad, no labels): "
              f"{finding.sum()} of {n}, {(finding & r.ok).sum()} of them accepted by the gate")
        parts += [("findings without a geometric link", ~geo & finding),
                  ("findings with a geometric link", geo & finding)]
    for part, sel in parts:
        acc = sel & r.ok
        if not sel.any():
            continue
        before = {s: float((v.pearson[sel] < 0.3).mean()) for s, v in sim.items()}
        after = {s: float((v.pearson[acc] < 0.3).mean()) if acc.any() else 0.0 for s, v in sim.items()}
        gate_low = float((r.score[acc] < 0.3).mean()) if acc.any() else 0.0
        print(f"  {part}: {sel.sum()} mutants, {acc.sum()} accepted. Plain Pearson < 0.3 (issue 13's measure) "
              f"before the gate / among accepted: " + ", ".join(
                  f"{s[0]}x{s[1]} {100 * before[s]:.1f}% / {100 * after[s]:.1f}%" for s in sim)
              + f"; gate score < 0.3 among accepted: {100 * gate_low:.1f}%")
        key = ("findings_" if part.startswith("findings") else "") + \
            ("geometric" if "with a" in part else "nongeometric")
        out[key] = {"n": int(sel.sum()), "accepted": int(acc.sum()),
                    "pearson_below_0.3_before": {f"{s[0]}x{s[1]}": v for s, v in before.items()},
                    "pearson_below_0.3_accepted": {f"{s[0]}x{s[1]}": v for s, v in after.items()},
                    "score_below_0.3_accepted": gate_low}
    if pearson_sheet is not None:
        plain = sim[(32, 64)].pearson
        write_pearson_sheet(pearson_sheet, seeds, mutants, chains, plain, r.score, rng)
    return out


def write_pearson_sheet(path: Path, seeds, mutants, chains, plain, score, rng, per_side: int = 3) -> None:
    """Why the gate does not threshold plain Pearson correlation: left, mutants it calls
    unrecognisable (< 0.3) that still show the scene; right, near-flat mutants it calls similar."""
    left = np.flatnonzero((plain < 0.3) & (score >= 0.6))
    right = np.flatnonzero((plain >= 0.8) & (score < 0.25))
    tiles = []
    for ids in (left, right):
        pick = list(rng.choice(ids, min(per_side, ids.size), replace=False)) if ids.size else []
        for i in pick:
            tiles.append(_tile(seeds[i], mutants[i], f"plain Pearson {plain[i]:.2f}, gate score {score[i]:.2f}\n"
                                                     f"{chains[i].name[:44]}"))
        tiles += [np.full((108, 226, 3), 255, np.uint8)] * (per_side - len(pick))
    parts = []
    for k, t in enumerate(tiles):
        parts.append(t)
        if k < len(tiles) - 1:
            parts.append(np.full((t.shape[0], 14 if k == per_side - 1 else 4, 3), 0 if k == per_side - 1 else 255,
                                 np.uint8))
    img = np.concatenate(parts, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"  Pearson sheet {path}: {left.size} mutants with plain Pearson < 0.3 but gate score >= 0.6, "
          f"{right.size} with plain Pearson >= 0.8 but gate score < 0.25")


# --- 3. contact sheet ------------------------------------------------------------------------------
def _tile(seed, mut, text, w=112) -> np.ndarray:
    h = int(round(w * seed.shape[0] / seed.shape[1]))
    a = cv2.resize(seed, (w, h), interpolation=cv2.INTER_AREA)
    b = cv2.resize(mut, (w, h), interpolation=cv2.INTER_AREA)
    body = np.concatenate([a, np.full((h, 2, 3), 255, np.uint8), b], 1)
    bar = np.full((24, body.shape[1], 3), 255, np.uint8)
    for j, line in enumerate(text.split("\n")[:2]):
        cv2.putText(bar, line[:44], (2, 10 + j * 11), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, body], 0)


def family_chain(rng: np.random.Generator, fam: str) -> Chain:
    """1-3 distinct transforms of one family with random parameters; a geometric chain is one warp,
    at a random severity half the time so that the far end of DeepTest's sweeps (zoom x6) shows."""
    names = [n for n in REGISTRY if REGISTRY[n].kind == fam]
    if fam == "geometric":
        name = names[int(rng.integers(len(names)))]
        if rng.random() < 0.5:
            return Chain([get(name, severity=float(rng.choice(SEVERITIES)))])
        return Chain([REGISTRY[name].random(rng)])
    k = int(rng.integers(1, min(3, len(names)) + 1))
    return Chain([REGISTRY[n].random(rng) for n in rng.choice(names, k, replace=False)])


def contact_sheet(path: Path, frames, gate: RealismGate, n: int, rng, per_side: int = 3, band: float = 0.1) -> dict:
    """One row per family, from ``n`` random chains of that family only: ``per_side`` mutants just
    below its threshold (left of the black bar) and just above (right); seed | mutant in each pair."""
    rows, counts = [], {}
    for fam in FAMILIES:
        thr = gate.thresholds[fam]
        chains = [family_chain(rng, fam) for _ in range(n)]
        idx, mutants = apply_each(frames, chains, rng)
        r = gate(frames[idx], mutants, chains)
        below = np.flatnonzero((r.score < thr) & (r.score >= thr - band))
        above = np.flatnonzero((r.score >= thr) & (r.score < thr + band))
        lowest = not below.size and not (r.score < thr).any()
        if not below.size:  # nothing of this family falls that low: show its lowest scores instead
            below = np.flatnonzero(r.score < thr) if not lowest else np.argsort(r.score)[:per_side]
        if not above.size:  # e.g. geometric: a warp that keeps enough scores near 1
            above = np.argsort(r.score)[np.sort(r.score) >= thr][:per_side * 4]
        if lowest:  # show the next lowest as "above", not the same mutants twice
            above = np.argsort(r.score)[per_side:per_side * 5]
        counts[fam] = {"chains": n, "rejected": float(1 - r.ok.mean()), "below_band": int(below.size),
                       "above_band": int(above.size)}
        tiles = []
        for side, ids in (("below", below), ("above", above)):
            pick = sorted(rng.choice(ids, min(per_side, ids.size), replace=False), key=lambda i: r.score[i]) \
                if ids.size else []
            for i in pick:
                name = chains[i].name if len(chains[i].name) <= 44 else chains[i].name[:41] + "..."
                what = "lowest, " if side == "below" and lowest else ""
                tiles.append(_tile(frames[idx[i]], mutants[i],
                                   f"{fam} (threshold {thr:.2f}): {what}score {r.score[i]:.2f}\n{name}"))
            while len(tiles) < (per_side if side == "below" else 2 * per_side):
                tiles.append(np.full((108, 226, 3), 255, np.uint8))
        parts = []
        for k, t in enumerate(tiles):
            parts.append(t)
            if k < len(tiles) - 1:
                parts.append(np.full((t.shape[0], 14 if k == per_side - 1 else 4, 3),
                                     0 if k == per_side - 1 else 255, np.uint8))
        rows += [np.concatenate(parts, 1), np.full((6, sum(p.shape[1] for p in parts), 3), 255, np.uint8)]
    sheet = np.concatenate(rows[:-1], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"\n== 3. contact sheet {path} ({sheet.shape[1]}x{sheet.shape[0]}, {path.stat().st_size // 1024} kB): per "
          f"family, {n} random chains of that family only; left of the black bar just below its threshold, "
          "right just above")
    for fam, c in counts.items():
        print(f"  {fam:12s} {100 * c['rejected']:5.1f}% of its chains rejected")
    return counts


# --- 4. speed --------------------------------------------------------------------------------------
def speed(frames, seconds: float = 3.0) -> dict:
    from deeptest_iot import sample_models
    from deeptest_iot.model.core import load_model

    gate = RealismGate()
    rng = np.random.default_rng(0)
    out = {}
    print("\n== 4. similarity throughput (images/s, batches of 256; a shared 2-core machine: indicative)")
    for h, w in ((160, 320), (66, 200)):
        seeds = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames[:256]])
        while len(seeds) < 256:
            seeds = np.concatenate([seeds, seeds])[:256]
        for part, chain in (("no warp", get("fog", severity=0.5)), ("warp undone", get("rotation", severity=0.5))):
            # one distinct chain per mutant, as in a campaign
            chains = [Chain([chain, get("brightness", delta=int(d))]) for d in rng.integers(-21, 21, len(seeds))]
            mutants = chain(seeds, seed=0)
            gate(seeds, mutants, chains)
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                gate(seeds, mutants, chains)
                n += len(seeds)
            rate = n / (time.perf_counter() - start)
            out[f"{h}x{w} {part}"] = rate
            print(f"  {h}x{w} {part:12s} {rate:10.0f} images/s")
    model = load_model(sample_models.path("dave2_steering"))
    mrate = model.throughput(seconds=seconds)
    out["model dave2_steering"] = mrate
    h, w = model.card.input_size
    print(f"  sample model dave2_steering inference at its input {h}x{w}: {mrate:.0f} images/s")
    for k in list(out):
        if k.startswith("66x200"):
            out[f"ratio {k} / model"] = out[k] / mrate
            print(f"  ratio {k} / model: {out[k] / mrate:.1f}x")
    return out


# --- 5. learned gate -------------------------------------------------------------------------------
def learned(files, size, train_block: int, test_block: int, epochs: int, seed: int) -> dict:
    from deeptest_iot.engine.realism import LearnedGate

    n = len(files)
    train = read_frames(files[:train_block], size)
    test = read_frames(files[n - test_block:], size)
    print(f"\n== 5. learned gate: trained on frames 0..{train_block - 1}, held out {n - test_block}..{n - 1} "
          f"(a contiguous block {n - test_block - train_block} frames later)")
    t0 = time.perf_counter()
    gate = LearnedGate(seed=seed).fit(train, epochs=epochs)
    fit_s = time.perf_counter() - t0
    train_rate = float(gate.in_distribution(train).mean())
    clean = float(gate.in_distribution(test).mean())
    print(f"  fit {fit_s:.0f} s; threshold {gate.threshold:.5f} (99th percentile of training error); "
          f"in distribution: training frames {100 * train_rate:.1f}%, held-out clean frames {100 * clean:.1f}%")
    rates = {}
    levels = (0.25, 0.5, 0.75, 1.0)
    print(f"  {'transform':16s} " + " ".join(f"{s:>6}" for s in levels) + "   (% of held-out frames in distribution)")
    for name in REGISTRY:
        row = []
        for sev in levels:
            t = get(name, severity=sev)
            v = float(gate.in_distribution(t(test, seed=1)).mean())
            rates[f"{name}@{sev}"] = v
            row.append(f"{100 * v:6.1f}")
        print(f"  {name:16s} " + " ".join(row))
    return {"fit_seconds": fit_s, "threshold": gate.threshold, "train_in_distribution": train_rate,
            "heldout_clean_in_distribution": clean, "transformed_in_distribution": rates}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("DEEPTEST_DEV_DATA", DEFAULT_DATA)))
    ap.add_argument("--frames", type=int, default=300, help="frames spread evenly over the folder")
    ap.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"), help="working size")
    ap.add_argument("--chains", type=int, default=3000, help="random chains of 1-3 links (and as many of 6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detail", action="store_true", help="also print the sweep per transform")
    ap.add_argument("--sheet", type=Path, help="write the contact sheet (JPEG) here")
    ap.add_argument("--sheet-chains", type=int, default=1500, help="random chains per family for the sheet")
    ap.add_argument("--pearson-sheet", type=Path, help="write the sheet of plain-Pearson failures (JPEG) here")
    ap.add_argument("--speed", action="store_true", help="measure similarity throughput")
    ap.add_argument("--findings", metavar="MODEL",
                    help="also judge findings: mutants whose steering answer moves by more than 0.1 rad under "
                         "MODEL (a steering model file with its card beside it, or 'sample' for dave2_steering)")
    ap.add_argument("--learned", action="store_true", help="train and measure the learned gate")
    ap.add_argument("--no-sweep", action="store_true", help="skip parts 1 and 2")
    ap.add_argument("--train-frames", type=int, help="learned gate: first N frames to train on (default 2/3)")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()

    files = frame_files(args.data)
    if not files:
        print(HOW_TO_GET.format(path=args.data))
        return 0
    size = tuple(args.size)
    frames = read_frames(spread(files, args.frames), size)
    gate = RealismGate()
    print(f"{len(frames)} frames from {args.data} at {size[0]}x{size[1]}; thresholds {dict(gate.thresholds)}, "
          f"copies {gate.size[0]}x{gate.size[1]}")
    figures: dict = {"frames": len(frames), "size": list(size), "thresholds": dict(DEFAULT_THRESHOLDS)}
    rng = np.random.default_rng(args.seed)
    if not args.no_sweep:
        figures["sweep"] = sweep(frames, gate, args.detail)
        model = None
        if args.findings:
            from deeptest_iot import sample_models
            from deeptest_iot.model.core import load_model

            path = sample_models.path("dave2_steering") if args.findings == "sample" else Path(args.findings)
            model = load_model(path)
            print(f"proxy findings: steering model {path}")
        figures["chains_1_3"] = chain_study(frames, gate, args.chains, rng, "as the campaign draws them", (1, 3), model,
                                            args.pearson_sheet)
        figures["chains_6"] = chain_study(frames, gate, args.chains, rng, "issue 13's length", (6, 6), model)
    if args.sheet:
        figures["sheet"] = contact_sheet(args.sheet, frames, gate, args.sheet_chains, rng)
    if args.speed:
        figures["speed"] = speed(frames)
    if args.learned:
        figures["learned"] = learned(files, size, train_block=len(files) * 2 // 3,
                                     test_block=len(files) // 5, epochs=args.epochs, seed=args.seed)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
