"""The documentation holds: README size and links, links that resolve, a README example that runs,
generated pages that match their generator, no pointer outside the repository, no task branch
outside deeptest_iot/tasks/."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250
EXAMPLE_MARKER = "<!-- readme-example: runs -->"

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def _docs_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _prose_lines(text: str):
    """(line number, line) of the Markdown outside fenced code blocks, inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub("", line)


def _links(path: Path) -> list[tuple[int, str]]:
    return [(n, m.group(1)) for n, line in _prose_lines(path.read_text(encoding="utf-8"))
            for m in LINK.finditer(line)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen = set(), {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        slug = _slug(m.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


# --------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------


def test_readme_is_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_links_every_docs_page():
    linked = {(README.parent / target.split("#")[0]).resolve() for _, target in _links(README)
              if "://" not in target and not target.startswith("#")}
    missing = [p.relative_to(ROOT).as_posix() for p in _docs_pages() if p.resolve() not in linked]
    assert not missing, f"README.md does not link these docs pages: {missing}"


def test_every_relative_link_resolves():
    broken = []
    for page in [README, *_docs_pages()]:
        for line, target in _links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(ROOT)}:{line}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif ROOT not in dest.parents and dest != ROOT:
                broken.append(f"{where} (points outside the repository)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{where} (no heading with anchor #{anchor})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_test_command_is_what_ci_runs():
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Test\s*\n+```bash\n(.*?)\n```", text, re.S | re.M)
    assert m, "README.md needs a '## Test' section whose first block is the test command"
    command = m.group(1).strip()
    ci = ROOT / ".ci" / "run"
    ci_lines = [line.strip() for line in ci.read_text(encoding="utf-8").splitlines()]
    assert command in ci_lines, f"README's test command {command!r} is not a line of .ci/run"


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    assert EXAMPLE_MARKER in text, f"README.md has no {EXAMPLE_MARKER} marker before its Python example"
    after = text.split(EXAMPLE_MARKER, 1)[1]
    m = re.match(r"\s*```python\n(.*?)\n```", after, re.S)
    assert m, f"the line after {EXAMPLE_MARKER} must open a ```python block"
    return m.group(1)


def test_readme_example_has_one_import_line():
    code = _readme_example()
    imports = [line for line in code.splitlines() if re.match(r"\s*(import|from)\s+\S+", line)]
    assert len(imports) == 1, f"the README example should have one import line, has {imports}"
    assert imports[0].startswith("from deeptest_iot import "), imports[0]
    import deeptest_iot

    names = [n.strip() for n in imports[0].split(" import ", 1)[1].split(",")]
    assert set(names) <= set(deeptest_iot.__all__), f"not in the public API: {set(names) - set(deeptest_iot.__all__)}"


@pytest.mark.slow
def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_readme_example(), str(README), "exec"), {"__name__": "readme_example"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    exit_code, inputs, findings, error_rate = lines[0].split()
    # What the README says it prints: exit code 1 (findings), rain and fog at four severities over the
    # (at most 50) scenes the model gets right.
    assert exit_code == "1" and 0 < int(inputs) <= 400 and int(inputs) % 8 == 0
    assert int(findings) > 0 and 0 < float(error_rate) <= 1
    assert lines[1].split(" of 16 frames")[0].isdigit()
    assert (tmp_path / "weather-out" / "summary.json").is_file()


# --------------------------------------------------------------------------------------------
# generated pages
# --------------------------------------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["transforms.md", "options.md"])
def test_generated_page_is_up_to_date(page):
    generated = _generator().PAGES[page]()
    committed = (DOCS / page).read_text(encoding="utf-8")
    assert committed == generated, f"docs/{page} is out of date: run `python docs/generate.py` and commit it"


def test_generated_pages_cover_the_registry_and_the_schema():
    from deeptest_iot.engine.options import OPTIONS
    from deeptest_iot.transforms import PRESETS, REGISTRY

    transforms = (DOCS / "transforms.md").read_text(encoding="utf-8")
    for name, spec in REGISTRY.items():
        assert f"#### {name}\n" in transforms
        for p in spec.params:
            assert f"| `{p.name}` |" in transforms
    for preset in PRESETS:
        assert f"| `{preset}` |" in transforms
    options = (DOCS / "options.md").read_text(encoding="utf-8")
    for o in OPTIONS:
        assert f"| `{o.name}` |" in options


# --------------------------------------------------------------------------------------------
# the repository stands on its own
# --------------------------------------------------------------------------------------------


def _repository_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
        files = [ROOT / f for f in listed]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", "__pycache__", ".ci-venv", "build", "dist"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not (set(p.relative_to(ROOT).parts) & skip)
                 and not any(part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)]
    return [f for f in files if f.is_file()]


def test_nothing_outside_benchmarks_points_outside_the_repository():
    # Built from parts so that this file does not match itself.
    needles = [".." + "/shared", "/work" + "/shared", "DESIGN" + ".md"]
    hits = []
    for path in _repository_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("benchmarks/"):
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            hits += [f"{rel}:{number}: {needle}" for needle in needles if needle in line]
    assert not hits, ("the repository must stand on its own (point to docs/design.md instead):\n"
                      + "\n".join(hits))


TASK_NAMES = r"(?:steering|classification|detection)"
TASK_BRANCH = [
    # task == "steering", card.task != 'detection', relation in ("steering", ...), task_name == "..."
    re.compile(r"\b\w*(?:task|relation)\w*\s*(?:==|!=|\bnot\s+in\b|\bin\b)\s*[(\[{]?\s*[rbuf]?['\"]"),
    # ... == "steering" / "detection" != x
    re.compile(r"(?:==|!=)\s*['\"]" + TASK_NAMES + r"['\"]"),
    re.compile(r"['\"]" + TASK_NAMES + r"['\"]\s*(?:==|!=)"),
    # x in ("steering", "detection")
    re.compile(r"\bin\s*[(\[{][^)\]}]*['\"]" + TASK_NAMES + r"['\"]"),
    # match task: case "steering":
    re.compile(r"\bcase\s+['\"]" + TASK_NAMES + r"['\"]"),
]


def _code_lines(path: Path):
    """(line number, source line with comments removed) of a Python file."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    return enumerate(lines, 1)


def test_the_task_branch_check_catches_branches(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('if mut.card.task == "steering":\n    pass\nif relation in ("classification", "x"):\n    pass\n'
                   'ok = "detection" != kind\nif name in ["steering"]:\n    pass\n'
                   'if kind == "list":  # task == "steering" in a comment is fine\n    pass\n')
    found = [line for n, line in _code_lines(bad) if any(p.search(line) for p in TASK_BRANCH)]
    assert len(found) == 4, found


KNOWN_TASK_BRANCHES: set = set()  # none left: every per-task rule is in deeptest_iot/tasks/


def test_no_task_branch_outside_the_tasks_package():
    package = ROOT / "deeptest_iot"
    tasks = package / "tasks"
    hits = {(path.relative_to(ROOT).as_posix(), line.strip()) for path in sorted(package.rglob("*.py"))
            if tasks not in path.parents for _, line in _code_lines(path) if any(p.search(line) for p in TASK_BRANCH)}
    new = sorted(hits - KNOWN_TASK_BRANCHES)
    assert not new, ("per-task rules belong in deeptest_iot/tasks/ (one module per task), not in a branch "
                     "on the task's name:\n" + "\n".join(f"{f}: {line}" for f, line in new))
    gone = sorted(KNOWN_TASK_BRANCHES - hits)
    assert not gone, f"these branches are gone: remove them from KNOWN_TASK_BRANCHES: {gone}"
