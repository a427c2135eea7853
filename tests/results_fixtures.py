"""Campaign output folders for the report, JUnit, compare and export tests, written by the project's
own code so that those tests read exactly the format a campaign writes (docs/results-format.md).

A test describes the findings it wants (``steering_finding``, ``detection_finding``,
``classification_finding``: the seed, the transform chain and the model's answers) and the inputs
tried per chain; ``make_run`` then does what a campaign does with them:

- chains are real ``Chain``\\ s (``get(name, severity=...)`` per link, ``seeded(case)``), and each
  finding's transformed frame is the chain applied to its seed frame;
- the run's oracle (``task.oracle_for`` with the ``CampaignOptions``' relation options) judges each
  finding; the violation a test asks for is checked against the oracle's (a steering ``after`` not
  given is worked out so that the oracle finds exactly that violation);
- ``finding_record`` and ``FindingsWriter`` write findings.jsonl and the PNG pairs;
- ``CampaignStats`` counts every input tried, ``make_tracker`` and ``CoverageTracker`` track coverage
  on a tiny model (``LAYERS``) fed activations built to reach the coverage a test asks for;
- ``build_summary`` (with ``model_info`` and the campaign record a ``Campaign`` makes) and
  ``write_summary`` write summary.json.

A folder in another shape (an older writer, a tampered file) is made by editing one written this
way: ``edit_findings``, ``edit_summary``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import cv2
import numpy as np

H, W = 60, 120  # seed frames
LAYERS = {"conv2d": 6, "dense": 4}  # the tiny model whose coverage the runs track: 10 neurons
MODEL = {"path": "models/dave2.keras", "name": "dave2_steering", "units": "radians",
         "fingerprint": "sha256:" + "ab" * 32}
# The campaign's options (CampaignOptions); generated seeds carry steering labels, so the steering
# relation judges by its labelled rule: (label - after)^2 > lambda * MSE_orig = 5 * 0.02 = 0.1.
# save_images: these folders' seed frames are the fixtures' own drawings, not a seed source a finding's
# recipe could be rendered from again, so their images are kept as a --save-images run keeps them.
OPTIONS = {"seed": 0, "strategy": "deeptest", "budget": 200, "n_seeds": 10,
           "transforms": ("rain", "fog", "snow", "hflip"), "lam": 5.0, "delta": 0.1, "save_images": True}
SEED_MSE = 0.02  # the model's MSE on the labelled seeds (MSE_orig), as a campaign measures it
COVERAGE = {"nc:0.5": 0.6, "kmnc:10": 0.3}  # criterion -> coverage to reach (None: whatever the inputs give)
TRIED = {"rain": 80, "fog": 60, "hflip": 60}
DURATION_S = 3.5


def frame(i: int) -> np.ndarray:
    """Seed frame ``i``: sky, road and a lane line whose position depends on ``i``."""
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 2] = (120, 160, 220)
    img[H // 2:] = (70, 70, 70)
    x = 20 + (i * 13) % (W - 40)
    cv2.line(img, (x, H - 1), (W // 2, H // 2), (255, 255, 255), 2)
    return img


def make_chain(transform, severity: float, seed: int):
    """A seeded Chain: a Chain or Transform as given, or "+"-joined names each at ``severity``."""
    from deeptest_iot.transforms import Chain, Transform, get

    if isinstance(transform, Transform):
        transform = Chain([transform])
    if not isinstance(transform, Chain):
        transform = Chain([get(name, severity=severity) for name in str(transform).split("+")])
    return transform.seeded(seed)


@dataclass
class Finding:
    """One input that breaks the relation, as a test describes it; ``make_run`` has it judged and written."""

    task: str
    case: int
    chain: Any
    before: Any
    after: Any
    label: Any
    violation: float | None  # what the oracle must find (None: whatever it finds)
    coverage_gain: int = 0

    @property
    def name(self) -> str:
        return self.chain.name


def steering_finding(i: int, transform="rain", violation: float | None = 0.3, severity: float = 0.5,
                     label: float | None = 0.05, before: float = 0.05, after: float | None = None) -> Finding:
    """Seed ``i`` (label ``label``; None: unlabelled) on which the model answered ``before`` and, on the
    transformed frame, ``after``. Without ``after``, it is chosen above what the relation expects so
    that the oracle finds ``violation``: label + sqrt(violation + lambda * MSE_orig) for a labelled seed,
    before + violation + delta for an unlabelled one (both negated first under a mirroring chain)."""
    return Finding("steering", i, make_chain(transform, severity, i), float(before),
                   None if after is None else float(after), label, violation)


DETECTIONS_BEFORE = {"boxes": [[10, 10, 40, 30], [60, 20, 90, 50]], "scores": [0.9, 0.8], "classes": [0, 1]}
DETECTIONS_AFTER = {"boxes": [[12, 11, 41, 31]], "scores": [0.7], "classes": [0]}


def detection_finding(i: int, transform="fog", violation: float | None = 1.0, severity: float = 0.4,
                      before: dict = DETECTIONS_BEFORE, after: dict = DETECTIONS_AFTER) -> Finding:
    """Seed ``i`` with detections ``before``; ``after`` on the transformed frame. By default the second
    box (a confident "1") vanishes under fog: violation 1."""
    return Finding("detection", i, make_chain(transform, severity, i), before, after, None, violation)


def classification_finding(i: int, transform="fog", before=(0.05, 0.9, 0.03, 0.02), after=(0.1, 0.2, 0.1, 0.6),
                           label: int | None = None, severity: float = 0.5, violation: float | None = None) -> Finding:
    """Seed ``i`` (class label ``label``) with class probabilities ``before`` and ``after``."""
    return Finding("classification", i, make_chain(transform, severity, i), np.asarray(before, float),
                   np.asarray(after, float), label, violation)


def default_findings() -> list[Finding]:
    return [steering_finding(i, t, v) for i, (t, v) in enumerate([("rain", 0.3), ("rain", 0.8), ("fog", 0.1),
                                                                  ("hflip", 0.5)])]


# -- the run --------------------------------------------------------------------------------------

def make_run(root, findings: list[Finding] | None = None, tried: dict[str, int] | None = None, *,
             model: dict | None = None, options: dict | None = None, coverage: dict | None = None,
             status: str = "complete", seed_mse: float | None = SEED_MSE, duration_s: float = DURATION_S,
             **summary_overrides) -> Path:
    """Write a campaign folder at ``root`` and return its path.

    ``findings``: what breaks the relation (default: two rain, one fog, one hflip finding); ``tried``:
    inputs tried per chain name (default TRIED), of which the findings are the failures. ``model``:
    changes to MODEL (``name``, ``task``, ``classes``, ``layers``...); ``options``: CampaignOptions
    values over OPTIONS; ``coverage``: criterion -> target coverage (default COVERAGE; the campaign's
    ``--coverage`` is its keys); ``status``: "complete" or "running"; ``seed_mse``: the MSE_orig a
    campaign measured on labelled seeds (None: unlabelled seeds). Keyword arguments left over
    replace summary keys as another version of the tool or another machine would have written them
    (a dict is merged into the written one), e.g. ``tool={"version": "0.2.0"}``.
    """
    from deeptest_iot.engine.options import CampaignOptions
    from deeptest_iot.engine.gates import Gates
    from deeptest_iot.engine.summary import build_summary, campaign_record, model_info
    from deeptest_iot.engine.tracking import make_tracker
    from deeptest_iot.model.card import ModelCard
    from deeptest_iot.results.writer import CampaignStats, FindingsWriter, finding_record, write_summary
    from deeptest_iot.tasks import TASKS
    from deeptest_iot.transforms import REGISTRY

    root = Path(root)
    findings = default_findings() if findings is None else list(findings)
    tried = dict(TRIED if tried is None else tried)
    coverage = dict(COVERAGE if coverage is None else coverage)
    info = {**MODEL, **(model or {})}
    task = info.get("task") or (findings[0].task if findings else "steering")
    layers = dict(info.pop("layers", LAYERS))
    card = ModelCard(task=task, input_size=(H // 2, W // 2), classes=tuple(info.pop("classes", ())),
                     units=info.pop("units"))
    mut = SimpleNamespace(path=info["path"], name=info["name"], fingerprint=info["fingerprint"], card=card,
                          layer_sizes=layers, neurons=sum(layers.values()), supports_coverage=True, kind="keras")
    opts = CampaignOptions(**{**OPTIONS, "coverage": tuple(coverage), "out": str(root), **(options or {})})

    # The oracle and the campaign record, as a Campaign makes them (engine/campaign.py).
    relation = opts.relation_options(task)
    if "mse_orig" in TASKS[task].oracle_options and relation.get("mse_orig") is None:
        relation["mse_orig"] = seed_mse  # measured on the labelled seeds
    oracle = TASKS[task].oracle_for(card, **relation)
    rows = _coverage_rows(layers, coverage)
    tracker, profile_source = make_tracker(mut, opts.coverage, None, lambda: _profile_rows(layers))
    if profile_source is not None and opts.profile:  # a campaign would have loaded that file
        profile_source = opts.profile
    transforms = list(opts.transforms) if opts.transforms else list(REGISTRY)  # none given: all
    campaign = campaign_record(opts, transforms=transforms, seeds_used=f"generated:{opts.n_seeds}", seeds_notes=[],
                               frame_size=(H, W), profile_source=profile_source, relation=oracle.config(),
                               seed_failures={"known": seed_mse is not None, "count": 0, "seeds": opts.n_seeds,
                                              "policy": opts.failing_seeds, "ids": []},
                               gates=Gates(opts.realism).describe())

    # The findings: judged by the oracle, written by the writer.
    writer = FindingsWriter(root, save_images=opts.save_images)
    gates = Gates(opts.realism)
    records, pairs, violations = [], [], {}
    for f in findings:
        verdicts = _judge(oracle, f)
        if not verdicts.failed[0]:
            raise ValueError(f"finding {f.case} ({f.name}) does not break the relation: {verdicts.details[0]}")
        if f.violation is not None and not math.isclose(verdicts.violation[0], f.violation, abs_tol=1e-9):
            raise ValueError(f"finding {f.case} ({f.name}): the oracle finds violation {verdicts.violation[0]!r}, "
                             f"not {f.violation!r}")
        seed = frame(f.case)
        mutant = f.chain(seed[None])[0]
        realism = gates(seed[None], mutant[None], [f.chain]).record([0])[0]  # as a campaign records it
        records.append(finding_record(verdicts, 0, case=f.case, seed_id=f"scene-{opts.seed}-{f.case}",
                                      seed_index=f.case, transform=f.name, chain=f.chain.to_json(),
                                      severity=f.chain.severity, coverage_gain=f.coverage_gain, **realism))
        pairs.append((seed, mutant))
        violations[id(f)] = float(verdicts.violation[0])
    writer.append(records, pairs)

    # The running figures: every input tried, the findings among them.
    for name in tried:
        links = set(name.split("+"))
        if not links <= set(transforms):
            raise ValueError(f"chain {name!r} uses transforms the campaign was not given ({transforms})")
    unknown = sorted({f.name for f in findings} - set(tried))
    if unknown:
        raise ValueError(f"findings made by chains with no inputs tried: {unknown}")
    stats = CampaignStats()
    names, severities, failed, violation, seed_ids, families, ids = [], [], [], [], [], [], []
    fid = {id(f): f"f{k:06d}" for k, f in enumerate(findings)}
    for name, n in tried.items():
        mine = [f for f in findings if f.name == name]
        if len(mine) > n:
            raise ValueError(f"{len(mine)} findings of {name!r} but only {n} inputs tried")
        names += [name] * n
        severities += [f.chain.severity for f in mine] + [(k % 5 + 0.5) / 5 for k in range(n - len(mine))]
        failed += [True] * len(mine) + [False] * (n - len(mine))
        violation += [violations[id(f)] for f in mine] + [0.0] * (n - len(mine))
        seed_ids += [f"scene-{opts.seed}-{f.case}" for f in mine] + [f"scene-{opts.seed}-x"] * (n - len(mine))
        families += [f.chain.family for f in mine] + ["-"] * (n - len(mine))
        ids += [fid[id(f)] for f in mine]
    counted = dict(seed_ids=seed_ids, families=families, finding_ids=ids)
    if tracker is not None and names:  # the seeds' coverage, then the campaign's inputs
        half = (len(rows) + 1) // 2
        _update(tracker, layers, rows[:half])
        stats.record_growth(tracker.coverage())
        stats.add(names, severities, np.array(failed, bool), np.array(violation, float), **counted)
        _update(tracker, layers, rows[half:])
        stats.record_growth(tracker.coverage())
    else:
        stats.add(names, severities, np.array(failed, bool), np.array(violation, float), **counted)

    extra = {"stopped_by": "budget"} if status == "complete" else {}  # as Campaign.summary adds it
    summary = build_summary(model=model_info(mut), campaign=campaign, status=status, stats=stats,
                            tracker=tracker, duration_s=duration_s, seeds=opts.n_seeds, **extra)
    for key, value in summary_overrides.items():
        summary[key] = {**summary[key], **value} if isinstance(value, dict) and isinstance(summary.get(key), dict) \
            else value
    write_summary(root, summary)
    return root


def _judge(oracle, f: Finding):
    """The oracle's verdict on one finding (a batch of one, as a campaign batch would judge it)."""
    from deeptest_iot.tasks.boxes import Detections

    if f.task == "steering":
        after = f.after
        if after is None:
            bound = f.violation + (oracle.lam * oracle.mse_orig if f.label is not None else oracle.delta)
            sign = -1.0 if f.chain.mirrors_horizontally else 1.0
            expected = sign * (f.label if f.label is not None else f.before)
            after = expected + (math.sqrt(bound) if f.label is not None else bound)
        ref, out, labels = [f.before], [after], [np.nan if f.label is None else f.label]
    elif f.task == "detection":
        ref, out, labels = [Detections(**f.before)], [Detections(**f.after)], None
    else:
        ref, out, labels = f.before[None], f.after[None], None if f.label is None else [f.label]
    return oracle.check(ref, out, [f.chain], labels=labels, frame_size=(H, W))


