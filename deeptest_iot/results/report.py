"""One self-contained HTML report of a campaign output folder.

Self-contained means one file a reviewer can mail or attach to a CI job: images are embedded as
base64 data URIs, the charts are inline SVG, the style is inline CSS, and there is no script and
no network reference. Every string that comes from the model, the folder or the options is passed
through :func:`html.escape`, so a model named ``<script>...`` is shown, never run.

Robustness score of a transform (also in docs/campaigns-and-ci.md): ``1 - error rate``, the share of the inputs
made with that transform on which the metamorphic relation held. 1.0 means no finding.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from deeptest_iot import __version__
from deeptest_iot.fileio import atomic_write_text
from deeptest_iot.errors import InputError
from deeptest_iot.results.render import Renderer
from deeptest_iot.results.reader import (DIFFERENTIAL, SEVERITY_BUCKETS, RunFolder, distinct_failures, findings_of,
                                         judged, main_relation, open_run, per_transform_rows, relation_summary,
                                         robustness, severity_bucket)

WORST_DEFAULT = 12
DISPLAY_WIDTH = 360  # pixels of each embedded image; small frames are scaled up before drawing

SERIES_CSS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def e(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell (escaped); None shows as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return e(value)
    if isinstance(value, int):
        return e(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return e(value)
        return e(f"{value:.{digits}f}")
    return e(value)


def vfmt(value: Any) -> str:
    """A violation: 4 significant digits (violations of squared-error relations are tiny)."""
    return e(f"{float(value):.4g}") if _is_number(value) else fmt(value)


def pct(value: float | None) -> str:
    return "\u2014" if value is None else e(f"{100.0 * float(value):.1f}%")


# ----------------------------------------------------------------------------- drawing


def _scaled(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image resized to DISPLAY_WIDTH (so lines and text stay legible) and the scale used."""
    scale = DISPLAY_WIDTH / image.shape[1]
    size = (DISPLAY_WIDTH, max(1, int(round(image.shape[0] * scale))))
    interp = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interp), scale


