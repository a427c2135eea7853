"""The one options schema: type checks wherever a value comes from, and every door derived from it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deeptest_iot.cli import main
from deeptest_iot.engine.options import BY_NAME, OPTIONS, CampaignOptions, parse_work_size
from deeptest_iot.errors import ConfigError


def config(tmp_path, text):
    path = tmp_path / "campaign.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ('budget = "lots"', r"budget must be a whole number, not 'lots'"),
    ("budget = 1e3", r"budget must be a whole number, not 1000\.0 \(write it without"),
    ("budget = true", r"budget must be a whole number, not True"),
    ("seed = 1.5", r"seed must be a whole number, not 1\.5"),
    ("budget = -1", r"budget must be >= 0"),
    ("lam = 0", r"lam must be > 0"),
    ("max_error_rate = 2", r"max_error_rate must be <= 1"),
    ('strategy = "annealing"', r"strategy must be one of deeptest, deephunter, sweep, random"),
    ("trust_model = 1", r"trust_model must be true or false"),
    ("transforms = 3", r"transforms must be a list of names or one comma-separated string"),
    ('work_size = "huge"', r"work size must be auto, native or WxH"),
    ("[runn]\nbudget = 3", r"unknown table\(s\) \[runn\]"),
    ("budgett = 3", r"unknown option\(s\) budgett \(did you mean budget\?\)"),
    ("budget = 3\n[run]\nbudget = 4", r"budget is set both at the top level and in \[run\]"),
])
def test_config_values_are_type_checked(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        CampaignOptions.from_sources(config(tmp_path, text))
    assert "config file" in str(info.value)


def test_lists_accept_a_comma_separated_string_and_none(tmp_path):
    opts = CampaignOptions.from_sources(config(tmp_path, 'transforms = "rain, fog"\ncoverage = "none"'))
    assert opts.transforms == ("rain", "fog") and opts.coverage == ()
    opts = CampaignOptions.from_sources(config(tmp_path, '[run]\ntransforms = ["rain", "fog,snow"]'))
    assert opts.transforms == ("rain", "fog", "snow")


def test_command_line_wins_over_the_config_and_defaults_fill_the_rest(tmp_path):
    opts = CampaignOptions.from_sources(config(tmp_path, "budget = 16\nseed = 4"), budget=32)
    assert (opts.budget, opts.seed, opts.batch_size) == (32, 4, BY_NAME["batch_size"].default)
    assert opts.given == {"budget", "seed"}


def test_help_shows_the_defaults_that_summary_json_records():
    """`run --help` states each option's default; a campaign with no options records the same values."""
    text = " ".join(CliRunner().invoke(main, ["run", "--help"], terminal_width=400).output.split())
    recorded = CampaignOptions().to_dict()
    for o in OPTIONS:
        assert o.cli_flag in text, o.name
        shown = o.shown_default
        assert f"[default: {shown}]" in text, (o.name, shown)
        if o.shown is None:  # the value itself is shown: it is what summary.json records
            value = recorded[o.name]
            assert shown == ((",".join(value) or "none") if isinstance(value, list) else str(value))


def test_resume_takes_the_options_from_the_folder():
    saved = CampaignOptions(seed=3, strategy="random", transforms=("fog",)).replay_dict()
    again = CampaignOptions.from_sources(None, out="x", resume=True, budget=99)
    resumed = again.resumed_from(json.loads(json.dumps(saved)), "x")
    assert (resumed.seed, resumed.strategy, resumed.transforms, resumed.budget) == (3, "random", ("fog",), 99)
    with pytest.raises(ConfigError, match="seed was 3, now 4"):
        CampaignOptions.from_sources(None, out="x", resume=True, seed=4).resumed_from(saved, "x")


def test_work_size_format():
    assert parse_work_size("auto") == "auto" and parse_work_size("320x240") == (240, 320)
    for bad in ("320", "8x8", "axb"):
        with pytest.raises(ValueError):
            parse_work_size(bad)


def test_plugin_options_come_from_the_schema(pytester):
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    for o in OPTIONS:
        if o.plugin:
            assert f"--dt-{o.plugin}" in text and f"deeptest_{o.plugin.replace('-', '_')}" in text


pytest_plugins = ["pytester"]