# -- coverage: activations built to reach the coverage a test asks for -----------------------------
# Every neuron's profile range is [0, 1]. An NC row gives the covered neurons of a layer 2 and the
# others -1: min-max scaled per layer they are 1 and 0, and both values lie outside [0, 1], so KMNC
# sees nothing (NBC sees them). A KMNC row gives every neuron of a layer the same value, in section j
# of [0, 1] or -1: a layer of equal values scales to 0 for NC. So the two targets do not interfere.

def _profile_rows(layers: dict) -> dict:
    return {name: np.array([[0.0] * n, [1.0] * n]) for name, n in layers.items()}


def _coverage_rows(layers: dict, targets: dict) -> list[dict]:
    from deeptest_iot.coverage import parse_spec

    rows, done = [], {}
    for spec, target in targets.items():
        if target is None:
            continue
        parsed = parse_spec(spec)
        if parsed.kind in done:
            if done[parsed.kind] != (parsed.param, target):
                raise ValueError(f"one target per kind of criterion: {spec} and an earlier {parsed.kind}")
            continue
        done[parsed.kind] = (parsed.param, target)
        if parsed.kind == "nc":
            rows += _nc_rows(layers, target)
        elif parsed.kind == "kmnc":
            rows += _kmnc_rows(layers, target, int(parsed.param))
        else:
            raise ValueError(f"no coverage target can be set for {spec} (give None)")
    return rows


