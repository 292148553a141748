"""Repository-wide pytest hooks: report each notebook's run time at the end of an nbval run."""

import os
from collections import defaultdict

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = str(report.fspath)
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    smoke = os.environ.get("TLH_SMOKE", "0").lower() in {"1", "true", "yes", "on"}
    mode = "full mode, smoke run" if smoke else "reduced mode" if os.environ.get("TLH_REDUCED") == "1" else "full mode"
    terminalreporter.section(f"notebook run times ({mode}; flagged over 90 s)")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        flag = "" if seconds <= 90 else "  <-- over budget"
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
