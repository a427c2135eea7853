"""The one options schema: every campaign setting with its type, default, range and help.

The ``run`` command's click options (with their true defaults in ``--help``), the TOML config
file, the pytest plugin's options and ini keys, and :class:`CampaignOptions` are all derived from
``OPTIONS``, so they cannot drift apart. Values are type-checked wherever they come from: a string
or a float for a whole-number option, a boolean for a number, or an unknown key is a ConfigError
naming the option and where it came from. Imports only the standard library (the pytest plugin
reads this module in every session).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from deeptest_iot.errors import ConfigError

#: Transform names, coverage criteria and the like are lists; ``none`` stands for the empty list.
NONE_WORD = "none"
SAMPLE_MODEL = "dave2_steering"
#: Measured on the sample steering model (docs/coverage.md): NC at 0.2 and 0.5 is ~99% on the 50
#: seeds alone and NC at 0.75 saturates within a few hundred inputs, while KMNC and NBC keep
#: growing. NC is tracked for reporting; KMNC and NBC guide by default.
DEFAULT_COVERAGE = ("nc:0.75", "kmnc:10", "nbc")
TRUST_HELP = ("Load models holding Lambda layers with Python bytecode. DANGEROUS: loading such a file RUNS "
              "ARBITRARY CODE from it on this machine; only use this for files you made or fully trust.")


@dataclass(frozen=True)
class Option:
    """One setting. ``kind``: int, float, bool, str, path or list (of strings).

    ``shown`` is how ``--help`` states the default when the value alone would not say it (None:
    "all transforms"). ``resumable`` options may change when a campaign is resumed; the others
    define which findings a campaign makes and must match. ``plugin`` names the pytest option
    (``--dt-<plugin>``, ini ``deeptest_<plugin with _>``) when the plugin exposes the setting, with
    ``plugin_default`` and ``plugin_help`` where they differ from a campaign's.
    """

    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    flag: str | None = None
    metavar: str | None = None
    shown: str | None = None
    resumable: bool = False
    plugin: str | None = None
    plugin_default: Any = None
    plugin_help: str | None = None
    parse: Any = None  # a function value -> value for a string with a format (raises ValueError)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        if isinstance(self.default, (list, tuple)):
            return ",".join(self.default) or NONE_WORD
        return str(self.default)

    def coerce(self, value: Any, where: str | None = None, from_text: bool = False) -> Any:
        """``value`` as this option's type, or a ConfigError saying what is wrong, where (``where`` names
        the setting as the user wrote it, e.g. "config file x.toml: budget"), and what is allowed.

        ``from_text``: the value is a string from a command line or an ini file, parsed by kind.
        """
        where = where or self.name
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"{where} needs a value ({self.describe()})")
        if self.kind == "list":
            return self._coerce_list(value, where)
        if from_text and isinstance(value, str):
            value = self._parse_text(value, where)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, not {value!r}")
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                hint = " (write it without a decimal point or exponent)" if isinstance(value, float) else ""
                raise ConfigError(f"{where} must be a whole number, not {value!r}{hint}")
            return self._in_range(value, where)
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number, not {value!r}")
            return self._in_range(float(value), where)
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where} must be a {'path' if self.kind == 'path' else 'string'}, not {value!r}")
        value = str(value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where} must be one of {', '.join(self.choices)}, not {value!r}")
        if self.parse is not None:
            try:
                self.parse(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        return value

    def _parse_text(self, text: str, where: str) -> Any:
        text = text.strip()
        if self.kind == "bool":
            lowered = text.lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ConfigError(f"{where} must be true or false, not {text!r}")
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
        except ValueError:
            raise ConfigError(f"{where} must be a {'whole number' if self.kind == 'int' else 'number'}, "
                              f"not {text!r}") from None
        return text

    def _coerce_list(self, value: Any, where: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{where} must be a list of names or one comma-separated string, not {value!r}")
        flat = tuple(part.strip() for item in items for part in item.replace("\n", ",").split(",") if part.strip())
        return () if flat == (NONE_WORD,) else flat

    def _in_range(self, value, where: str):
        low, high = self.minimum, self.maximum
        if low is not None and (value < low or (self.exclusive_minimum and value == low)):
            raise ConfigError(f"{where} must be {'>' if self.exclusive_minimum else '>='} {low:g}, not {value!r}")
        if high is not None and value > high:
            raise ConfigError(f"{where} must be <= {high:g}, not {value!r}")
        return value

    def describe(self) -> str:
        kind = {"int": "a whole number", "float": "a number", "bool": "true or false", "list": "a list",
                "path": "a path", "str": "a string"}[self.kind]
        return f"{kind}; default {self.shown_default}"


OPTIONS: tuple[Option, ...] = (
    # -- the model ---------------------------------------------------------------------------
    Option("model", "path", None, "Model to test (.keras, .h5, .tflite, .onnx, SavedModel dir).", nullable=True,
           shown=f"the sample steering model {SAMPLE_MODEL}", plugin="model",
           plugin_help="model file to test (.keras, .h5, .tflite, .onnx or SavedModel dir; its model card is the "
                       ".toml beside it), or sample:NAME for a shipped sample model (sample:dave2_steering)"),
    Option("card", "path", None, "Model card TOML.", nullable=True, shown="the .toml beside the model"),
    Option("trust_model", "bool", False, TRUST_HELP, plugin="trust-model"),
    Option("twin", "str", None, "The model a device runs, converted from --model (a .tflite or .onnx file made by "
           "`deeptest-iot convert`; int8, float16, dynamic or onnx for that twin beside the model): every input is "
           "also judged by the differential relation, twin against float model on the same frame.", nullable=True,
           metavar="PATH|int8|float16|dynamic|onnx", shown="none", plugin="twin",
           plugin_help="the converted twin of the model under test (a .tflite or .onnx file, or int8, float16, "
                       "dynamic or onnx for that twin beside the model) for the twin_under_test fixture"),
    Option("coverage_on", "str", "model", "Which model's neurons --coverage tracks when a --twin is given: the float "
           "model or the twin (its mapped LiteRT/ONNX tensors).", choices=("model", "twin")),
    Option("include", "list", (), "Count only layers whose name matches these globs (comma-separated).",
           metavar="GLOBS", shown="every feature layer"),
    Option("exclude", "list", (), "Do not count layers whose name matches these globs (comma-separated).",
           metavar="GLOBS"),
    # -- the seeds ---------------------------------------------------------------------------
    Option("seeds", "path", None, "Folder of seed frames (png/jpg).", nullable=True, shown="generated road scenes",
           plugin="seeds", plugin_help="folder of seed frames (.png/.jpg); default: generated road scenes"),
    Option("labels", "path", None, "Labels CSV for --seeds (e.g. frame_id,steering_angle).", nullable=True,
           shown="none", plugin="labels", plugin_help="CSV of steering labels for the seed frames"),
    Option("max_seeds", "int", None, "Use at most this many seed frames, evenly spread over the folder "
           "(consecutive video frames are near-duplicates).", nullable=True, minimum=1, shown="all"),
    Option("work_size", "str", "auto", "Size the seeds are kept and transformed at: auto (the card's crop "
           "at 1.5x the network input, aspect kept), native (the frames' own size) or WxH.",
           metavar="auto|native|WxH", parse=lambda v: parse_work_size(v)),
    Option("n_seeds", "int", 50, "How many scenes to generate when no --seeds are given.", minimum=1,
           plugin="n-seeds", plugin_default=32,
           plugin_help="number of generated scenes when no seed folder is given"),
    Option("failing_seeds", "str", "skip", "Seeds the model already gets wrong by their labels: skip them, "
           "test them too with their findings counted apart from the transforms' error rates, or count them as "
           "any other seed (validate does: a candidate wrong on clean frames has regressed).",
           choices=("skip", "test", "count")),
    # -- the search --------------------------------------------------------------------------
    Option("strategy", "str", "deeptest", "Search strategy.", choices=("deeptest", "deephunter", "sweep", "random")),
    Option("transforms", "list", None, "Transforms to use, comma-separated (see `deeptest-iot transforms list`).",
           nullable=True, metavar="LIST", shown="all"),
    Option("max_links", "int", 3, "Most transforms in one chain (and never more than one affine): longer "
           "chains turn real frames into noise.", minimum=1),
    Option("budget", "int", 2000, "Inputs to run through the model, seeds not counted.", minimum=0, resumable=True,
           plugin="budget", plugin_default=1000,
           plugin_help="default budget of a model test: transformed inputs the metamorphic helper checks for it"),
    Option("time", "float", None, "Stop after this many seconds.", nullable=True, minimum=0, exclusive_minimum=True,
           metavar="SECONDS", shown="no limit", resumable=True),
    Option("coverage", "list", DEFAULT_COVERAGE, "Coverage criteria, comma-separated; 'none' for none.",
           metavar="LIST", plugin="coverage",
           plugin_help="coverage criteria tracked over everything model tests run, comma separated ('none' for none)"),
    Option("guide", "list", None, "Criteria whose gains steer the search; 'disagreement' (with --twin) credits "
           "inputs on which the twin disagrees more than on anything tried from their seed; 'shuffled' credits the "
           "same number of random inputs instead (an ablation control).", nullable=True, metavar="LIST",
           shown="all tracked but NC, which saturates, and disagreement with --twin"),
    Option("profile", "path", None, "Training-activation profile for KMNC/NBC/SNAC.", nullable=True,
           shown="<model>.profile.npz, else the seeds"),
    Option("seed", "int", 0, "Campaign seed: same options and seed, same findings.", minimum=0),
    Option("batch_size", "int", 128, "Inputs per model call.", minimum=1),
    # -- the engine (docs/distributed.md) ------------------------------------------------------------
    Option("engine", "str", "local", "Where the batches run: local (this process) or ray (Ray actors, one model "
           "each; needs the ray extra). sweep and random give the same findings on both.", choices=("local", "ray"),
           resumable=True),
    Option("address", "str", None, "--engine ray: the Ray cluster to join (auto: the one this machine belongs "
           "to; HOST:PORT: its head node).", nullable=True, metavar="auto|HOST:PORT",
           shown="a Ray instance started on this machine", resumable=True),
    Option("workers", "int", None, "--engine ray: Ray actors (each loads the model once and takes one CPU).",
           nullable=True, minimum=1, shown="the cluster's CPUs", resumable=True),
    Option("merge_every", "int", 4, "--engine ray with deeptest or deephunter: batches each worker's search runs "
           "on its shard of the seeds between two merges of coverage and corpora.", minimum=1, resumable=True),
    # -- the relation ------------------------------------------------------------------------
    Option("lam", "float", 5.0, "Steering relation with labels: fail when (label - pred)^2 > lambda * MSE_orig.",
           flag="--lambda", minimum=0, exclusive_minimum=True),
    Option("mse_orig", "float", None, "Steering relation with labels: a fixed MSE_orig instead of the one "
           "measured on the seeds (validate uses the baseline's).", nullable=True, minimum=0, shown="measured"),
    Option("delta", "float", 0.1, "Steering relation without labels: fail when |pred_t - pred_o| > delta "
           "(output units).", minimum=0),
    Option("max_confidence_drop", "float", None, "Classification relation: also fail when the top-1 "
           "probability drops by more than this.", nullable=True, minimum=0, maximum=1, shown="no bound"),
    Option("twin_delta", "float", None, "Differential relation of a steering model: fail when |twin - float| > this "
           "(output units).", nullable=True, minimum=0, shown="0.02"),
    Option("realism", "str", "reject", "Mutants that no longer look like their seed's road scene (a small grey "
           "copy compared with the warp undone; thresholds per transform family): reject them before the model, "
           "flag their findings, or off.", choices=("reject", "flag", "off")),
    Option("learned_gate", "path", "auto", "A learned realism gate (an autoencoder and a density of image statistics, made "
           "by `deeptest-iot profile --learned-gate`): its path, auto (MODEL.gate.keras beside the model when there is one) or none.",
           shown="auto"),
    Option("alpha", "float", 0.02, "DeepHunter validity: a mutant may change fewer than alpha * pixels ...",
           minimum=0, maximum=1),
    Option("beta", "float", 0.2, "... or every pixel by at most beta * 255.", minimum=0, maximum=1),
    # -- the outcome -------------------------------------------------------------------------
    Option("save_images", "bool", False, "Also write each finding's seed and transformed images as PNGs. Without it "
           "a finding is a recipe (seed id, chain with per-link seeds, outputs) that report, export and `show` "
           "render again, byte-identical to what the model saw.", resumable=False),
    Option("max_error_rate", "float", 0.0, "Exit 1 when the error rate is above this (0: any finding).",
           minimum=0, maximum=1, resumable=True),
    Option("out", "path", "deeptest-out", "Output folder.", resumable=True, plugin="report",
           plugin_default="deeptest-report",
           plugin_help="folder for findings (image pairs, findings.jsonl, summary.json), in rootdir unless "
                       "a path is given"),
    Option("resume", "bool", False, "Continue the campaign in --out where it stopped (its options are read "
           "from the folder).", resumable=True),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def parse_work_size(value: str):
    """"auto", "native", or (height, width) from "WxH"; ValueError with what is expected otherwise."""
    if value in ("auto", "native"):
        return value
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise ValueError(f"work size must be auto, native or WxH (e.g. 320x240), not {value!r}") from None
    if w < 16 or h < 16:
        raise ValueError(f"work size {value!r} is smaller than 16x16")
    return h, w
#: The relation options each task's oracle takes (campaigns pass only these to it).
RELATION_OPTIONS = {"steering": ("lam", "delta", "mse_orig"), "classification": ("max_confidence_drop",),
                    "detection": ()}


class CampaignOptions:
    """Every setting of a campaign, type-checked against ``OPTIONS``; ``to_dict`` goes into summary.json.

    ``given`` holds the names set explicitly (by a config file or the command line), so that a
    resumed campaign can take the rest from its folder.
    """

    __slots__ = tuple(o.name for o in OPTIONS) + ("given",)

    def __init__(self, source: str = "options", given: Iterable[str] | None = None, **values: Any):
        unknown = sorted(set(values) - set(BY_NAME))
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
        for o in OPTIONS:
            object.__setattr__(self, o.name, o.coerce(values[o.name], f"{source}: {o.name}") if o.name in values
                               else _frozen(o.default))
        object.__setattr__(self, "given", frozenset(values if given is None else given))

    def __setattr__(self, key, value):
        raise AttributeError("CampaignOptions are immutable; use .replace(...)")

    def replace(self, **changes: Any) -> "CampaignOptions":
        values = {**self.to_dict(), **changes}
        return CampaignOptions(given=self.given | set(changes), **values)

    @classmethod
    def from_sources(cls, config_file: str | None = None, **cli: Any) -> "CampaignOptions":
        """Options from a TOML config (a ``[run]`` table or top-level keys), overridden by CLI values
        (None: not given)."""
        values: dict[str, Any] = {}
        if config_file:
            from deeptest_iot.fileio import read_toml

            table = config_table(read_toml(config_file, "config file"), str(config_file))
            values.update({k: BY_NAME[k].coerce(v, f"config file {config_file}: {k}") for k, v in table.items()})
        cli = {k: v for k, v in cli.items() if v is not None and not (BY_NAME[k].kind == "list" and v == ())}
        values.update({k: BY_NAME[k].coerce(v, BY_NAME[k].cli_flag) for k, v in cli.items()})
        return cls(source="options", **values)

    def to_dict(self) -> dict:
        return {o.name: _jsonable(getattr(self, o.name)) for o in OPTIONS}

    def replay_dict(self) -> dict:
        """The options that define which findings a campaign makes (for resume and compare checks)."""
        return {k: v for k, v in self.to_dict().items() if not BY_NAME[k].resumable}

    def relation_options(self, task: str) -> dict:
        """The relation options this task's oracle takes, as set here."""
        return {name: getattr(self, name) for name in RELATION_OPTIONS.get(task, ())}

    def resumed_from(self, saved: Mapping[str, Any], folder: str) -> "CampaignOptions":
        """The options of a resumed campaign: those saved in its folder, except resumable ones given
        again; an option given again with another value than the campaign's is refused."""
        values = {}
        for o in OPTIONS:
            if o.resumable:
                values[o.name] = getattr(self, o.name)
                continue
            if o.name not in saved:
                raise ConfigError(f"{folder}: its checkpoint does not record option {o.name!r}; it was written by "
                                  "another version of deeptest-iot and cannot be resumed by this one")
            before = o.coerce(saved[o.name], f"{folder}/checkpoint.json: {o.name}")
            now = getattr(self, o.name)
            if o.name in self.given and _jsonable(now) != _jsonable(before):
                raise ConfigError(f"--resume with different options than the campaign in {folder}: "
                                  f"{o.name} was {_jsonable(before)!r}, now {_jsonable(now)!r} (leave it out to "
                                  "keep the campaign's)")
            values[o.name] = before
        return CampaignOptions(given=self.given, **values)

    def __eq__(self, other):
        return isinstance(other, CampaignOptions) and self.to_dict() == other.to_dict()

    def __repr__(self):
        changed = {k: v for k, v in self.to_dict().items() if _jsonable(BY_NAME[k].default) != v}
        return f"CampaignOptions({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def config_table(data: Mapping[str, Any], path: str) -> dict:
    """The campaign options of a parsed config file: its ``[run]`` table and/or top-level keys."""
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    unknown_tables = sorted(set(tables) - {"run"})
    if unknown_tables:
        raise ConfigError(f"config file {path}: unknown table(s) {', '.join(f'[{t}]' for t in unknown_tables)}; "
                          "put campaign options in a [run] table or at the top level")
    table = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for key, value in tables.get("run", {}).items():
        if key in table:
            raise ConfigError(f"config file {path}: {key} is set both at the top level and in [run]")
        table[key] = value
    unknown = sorted(set(table) - set(BY_NAME))
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, list(BY_NAME), 1)) else k
                 for k in unknown]
        raise ConfigError(f"config file {path}: unknown option(s) {', '.join(hints)}; known: {', '.join(BY_NAME)}")
    return table


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def click_options(func):
    """Decorate a click command with one option per entry of ``OPTIONS`` (default None: "not given")."""
    import click

    types = {"int": click.INT, "float": click.FLOAT, "str": click.STRING, "path": click.Path()}
    for o in reversed(OPTIONS):
        text = f"{o.help} [default: {o.shown_default}]"
        if o.kind == "bool":
            option = click.option(o.cli_flag, o.name, is_flag=True, default=None, help=text)
        elif o.kind == "list":
            option = click.option(o.cli_flag, o.name, multiple=True, metavar=o.metavar or "LIST", help=text)
        else:
            kind = click.Choice(o.choices) if o.choices else types[o.kind]
            option = click.option(o.cli_flag, o.name, type=kind, default=None, metavar=o.metavar, help=text)
        func = option(func)
    return func


def plugin_options() -> list[Option]:
    """The options the pytest plugin exposes (``--dt-*`` and ``deeptest_*`` ini keys)."""
    return [o for o in OPTIONS if o.plugin]


def plugin_ini(option: Option) -> str:
    return "deeptest_" + option.plugin.replace("-", "_")