def _nc_rows(layers: dict, target: float) -> list[dict]:
    want = round(target * sum(layers.values()))
    covered = {}
    for name, n in layers.items():  # a one-neuron layer is never covered: its min equals its max
        covered[name] = min(want, n) if n > 1 else 0
        want -= covered[name]
    if want:
        raise ValueError(f"NC {target} cannot be reached on layers {layers}")
    first = {name: [2.0] * min(c, n - 1) + [-1.0] * (n - min(c, n - 1)) for (name, n), c in zip(layers.items(),
                                                                                               covered.values())}
    rows = [first]
    if any(c == n for (_, n), c in zip(layers.items(), covered.values())):  # a full layer's last neuron
        rows.append({name: [-1.0] * (n - 1) + [2.0] if covered[name] == n else [-1.0] * n
                     for name, n in layers.items()})
    return rows


def _kmnc_rows(layers: dict, target: float, k: int) -> list[dict]:
    sizes = list(layers.values())
    want = round(target * k * sum(sizes))
    for sections in sorted(product(range(k + 1), repeat=len(sizes)), key=max):  # fewest rows first
        if sum(s * n for s, n in zip(sections, sizes)) == want:
            break
    else:
        raise ValueError(f"KMNC {target} with k={k} cannot be reached on layers {layers}")
    return [{name: [(j + 0.5) / k if j < s else -1.0] * n for (name, n), s in zip(layers.items(), sections)}
            for j in range(max(sections, default=0))]