def annotate_pair(original: np.ndarray, transformed: np.ndarray, finding: dict, task,
                  units: str = "radians", class_names: list | None = None,
                  gain: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The finding's two frames (BGR) scaled for display, with the model's answers drawn on them by
    the task (``Task.annotate``: steering arrows, detection boxes, class names)."""
    orig, scale = _scaled(original)
    trans, scale_t = _scaled(transformed)
    task.annotate(orig, trans, finding, scales=(scale, scale_t), units=units, class_names=list(class_names or []),
                  gain=gain)
    return orig, trans


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def data_uri(image_bgr: np.ndarray) -> str:
    """A JPEG data URI (quality 90: a report of two dozen frames stays around a megabyte)."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise ValueError("could not encode image")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


# ----------------------------------------------------------------------------- charts


def nice_step(raw: float) -> float:
    """The 1-2-5 x 10^k step nearest above ``raw``, for axis ticks at round numbers."""
    if raw <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def growth_svg(growth: list[dict], width: int = 720, height: int = 300) -> str:
    """Coverage growth per criterion as an inline SVG line chart: inputs tried on x, coverage (0-100%)
    on y, one polyline per criterion, legend on the right."""
    points = [p for p in growth if isinstance(p, dict) and _is_number(p.get("inputs"))]
    criteria: list[str] = []
    counts: set[str] = set()  # criteria that count (TKNP patterns) instead of giving a fraction
    for p in points:
        for key in p:
            if key != "inputs" and _is_number(p[key]):
                if float(p[key]) > 1.0:
                    counts.add(key)
                if key not in criteria:
                    criteria.append(key)
    criteria = [c for c in criteria if c not in counts]
    if len(points) < 2 or not criteria:
        return '<p class="muted">Not enough checkpoints to draw coverage growth.</p>'
    left, right, top, bottom = 48, 170, 12, 36
    pw, ph = width - left - right, height - top - bottom
    xmax = max(float(p["inputs"]) for p in points) or 1.0

    def x(v):
        return left + pw * float(v) / xmax

    def y(v):
        return top + ph * (1.0 - max(0.0, min(1.0, float(v))))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="coverage growth">']
    for k in range(6):  # y grid and labels every 20%
        v = k / 5
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{int(v * 100)}%</text>')
    step = nice_step(xmax / 5)
    for k in range(int(xmax // step) + 1):  # x ticks at round numbers
        v = k * step
        parts.append(f'<line x1="{x(v):.1f}" y1="{top + ph}" x2="{x(v):.1f}" y2="{top + ph + 4}" class="grid"/>')
        parts.append(f'<text x="{x(v):.1f}" y="{top + ph + 16}" text-anchor="middle">{v:g}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle">inputs tried</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    for k, name in enumerate(criteria):
        color = SERIES_CSS[k % len(SERIES_CSS)]
        coords = " ".join(f"{x(p['inputs']):.1f},{y(p[name]):.1f}" for p in points if _is_number(p.get(name)))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        ly = top + 14 + 18 * k
        parts.append(f'<line x1="{left + pw + 12}" y1="{ly - 4}" x2="{left + pw + 32}" y2="{ly - 4}" '
                     f'stroke="{color}" stroke-width="3"/>')
        parts.append(f'<text x="{left + pw + 38}" y="{ly}">{e(name)}</text>')
    parts.append("</svg>")
    if counts:
        parts.append(f'<p class="note">Not drawn (counts, not fractions): {e(", ".join(sorted(counts)))}.</p>')
    return "".join(parts)


def bar(value: float | None, full: float = 1.0, kind: str = "good") -> str:
    """A small horizontal bar (inline CSS): ``value`` as a share of ``full``. ``kind`` "good" is a
    green bar on red (coverage), "bad" a red bar on grey (error rates, scaled to the worst one so
    that small differences between robust transforms stay visible)."""
    if value is None or not full:
        return ""
    width = max(0.0, min(1.0, float(value) / float(full))) * 100
    return f'<span class="bar {e(kind)}"><span style="width:{width:.1f}%"></span></span>'


def _worst_rate(rows: Iterable[dict]) -> float:
    rates = [float(r["error_rate"]) for r in rows if _is_number(r.get("error_rate"))]
    return max(rates, default=0.0)


# ----------------------------------------------------------------------------- sections


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), sub)
    elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        yield prefix, ", ".join(str(v) for v in value)
    elif isinstance(value, list):
        yield prefix, json.dumps(value)
    else:
        yield prefix, value


def _kv_table(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>' if rows else '<p class="muted">none recorded</p>'


def section_overview(run: RunFolder) -> str:
    s = run.summary
    overall = None if s.get("error_rate") is None else 1.0 - float(s["error_rate"])
    cards = [("inputs tried", fmt(s.get("inputs_tried"))), ("findings", fmt(s.get("findings", len(run.findings)))),
             ("error rate", pct(s.get("error_rate"))), ("robustness", fmt(overall)),
             ("duration", e(f"{float(s['duration_s']):.1f} s") if _is_number(s.get("duration_s")) else "\u2014")]
    twin = s.get("twin")
    if twin:
        table = relation_summary(run, DIFFERENTIAL)
        seeds = twin.get("seed_disagreements") or {}
        cards[2] = (f"{main_relation(run)} error rate", cards[2][1])
        cards[3:3] = [("differential findings", fmt(table.get("findings"))),
                      ("differential error rate", pct(table.get("error_rate"))),
                      ("seeds the twin already breaks",
                       e(f"{seeds['count']} of {seeds['seeds']}") if seeds.get("seeds") else "\u2014")]
    html_cards = "".join(f'<div class="card"><div class="num">{v}</div><div class="lbl">{e(k)}</div></div>'
                         for k, v in cards)
    banner = ""
    if s.get("status") != "complete":
        banner = (f'<p class="warn">Campaign status: {e(s.get("status", "unknown"))}. It is still running or was '
                  f'stopped; the figures below are those of the last checkpoint.</p>')
    if s.get("error"):
        banner += f'<p class="warn">It stopped on an error: {e(s["error"])}</p>'
    banner += "".join(f'<p class="warn">{e(problem)}</p>' for problem in run.problems())
    return f'<section id="overview">{banner}<div class="cards">{html_cards}</div></section>'


def section_settings(run: RunFolder) -> str:
    s = run.summary
    model = dict(s.get("model") or {})
    layers = model.pop("layers", None) or {}
    layer_rows = "".join(f"<tr><td>{e(k)}</td><td class='n'>{fmt(v)}</td></tr>" for k, v in layers.items())
    layer_table = (f'<h3>Layers counted for coverage</h3><table><thead><tr><th>layer</th><th>neurons</th></tr>'
                   f'</thead><tbody>{layer_rows}</tbody></table>') if layer_rows else ""
    return (f'<section id="settings"><h2>Campaign settings and model</h2><div class="cols">'
            f'<div><h3>Campaign</h3>{_kv_table(_flatten("", s.get("campaign") or {}))}</div>'
            f'<div><h3>Model</h3>{_kv_table(_flatten("", model))}{layer_table}</div>'
            f'<div><h3>Tool and libraries</h3>{_kv_table(_flatten("", {"tool": s.get("tool") or {}, "libraries": s.get("libraries") or {}}))}</div>'
            f'</div></section>')


def _transform_table(rows: list[dict], label: str) -> str:
    worst = _worst_rate(rows)
    body = "".join(
        f"<tr><td>{e(r['transform'])}</td><td class='n'>{fmt(r.get('tried'))}</td>"
        f"<td class='n'>{fmt(r.get('findings'))}</td><td class='n'>{pct(r.get('error_rate'))}</td>"
        f"<td>{bar(r.get('error_rate'), worst, 'bad')}</td>"
        f"<td class='n'>{vfmt(r.get('mean_violation'))}</td><td class='n'>{vfmt(r.get('max_violation'))}</td>"
        f"<td class='n'><b>{fmt(r['robustness'])}</b></td></tr>" for r in rows)
    if not body:
        body = '<tr><td colspan="8" class="muted">none recorded</td></tr>'
    return (f'<table><thead><tr><th>{e(label)}</th><th>tried</th><th>findings</th><th>error rate</th>'
            '<th title="relative to the worst row"></th><th>mean violation</th><th>max violation</th>'
            f'<th>robustness</th></tr></thead><tbody>{body}</tbody></table>')


def section_twin(run: RunFolder) -> str:
    """With a twin: which twin, its relation, the seeds it already breaks, and the differential relation's
    error rates per transform and per severity."""
    twin = run.summary.get("twin")
    if not twin:
        return ""
    table = relation_summary(run, DIFFERENTIAL)
    relation = twin.get("relation") or {}
    rule = ", ".join(f"{k} {v}" for k, v in relation.items() if k not in ("name", "task") and v is not None)
    seeds = twin.get("seed_disagreements") or {}
    seed_note = ""
    if seeds.get("count"):
        seed_note = (f'<p class="warn">The twin already disagrees with the model on {e(seeds["count"])} of '
                     f'{e(seeds["seeds"])} seed frames, before any transform: {e(", ".join(seeds.get("ids") or []))}'
                     f'{e(", ...") if seeds["count"] > len(seeds.get("ids") or []) else ""}. The differential '
                     f'findings made from them are {"counted as the others" if seeds.get("policy") == "count" else "counted apart from the error rates"}.</p>')
    elif seeds.get("seeds"):
        seed_note = (f'<p class="note">On the {e(seeds["seeds"])} seed frames themselves the twin agrees with the '
                     f'model (largest disagreement {vfmt(seeds.get("max_disagreement"))}).</p>')
    rows = per_transform_rows(run, by="transform", relation=DIFFERENTIAL)
    severity = table.get("per_severity") or {}
    worst = _worst_rate(severity.values())
    sev_rows = "".join(
        f"<tr><td>{e(name)}</td><td class='n'>{fmt(row.get('tried'))}</td><td class='n'>{fmt(row.get('findings'))}</td>"
        f"<td class='n'>{pct(row.get('error_rate'))}</td><td>{bar(row.get('error_rate'), worst, 'bad')}</td></tr>"
        for name, row in severity.items() if isinstance(row, dict))
    return (f'<section id="twin"><h2>Twin: the differential relation</h2>'
            f'<p>Every input also ran through the twin <b>{e(twin.get("name"))}</b> ({e(twin.get("kind"))}, '
            f'{e(twin.get("path"))}), and the twin&rsquo;s output was judged against the model&rsquo;s on the same '
            f'frame ({e(rule or "the task&rsquo;s defaults")}). {fmt(table.get("findings"))} of '
            f'{fmt(table.get("inputs_tried"))} inputs broke it: error rate <b>{pct(table.get("error_rate"))}</b>.</p>'
            f'{seed_note}<h3>Per transform</h3>{_transform_table(rows, "transform")}'
            f'<h3>Per severity</h3><table><thead><tr><th>severity</th><th>tried</th><th>findings</th>'
            f'<th>error rate</th><th></th></tr></thead><tbody>{sev_rows}</tbody></table>'
            '<p class="note">Here robustness is the share of inputs on which the twin agreed with the model; violation '
            'is how far past the bound the two answers were apart.</p></section>')


def section_transforms(run: RunFolder, top_chains: int = 15) -> str:
    singles = per_transform_rows(run, by="transform")
    chains = per_transform_rows(run, by="chain")
    html_chains = ""
    if any("+" in r["transform"] for r in chains):
        ranked = sorted(chains, key=lambda r: (-(r.get("findings") or 0), -(r.get("max_violation") or 0.0),
                                               r["transform"]))
        shown = [r for r in ranked if r.get("findings")][:top_chains]
        html_chains = (f'<h3>Chains with the most findings</h3><p class="note">{len(shown)} of {len(chains)} '
                       'chains tried (the others had no finding or fewer).</p>' + _transform_table(shown, "chain"))
    return ('<section id="transforms"><h2>Findings and robustness per transform</h2>'
            + _transform_table(singles, "transform") +
            '<p class="note"><b>Robustness score</b> = 1 &minus; error rate: the share of inputs made with that '
            'transform on which the metamorphic relation held (1.000: no finding). An input made by a chain '
            'counts for each transform in the chain. Violation is how far past the relation the output went, '
            'in the relation&rsquo;s units, averaged over the findings. Bars compare error rates with the worst '
            f'row&rsquo;s.</p>{html_chains}</section>')


def section_severity(run: RunFolder) -> str:
    table = run.summary.get("per_severity") or {}
    counted: dict[str, int] = {}
    if not table:  # a running campaign: count findings from the file
        for f in findings_of(run):
            if _is_number(f.get("severity")):
                counted[severity_bucket(f["severity"])] = counted.get(severity_bucket(f["severity"]), 0) + 1
    names = list(SEVERITY_BUCKETS) + [k for k in table if k not in SEVERITY_BUCKETS]
    worst = _worst_rate(table.values())
    body = ""
    for name in names:
        row = table.get(name) or {}
        if not row and name not in counted:
            continue
        rate = row.get("error_rate")
        body += (f"<tr><td>{e(name)}</td><td class='n'>{fmt(row.get('tried'))}</td>"
                 f"<td class='n'>{fmt(row.get('findings', counted.get(name)))}</td><td class='n'>{pct(rate)}</td>"
                 f"<td>{bar(rate, worst, 'bad')}</td><td class='n'>{fmt(robustness(row))}</td></tr>")
    if not body:
        body = '<tr><td colspan="6" class="muted">no severities recorded</td></tr>'
    return ('<section id="severity"><h2>Findings per severity</h2><table><thead><tr><th>severity</th><th>tried</th>'
            '<th>findings</th><th>error rate</th><th></th><th>robustness</th></tr></thead>'
            f'<tbody>{body}</tbody></table><p class="note">Severity is the largest severity among a chain&rsquo;s '
            'transforms, in [0, 1].</p></section>')


def section_coverage(run: RunFolder) -> str:
    cov = run.summary.get("coverage") or {}
    body = ""
    for name, c in cov.items():
        c = c if isinstance(c, dict) else {"coverage": c}
        covered = c.get("covered", c.get("patterns"))  # TKNP reports distinct patterns
        body += (f"<tr><td>{e(name)}</td><td class='n'>{pct(c.get('coverage'))}</td>"
                 f"<td class='n'>{fmt(covered)}</td><td class='n'>{fmt(c.get('total'))}</td>"
                 f"<td>{bar(c.get('coverage'))}</td></tr>")
    table = ('<table><thead><tr><th>criterion</th><th>coverage</th><th>covered</th><th>total</th><th></th></tr>'
             f'</thead><tbody>{body}</tbody></table>') if body else '<p class="muted">no coverage recorded</p>'
    return (f'<section id="coverage"><h2>Coverage</h2>{table}<h3>Growth per criterion</h3>'
            f'{growth_svg(run.summary.get("coverage_growth") or [])}</section>')


def _frames_bgr(renderer: Renderer, finding: dict):
    """A finding's two frames (BGR), saved or rendered again; (None, why) when neither can be had
    (a path leaving the folder is never read: it is reported like a missing file)."""
    try:
        orig, trans = renderer.images(finding)
    except InputError as exc:
        return None, str(exc)
    return cv2.cvtColor(orig, cv2.COLOR_RGB2BGR), cv2.cvtColor(trans, cv2.COLOR_RGB2BGR)


def _rounded(value: Any) -> Any:
    """Parameters for display: floats to 4 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def section_worst(run: RunFolder, worst: int, relation: str | None = None) -> str:
    """The worst distinct failures of the run's own relation, or (``relation="differential"``) of its
    twin: the frame both models saw, the model's answer drawn on the left and the twin's on the right."""
    from deeptest_iot.tasks import TASKS, Task

    differential = relation == DIFFERENTIAL
    all_findings = findings_of(run, relation)
    if differential and not all_findings and not run.summary.get("twin"):
        return ""
    groups = distinct_failures(all_findings)
    findings = [g["finding"] for g in groups][:max(worst, 0)]
    counts = {g["finding"]["id"]: g["count"] for g in groups}
    model = run.summary.get("model") or {}
    card = model.get("card") or {}
    units = model.get("units", card.get("units", "radians"))
    class_names = list(model.get("classes") or card.get("classes") or [])
    task = TASKS.get(run.task, Task())
    gain = task.display_gain(findings, units)
    renderer = Renderer(run)
    figures = []
    for f in findings:
        orig, trans = _frames_bgr(renderer, f)
        if orig is not None and trans is not None:
            if differential:  # both models saw the transformed frame: model's answer left, twin's right
                orig, trans = annotate_pair(trans.copy(), trans, f, task, units, class_names, gain)
                alts = ("the model's answer", "the twin's answer")
            else:
                orig, trans = annotate_pair(orig, trans, f, task, units, class_names, gain)
                alts = ("original", "transformed")
            pics = (f'<img src="{data_uri(orig)}" alt="{e(alts[0])} {e(f["id"])}">'
                    f'<img src="{data_uri(trans)}" alt="{e(alts[1])} {e(f["id"])}">')
        else:
            pics = f'<p class="warn">images of {e(f["id"])} are missing: {e(trans)}</p>'
        chain = "; ".join(f"{link.get('name')} {json.dumps(_rounded(link.get('params', {})), sort_keys=True)}"
                          for link in (f.get("chain") or []) if isinstance(link, dict))
        label = "" if f.get("label") is None else f" &middot; label {e(task.show(f.get('label')))}"
        words = ("model", "twin") if differential else ("before", "after")
        figures.append(
            f'<figure class="pair"><div class="imgs">{pics}</div><figcaption><b>{e(f["id"])}</b> '
            f'&middot; {e(f["transform"])} &middot; seed {e(f.get("seed_id", "?"))} '
            f'({counts[f["id"]]} finding{"s" if counts[f["id"]] != 1 else ""} of this seed and family) &middot; severity '
            f'{fmt(f.get("severity"), 2)}<br>{words[0]} {e(task.show(f.get("before")))} &rarr; {words[1]} '
            f'{e(task.show(f.get("after")))}{label} &middot; violation <b>{fmt(f["violation"], 4)}</b> '
            f'(threshold {fmt(f.get("threshold"), 4)})<br><span class="muted">{e(chain)}</span></figcaption></figure>')
    legend = task.legend(gain)
    counted = len(judged(all_findings))
    apart = len(all_findings) - counted
    whose = "the twin already disagrees on" if differential else "the model already gets wrong"
    apart = (f' ({apart} more finding{"s" if apart != 1 else ""} of seeds {whose}, counted apart)') if apart else ""
    if differential:
        legend = ('Both frames are the transformed frame the two models saw: the model&rsquo;s answer (before) on '
                  'the left, the twin&rsquo;s (after) on the right. ' + legend)
        body = (f'<div class="pairs">{"".join(figures)}</div>' if figures
                else '<p class="muted">No differential findings: the twin agreed with the model on every input'
                f'{" but those of seeds it already disagrees on" if apart else ""}.</p>')
        return (f'<section id="twin-worst"><h2>Worst twin disagreements</h2><p class="legend">{legend}</p>'
                f'<p class="note">{len(groups)} distinct disagreements (a seed and a transform family) in '
                f'{counted} differential findings{apart}. The worst finding of each of the {len(findings)} '
                f'worst.</p>{body}</section>')
    body = (f'<div class="pairs">{"".join(figures)}</div>' if figures
            else '<p class="muted">No findings: the relation held on every input'
            f'{" but those of seeds already wrong" if apart else ""}.</p>')
    return (f'<section id="worst"><h2>Worst distinct failures</h2><p class="legend">{legend}</p>'
            f'<p class="note">{len(groups)} distinct failures (a seed and a transform family) in '
            f'{counted} findings{apart}. The worst finding of each of the {len(findings)} worst, original on the '
            f'left, transformed on the right.</p>{body}</section>')


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c8cdd8;font-size:14px}main{padding:8px 28px 28px;max-width:1400px}
nav{padding:8px 28px;background:#e9ecf1;font-size:14px}nav a{margin-right:14px;color:#1f5fa8}
section{background:#fff;border-radius:6px;padding:14px 18px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:12px 0 6px}
table{border-collapse:collapse;font-size:13px;margin-bottom:6px}th,td{padding:4px 10px;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
thead th{background:#f0f2f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{font-weight:600;color:#4a5264;white-space:nowrap}table.kv td{word-break:break-word;max-width:340px}
.cols{display:flex;flex-wrap:wrap;gap:24px}.cards{display:flex;flex-wrap:wrap;gap:14px}
.card{background:#f0f4fa;border-radius:6px;padding:10px 18px;min-width:120px}.num{font-size:22px;font-weight:600}
.lbl{font-size:12px;color:#5a6376;text-transform:uppercase;letter-spacing:.04em}
.bar{display:inline-block;width:120px;height:10px;background:#f3d3d3;border-radius:5px;overflow:hidden}
.bar span{display:block;height:100%;background:#3c9c5c}.bar.bad{background:#eceef2}.bar.bad span{background:#d9534f}
.note,.muted{color:#5a6376;font-size:13px}.warn{background:#fff3cd;border:1px solid #f0d27a;padding:6px 10px;border-radius:4px}
.legend{font-size:13px;font-weight:600}
.pairs{display:grid;grid-template-columns:repeat(auto-fill,minmax(572px,1fr));gap:6px 18px}
figure.pair{margin:8px 0}
figure.pair .imgs{display:flex;gap:6px}figure.pair img{width:280px;border-radius:3px;border:1px solid #ccd}
figcaption{font-size:12px;margin-top:4px;word-break:break-word}
svg.chart text{font-size:11px;fill:#333}svg.chart .grid{stroke:#e3e6eb}svg.chart .frame{fill:none;stroke:#aab}
footer{color:#5a6376;font-size:12px;padding:0 28px 24px}
"""


def render_report(out_dir: str | Path, worst: int = WORST_DEFAULT) -> str:
    """The report of a campaign folder as one HTML string (raises InputError on a bad folder)."""
    run = open_run(out_dir)
    run.findings  # parse now: a corrupt line fails before any work
    model = run.summary.get("model") or {}
    name = model.get("name") or "model"
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    twin = run.summary.get("twin")
    links = [("settings", "Settings"), ("transforms", "Per transform"), ("severity", "Per severity"),
             ("coverage", "Coverage"), ("worst", "Worst distinct failures")]
    if twin:
        links[3:3] = [("twin", "Twin")]
        links.append(("twin-worst", "Worst twin disagreements"))
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in links)
    twin_head = f' &middot; twin {e(twin.get("name"))} (differential)' if twin else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>deeptest-iot report: {e(name)}</title><style>{CSS}</style></head><body>'
        f'<header><h1>deeptest-iot report: {e(name)}</h1><p>task {e(run.task)} &middot; '
        f'relation {e(main_relation(run))}{twin_head} &middot; '
        f'folder {e(Path(out_dir).resolve())}</p></header><nav>{nav}</nav><main>'
        f'{section_overview(run)}{section_settings(run)}{section_transforms(run)}{section_severity(run)}'
        f'{section_twin(run)}{section_coverage(run)}{section_worst(run, worst)}'
        f'{section_worst(run, worst, DIFFERENTIAL) if twin else ""}</main>'
        f'<footer>Generated by deeptest-iot {e(__version__)} on {e(generated)}.</footer></body></html>\n')


def write_report(out_dir: str | Path, path: str | Path | None = None, worst: int = WORST_DEFAULT) -> Path:
    """Write the report atomically, by default to OUT_DIR/report.html; return its path."""
    text = render_report(out_dir, worst=worst)
    target = Path(path) if path is not None else Path(out_dir) / "report.html"
    return atomic_write_text(target, text)
