"""The pytest plugin's settings: its options and ini keys, derived from the campaign options schema
(``deeptest_iot.engine.options``), and ``Settings`` resolved from them.

Imports only pytest and the standard library (the plugin loads in every pytest session).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from deeptest_iot.engine.options import BY_NAME, plugin_ini, plugin_options
from deeptest_iot.errors import ConfigError

#: ``--dt-model sample:dave2_steering`` tests a sample model shipped with deeptest-iot.
SAMPLE_PREFIX = "sample:"
PATHS = ("model", "seeds", "labels", "out", "twin")
#: ``--dt-twin int8`` (float16, dynamic, onnx): the twin ``deeptest-iot convert`` wrote beside the model.
TWIN_KINDS = ("int8", "float16", "dynamic", "onnx")


def plugin_default(option):
    return option.plugin_default if option.plugin_default is not None else option.default


def add_options(parser) -> None:
    """Register ``--dt-*`` options and ``deeptest_*`` ini keys for every option the schema exposes."""
    group = parser.getgroup("deeptest-iot", "deeptest-iot model testing")
    for o in plugin_options():
        ini, default = plugin_ini(o), plugin_default(o)
        shown = ",".join(default) if isinstance(default, (list, tuple)) else default
        text = f"{o.plugin_help or o.help} [default: {shown if shown is not None else 'none'}]"
        if o.kind == "bool":
            group.addoption(f"--dt-{o.plugin}", dest=ini, action="store_true", default=None, help=f"{text} (ini: {ini})")
            parser.addini(ini, text, type="bool", default=bool(default))
        else:
            group.addoption(f"--dt-{o.plugin}", dest=ini, default=None, help=f"{text} (ini: {ini})")
            parser.addini(ini, text, type="string", default=None)


@dataclass
class Settings:
    """The plugin's settings, resolved from the command line and the ini file."""

    model: Path | str | None  # a path, or "sample:NAME" for a shipped sample model
    seeds: Path | None
    labels: Path | None
    n_seeds: int
    report: Path
    budget: int
    coverage: tuple[str, ...]
    trust: bool
    twin: Path | str | None = None  # a path, or a conversion target (int8, ...) for the twin beside the model

    @classmethod
    def from_config(cls, config) -> "Settings":
        """Command line first, then the ini file (its paths relative to the ini file), then the defaults;
        a bad value is a usage error naming the option."""
        ini_dir = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
        cwd = Path(config.invocation_params.dir)
        values = {}
        for o in plugin_options():
            ini = plugin_ini(o)
            cli = config.getoption(ini)
            raw, base = (cli, cwd) if cli is not None else (config.getini(ini), ini_dir)
            source = ini
            try:
                if raw is None or raw == "":
                    values[o.name] = None if o.name in PATHS else o.coerce(plugin_default(o), source)
                    continue
                value = o.coerce(raw, source, from_text=True)
            except ConfigError as exc:
                raise pytest.UsageError(f"deeptest-iot: {exc}") from None
            if o.name in PATHS and not (o.name == "model" and value.startswith(SAMPLE_PREFIX)) \
                    and not (o.name == "twin" and value in TWIN_KINDS):
                value = (base / os.path.expanduser(value)).resolve()
            values[o.name] = value
        report = values["out"] or Path(config.rootpath) / plugin_default(BY_NAME["out"])
        return cls(model=values["model"], seeds=values["seeds"], labels=values["labels"],
                   n_seeds=values["n_seeds"], report=Path(report), budget=values["budget"],
                   coverage=tuple(values["coverage"]), trust=bool(values["trust_model"]), twin=values["twin"])
