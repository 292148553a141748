"""Tests for the repository's nbval hooks (conftest.py): a figure shown twice fails the notebook."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("repo_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image(payload: str) -> dict:
    return {"output_type": "display_data", "data": {"image/png": payload, "text/plain": "<Figure>"}, "metadata": {}}


def test_repeated_images_flags_twice_in_a_cell_and_again_in_a_later_cell():
    hooks = _hooks()
    seen: dict = {}
    assert hooks.repeated_images([_image("AAA"), {"output_type": "stream", "text": "hi"}], seen, "Cell 1") == []
    assert hooks.repeated_images([_image("BBB"), _image("BBB")], seen, "Cell 2") == [
        "Cell 2 shows the same image twice (a figure returned or displayed while still open?)"
    ]
    assert hooks.repeated_images([_image("AAA")], seen, "Cell 3") == ["Cell 3 shows again the image Cell 1 already showed"]
    assert hooks.repeated_images([_image("CCC")], seen, "Cell 4") == []


def _notebook(cells: list[str]) -> dict:
    return {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c}
                      for c in cells],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def test_nbval_run_fails_on_a_figure_shown_twice_and_passes_when_closed(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    setup = "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\nimport matplotlib.pyplot as plt"
    shown_twice = "fig, ax = plt.subplots()\nax.plot([1, 2], [2, 1])\nfig"  # open figure returned: shown twice
    shown_once = "fig, ax = plt.subplots()\nax.plot([1, 3], [2, 1])\nplt.close(fig)\nfig"
    (tmp_path / "bad.ipynb").write_text(json.dumps(_notebook([setup, shown_twice])))
    (tmp_path / "good.ipynb").write_text(json.dumps(_notebook([setup, shown_once])))
    env = {**os.environ, "PYTHONPATH": ""}

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                               "--nbval-current-env", name], cwd=tmp_path, capture_output=True, text=True, env=env,
                              timeout=300)

    bad = run("bad.ipynb")
    assert bad.returncode == 1 and "shows the same image twice" in bad.stdout, bad.stdout[-2000:]
    good = run("good.ipynb")
    assert good.returncode == 0, good.stdout[-2000:]
