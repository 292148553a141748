"""Keep every notebook's header in sync: the Open-in-Colab badge, the Colab setup cell and the run time.

The repository address comes from ``pyproject.toml`` (``[project.urls] Repository``) and the pinned
release from the package version, so publishing the course is: set the address there, run this
script, tag ``v<version>``. The header's **Run time** paragraph (**运行时间** in the Chinese twins of ``notebooks/zh/``) is written from the
measured times in
``benchmarks/results/notebook_times_<budget>.json`` (``benchmarks/notebook_times.py``), the numbers the
README's chapter table shows, so the two never disagree. ``--check`` exits 1 when a notebook is out of sync (CI runs it through
``tests/test_repository.py``).

Usage:
    python tools/sync_notebooks.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlhelpers.course.results import notebook_times, run_time, stand_in_run  # noqa: E402

BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
# the header's run-time paragraph: from "**Run time" to the next blank line or the end of the cell
RUN_TIME_RE = re.compile(r"\*\*Run time.*?(?=\n\n|\Z)", re.S)
RUN_TIME_ZH_RE = re.compile(r"\*\*运行时间.*?(?=\n\n|\Z)", re.S)
RESULTS = ROOT / "benchmarks" / "results"


def repository() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^Repository = "([^"]+)"', text, re.M).group(1)


def release() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return "v" + re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def badge(name: str) -> str:
    slug = repository().removeprefix("https://github.com/")
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{slug}/blob/main/notebooks/{name})"
    )


def setup_cell() -> str:
    return f'''# Setup. On Colab: install the course helpers (pinned to the course release) and, if you tick
# USE_DRIVE, keep datasets, weights and checkpoints on Google Drive so a disconnect loses nothing
# (training resumes from the last saved epoch). Locally (`make lab`) this cell does nothing.
import importlib.util
import os
import sys

USE_DRIVE = False  # Colab only: True mounts Drive and caches everything in MyDrive/tlcv/

if "google.colab" in sys.modules:
    if importlib.util.find_spec("tlhelpers") is None:
        %pip install -q "tlhelpers @ git+{repository()}@{release()}"
    if USE_DRIVE:
        from google.colab import drive

        drive.mount("/content/drive")
        os.environ["TLH_DATA"] = "/content/drive/MyDrive/tlcv/data"
        os.environ["TORCH_HOME"] = "/content/drive/MyDrive/tlcv/torch"'''


def run_time_paragraph(name: str, times: dict) -> str:
    """The header's run-time paragraph of notebook ``name``, from the measured times of the three budgets."""

    def measured(mode: str, what: str) -> str:
        t = times.get(mode)
        if t is None or name not in t["seconds"]:
            return f"{what}: not measured yet"
        how = "from an empty data folder" if t.get("cold") else "with the caches of the notebooks before it"
        date = t.get("dates", {}).get(name, t["date"])
        return f"{what}: {run_time(times, mode, name)} ({t['hardware']}, {date}, {how})"

    laptop = "laptop budget (real data and weights on a CPU"
    if stand_in_run(times, "laptop"):
        laptop += "; timed here with random weights on stand-in files of the real sizes"
    return ("**Run time**, measured by `benchmarks/notebook_times.py` (the README's chapter table shows the same "
            f"numbers): {measured('reduced', 'reduced mode (`TLH_BUDGET=reduced`, offline, CPU)')}; "
            f"{measured('laptop', laptop + ')')}; "
            f"{measured('full', 'full mode (real data and weights, GPU)')}.")


def run_time_paragraph_zh(name: str, times: dict) -> str:
    """The same paragraph for the Chinese twin in ``notebooks/zh/`` (same numbers, Chinese text)."""

    def measured(mode: str, what: str) -> str:
        t = times.get(mode)
        if t is None or name not in t["seconds"]:
            return f"{what}：尚未测量"
        how = "数据目录为空时" if t.get("cold") else "沿用前面笔记本的缓存"
        date = t.get("dates", {}).get(name, t["date"])
        return f"{what}：{run_time(times, mode, name)}（{t['hardware']}，{date}，{how}）"

    laptop = "笔记本电脑 laptop 档（CPU 上的真实数据与权重"
    if stand_in_run(times, "laptop"):
        laptop += "；此处用随机权重和真实大小的替身文件计时"
    return ("**运行时间**，由 `benchmarks/notebook_times.py` 测得（与 README 章节表中的数字相同）："
            f"{measured('reduced', '精简 reduced 档（`TLH_BUDGET=reduced`，离线，CPU）')}；"
            f"{measured('laptop', laptop + '）')}；"
            f"{measured('full', '完整 full 档（真实数据与权重，GPU）')}。")


def _with_run_time(title: str, paragraph: str, pattern: re.Pattern = RUN_TIME_RE) -> str:
    if pattern.search(title):
        return pattern.sub(lambda _: paragraph, title, count=1)
    return title.rstrip("\n") + "\n\n" + paragraph


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def synced(path: Path, times: dict | None = None) -> str:
    """``path``'s notebook JSON with the current badge, setup cell and run time."""
    times = notebook_times(RESULTS) if times is None else times
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    title = "".join(cells[0]["source"])
    new_title = BADGE_RE.sub(badge(path.name), title) if BADGE_RE.search(title) else title.replace("\n", f"\n\n{badge(path.name)}\n", 1)
    cells[0]["source"] = _lines(_with_run_time(new_title, run_time_paragraph(path.name, times)))
    first_code = next(c for c in cells if c["cell_type"] == "code")
    first_code["source"] = _lines(setup_cell())
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def synced_zh(path: Path, times: dict | None = None) -> str:
    """A Chinese twin's JSON with its run-time paragraph regenerated (its code and badge come from tools/zh_twins.py)."""
    times = notebook_times(RESULTS) if times is None else times
    nb = json.loads(path.read_text())
    first = nb["cells"][0]
    first["source"] = _lines(_with_run_time("".join(first["source"]), run_time_paragraph_zh(path.name, times),
                                            RUN_TIME_ZH_RE))
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report notebooks out of sync, change nothing")
    args = parser.parse_args()
    stale = []
    times = notebook_times(RESULTS)
    paths = [(p, synced) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    paths += [(p, synced_zh) for p in sorted((ROOT / "notebooks" / "zh").glob("*.ipynb"))]
    for path, sync in paths:
        text = sync(path, times)
        if text == path.read_text():
            continue
        name = str(path.relative_to(ROOT / "notebooks"))
        if args.check:
            stale.append(name)
        else:
            path.write_text(text)
            print(f"updated {name}")
    if stale:
        print(f"out of sync: {', '.join(stale)}; run `python tools/sync_notebooks.py`.")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
