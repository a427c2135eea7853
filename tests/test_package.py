"""The package installs as the product card says: mapped sub-packages, console script, no shadowing."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

import deeptest_iot
from deeptest_iot.cli import main


def test_import_coverage_is_still_coverage_py():
    cov = pytest.importorskip("coverage")
    assert hasattr(cov, "Coverage"), f"`import coverage` found {cov.__file__}, not coverage.py"
    assert "deeptest_iot" not in (cov.__file__ or "")


def test_subpackages_are_mapped_into_deeptest_iot():
    import deeptest_iot.coverage as dc
    import deeptest_iot.transforms as dt

    assert dt.__name__ == "deeptest_iot.transforms"
    assert dc.__name__ == "deeptest_iot.coverage"


def test_version_and_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert deeptest_iot.__version__ in result.output
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_console_script_installed():
    out = subprocess.run([sys.executable, "-m", "deeptest_iot", "--version"], capture_output=True, text=True,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    assert deeptest_iot.__version__ in out.stdout
