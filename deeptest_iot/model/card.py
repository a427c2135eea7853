"""The model card: how to feed a model raw camera frames and how to read its outputs.

Read from a small TOML file beside the model (``model.toml`` for ``model.keras``), from a dict of
options, or inferred from the model's input shape when neither says otherwise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deeptest_iot.errors import ConfigError
from deeptest_iot.fileio import read_toml

TASKS = ("steering", "classification", "detection")
COLORS = ("rgb", "bgr", "gray")
PROBABILITIES = ("auto", "softmax", "identity")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """How frames become network input, and what the network's output means."""

    task: str | None = None  # None: inferred from the output (1 unit: steering, several: classification)
    input_size: tuple[int, int] | None = None  # (height, width) the network takes; None: from the model
    color: str = "rgb"  # channel order the network expects; frames are always RGB
    crop: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # top, bottom, left, right fractions
    scale: float = 1.0 / 255.0  # network input = pixel * scale + offset
    offset: float = 0.0
    output: int | str = 0  # which model output to read when there are several
    units: str = "radians"  # steering
    classes: tuple[str, ...] = ()  # classification / detection
    probabilities: str = "auto"  # classification: "softmax" applies softmax, "auto" when rows are not probabilities
    decoder: str = "grid"  # detection: name in deeptest_iot.tasks.boxes.DECODERS
    score_threshold: float = 0.5  # detection
    name: str = ""
    source: str = "defaults"  # where the card came from, for `inspect`
    given: tuple[str, ...] = ()  # the keys the card's file or options set (the rest are defaults)

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"model card: task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if self.color not in COLORS:
            raise ConfigError(f"model card: color must be one of {', '.join(COLORS)}, not {self.color!r}")
        if self.probabilities not in PROBABILITIES:
            raise ConfigError(
                f"model card: probabilities must be one of {', '.join(PROBABILITIES)}, not {self.probabilities!r}")
        if self.input_size is not None:
            if len(self.input_size) != 2 or any(int(v) < 1 for v in self.input_size):
                raise ConfigError(f"model card: input_size must be [height, width] of positive ints, "
                                  f"not {list(self.input_size)}")
        if len(self.crop) != 4 or any(not 0.0 <= float(c) < 1.0 for c in self.crop):
            raise ConfigError(f"model card: crop must be 4 fractions in [0, 1) (top, bottom, left, right), "
                              f"not {list(self.crop)}")
        if self.crop[0] + self.crop[1] >= 1.0 or self.crop[2] + self.crop[3] >= 1.0:
            raise ConfigError(f"model card: crop {list(self.crop)} leaves nothing of the frame")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"model card: score_threshold must be in [0, 1], not {self.score_threshold}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "options") -> "ModelCard":
        """Build a card from a dict (TOML table or CLI options); unknown keys are refused by name."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = dict(values.get("model", values))  # accept a [model] table or top-level keys
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(f"model card ({source}): unknown key(s) {', '.join(unknown)}; "
                              f"known keys: {', '.join(sorted(fields - {'source'}))}")
        try:
            if "input_size" in values and values["input_size"] is not None:
                values["input_size"] = tuple(int(v) for v in values["input_size"])
            for key in ("crop", "classes"):
                if key in values:
                    values[key] = tuple(values[key])
            if "crop" in values:
                values["crop"] = tuple(float(v) for v in values["crop"])
            for key in ("scale", "offset", "score_threshold"):
                if key in values:
                    values[key] = float(values[key])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model card ({source}): {exc}") from None
        values["source"] = source
        values["given"] = tuple(sorted(k for k in values if k not in ("source", "given")))
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> "ModelCard":
        return cls.from_dict(read_toml(path, "model card"), source=str(path))

    def preprocessing(self) -> dict[str, Any]:
        """What turns frames into network input (crop, size, colour, scale, offset): two cards that
        agree here feed a model the same tensors."""
        return {"input_size": list(self.input_size) if self.input_size else None, "crop": list(self.crop),
                "color": self.color, "scale": self.scale, "offset": self.offset}

    def replace(self, **changes: Any) -> "ModelCard":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["input_size"] = list(self.input_size) if self.input_size else None
        out["crop"] = list(self.crop)
        out["classes"] = list(self.classes)
        out.pop("given")
        return out


def card_path_for(model_path: str | Path) -> Path:
    """The TOML file that holds a model's card: ``x.toml`` beside ``x.keras``, or ``DIR/model.toml``."""
    model_path = Path(model_path)
    if model_path.is_dir():
        return model_path / "model.toml"
    return model_path.with_suffix(".toml")


def resolve_card(model_path: str | Path | None, card: "ModelCard | dict | str | Path | None") -> ModelCard:
    """The card in force: an explicit card, a dict of options layered on the file beside the model, or defaults."""
    if isinstance(card, ModelCard):
        return card
    if isinstance(card, (str, Path)):
        return ModelCard.from_toml(card)
    base = ModelCard()
    if model_path is not None and card_path_for(model_path).is_file():
        base = ModelCard.from_toml(card_path_for(model_path))
    if card:
        merged = {k: v for k, v in base.to_dict().items() if k in base.given}
        merged.update({k: v for k, v in card.items() if v is not None})
        source = f"{base.source} + options" if base.source != "defaults" else "options"
        return ModelCard.from_dict(merged, source=source)
    return base
