"""Named presets: DeepTest's fixed parameter sweeps, and severity sweeps of the weather and sensor faults."""

from __future__ import annotations

from types import MappingProxyType

from .core import Transform, get

_SWEEP = range(1, 11)

_DEEPTEST = {
    "deeptest-translation": tuple(get("translation", tx=10 * p, ty=10 * p) for p in _SWEEP),
    "deeptest-scale": tuple(get("scale", factor=1 + 0.5 * p) for p in _SWEEP),
    "deeptest-shear": tuple(get("shear", factor=round(0.1 * p, 10)) for p in _SWEEP),
    "deeptest-rotation": tuple(get("rotation", degrees=3 * p) for p in _SWEEP),
    "deeptest-contrast": tuple(get("contrast", alpha=round(1 + 0.2 * p, 10)) for p in _SWEEP),
    "deeptest-brightness": tuple(get("brightness", delta=10 * p) for p in _SWEEP),
    "deeptest-blur": (tuple(get("blur_box", k=k) for k in (3, 4, 5, 6))
                      + tuple(get("blur_gaussian", k=k) for k in (3, 5, 7))
                      + tuple(get("blur_median", k=k) for k in (3, 5))
                      + (get("blur_bilateral", d=9, sigma_color=75, sigma_space=75),)),
}

_LEVELS = (0.25, 0.5, 0.75, 1.0)


def _severity_sweep(names) -> tuple[Transform, ...]:
    return tuple(get(n, severity=s) for n in names for s in _LEVELS)


#: name -> tuple of transforms. ``deeptest-sweep`` is all seven of DeepTest's sweeps (70 transforms).
PRESETS = MappingProxyType({
    **_DEEPTEST,
    "deeptest-sweep": tuple(t for sweep in _DEEPTEST.values() for t in sweep),
    "weather": _severity_sweep(("fog", "rain", "snow", "shadow", "glare")),
    "sensor": _severity_sweep(("gaussian_noise", "salt_pepper", "dead_pixels", "jpeg", "lens_dirt")),
})


def presets_with(name: str) -> list[str]:
    """Names of the presets that use transform ``name``."""
    return [p for p, ts in PRESETS.items() if any(t.name == name for t in ts)]
