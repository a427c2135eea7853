"""Image transformations (installed as ``deeptest_iot.transforms``).

DeepTest's photometric and affine transformations, weather as code, and IoT sensor faults, as
immutable values that work on uint8 RGB batches (N, H, W, 3)::

    from deeptest_iot.transforms import get, Chain, REGISTRY, PRESETS, map_points, map_boxes
    fog = get("fog", severity=0.5)
    out = fog(images, seed=0)
"""

# Import order is registry order: photometric, geometric, weather, sensor.
from . import photometric, geometric, weather, sensor  # noqa: F401,I001  (register the transforms)
from .chain import MAX_AFFINE, Chain, as_chain
from .core import KINDS, REGISTRY, Param, Transform, TransformSpec, from_dict, get
from .points import map_boxes, map_points
from .presets import PRESETS, presets_with

__all__ = ["KINDS", "MAX_AFFINE", "PRESETS", "REGISTRY", "Chain", "Param", "as_chain", "Transform", "TransformSpec",
           "from_dict", "get", "map_boxes", "map_points", "names", "presets_with"]


def names(kind: str | None = None) -> list[str]:
    """Registered transform names, in registry order, optionally of one kind."""
    return [n for n, s in REGISTRY.items() if kind is None or s.kind == kind]
