"""Coverage for a run: the profile the criteria need and the tracker, resolved in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from deeptest_iot.errors import ConfigError

#: Criteria that compare activations with a training profile.
PROFILED = ("kmnc", "nbc", "snac")


def resolve_profile(mut, specs: Sequence[str], explicit: str | None, seed_activations: Callable[[], dict]):
    """The training profile KMNC/NBC/SNAC need, and where it came from: ``explicit`` (a path), the
    ``.profile.npz`` beside the model, else the seeds' activations (``seed_activations()``)."""
    from deeptest_iot.coverage import Profile, parse_specs

    if not any(s.kind in PROFILED for s in parse_specs(specs)):
        return None, None
    if explicit:
        return Profile.load(explicit, mut.fingerprint, mut.layer_sizes), str(explicit)
    if mut.path:
        beside = Path(mut.path).with_suffix(".profile.npz")
        if beside.is_file():
            return Profile.load(beside, mut.fingerprint, mut.layer_sizes), str(beside)
    return Profile.from_batches([seed_activations()], mut.fingerprint, mut.layer_sizes), "seeds"


def profile_warning(profile, card) -> str | None:
    """A sentence when ``profile`` was made with other preprocessing than ``card``'s (its KMNC/NBC
    ranges then describe other tensors than the campaign feeds the model), else None."""
    recorded = getattr(profile, "inputs", None)
    if profile is None or recorded is None or recorded == card.preprocessing():
        return None
    now = card.preprocessing()
    diff = ", ".join(f"{k} {recorded.get(k)} then, {now.get(k)} now" for k in now if recorded.get(k) != now.get(k))
    return (f"the coverage profile was made under another model card ({diff}): KMNC, NBC and SNAC compare "
            "activations with ranges measured on differently preprocessed frames; profile the model again")


def make_tracker(mut, specs: Sequence[str], profile_path: str | None, seed_activations: Callable[[], dict]):
    """A CoverageTracker for ``specs`` on ``mut`` and where its profile came from; (None, None) without
    criteria. A model without readable layers is refused with what to do instead."""
    if not specs:
        return None, None
    if not mut.supports_coverage:
        raise ConfigError(f"coverage needs a Keras model; {mut.name!r} is a {mut.kind} model. Run it with "
                          "--coverage none to test the metamorphic relations only")
    from deeptest_iot.coverage import CoverageTracker

    profile, source = resolve_profile(mut, specs, profile_path, seed_activations)
    return CoverageTracker(specs, mut.layer_sizes, profile, fingerprint=mut.fingerprint), source
