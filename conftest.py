"""Repository-wide pytest hooks: report each notebook's run time at the end of an nbval run."""

from collections import defaultdict

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = str(report.fspath)
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook run times (reduced mode budget: 90 s each)")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        flag = "" if seconds <= 90 else "  <-- over budget"
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
