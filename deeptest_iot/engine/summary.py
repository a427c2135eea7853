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


def build_summary(*, model: dict, campaign: dict, status: str, stats, tracker, duration_s: float,
                  seeds: int | None = None, notes: list | None = None, warnings: list | None = None,
                  **extra: Any) -> dict:
    """The summary of a run: its settings, status, counts, per-transform tables and coverage, and
    what the start-up checks said (``notes``; ``warnings`` fail the run)."""
    summary = {"format": FORMAT, "tool": {"name": "deeptest-iot", "version": __version__},
               "libraries": libraries(), "model": model, "campaign": campaign, "status": status,
               "inputs_tried": stats.tried, "inputs_rejected": stats.rejected, "findings": stats.found}
    if seeds is not None:
        summary["seeds"] = seeds
    summary["duration_s"] = round(duration_s, 3)
    summary.update(stats.tables())
    summary["coverage"] = tracker.summary()["criteria"] if tracker is not None else {}
    summary["coverage_growth"] = stats.growth if tracker is not None else []
    summary["notes"] = list(notes or [])
    summary["warnings"] = list(warnings or [])
    summary.update(extra)
    return summary
