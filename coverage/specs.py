"""Parse criterion spec strings ("nc:0.5", "kmnc:10", "nbc", ...) into checked, canonical specs.

One place decides the defaults and the error messages, so the tracker, the CLI and saved files
all agree on what "nc" means.
"""

from __future__ import annotations

from dataclasses import dataclass

from deeptest_iot.errors import ConfigError

#: Default parameter of each criterion when the spec gives none.
#: nc 0.75: DeepTest's t = 0.2 (and 0.1) saturates within a few dozen seeds on a real steering
#:   model, so the default is a high threshold (DeepXplore also measured thresholds up to 0.75).
#:   For guiding a search prefer kmnc/nbc, which keep growing longer (docs/coverage.md).
#: kmnc 10: DeepGauge used k = 1000 for MNIST, but with a few thousand generated inputs per
#:   campaign a 1000-way split leaves almost every section empty; 10 grows steadily.
#: tknc 3 and tknp 1: DeepGauge reported top-k with k = 1, 2, 3; TKNP counts distinct per-input
#:   tuples, and k = 1 already distinguishes inputs well without every input being new.
#: nc-means 0.75: as nc (it is the variant that scales over the channel means; see criteria.NCMeans).
DEFAULTS = {"nc": 0.75, "nc-means": 0.75, "kmnc": 10, "tknc": 3, "tknp": 1}

#: Criteria that need a training profile (per-neuron low/high).
NEEDS_PROFILE = frozenset({"kmnc", "nbc", "snac"})

KNOWN = ("nc", "nc-means", "kmnc", "nbc", "snac", "tknc", "tknp")
THRESHOLD_KINDS = ("nc", "nc-means")  # a float threshold t in [0, 1) as parameter
_NO_PARAM = ("nbc", "snac")


@dataclass(frozen=True)
class CriterionSpec:
    """A parsed criterion: ``kind`` in KNOWN and its parameter (threshold t or k; None if none)."""

    kind: str
    param: float | int | None

    @property
    def name(self) -> str:
        """Canonical spec string, the key used in coverage() and summaries: "nc:0.75", "nbc"."""
        if self.param is None:
            return self.kind
        if self.kind in THRESHOLD_KINDS:
            return f"{self.kind}:{float(self.param):g}"
        return f"{self.kind}:{int(self.param)}"

    @property
    def needs_profile(self) -> bool:
        return self.kind in NEEDS_PROFILE

    def __str__(self) -> str:
        return self.name


def parse_spec(spec: str | CriterionSpec) -> CriterionSpec:
    """Parse one spec string; raise ConfigError saying what is wrong and what is accepted."""
    if isinstance(spec, CriterionSpec):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"a coverage criterion must be a string like 'nc:0.5' or 'kmnc:10', got {spec!r}")
    text = spec.strip().lower()
    kind, sep, arg = text.partition(":")
    kind, arg = kind.strip(), arg.strip()
    if kind not in KNOWN:
        raise ConfigError(f"unknown coverage criterion {spec!r}; known: {', '.join(KNOWN)} "
                          f"(e.g. 'nc:0.5', 'nc-means:0.5', 'kmnc:10', 'nbc', 'snac', 'tknc:3', 'tknp:1')")
    if kind in _NO_PARAM:
        if sep:
            raise ConfigError(f"coverage criterion {kind!r} takes no parameter, got {spec!r}")
        return CriterionSpec(kind, None)
    if not sep:
        return CriterionSpec(kind, DEFAULTS[kind])
    if not arg:
        raise ConfigError(f"coverage criterion {spec!r} has an empty parameter; write e.g. '{kind}:{DEFAULTS[kind]}'")
    if kind in THRESHOLD_KINDS:
        try:
            t = float(arg)
        except ValueError:
            raise ConfigError(f"{kind} threshold must be a number in [0, 1), got {arg!r} in {spec!r}") from None
        if not 0.0 <= t < 1.0:
            raise ConfigError(f"{kind} threshold must be in [0, 1) (scaled values lie in [0, 1], so t >= 1 "
                              f"can never be exceeded), got {t:g} in {spec!r}")
        return CriterionSpec(kind, t)
    try:
        k = int(arg)
    except ValueError:
        raise ConfigError(f"{kind} needs a positive whole number k, got {arg!r} in {spec!r}") from None
    if k < 1:
        raise ConfigError(f"{kind} needs k >= 1, got {k} in {spec!r}")
    if kind == "kmnc" and k > 65535:
        raise ConfigError(f"kmnc k must be at most 65535 sections, got {k} in {spec!r}")
    return CriterionSpec(kind, k)


def parse_specs(specs) -> list[CriterionSpec]:
    """Parse a list of specs (or one comma-separated string); refuse empty lists and duplicates."""
    if isinstance(specs, (str, CriterionSpec)):
        specs = [s for s in str(specs).split(",") if s.strip()] if isinstance(specs, str) else [specs]
    parsed = [parse_spec(s) for s in specs]
    if not parsed:
        raise ConfigError("no coverage criteria given; pass e.g. ['nc:0.75', 'kmnc:10']")
    seen: dict[str, int] = {}
    for p in parsed:
        if p.name in seen:
            raise ConfigError(f"coverage criterion {p.name!r} is listed twice")
        seen[p.name] = 1
    return parsed
