"""Parameters whose value moves with severity along a curve rather than a straight line.

``core.Param`` maps severity s linearly: value = identity + s (extreme - identity). Physical
quantities are not felt linearly: halving the visibility of fog matters as much at 2 km as at 50 m,
and rain is "light" below 2.5 mm/h, "heavy" above 7.6 mm/h. These subclasses keep everything else
of ``Param`` (range check, JSON, CLI listing) and change only ``at_severity``, ``fraction`` (its
inverse, used to recover a transform's severity) and ``draw``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .core import Param


@dataclass(frozen=True)
class PowerParam(Param):
    """value = identity + (extreme - identity) * s ** gamma (gamma > 1: finer steps at low severity)."""

    gamma: float = 2.0

    def at_severity(self, s: float) -> float:
        if not self.severity_driven:
            return self.default
        v = self.identity + (s ** self.gamma) * (self.extreme - self.identity)
        return min(max(v, self.lo), self.hi)

    def fraction(self, value: float) -> float:
        lin = super().fraction(value)
        return float(lin ** (1.0 / self.gamma))


@dataclass(frozen=True)
class LogParam(Param):
    """value = identity * (extreme / identity) ** s: equal severity steps multiply the value by the
    same factor (both ends positive). Used for visibility: severity 1/2 is the geometric mean."""

    def at_severity(self, s: float) -> float:
        if not self.severity_driven:
            return self.default
        if s <= 0.0:
            return self.identity
        v = self.identity * (self.extreme / self.identity) ** s
        return min(max(v, self.lo), self.hi)

    def fraction(self, value: float) -> float:
        if not self.severity_driven or value <= 0:
            return 0.0
        f = math.log(value / self.identity) / math.log(self.extreme / self.identity)
        return float(min(max(f, 0.0), 1.0))

    def draw(self, rng: np.random.Generator) -> float:
        """Log-uniform over the range."""
        return float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))


@dataclass(frozen=True)
class LateParam(Param):
    """Zero up to severity ``start``, then linear to ``extreme`` at severity 1 (snow settles on the
    road only in heavy snow). Its ``fraction`` is 0 at the identity and ``start`` + (1 - start) x the
    linear fraction above it, so the transform's severity (the largest fraction) is still recovered."""

    start: float = 0.5

    def at_severity(self, s: float) -> float:
        if not self.severity_driven:
            return self.default
        u = max(0.0, (s - self.start) / (1.0 - self.start))
        v = self.identity + u * (self.extreme - self.identity)
        return min(max(v, self.lo), self.hi)

    def fraction(self, value: float) -> float:
        lin = super().fraction(value)
        return 0.0 if lin <= 0.0 else float(self.start + (1.0 - self.start) * lin)
