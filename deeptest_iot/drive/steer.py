"""The driver: a steering model under test as a function from a batch of frames to steering angles."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from deeptest_iot.errors import ModelError, OutputError


def check_steering_model(mut) -> None:
    """Refuse a model that does not output a steering angle (a classifier, a detector)."""
    if not mut.task.drivable:
        raise ModelError(f"model {mut.name!r} is a {mut.card.task} model; closed-loop driving needs a steering model "
                         "(one output: the front-wheel angle, positive = left). Set task = \"steering\" in its "
                         "model card if it is one")


def model_steering(mut) -> Callable[[np.ndarray], np.ndarray]:
    """``steer(frames) -> angles``: one batched call of ``mut`` per step, in radians (a card with
    ``units = "degrees"`` is converted). A frame whose output is NaN or Inf gets NaN (the loop then
    holds that car's steering and counts it), instead of stopping every drive."""
    check_steering_model(mut)
    degrees = str(getattr(mut.card, "units", "radians")).lower().startswith("deg")

    def steer(frames: np.ndarray) -> np.ndarray:
        try:
            out = np.asarray(mut.predict(frames), np.float64).reshape(-1)
        except OutputError:
            # some frames gave NaN/Inf: find which, one by one (rare, so the slow path is fine)
            out = np.empty(len(frames))
            for i in range(len(frames)):
                try:
                    out[i] = float(np.asarray(mut.predict(frames[i:i + 1])).reshape(-1)[0])
                except OutputError:
                    out[i] = math.nan
        return np.radians(out) if degrees else out

    return steer