def _update(tracker, layers: dict, rows: list[dict]) -> None:
    if rows:
        tracker.update({name: np.array([row[name] for row in rows], float) for name in layers})


# -- the shape of a folder ---------------------------------------------------------------------------
# Maps whose keys are names of transforms, criteria or layers (data, not format).
NAMED_ENTRIES = ("per_transform", "coverage", "per_layer", "layers")


def summary_shape(value, named: bool = False):
    """The nested keys of a summary.json (values left out; a map of named entries shows one entry as
    "*"; a list of objects shows its first), to check that these folders have the shape campaigns write."""
    if isinstance(value, dict):
        if named:
            return {"*": summary_shape(next(iter(value.values())))} if value else {}
        return {k: summary_shape(v, k in NAMED_ENTRIES) for k, v in sorted(value.items())}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [summary_shape(value[0])]
    return None


# -- folders in other shapes ------------------------------------------------------------------------

def edit_findings(root, change: Callable[[dict], dict | None]) -> None:
    """Rewrite findings.jsonl with ``change(finding)`` applied to each line (None drops the line)."""
    path = Path(root) / "findings.jsonl"
    lines = [change(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
    path.write_text("".join(json.dumps(f) + "\n" for f in lines if f is not None), encoding="utf-8")


def edit_summary(root, change: Callable[[dict], None]) -> None:
    """Change summary.json in place with ``change(summary)``."""
    path = Path(root) / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    change(summary)
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
