"""Driving conditions: a transform chain at a severity, constant or ramping along the drive.

Syntax (the ``--condition`` option): links joined by ``+``, each ``NAME:SEVERITY`` or
``NAME:START-END`` (a ramp), NAME a registered transform (``deeptest-iot transforms list``) and
severities in [0, 1]:

    fog:0.5                 fog at severity 0.5 for the whole drive
    rain:0.3-0.8            rain from severity 0.3 at the start to 0.8 at the planned end, linearly
                            in the distance driven
    fog:0.4+rain:0.3        fog, then rain on top, every frame
    none                    no transform (the baseline drive)

Consistent over time: every frame of a drive goes through the same chain with the same
randomness seed (the drive's), so fog stays put and a sensor's dead pixels do not move. Links
whose transform has a parameter named ``t`` (animated weather: seconds) get the drive time in it
at each step (clipped to that parameter's range), so rain and snow move; a transform without
``t`` draws the same drops every frame (frozen rain: drops on the lens rather than falling).
Links whose transform describes the camera or the car (the weather's ``horizon``, ``vfov_deg``,
``camera_height_m``, ``speed_kmh``) get the simulated camera's and car's values (see
``loop.camera_values``), so fog thickens with the true distance of each row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deeptest_iot.errors import ConfigError

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SEVERITY = re.compile(rf"^\s*({_NUMBER})\s*(?:-\s*({_NUMBER})\s*)?$")
NONE = ("none", "clear", "identity")


@dataclass(frozen=True)
class Link:
    """One transform of a condition: its name and its severity at the start and at the end of the drive."""

    name: str
    start: float
    end: float

    @property
    def ramp(self) -> bool:
        return self.start != self.end

    def severity(self, progress: float) -> float:
        """Severity at ``progress`` in [0, 1] of the planned drive."""
        p = min(max(float(progress), 0.0), 1.0)
        return self.start + (self.end - self.start) * p

    def text(self) -> str:
        return f"{self.name}:{_fmt(self.start)}" + (f"-{_fmt(self.end)}" if self.ramp else "")


def _clip(param, value: float) -> float:
    return min(max(float(value), param.lo), param.hi)


def _fmt(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class Condition:
    """A parsed condition: its links in order (empty: no transform)."""

    links: tuple[Link, ...] = ()

    @property
    def name(self) -> str:
        """The chain's name as result tables write it: link names joined by ``+`` (``none`` when empty)."""
        return "+".join(link.name for link in self.links) or "none"

    @property
    def text(self) -> str:
        """The condition as it is written on the command line (round-trips through ``parse_condition``)."""
        return "+".join(link.text() for link in self.links) or "none"

    @property
    def max_severity(self) -> float:
        return max((max(link.start, link.end) for link in self.links), default=0.0)

    def chain(self, progress: float, time_s: float, camera: dict | None = None):
        """The transform chain of the frame at ``progress`` (0..1 of the planned drive) and drive
        time ``time_s`` seconds (set in each link with a ``t`` parameter). ``camera`` sets the
        parameters that describe the camera or the car (``horizon``, ``vfov_deg``,
        ``camera_height_m``, ``speed_kmh``) in the links whose transform has them; each value is
        clipped to the parameter's range."""
        from deeptest_iot.transforms import Chain, get

        values = dict(camera or {})
        out = []
        for link in self.links:
            t = get(link.name, severity=link.severity(progress))
            changes = {k: v for k, v in {**values, "t": time_s}.items() if k in t.params}
            if changes:
                t = t.replace(**{k: _clip(t.spec.param(k), v) for k, v in changes.items()})
            out.append(t)
        return Chain(out)

    @property
    def animated(self) -> bool:
        """True when some link's transform takes the time (a ``t`` parameter)."""
        from deeptest_iot.transforms import REGISTRY

        return any(any(p.name == "t" for p in REGISTRY[link.name].params) for link in self.links)

    @property
    def constant(self) -> bool:
        """True when every frame of a drive goes through the same chain (no ramp, no time)."""
        return not any(link.ramp for link in self.links) and not self.animated

    def to_dict(self) -> dict:
        return {"text": self.text, "name": self.name,
                "links": [{"name": link.name, "start": link.start, "end": link.end} for link in self.links]}


def parse_condition(text) -> Condition:
    """Parse ``fog:0.5``, ``rain:0.3-0.8``, ``fog:0.4+rain:0.3`` or ``none`` (see the module doc)."""
    from deeptest_iot.transforms import REGISTRY
    from deeptest_iot.transforms.core import spec

    if isinstance(text, Condition):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"condition {text!r}: expected NAME:SEVERITY, e.g. fog:0.5, rain:0.3-0.8 (a ramp) "
                          "or fog:0.4+rain:0.3")
    if text.strip().lower() in NONE:
        return Condition(())
    links = []
    for part in text.split("+"):
        part = part.strip()
        if ":" not in part:
            name = part or "(empty)"
            if part and part not in REGISTRY:
                spec(part)  # unknown name: the registry's message, with a suggestion
            raise ConfigError(f"condition {text!r}: {name} has no severity; write NAME:SEVERITY with a "
                              f"severity in [0, 1], e.g. {part or 'fog'}:0.5, or NAME:START-END for a ramp")
        name, sev = (p.strip() for p in part.split(":", 1))
        spec(name)  # unknown transform name -> ConfigError listing the known ones
        m = _SEVERITY.match(sev)
        if not m:
            if re.match(rf"^\s*-?{_NUMBER}\s*$", sev):
                raise ConfigError(f"condition {text!r}: severity {sev} of {name} is outside [0, 1]")
            raise ConfigError(f"condition {text!r}: malformed severity {sev!r} for {name}; write a number in "
                              f"[0, 1] (e.g. {name}:0.5) or a ramp START-END (e.g. {name}:0.3-0.8)")
        start = float(m.group(1))
        end = float(m.group(2)) if m.group(2) is not None else start
        for v in (start, end):
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"condition {text!r}: severity {v:g} of {name} is outside [0, 1]")
        links.append(Link(name, start, end))
    return Condition(tuple(links))
