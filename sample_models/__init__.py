"""Small trained sample models shipped with deeptest-iot, and the scripts that trained them.

Each model ``NAME`` ships as ``NAME.keras`` with its model card ``NAME.toml``, its measured quality
``NAME.json`` and a profile of its training activations ``NAME.profile.npz``. ``train.py``
retrains any of them from scratch (``deeptest-iot samples train NAME``). Three are trained on
generated scenes; ``udacity_steering`` on real dashcam frames, and it ships 200 of its held-out
frames with their labels (``frames_path("udacity_steering")``). Importing this module does not
import TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

from deeptest_iot.errors import ConfigError, ModelError

HERE = Path(__file__).resolve().parent
NAMES = ("dave2_steering", "sign_classifier", "tiny_detector", "udacity_steering")
TASKS = {"dave2_steering": "steering", "sign_classifier": "classification", "tiny_detector": "detection",
         "udacity_steering": "steering"}
FRAMES = {"udacity_steering": "udacity_steering_frames"}
"""Sample models that ship real frames: name -> folder (JPEGs, labels.csv, README.md)."""


def names() -> list[str]:
    """Names of the sample models, shipped or not."""
    return list(NAMES)


def _check(name: str) -> str:
    if name not in NAMES:
        raise ConfigError(f"unknown sample model {name!r}; known: {', '.join(NAMES)}")
    return name


def path(name: str) -> Path:
    """The shipped ``.keras`` file of sample model ``name``."""
    p = HERE / f"{_check(name)}.keras"
    if not p.is_file():
        raise ModelError(f"sample model {name!r} is not in {HERE}; build it with `deeptest-iot samples train {name}`")
    return p


def twin_path(name: str, to: str = "int8") -> Path:
    """The shipped twin of sample model ``name``: ``to`` = ``int8`` or ``float16`` (LiteRT files made by
    ``benchmarks/make_twins.py``; ``onnx`` and ``dynamic`` twins are not shipped, make them with
    ``deeptest-iot convert``)."""
    from deeptest_iot.model.twins import twin_path_for

    p = twin_path_for(HERE / f"{_check(name)}.keras", to)
    if not p.is_file():
        raise ModelError(f"no {to} twin of sample model {name!r} in {HERE}; make one with `deeptest-iot convert "
                         f"{path(name)} --to {to} --out {p}`")
    return p


def card_path(name: str) -> Path:
    return HERE / f"{_check(name)}.toml"


def profile_path(name: str) -> Path:
    """Profile of the model's training activations (deeptest_iot.coverage.Profile .npz)."""
    return HERE / f"{_check(name)}.profile.npz"


def frames_path(name: str = "udacity_steering") -> Path:
    """The shipped folder of real frames of sample model ``name``: ``<frame_id>.jpg`` files (200x150),
    ``labels.csv`` (frame_id,steering_angle in radians, positive = left) and a README.md on their
    provenance. Use it as seeds: ``deeptest-iot run --seeds DIR --labels DIR/labels.csv``."""
    _check(name)
    if name not in FRAMES:
        raise ConfigError(f"sample model {name!r} ships no frames; {', '.join(FRAMES)} do")
    p = HERE / FRAMES[name]
    if not (p / "labels.csv").is_file():
        raise ModelError(f"the frames of sample model {name!r} are not in {p}; make them with "
                         f"`deeptest-iot samples train {name} --frames DIR`")
    return p


def info(name: str, folder: Path | None = None) -> dict:
    """The quality record ``NAME.json`` written by training: measured quality and how, time, size."""
    p = (Path(folder) if folder else HERE) / f"{_check(name)}.json"
    if not p.is_file():
        return {"name": name, "task": TASKS[name], "quality": None}
    return json.loads(p.read_text(encoding="utf-8"))


def quality_summary(record: dict) -> str:
    """One line: the headline figure of a quality record against its bar."""
    q = record.get("quality")
    if not q:
        return "not trained"
    if "mse_over_variance" in q:
        return f"held-out MSE {q['heldout_mse']:.2e} rad^2 = {100 * q['mse_over_variance']:.1f}% of label variance"
    if "heldout_accuracy" in q:
        return f"held-out accuracy {100 * q['heldout_accuracy']:.1f}%"
    if "map50" in q:
        return f"held-out mAP@0.5 {q['map50']:.3f}"
    return json.dumps(q)
