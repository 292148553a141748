"""Repository-wide pytest hooks for the notebook runs (nbval).

- Each notebook's run time is reported at the end of the run.
- The Chinese twins (``notebooks/zh/``) are not collected: their code is the English notebooks' own.
- A notebook cell fails when it shows an image twice, or shows again an image an earlier cell of the
  same notebook already showed: the classic inline-backend mistake of returning (or displaying) a
  figure that is still open, so Jupyter shows it once more when the cell ends. Plot helpers close
  their figures (``tlhelpers.core.style.finish``) and notebooks show each figure once.
"""

import hashlib
from collections import defaultdict

import pytest

# The Chinese twins in notebooks/zh/ hold the English notebooks' code cell for cell (tests/test_zh_twins.py fails
# otherwise), so running them under nbval would only run the same code twice.
collect_ignore_glob = ["notebooks/zh/*"]

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)
_SEEN_IMAGES: dict[str, dict[str, str]] = defaultdict(dict)  # notebook -> image hash -> cell that showed it
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def repeated_images(outputs, seen: dict, where: str) -> list[str]:
    """Problems with the images among one cell's ``outputs``; records new images in ``seen`` (hash -> cell).

    Args:
        outputs: the cell's outputs as nbval collects them (dicts with a ``data`` mime bundle).
        seen: images shown by earlier cells of the notebook, updated in place.
        where: a name of this cell for the messages.
    """
    problems, here = [], set()
    for out in outputs or ():
        data = out.get("data") if hasattr(out, "get") else None
        for mime in _IMAGE_TYPES:
            if not data or mime not in data:
                continue
            digest = hashlib.sha1(str(data[mime]).encode()).hexdigest()
            if digest in here:
                problems.append(f"{where} shows the same image twice (a figure returned or displayed while still open?)")
            elif digest in seen:
                problems.append(f"{where} shows again the image {seen[digest]} already showed")
            here.add(digest)
            seen.setdefault(digest, where)
    return problems


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    outputs = getattr(item, "test_outputs", None)
    if call.when != "call" or not report.passed or outputs is None or not str(item.fspath).endswith(".ipynb"):
        return
    problems = repeated_images(outputs, _SEEN_IMAGES[str(item.fspath)], item.name)
    if problems:
        report.outcome = "failed"
        report.longrepr = "\n".join(problems) + (
            "\nShow each figure once: plot helpers end with tlhelpers.core.style.finish(fig) (it closes the figure), and a"
            " cell either ends with the figure or calls display(fig), not both."
        )


def pytest_runtest_logreport(report):
    path = str(report.fspath)
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    from tlhelpers.core.runtime import budget, is_smoke

    mode = f"{budget()} budget" + (", smoke run" if is_smoke() else "")
    terminalreporter.section(f"notebook run times ({mode}; flagged over 90 s)")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        flag = "" if seconds <= 90 else "  <-- over budget"
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
