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


def _imports(package_root):
    """(module file, imported module, imported names) for every `from X import ...` in our packages."""
    import ast
    from pathlib import Path

    for path in sorted(Path(package_root).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                yield path, node.module, [alias.name for alias in node.names]


def test_layering_no_private_name_across_modules_and_no_cli_below_the_cli():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    problems = []
    for folder in ("deeptest_iot", "transforms", "coverage", "sample_models"):
        for path, module, names in _imports(root / folder):
            ours = module.startswith(("deeptest_iot", "transforms", "coverage", "sample_models"))
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if ours and private:
                problems.append(f"{path.relative_to(root)} imports {private} from {module}")
            below_cli = "cli" not in path.relative_to(root).parts and path.name != "__main__.py"
            if below_cli and module.startswith("deeptest_iot.cli"):
                problems.append(f"{path.relative_to(root)} imports the CLI module {module}")
    assert problems == []
