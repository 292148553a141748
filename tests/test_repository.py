"""Repository hygiene: stripped notebooks, one repository address, notebook conventions."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
SLUG = REPO.removeprefix("https://github.com/")


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [ROOT / f for f in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an sdist)
        files = [p for p in ROOT.rglob("*") if ".venv" not in p.parts and "data" not in p.parts]
    return [f for f in files if f.is_file() and f.suffix in {".py", ".md", ".ipynb", ".toml", ".yml", ".cfg", ".txt", ""}]


def _load(nb: Path) -> dict:
    return json.loads(nb.read_text())


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_uses_python3(nb):
    data = _load(nb)
    for cell in data["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{nb.name} has stored outputs: strip them"
            assert cell.get("execution_count") is None, f"{nb.name} has execution counts: strip them"
    assert data["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(nb):
    cells = _load(nb)["cells"]
    text = ["".join(c["source"]) for c in cells]
    code = [t for c, t in zip(cells, text) if c["cell_type"] == "code"]
    assert "colab-badge.svg" in text[0] and f"colab.research.google.com/github/{SLUG}/blob/main/notebooks/{nb.name}" in text[0]
    assert "google.colab" in code[0] and f"git+{REPO}" in code[0], "first code cell must install tlhelpers on Colab"
    # claim(...) is an assert that a smoke run (TLH_SMOKE=1, tiny data) reports instead of raising
    assert any(re.search(r"^\s*(assert |claim\()", t, re.M) for t in code), "a chapter checks its claims with assert cells"
    assert any("<details>" in t for t in text), "exercises need solutions in <details> blocks"
    assert not any("import *" in t for t in code)
    assert not any("pretrained=True" in t for t in code), "use the weights= API"


def test_every_repository_address_is_the_placeholder():
    pattern = re.compile(r"github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/@\s\"')\]#]|$)")
    bad = []
    for path in _tracked_text_files():
        for slug in pattern.findall(path.read_text(errors="ignore")):
            if slug != SLUG:
                bad.append(f"{path.relative_to(ROOT)}: {slug}")
    assert not bad, f"repository addresses other than {SLUG}: {bad}"


def test_no_package_registry_host_is_named():
    # PyTorch's weights host also serves its wheel index, so it is not named either
    hosts = ("pypi" + ".org", "files.python" + "hosted.org", "anaconda" + ".org", "download" + ".pytorch.org")
    bad = [str(p.relative_to(ROOT)) for p in _tracked_text_files() if any(h in p.read_text(errors="ignore") for h in hosts)]
    assert not bad


def test_notebook_headers_are_in_sync():
    import sys

    result = subprocess.run([sys.executable, "tools/sync_notebooks.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_names_the_pinned_release():
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert f"v{version}" in (ROOT / "README.md").read_text()


def test_notebook_run_times_agree_with_the_readme():
    """A notebook's header and the README's chapter table give the same measured run time."""
    from tlhelpers.course.results import notebook_times, run_time

    times = notebook_times(ROOT / "benchmarks" / "results")
    readme = (ROOT / "README.md").read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        header = "".join(json.loads(path.read_text())["cells"][0]["source"])
        paragraph = re.search(r"\*\*Run time\*\*.*?(?=\n\n|\Z)", header, re.S)
        assert paragraph, f"{path.name}: no **Run time** paragraph; run tools/sync_notebooks.py"
        row = next(line for line in readme.splitlines() if f"(notebooks/{path.name})" in line)
        for mode in ("reduced", "full"):
            figure = run_time(times, mode, path.name)
            assert figure in paragraph.group(0), f"{path.name}: header lacks the {mode} time {figure}"
            assert f"| {figure} |" in row, f"README's row of {path.name} lacks the {mode} time {figure}"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [(["BUDGET=laptop"], {"TLH_REDUCED": "1"}, "Budget: laptop - set by TLH_BUDGET."),
     ([], {"TLH_REDUCED": "1"}, "Budget: reduced - set by TLH_REDUCED.")],
)
def test_make_lab_decides_the_budget_once_and_says_how_to_choose(args, env, expected):
    # LAB_ARGS=--version: JupyterLab prints its version and exits instead of serving
    run = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed-stamp", "lab", *args, "LAB_ARGS=--version"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**{k: v for k, v in os.environ.items() if k not in ("TLH_BUDGET", "TLH_REDUCED")}, **env})
    assert run.returncode == 0, run.stderr
    assert expected in run.stdout and "make lab BUDGET=reduced (or laptop, full)" in run.stdout


def test_make_lab_refuses_an_unknown_budget_in_one_line():
    run = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed-stamp", "lab", "BUDGET=tiny",
                          "LAB_ARGS=--version"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "error: TLH_BUDGET='tiny' is not a budget" in run.stderr
    assert "Traceback" not in run.stderr
