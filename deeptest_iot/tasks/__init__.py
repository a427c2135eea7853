"""What each task (steering, classification, detection) means: its relation and the relation's
defaults, how a transform changes the expected output, output decoding, export labels and drawing.

One module per task; ``TASKS`` maps a model card's ``task`` to its rules. Adding a task means
adding a module with a ``TASK`` object and naming it here.
"""

from __future__ import annotations

from deeptest_iot.errors import ConfigError
from deeptest_iot.tasks.base import Task, Verdicts
from deeptest_iot.tasks.classification import TASK as _CLASSIFICATION
from deeptest_iot.tasks.detection import TASK as _DETECTION
from deeptest_iot.tasks.steering import TASK as _STEERING

TASKS: dict[str, Task] = {t.name: t for t in (_STEERING, _CLASSIFICATION, _DETECTION)}


def get_task(name: str) -> Task:
    """The rules of a task by name, or a ConfigError naming the known tasks."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}") from None


def make_oracle(task: str, **options):
    """The oracle of a task: ``"steering"``, ``"classification"`` or ``"detection"``.

    Options (all keyword, all optional; None is ignored, so a caller may pass every option it knows):

    * steering: ``lam`` (5.0), ``delta`` (0.1, output units), ``mse_orig`` (None; needed when labels
      are passed to ``check``), or ``seed_predictions`` + ``seed_labels`` to measure ``mse_orig``.
    * classification: ``classes`` (names), ``max_confidence_drop`` (None: no bound).
    * detection: ``score_threshold`` (0.5), ``iou_threshold`` (0.5), ``min_visible`` (0.5),
      ``classes``, ``box_mapper`` (function ``(matrix, boxes, (h, w)) -> (boxes, visible)``).

    Every oracle's ``check(reference_outputs, outputs, transforms=None, labels=None,
    frame_size=None)`` returns :class:`Verdicts` for the whole batch.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown relation {task!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[task].make_oracle(**options)


__all__ = ["TASKS", "Task", "Verdicts", "get_task", "make_oracle"]
