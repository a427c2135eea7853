"""summary.json: one builder for campaigns and pytest sessions (docs/results-format.md)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from deeptest_iot import __version__

FORMAT = 1


def libraries() -> dict:
    """Versions of what produced the results, so that a reader can tell a library change from a model change."""
    import cv2
    import keras
    import numpy as np
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "opencv": cv2.__version__}


def model_info(mut) -> dict:
    """The model a run tested: where it came from, its fingerprint, card and counted layers."""
    card = mut.card
    return {"path": mut.path, "name": mut.name, "fingerprint": mut.fingerprint, "task": card.task,
            "card": card.to_dict(), "units": card.units, "classes": list(card.classes),
            "layers": mut.layer_sizes, "neurons": mut.neurons}


def campaign_record(opts, *, transforms: list, seeds_used: str, seeds_notes: list, frame_size, profile_source,
                    relation: dict, seed_failures: dict | None, gates: dict | None = None) -> dict:
    """summary.json's ``campaign``: the options that define the findings, the budget and time, and
    what the campaign resolved (transforms, seeds, working frame size, profile, relation)."""
    return {**opts.replay_dict(), "budget": opts.budget, "time": opts.time, "transforms": list(transforms),
            "seeds_folder": None if opts.seeds is None else str(Path(opts.seeds).resolve()),
            "seeds_used": seeds_used, "seeds_notes": list(seeds_notes), "frame_size": list(frame_size),
            "profile_source": profile_source, "relation": relation, "seed_failures": seed_failures,
            "gates": gates or {"mode": "off"}}


def twin_info(twin, check=None, relation: dict | None = None, seed_disagreements: dict | None = None) -> dict:
    """summary.json's ``twin``: the converted model compared with the model under test, what
    ``check_twin`` found, the differential relation's settings and the seeds it already breaks."""
    info = {"path": twin.path, "name": twin.name, "kind": twin.kind, "fingerprint": twin.fingerprint,
            "layers": twin.layer_sizes if twin.supports_coverage else {}}
    if check is not None:
        described = check.describe()
        info["check"] = {k: described[k] for k in ("shared_layers", "float_only_layers", "twin_only_layers",
                                                   "quantised_input", "output_shapes")}
    if relation is not None:
        info["relation"] = relation
    if seed_disagreements is not None:
        info["seed_disagreements"] = seed_disagreements
    return info


def relation_tables(stats) -> dict:
    """One relation's figures: inputs judged, findings, and the per-transform, per-severity, error-rate,
    failing-seed and distinct-failure tables."""
    return {"inputs_tried": stats.tried, "findings": stats.found, **stats.tables()}


def build_summary(*, model: dict, campaign: dict, status: str, stats, tracker, duration_s: float,
                  seeds: int | None = None, notes: list | None = None, warnings: list | None = None,
                  twin: dict | None = None, twin_stats=None, relation: str | None = None,
                  **extra: Any) -> dict:
    """The summary of a run: its settings, status, counts, per-transform tables and coverage, and
    what the start-up checks said (``notes``; ``warnings`` fail the run).

    The top-level tables are the task's relation's (``relation`` names it). With a twin
    (``twin_stats``, the differential relation's figures), ``findings`` counts the findings of both
    relations and ``relations`` holds each relation's tables under its name."""
    found = stats.found + (twin_stats.found if twin_stats is not None else 0)
    summary = {"format": FORMAT, "tool": {"name": "deeptest-iot", "version": __version__},
               "libraries": libraries(), "model": model, "campaign": campaign, "status": status,
               "inputs_tried": stats.tried, "inputs_rejected": stats.rejected, "findings": found}
    if seeds is not None:
        summary["seeds"] = seeds
    summary["duration_s"] = round(duration_s, 3)
    summary.update(stats.tables())
    if twin_stats is not None:
        from deeptest_iot.tasks.differential import RELATION

        summary["relations"] = {relation or model.get("task") or "task": relation_tables(stats),
                                RELATION: relation_tables(twin_stats)}
    if twin is not None:
        summary["twin"] = twin
    summary["coverage"] = tracker.summary()["criteria"] if tracker is not None else {}
    summary["coverage_growth"] = stats.growth if tracker is not None else []
    summary["notes"] = list(notes or [])
    summary["warnings"] = list(warnings or [])
    summary.update(extra)
    return summary
