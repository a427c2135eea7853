"""Make ``python -m pytest`` from the repository root test what ``pytest`` tests: the installed package.

``python -m`` puts the current directory on ``sys.path``. From the repository root that makes the
source folders importable under their folder names, so ``import coverage`` finds ``coverage/``
(installed only as ``deeptest_iot.coverage``) instead of coverage.py, and ``import transforms``
would work although users cannot do it. pytest loads this file before it imports any test module
(``--import-mode=importlib`` keeps pytest itself from adding the root), so the root is taken off
``sys.path`` here, and a top-level module already imported from one of those folders is dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# Source folders that setup.cfg maps into deeptest_iot and never installs under their own names.
MAPPED_FOLDERS = ("coverage", "transforms", "sample_models")


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or ".").resolve() == ROOT
    except (OSError, RuntimeError):
        return False


sys.path[:] = [entry for entry in sys.path if not _is_root(entry)]
for _name in [n for n in sys.modules if n.split(".")[0] in MAPPED_FOLDERS]:
    _file = getattr(sys.modules[_name], "__file__", None) or ""
    if _file and Path(_file).resolve().is_relative_to(ROOT):
        del sys.modules[_name]
